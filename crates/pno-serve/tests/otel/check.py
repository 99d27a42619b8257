#!/usr/bin/env python3
"""pno serve's traces arrive at a real OTLP receiver (run by run.sh).

  python3 check.py --pno PNO --agent ROTEL_AGENT --config TRAIN_CONFIG [--json OUT]

Starts `rotel-agent` with OTLP/gRPC and OTLP/HTTP receivers and its detailed debug log; trains a
tiny model with OTEL_EXPORTER_OTLP_ENDPOINT set (a `train` span with one `epoch` span per epoch,
with their numbers, must arrive) and runs a one-cell suite (a `suite` span with its `cell` span and
the cell's metrics); then for each protocol (http/protobuf, grpc) starts `pno serve` with only
the standard OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_PROTOCOL set and checks:
  - an inference sent with a caller's `traceparent` answers with a `traceparent` of the same trace
    and a new span id, and a malformed `traceparent` is ignored (a new trace, the request works);
  - after SIGTERM (which flushes the exporter) the receiver has the caller's trace with the spans
    `POST /v2/models/{name}/infer` (the request: SERVER kind, parent = the caller's span), admission, receive, parse, queue, compute
    (model, version, draws, degraded, rows) and encode, each a child in the same trace;
with a collector that is down, requests are not slowed and shutdown is not blocked; and without
any endpoint but with RUST_LOG=info,pno_serve=debug, the server's JSON log has a close line with
timings for each phase.
Exit status 0 when every check held.
"""
import argparse
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

FAILS = []
# The request span is named after the route (OpenTelemetry's HTTP server convention).
REQUEST = "POST /v2/models/{name}/infer"
PHASES = [REQUEST, "admission", "receive", "parse", "queue", "compute", "encode"]


def check(name, cond, info=""):
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else f"  -- {info}"), flush=True)
    if not cond:
        FAILS.append(name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, cond, limit=60):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if cond():
            return True
        time.sleep(0.1)
    raise SystemExit(f"FAIL: {what}: not within {limit} s")


def request(url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def spans_of(text):
    """The spans in rotel's detailed debug log: name, trace, id, parent, kind, attributes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    out = []
    for chunk in re.split(r"\nSpan #\d+\n", text)[1:]:
        field = lambda k: (re.search(rf"^[ \t]*{k}[ \t]*:[ \t]*(.*)$", chunk, re.M) or [None, ""])[1].strip()
        attrs = dict(re.findall(r"^\s*-> ([\w.]+): \w+\((.*)\)$", chunk.split("Events:")[0], re.M))
        out.append({"name": field("Name"), "trace": field("Trace ID"), "id": field("ID"),
                    "parent": field("Parent ID"), "kind": field("Kind"), "attrs": attrs})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pno", required=True)
    ap.add_argument("--agent", required=True)
    ap.add_argument("--config", required=True)
    args = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="pno-otel-"))
    procs = []
    try:
        pno = args.pno
        run = lambda *a: subprocess.run([pno, *a], check=True, capture_output=True, text=True)
        grpc_port, http_port = free_port(), free_port()
        agent_log = open(work / "rotel.out", "w")
        agent = subprocess.Popen([args.agent, "start", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
                                  "--otlp-http-endpoint", f"127.0.0.1:{http_port}", "--exporter", "blackhole",
                                  "--debug-log", "traces", "--debug-log-verbosity", "detailed"],
                                 stdout=agent_log, stderr=subprocess.STDOUT)
        procs.append(agent)
        wait_for("rotel-agent listening", lambda: "Starting Rotel" in (work / "rotel.out").read_text())
        spans_now = lambda: spans_of((work / "rotel.out").read_text())

        # pno train with the standard variables: a `train` span and one `epoch` span per epoch.
        otel_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        otel_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{http_port}"
        run("generate", "darcy", "--resolution", "16", "--n", "6", "--seed", "1", "--out", str(work / "d"), "--quiet")
        subprocess.run([pno, "train", "--config", args.config, "--data", str(work / "d"), "--out",
                        str(work / "repo" / "m" / "1"), "--quiet", "--set", "train.epochs=2", "--set", "data.n_train=4",
                        "--set", "data.n_test=2", "--set", "train.batch_size=2", "--set", "model.hidden_channels=4",
                        "--set", "model.lifting_channels=4", "--set", "model.projection_channels=4",
                        "--set", "model.n_layers=1", "--set", "model.n_modes=[4,4]"],
                       check=True, capture_output=True, text=True, env=otel_env)
        try:
            wait_for("train spans", lambda: sum(s["name"] == "epoch" for s in spans_now()) >= 2, limit=20)
        except SystemExit:
            pass
        tr = [s for s in spans_now() if s["name"] == "train"]
        ep = [s for s in spans_now() if s["name"] == "epoch"]
        check("pno train: a train span and one epoch span per epoch, children of it",
              len(tr) == 1 and len(ep) == 2 and all(e["parent"] == tr[0]["id"] for e in ep),
              ([s["name"] for s in spans_now()], tr, ep))
        check("pno train: epoch spans carry the losses; the train span the summary",
              all("train_loss" in e["attrs"] and "val_rel_l2" in e["attrs"] for e in ep)
              and tr and tr[0]["attrs"].get("epochs") == "2" and "val_rel_l2" in tr[0]["attrs"],
              (tr[0]["attrs"] if tr else None, [e["attrs"] for e in ep]))

        # pno bench on a one-cell suite: a `suite` span with a `cell` span and its numbers.
        (work / "darcy.toml").write_text('pde = "darcy"\nn = 24\nseed = 3\nresolution = 16\n')
        (work / "s.toml").write_text("""[suite]
name = "otel"
seeds = [0]
samples = 4
[[pde]]
name = "d"
generator = "darcy.toml"
data = { n_test = 6, check = false }
model = { hidden_channels = 4, n_layers = 1, n_modes = [4, 4], lifting_channels = 4, projection_channels = 4 }
train = { epochs = 1, batch_size = 4, lr = 0.003 }
[[method]]
name = "fno"
model = { kind = "fno" }
""")
        subprocess.run([pno, "bench", "--suite", str(work / "s.toml"), "--out", str(work / "bench"), "--quiet"],
                       check=True, capture_output=True, text=True, env=otel_env)
        try:
            wait_for("bench spans", lambda: any(s["name"] == "suite" for s in spans_now()), limit=20)
        except SystemExit:
            pass
        su = [s for s in spans_now() if s["name"] == "suite"]
        ce = [s for s in spans_now() if s["name"] == "cell"]
        check("pno bench: a suite span with its cell span, carrying rel_l2, crps and train_s",
              len(su) == 1 and len(ce) == 1 and ce[0]["parent"] == su[0]["id"]
              and all(k in ce[0]["attrs"] for k in ("rel_l2", "crps", "train_s"))
              and ce[0]["attrs"].get("cell") == "d/fno/seed0",
              (su, ce))
        body = json.dumps({"inputs": [{"name": "x", "shape": [1, 1, 16, 16], "datatype": "FP32",
                                       "data": [0.5] * 256}], "parameters": {"n_samples": 3, "seed": 1}}).encode()

        def serve(env_extra, log):
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
            env.update(env_extra)
            p = subprocess.Popen([pno, "serve", "--repository", str(work / "repo"), "--listen", f"127.0.0.1:{port}"],
                                 stdout=subprocess.DEVNULL, stderr=open(work / log, "w"), env=env)
            procs.append(p)
            base = f"http://127.0.0.1:{port}"

            def ready():
                try:
                    return request(base + "/v2/health/ready")[0] == 200
                except OSError:
                    return False
            wait_for("pno serve ready", ready)
            return p, base

        for proto, endpoint in (("http/protobuf", f"http://127.0.0.1:{http_port}"),
                                ("grpc", f"http://127.0.0.1:{grpc_port}")):
            trace = os.urandom(16).hex()
            parent = os.urandom(8).hex()
            p, base = serve({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": proto},
                            f"pno-{proto.replace('/', '-')}.log")
            status, headers, _ = request(base + "/v2/models/m/infer", body,
                                         {"Content-Type": "application/json",
                                          "traceparent": f"00-{trace}-{parent}-01", "tracestate": "vendor=1"})
            tp = {k.lower(): v for k, v in headers.items()}.get("traceparent", "")
            parts = tp.split("-")
            check(f"{proto}: inference answered with the caller's trace and a new span id",
                  status == 200 and len(parts) == 4 and parts[1] == trace and parts[2] != parent, (status, tp))
            status, headers, _ = request(base + "/v2/models/m/infer", body,
                                         {"Content-Type": "application/json", "traceparent": "00-zz-not-valid"})
            tp2 = {k.lower(): v for k, v in headers.items()}.get("traceparent", "")
            check(f"{proto}: a malformed traceparent is ignored (the request works, a new trace)",
                  status == 200 and len(tp2.split("-")) == 4 and tp2.split("-")[1] != trace, (status, tp2))
            p.send_signal(signal.SIGTERM)
            check(f"{proto}: pno serve exits 0 after SIGTERM", p.wait(timeout=60) == 0)

            def arrived():
                return {REQUEST, "compute", "encode"} <= {
                    s["name"] for s in spans_of((work / "rotel.out").read_text()) if s["trace"] == trace}
            try:
                wait_for(f"{proto}: spans at the receiver", arrived, limit=20)
            except SystemExit as e:
                check(f"{proto}: spans of the caller's trace reached the receiver", False, e)
                continue
            spans = [s for s in spans_of((work / "rotel.out").read_text()) if s["trace"] == trace]
            names = {s["name"] for s in spans}
            check(f"{proto}: every phase span arrived: {', '.join(PHASES)}", set(PHASES) <= names, sorted(names))
            req = next(s for s in spans if s["name"] == REQUEST)
            check(f"{proto}: the request span is a SERVER span whose parent is the caller's span",
                  req["parent"] == parent and "SERVER" in req["kind"], req)
            check(f"{proto}: the request span has the response status",
                  req["attrs"].get("http.response.status_code") == "200", req["attrs"])
            ids = {s["id"] for s in spans}
            check(f"{proto}: every other phase is a descendant in the same trace",
                  all(s["parent"] in ids for s in spans if s["name"] != REQUEST),
                  [(s["name"], s["parent"]) for s in spans])
            comp = next((s for s in spans if s["name"] == "compute"), {"attrs": {}})
            a = comp["attrs"]
            check(f"{proto}: compute carries model, version, draws, degraded, rows",
                  a.get("model") == "m" and a.get("version") == "1" and a.get("draws") == "3"
                  and a.get("degraded") == "false" and a.get("rows") == "1", a)

        # A collector that is down never slows requests (the exporter's queue is bounded).
        dead = free_port()
        p, base = serve({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{dead}"}, "pno-dead.log")
        lat = []
        for _ in range(20):
            t = time.monotonic()
            request(base + "/v2/models/m/infer", body, {"Content-Type": "application/json"})
            lat.append(time.monotonic() - t)
        lat.sort()
        check("a collector that is down does not slow requests (p50 under 0.5 s)", lat[10] < 0.5, lat)
        p.send_signal(signal.SIGTERM)
        check("a collector that is down does not block shutdown", p.wait(timeout=30) == 0)

        # No endpoint, debug logging for the server: the phases are in the JSON log.
        p, base = serve({"RUST_LOG": "info,pno_serve=debug"}, "pno-nolog.log")
        request(base + "/v2/models/m/infer", body, {"Content-Type": "application/json"})
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        closes = set()
        for line in (work / "pno-nolog.log").read_text().splitlines():
            try:
                v = json.loads(line)
            except ValueError:
                continue
            if v.get("fields", {}).get("message") == "close" and "time.busy" in v.get("fields", {}):
                closes.add(v.get("span", {}).get("name"))
        check("no endpoint, RUST_LOG=info,pno_serve=debug: each phase's close (with time.busy/time.idle) is in the JSON log",
              set(["request"] + PHASES[1:]) <= closes, sorted(closes))
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        if FAILS or os.environ.get("KEEP_WORK"):
            print(f"work folder kept: {work}", file=sys.stderr)
            tail = (work / "rotel.out").read_text()[-3000:] if (work / "rotel.out").exists() else ""
            if FAILS:
                print(tail, file=sys.stderr)
        else:
            subprocess.run(["rm", "-rf", str(work)])
    print(f"{len(FAILS)} failed")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
