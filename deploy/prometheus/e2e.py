#!/usr/bin/env python3
"""Scrape-and-alert end to end: a real `pno serve`, Debian's Prometheus 2.42 and Alertmanager 0.25,
all on 127.0.0.1 with temporary storage, and a webhook receiver standing in for the pager and the
ticket queue.

  python3 deploy/prometheus/e2e.py --pno PATH/TO/pno [--json OUT]

Prometheus scrapes the server every second and evaluates the shipped rules
(rules/pno-serve.rules.yml: the same expressions, with every `for:` shortened to 1 s so the test
takes seconds; tests/pno-serve.test.yml checks the shipped durations); Alertmanager routes by
severity like alertmanager.yml (critical → /pager, the rest → /tickets) with resolve
notifications. The test then:
  1. starts `pno serve` on an empty repository: not ready, not draining → PnoNotReady (critical)
     must reach /pager, and only /pager;
  2. writes a config with a bad value and sends SIGHUP: the reload is rejected →
     PnoConfigReloadFailed (warning) must reach /tickets;
  3. restores the good config and sends SIGHUP → its resolve notification must reach /tickets.
It prints the time from each provocation to its notification. Exit status 0 when all held.
Loopback only; bounded (about a minute); stops what it starts.
"""
import argparse
import http.server
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver(http.server.BaseHTTPRequestHandler):
    got = []  # (monotonic time, path, payload)
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with Receiver.lock:
            Receiver.got.append((time.monotonic(), self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def wait(what, cond, limit):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        r = cond()
        if r:
            return r
        time.sleep(0.1)
    raise SystemExit(f"FAIL: {what}: nothing within {limit} s")


def notifications(path=None, alert=None, status=None):
    with Receiver.lock:
        got = list(Receiver.got)
    out = []
    for t, p, payload in got:
        for a in payload.get("alerts", []):
            if (path is None or p == path) and (alert is None or a["labels"].get("alertname") == alert) \
                    and (status is None or a["status"] == status):
                out.append((t, p, a))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pno", required=True)
    ap.add_argument("--json")
    args = ap.parse_args()
    for tool in ("prometheus", "prometheus-alertmanager", "promtool", "amtool"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            raise SystemExit(f"FAIL: {tool} is not installed (apt-get install prometheus prometheus-alertmanager)")
    work = pathlib.Path(tempfile.mkdtemp(prefix="pno-alerts-"))
    procs = []

    def start(cmd, log):
        p = subprocess.Popen(cmd, stdout=open(work / log, "w"), stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    try:
        rcv_port, am_port, prom_port, pno_port = free_port(), free_port(), free_port(), free_port()
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", rcv_port), Receiver)
        threading.Thread(target=srv.serve_forever, daemon=True).start()

        # The shipped rules, `for:` shortened.
        rules = (HERE / "rules" / "pno-serve.rules.yml").read_text()
        (work / "rules.yml").write_text(re.sub(r"for: \d+[smh]", "for: 1s", rules))
        (work / "prometheus.yml").write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{work}/rules.yml"]
alerting:
  alertmanagers: [{{static_configs: [{{targets: ["127.0.0.1:{am_port}"]}}]}}]
scrape_configs:
  - job_name: pno-serve
    static_configs: [{{targets: ["127.0.0.1:{pno_port}"]}}]
""")
        am = (HERE / "alertmanager.yml").read_text()
        am = am.replace("http://pager.example.internal/pno", f"http://127.0.0.1:{rcv_port}/pager")
        am = am.replace("http://tickets.example.internal/pno", f"http://127.0.0.1:{rcv_port}/tickets")
        am = re.sub(r"group_wait: \S+", "group_wait: 1s", am)
        am = re.sub(r"group_interval: \S+", "group_interval: 1s", am)
        (work / "alertmanager.yml").write_text(am)
        for cmd in (["promtool", "check", "config", str(work / "prometheus.yml")],
                    ["amtool", "check-config", str(work / "alertmanager.yml")],
                    ["amtool", "check-config", str(HERE / "alertmanager.yml")]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"FAIL: {' '.join(cmd)}:\n{r.stdout}{r.stderr}")

        start(["prometheus-alertmanager", f"--config.file={work}/alertmanager.yml",
               f"--storage.path={work}/am", f"--web.listen-address=127.0.0.1:{am_port}",
               "--cluster.listen-address="], "alertmanager.log")
        start(["prometheus", f"--config.file={work}/prometheus.yml", f"--storage.tsdb.path={work}/tsdb",
               f"--web.listen-address=127.0.0.1:{prom_port}"], "prometheus.log")

        def up(port, path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        wait("Alertmanager ready", lambda: up(am_port, "/-/ready"), 30)
        wait("Prometheus ready", lambda: up(prom_port, "/-/ready"), 30)

        repo = work / "repo"
        repo.mkdir()
        good = f'listen = "127.0.0.1:{pno_port}"\nrepository = "{repo}"\n'
        cfg = work / "serve.toml"
        cfg.write_text(good)
        t_start = time.monotonic()
        pno = start([args.pno, "serve", "--config", str(cfg)], "pno.log")
        wait("pno serve listening", lambda: up(pno_port, "/v2/health/live"), 60)

        # 1. Not ready (no model): critical → /pager.
        t, path, a = wait("PnoNotReady at /pager",
                          lambda: (notifications("/pager", "PnoNotReady", "firing") or [None])[0], 60)
        not_ready_s = t - t_start
        assert a["labels"]["severity"] == "critical", a
        assert a["annotations"].get("runbook"), a
        print(f"ok   PnoNotReady (critical) reached /pager {not_ready_s:.1f} s after pno serve started")

        # 2. A rejected reload: warning → /tickets.
        cfg.write_text(good + "[breaker]\nfailure_rate = 3.0\n")
        t_bad = time.monotonic()
        pno.send_signal(signal.SIGHUP)
        t, path, a = wait("PnoConfigReloadFailed at /tickets",
                          lambda: (notifications("/tickets", "PnoConfigReloadFailed", "firing") or [None])[0], 60)
        reload_fail_s = t - t_bad
        assert a["labels"]["severity"] == "warning", a
        print(f"ok   PnoConfigReloadFailed (warning) reached /tickets {reload_fail_s:.1f} s after the bad SIGHUP")

        # 3. Fixed: the resolve notification.
        cfg.write_text(good)
        t_fix = time.monotonic()
        pno.send_signal(signal.SIGHUP)
        t, path, a = wait("PnoConfigReloadFailed resolved at /tickets",
                          lambda: (notifications("/tickets", "PnoConfigReloadFailed", "resolved") or [None])[0], 60)
        resolved_s = t - t_fix
        print(f"ok   PnoConfigReloadFailed resolved at /tickets {resolved_s:.1f} s after the good SIGHUP")

        # Routing: nothing critical in the tickets, nothing warning in the pager.
        crossed = [a["labels"]["alertname"] for _, p, a in notifications()
                   if (p == "/pager") != (a["labels"]["severity"] == "critical")]
        assert not crossed, f"misrouted: {crossed}"
        print("ok   routing by severity: critical only at /pager, the rest only at /tickets")
        pno.send_signal(signal.SIGTERM)
        rc = pno.wait(timeout=30)
        assert rc == 0, f"pno serve exited {rc}"
        result = {"not_ready_to_pager_s": round(not_ready_s, 2), "reload_failed_to_tickets_s": round(reload_fail_s, 2),
                  "resolved_to_tickets_s": round(resolved_s, 2), "scrape_interval_s": 1, "evaluation_interval_s": 1,
                  "for_s": 1, "group_wait_s": 1}
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps(result, indent=1))
        print("alerting end to end: passed", json.dumps(result))
    except (AssertionError, SystemExit) as e:
        print(f"FAIL: {e}", file=sys.stderr)
        for log in ("pno.log", "prometheus.log", "alertmanager.log"):
            p = work / log
            if p.exists():
                print(f"--- {log} (tail)", file=sys.stderr)
                print("\n".join(p.read_text().splitlines()[-15:]), file=sys.stderr)
        return 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if not os.environ.get("KEEP_WORK"):
            subprocess.run(["rm", "-rf", str(work)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
