#!/usr/bin/env python3
"""Driver of bench/anomaly.sh: a webhook receiver for the server's alert notifications, the fault
schedule, and the report.

  anomaly.py drive --url URL --admin-key KEY --receiver-port P --window W --steady S --work DIR
  anomaly.py report --work DIR --out FILE --stamp JSON

`drive` starts the receiver on 127.0.0.1:P (Alertmanager webhook payloads, `"version": "4"`),
waits S seconds of steady load (the load runs outside), polling GET /v2/admin/alerts once per
window, then runs the faults one after the other: a latency shift (`slow`, every call MS slower)
and an error burst (`flaky`, a fraction P of calls fail), each until its firing notification
arrives (at most 120 s), then cleared until the resolve arrives (at most 180 s). Every
notification is written to DIR/notifications.jsonl with its arrival time, the schedule to
DIR/schedule.json, the polls to DIR/polls.jsonl. Loopback only.
"""
import argparse
import http.server
import json
import threading
import time

from resilience import now_ms, request


class Receiver(http.server.BaseHTTPRequestHandler):
    sink = None
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802 - http.server's name
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n).decode()
        with Receiver.lock:
            Receiver.sink.write(json.dumps({"t_ms": now_ms(), "body": json.loads(body)}) + "\n")
            Receiver.sink.flush()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):  # quiet
        pass


def notifications(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def cmd_drive(a):
    Receiver.sink = open(f"{a.work}/notifications.jsonl", "a")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.receiver_port), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    polls = open(f"{a.work}/polls.jsonl", "w")

    def poll():
        s, b, _ = request(a.url, "GET", "/v2/admin/alerts", key=a.admin_key)
        if s == 200:
            polls.write(json.dumps({"t_ms": now_ms(), "alerts": json.loads(b)}) + "\n")
            polls.flush()

    def fault(v):
        s, b, _ = request(a.url, "PUT", "/v2/debug/faults", key=a.admin_key, body=json.dumps(v))
        assert s == 200, (s, b)

    def wait_for(pred, limit_s):
        end = time.time() + limit_s
        next_poll = time.time()
        while time.time() < end:
            for n in notifications(f"{a.work}/notifications.jsonl"):
                if pred(n):
                    return n
            if time.time() >= next_poll:
                poll()
                next_poll += a.window
            time.sleep(0.05)
        return None

    def has(n, name, status):
        return any(x["labels"]["alertname"] == name and x["status"] == status
                   for x in n["body"]["alerts"])

    schedule = {"t0_ms": now_ms(), "window_s": a.window, "steady_s": a.steady, "faults": []}
    # Steady phase: poll once per window.
    end = time.time() + a.steady
    while time.time() < end:
        poll()
        time.sleep(a.window)
    schedule["steady_end_ms"] = now_ms()
    for name, v in (
        ("LatencyAnomaly", {"model": "a", "mode": "slow", "ms": a.slow_ms}),
        ("ErrorRateAnomaly", {"model": "a", "mode": "flaky", "p": a.flaky_p}),
    ):
        t_on = now_ms()
        fault(v)
        fired = wait_for(lambda n: n["t_ms"] > t_on and has(n, name, "firing"), 120)
        t_off = now_ms()
        fault({"model": "a", "mode": "off"})
        resolved = wait_for(lambda n: n["t_ms"] > t_off and has(n, name, "resolved"), 180)
        schedule["faults"].append({
            "alert": name, "fault": v, "on_ms": t_on, "off_ms": t_off,
            "fired_ms": fired and fired["t_ms"], "resolved_ms": resolved and resolved["t_ms"],
        })
        # A quiet gap so the next fault starts from a settled baseline.
        end = time.time() + 3 * a.window
        while time.time() < end:
            poll()
            time.sleep(a.window)
    schedule["end_ms"] = now_ms()
    with open(f"{a.work}/schedule.json", "w") as f:
        json.dump(schedule, f, indent=1)
    srv.shutdown()


def cmd_report(a):
    sch = json.load(open(f"{a.work}/schedule.json"))
    params = json.load(open(f"{a.work}/params.json"))
    ns = notifications(f"{a.work}/notifications.jsonl")
    w = sch["window_s"]
    warm_ms = sch["t0_ms"] + params["warmup_windows"] * w * 1e3
    steady_end = sch["steady_end_ms"]
    # False alarms: anomaly alerts that fired in the steady phase after the warm-up. Other
    # alerts (InputDrift: the bench's one synthetic input is not from the training data, so its
    # drift is real) are reported apart.
    steady = [x for n in ns if warm_ms <= n["t_ms"] <= steady_end
              for x in n["body"]["alerts"] if x["status"] == "firing"]
    false = [x for x in steady if x["labels"]["alertname"].endswith("Anomaly")]
    others = sorted({x["labels"]["alertname"] for x in steady} - {x["labels"]["alertname"] for x in false})
    judged = max(0, int((steady_end - warm_ms) / 1e3 / w))
    # Anomalous windows per detector in the steady phase (polled judgements).
    anomalous, seen = {}, set()
    for line in open(f"{a.work}/polls.jsonl"):
        p = json.loads(line)
        if not warm_ms <= p["t_ms"] <= steady_end:
            continue
        for d in p["alerts"]["detectors"]:
            key = (d["signal"], p["alerts"]["judged_to"])
            if key in seen:
                continue
            seen.add(key)
            anomalous.setdefault(d["signal"], [0, 0])
            anomalous[d["signal"]][0] += 1
            anomalous[d["signal"]][1] += int(d["anomalous"])
    faults = []
    for f in sch["faults"]:
        faults.append({
            "alert": f["alert"], "fault": f["fault"],
            "detect_s": f["fired_ms"] and round((f["fired_ms"] - f["on_ms"]) / 1e3, 2),
            "resolve_s": f["resolved_ms"] and round((f["resolved_ms"] - f["off_ms"]) / 1e3, 2),
        })
    out = {
        **json.loads(a.stamp), "params": params,
        "steady": {"windows_judged": judged, "false_alerts": len(false),
                   "false_alert_rate_per_window": (len(false) / judged) if judged else None,
                   "false_alerts_detail": false, "other_alerts": others,
                   "anomalous_windows_by_signal": {k: {"polled": v[0], "anomalous": v[1]}
                                                   for k, v in anomalous.items()}},
        "faults": faults,
        "notifications": len(ns),
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"steady: {judged} windows of {w} s judged after warm-up, {len(false)} false anomaly alerts"
          + (f" (also fired, not anomaly detectors: {', '.join(others)})" if others else ""))
    for k, v in sorted(anomalous.items()):
        print(f"  {k}: {v[1]} anomalous of {v[0]} polled windows")
    for f in faults:
        print(f"{f['alert']}: detected in {f['detect_s']} s, resolved {f['resolve_s']} s after the fault ended ({f['fault']})")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("drive")
    d.add_argument("--url", required=True)
    d.add_argument("--admin-key", required=True)
    d.add_argument("--receiver-port", type=int, required=True)
    d.add_argument("--window", type=float, required=True)
    d.add_argument("--steady", type=float, required=True)
    d.add_argument("--slow-ms", type=int, default=100)
    d.add_argument("--flaky-p", type=float, default=0.2)
    d.add_argument("--work", required=True)
    r = sub.add_parser("report")
    r.add_argument("--work", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--stamp", required=True)
    a = p.parse_args()
    {"drive": cmd_drive, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
