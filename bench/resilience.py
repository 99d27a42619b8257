#!/usr/bin/env python3
"""Helpers of bench/chaos.sh and bench/overload.sh (Python stdlib only, loopback only).

  resilience.py body OUT [--n-samples 32] [--res 32]      an OIP v2 request body (mean, std)
  resilience.py drive --url U --admin-key K --t0-ms T --dur S --work DIR
        the chaos schedule: injects faults on model a version 1 at fixed offsets from the load
        start T (ms since the Unix epoch), records their windows (faults.json), polls a/1's
        breaker (breaker.jsonl), sends malformed requests (malformed.json), times the
        repository reload (repo_loads.json)
  resilience.py chaos-report --work DIR --out JSON [--stamp JSON]   analysis + Markdown
  resilience.py overload-report --work DIR --out JSON [--stamp JSON]
  resilience.py reload-drive --url U --admin-key K --probe-key P --pid PID --config FILE
        --t0-ms T --dur S --work DIR --port N   bench/reload.sh's schedule: 20 config changes
        (valid and invalid alternating) each followed by SIGHUP, checked through /metrics, the
        model's metadata (max_batch) and a probe key's burst (reload_steps.json)
  resilience.py reload-report --work DIR --out JSON [--stamp JSON]
"""
import argparse
import http.client
import json
import math
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse


def now_ms():
    return time.time() * 1e3


def request(url, method, path, key=None, body=None, timeout=10.0, headers=None):
    """One HTTP request on a fresh connection: (status, body text, headers); status 0 on error."""
    u = urllib.parse.urlparse(url)
    assert u.hostname in ("127.0.0.1", "localhost", "::1"), "loopback only"
    h = {"Connection": "close"}
    if key:
        h["Authorization"] = f"Bearer {key}"
    if body is not None:
        if isinstance(body, str):
            body = body.encode()
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    try:
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read().decode(errors="replace")
        hdrs = dict(r.getheaders())
        c.close()
        return r.status, data, hdrs
    except Exception as e:  # noqa: BLE001 - reported as status 0
        return 0, f"{type(e).__name__}: {e}", {}


def body_json(n_samples=32, res=32, data=None):
    if data is None:
        data = [abs(math.sin(i * 0.1)) for i in range(res * res)]
    return {
        "inputs": [{"name": "x", "shape": [1, 1, res, res], "datatype": "FP32", "data": data}],
        "parameters": {"n_samples": n_samples},
        "outputs": [{"name": "mean"}, {"name": "std"}],
    }


def cmd_body(a):
    with open(a.out, "w") as f:
        json.dump(body_json(a.n_samples, a.res), f)


# Malformed requests: every one is the client's fault, so none may be answered 5xx.
def malformed_cases(res=32):
    good = body_json(32, res)
    wrong_shape = body_json(32, res)
    wrong_shape["inputs"][0]["shape"] = [1, 1, res, res + 1]
    short = body_json(32, res)
    short["inputs"][0]["data"] = short["inputs"][0]["data"][:10]
    dtype = body_json(32, res)
    dtype["inputs"][0]["datatype"] = "BYTES"
    too_many = body_json(100000, res)
    strings = body_json(32, res)
    strings["inputs"][0]["data"] = ["x"] * (res * res)
    neg = body_json(-3, res)
    return [
        ("not_json", "{this is not json"),
        ("empty", ""),
        ("no_inputs", json.dumps({"parameters": {"n_samples": 4}})),
        ("wrong_shape", json.dumps(wrong_shape)),
        ("short_data", json.dumps(short)),
        ("bad_datatype", json.dumps(dtype)),
        ("too_many_samples", json.dumps(too_many)),
        ("negative_samples", json.dumps(neg)),
        ("string_data", json.dumps(strings)),
        ("unknown_output", json.dumps({**good, "outputs": [{"name": "nope"}]})),
        ("deep_json", "[" * 200 + "]" * 200),
    ]


def cmd_drive(a):
    url, key, t0 = a.url, a.admin_key, a.t0_ms
    work = a.work
    dur_ms = a.dur * 1e3
    stop = threading.Event()
    rel = lambda: now_ms() - t0  # noqa: E731

    # Breaker poller: a/1's state every 100 ms, one line per change (and the first).
    def poll():
        last = None
        next_load = 0.0
        with open(os.path.join(work, "breaker.jsonl"), "w") as f, \
                open(os.path.join(work, "loadavg.jsonl"), "w") as lf:
            while not stop.is_set():
                if rel() >= next_load:  # machine load once a second (other builds share it)
                    lf.write(json.dumps({"t_ms": round(rel()), "load1": float(
                        open("/proc/loadavg").read().split()[0])}) + "\n")
                    lf.flush()
                    next_load += 1000
                s, b, _ = request(url, "GET", "/v2/models/a/versions/1/stats", key, timeout=2)
                t = rel()
                if s == 200:
                    st = json.loads(b)["model_stats"][0]["breaker"]["state"]
                else:
                    st = f"http_{s}"
                if st != last:
                    f.write(json.dumps({"t_ms": round(t, 1), "state": st}) + "\n")
                    f.flush()
                    last = st
                time.sleep(0.1)

    th = threading.Thread(target=poll, daemon=True)
    th.start()

    faults, malformed, loads, injections = [], [], [], []

    def put(fault):
        s, b, _ = request(url, "PUT", "/v2/debug/faults", key, json.dumps(fault))
        injections.append({"t_ms": round(rel(), 1), "fault": fault, "status": s, "body": b[:200]})
        if s != 200:
            print(f"error: PUT /v2/debug/faults {fault} -> {s} {b[:200]}", file=sys.stderr)
            put.failed += 1
        return s

    put.failed = 0

    def clear():
        s, b, _ = request(url, "DELETE", "/v2/debug/faults", key)
        injections.append({"t_ms": round(rel(), 1), "fault": "clear", "status": s})

    def wait_until(t_ms):
        while rel() < t_ms and not stop.is_set():
            # Malformed requests to model b every ~7 s (model a's breaker may be open: a request
            # refused by an open breaker never reaches the parser, so they go to b).
            if rel() >= wait_until.next_bad:
                name, body = malformed_cases()[wait_until.i % len(malformed_cases())]
                s, b, _ = request(url, "POST", "/v2/models/b/infer", key, body)
                malformed.append({"t_ms": round(rel(), 1), "case": name, "model": "b",
                                  "status": s, "body": b[:160]})
                wait_until.i += 1
                wait_until.next_bad += 7000
            time.sleep(min(0.02, max(0.0, (t_ms - rel()) / 1e3)))
    wait_until.next_bad = 3000
    wait_until.i = 0

    # Baseline malformed requests to model a (its breaker is closed before the first fault).
    wait_until(1000)
    for name, body in malformed_cases():
        s, b, _ = request(url, "POST", "/v2/models/a/infer", key, body)
        malformed.append({"t_ms": round(rel(), 1), "case": name, "model": "a", "status": s,
                          "body": b[:160]})

    # Schedule (s since load start): 15 s windows, 10 s gaps, scaled to DUR (180 s nominal).
    k = a.dur / 180.0
    win = 15 * k
    plan = [
        ("slow", {"mode": "slow", "ms": a.slow_ms}, "slow", 15),
        ("hang", {"mode": "hang"}, "hang", 40),
        ("panic", {"mode": "panic"}, "internal", 65),
        ("fail", {"mode": "fail"}, "persistent", 90),
        ("nan", {"mode": "nan"}, "persistent", 115),
        ("transient-io-audit", None, "transient", 140),
        ("transient-io-repository", None, "transient", 160),
    ]
    for name, fault, cls, at in plan:
        start = at * k * 1e3
        end = start + (win if name != "transient-io-repository" else 10 * k) * 1e3
        wait_until(start)
        t_s = rel()
        if fault is not None:
            put({"model": "a", "version": "1", **fault})
            wait_until(end)
        elif name == "transient-io-audit":
            # Two failed writes of the audit log, again every second: the retries absorb them.
            while rel() < end:
                put({"io": "audit", "count": 2})
                wait_until(min(end, rel() + 1000))
        else:
            # Two failed repository reads, then a reload of model a: the retries absorb them.
            while rel() < end:
                put({"io": "repository", "count": 2})
                t1 = rel()
                s, b, _ = request(url, "POST", "/v2/repository/models/a/load", key, "{}",
                                  timeout=30)
                loads.append({"t_ms": round(t1, 1), "ms": round(rel() - t1, 1), "status": s,
                              "body": b[:200]})
                wait_until(min(end, rel() + 2500))
        t_e = rel()
        clear()
        faults.append({"name": name, "start_ms": round(t_s, 1), "end_ms": round(t_e, 1),
                       "class": cls})
    wait_until(dur_ms + 3000)
    stop.set()
    th.join(timeout=5)
    for fname, obj in [("faults.json", faults), ("malformed.json", malformed),
                       ("repo_loads.json", loads), ("injections.json", injections)]:
        with open(os.path.join(work, fname), "w") as f:
            json.dump(obj, f, indent=1)
    if put.failed:
        sys.exit(f"error: {put.failed} fault injections were refused (injections.json)")


# ---------------------------------------------------------------------------------------------
def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    i = min(len(v) - 1, max(0, math.ceil(p / 100 * len(v)) - 1))
    return round(v[i], 2)


def lat(rs):
    ls = [r["latency_ms"] for r in rs]
    return {"n": len(ls), "p50": pct(ls, 50), "p90": pct(ls, 90), "p99": pct(ls, 99),
            "max": pct(ls, 100)}


def ok(r):
    return 200 <= r["status"] < 300


def counts(rs):
    by_class, by_status = {}, {}
    for r in rs:
        if ok(r):
            continue
        c = r.get("class") or ("client_" + r["outcome"] if r["status"] == 0 else f"http_{r['status']}")
        by_class[c] = by_class.get(c, 0) + 1
        s = str(r["status"])
        by_status[s] = by_status.get(s, 0) + 1
    return {
        "scheduled": len(rs),
        "sent": sum(1 for r in rs if r["outcome"] != "client_dropped"),
        "succeeded": sum(1 for r in rs if ok(r)),
        "degraded": sum(1 for r in rs if ok(r) and r.get("degraded")),
        "failed": sum(1 for r in rs if not ok(r) and r["outcome"] != "client_dropped"),
        "failed_by_class": by_class,
        "failed_by_status": by_status,
        "hung": sum(1 for r in rs if r["outcome"] == "hung"),
        "connection_errors": sum(1 for r in rs if r["outcome"] == "error"),
        "client_dropped": sum(1 for r in rs if r["outcome"] == "client_dropped"),
    }


def audit_infer_records(path):
    n, by_status = 0, {}
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r.get("action") == "infer":
            n += 1
            s = str(r.get("status"))
            by_status[s] = by_status.get(s, 0) + 1
    return n, by_status


def fmt(v):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def cmd_chaos_report(a):
    w = a.work
    tl = {m: read_jsonl(os.path.join(w, f"timeline_{m}.jsonl")) for m in ("a", "b")}
    faults = json.load(open(os.path.join(w, "faults.json")))
    mttr = json.load(open(os.path.join(w, "mttr.json")))
    malformed = json.load(open(os.path.join(w, "malformed.json")))
    loads = json.load(open(os.path.join(w, "repo_loads.json")))
    breaker = read_jsonl(os.path.join(w, "breaker.jsonl"))
    stamp = json.loads(a.stamp) if a.stamp else {}
    cfg = json.load(open(os.path.join(w, "params.json")))

    res = {**stamp, "what": "chaos", "params": cfg, "faults": faults}
    if a.note:
        res["note"] = a.note
    res["per_model"] = {}
    for m, rs in tl.items():
        c = counts(rs)
        c["latency_success_ms"] = lat([r for r in rs if ok(r)])
        res["per_model"][m] = c

    # Model b: p99 inside fault windows vs outside them (excluding 5 s after each fault ends).
    def in_window(t, pad=0.0):
        return any(f["start_ms"] <= t < f["end_ms"] + pad for f in faults)
    b_ok = [r for r in tl["b"] if ok(r)]
    model_faults = [f for f in faults if f.get("class") != "transient"]
    during = [r for r in b_ok if any(f["start_ms"] <= r["start_ms"] < f["end_ms"] for f in model_faults)]
    during_io = [r for r in b_ok if any(f["start_ms"] <= r["start_ms"] < f["end_ms"]
                                        for f in faults if f.get("class") == "transient")]
    base = [r for r in b_ok if not in_window(r["start_ms"], 5000)]
    pre = [r for r in b_ok if r["start_ms"] < faults[0]["start_ms"]]
    res["b_isolation"] = {
        "baseline_out_of_fault_ms": lat(base),
        "baseline_before_first_fault_ms": lat(pre),
        "during_faults_ms": lat(during),
        "during_transient_io_ms": lat(during_io),
        "p99_ratio": (round(lat(during)["p99"] / lat(base)["p99"], 3)
                      if during and base else None),
        "during_failed": sum(1 for r in tl["b"] if in_window(r["start_ms"]) and not ok(r)),
    }

    # Breaker timeline of a/1 per fault: opened, half-open, closed.
    per_fault = []
    for i, f in enumerate(faults):
        nxt = faults[i + 1]["start_ms"] if i + 1 < len(faults) else float("inf")
        ev = [e for e in breaker if f["start_ms"] <= e["t_ms"] < nxt]
        opened = next((e["t_ms"] for e in ev if e["state"] == "open"), None)
        half = next((e["t_ms"] for e in ev if e["state"] == "half_open" and e["t_ms"] >= f["end_ms"]), None)
        closed = next((e["t_ms"] for e in ev if e["state"] == "closed" and e["t_ms"] >= f["end_ms"]), None)
        a_in = [r for r in tl["a"] if f["start_ms"] <= r["start_ms"] < f["end_ms"]]
        open_rs = [r for r in a_in if r.get("breaker") == "open"]
        first_open_req = min((r["start_ms"] for r in open_rs), default=None)
        rec = next((x for x in mttr["faults"] if x["name"] == f["name"]), {})
        # Recovery bounded by the next fault: from the fault's end to the end of the last failing
        # request of a that started after the end and more than 500 ms before the next fault's
        # start (its PUT lands a few ms after the recorded start; 0 when none failed).
        after = [r for r in tl["a"] if f["end_ms"] <= r["start_ms"] < nxt - 500 and not ok(r)
                 and r["status"] != 429]
        rec_ms = max((r["start_ms"] + r["latency_ms"] - f["end_ms"] for r in after), default=0.0)
        per_fault.append({
            "name": f["name"], "class": f.get("class"),
            "window_ms": [f["start_ms"], f["end_ms"]],
            "requests_a": len(a_in),
            "succeeded_a": sum(1 for r in a_in if ok(r)),
            "failed_a_by_status": counts(a_in)["failed_by_status"],
            "breaker_opened_after_ms": None if opened is None else round(opened - f["start_ms"], 1),
            "first_fast_fail_after_ms": None if first_open_req is None else round(first_open_req - f["start_ms"], 1),
            "open_fast_fail_latency_ms": lat(open_rs),
            "half_open_after_end_ms": None if half is None else round(half - f["end_ms"], 1),
            "closed_after_end_ms": None if closed is None else round(closed - f["end_ms"], 1),
            "recovery_ms": round(rec_ms, 1),
            "mttr_ms_pno_load": rec.get("mttr_ms"), "recovered": rec.get("recovered"),
            "success_fraction_in_window": rec.get("success_fraction"),
        })
    res["per_fault"] = per_fault
    res["breaker_transitions"] = breaker
    res["mttr"] = mttr

    transient = [f for f in per_fault if f["class"] == "transient"]
    clean = [f for f in transient if f["requests_a"] > 0 and f["succeeded_a"] == f["requests_a"]]
    loads_ok = sum(1 for l in loads if l["status"] == 200)
    res["transient"] = {
        "faults": len(transient),
        "recovered_without_client_error": len(clean),
        "fraction": round(len(clean) / len(transient), 3) if transient else None,
        "repository_reloads": loads, "repository_reloads_ok": loads_ok,
    }
    res["hung_connections"] = sum(res["per_model"][m]["hung"] for m in tl)
    bad5 = [x for x in malformed if x["status"] >= 500 or x["status"] == 0]
    res["malformed"] = {"sent": len(malformed), "5xx_or_no_answer": len(bad5),
                        "statuses": sorted({x["status"] for x in malformed}), "bad": bad5}
    answered = sum(1 for m in tl for r in tl[m] if r["status"] != 0) + \
        sum(1 for x in malformed if x["status"] != 0)
    n_all, audit_by_status = audit_infer_records(os.path.join(w, "audit.log"))
    bp = os.path.join(w, "audit_before.txt")  # records of the capacity probe, before the run
    before = int(open(bp).read()) if os.path.exists(bp) else 0
    n_audit = n_all - before
    res["audit"] = {"infer_requests_answered": answered, "infer_records": n_audit,
                    "infer_records_before_run": before,
                    "lost": answered - n_audit, "records_by_status": audit_by_status,
                    "verify": open(os.path.join(w, "audit_verify.txt")).read().strip()}
    metrics = {}
    mp = os.path.join(w, "metrics.txt")
    if os.path.exists(mp):
        for line in open(mp):
            if line.startswith(("pno_failures_total", "pno_breaker_transitions_total",
                                "pno_cancelled_total", "pno_degraded_total", "pno_shed_total",
                                "pno_retries_total", "pno_audit_append_failures_total")):
                k, _, v = line.rpartition(" ")
                metrics[k] = float(v)
    res["metrics"] = metrics
    lp = os.path.join(w, "loadavg.jsonl")
    loads1 = [x["load1"] for x in read_jsonl(lp)] if os.path.exists(lp) else []
    res["loadavg_during"] = {"min": min(loads1, default=None), "max": max(loads1, default=None),
                             "mean": round(sum(loads1) / len(loads1), 2) if loads1 else None}
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)

    # Markdown
    print(f"\nChaos run: {cfg['dur_s']} s at {cfg['rate']} req/s per model (a and b), "
          f"deadline {cfg['request_timeout_ms']} ms, breaker {cfg['breaker']}; "
          f"1-min load average during the run {res['loadavg_during']}.\n")
    print("| model | sent | succeeded | degraded | failed (by class) | hung | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for m, c in res["per_model"].items():
        cls = ", ".join(f"{k} {v}" for k, v in sorted(c["failed_by_class"].items())) or "0"
        print(f"| {m} | {c['sent']} | {c['succeeded']} | {c['degraded']} | {c['failed']} ({cls}) | "
              f"{c['hung']} | {fmt(c['latency_success_ms']['p50'])} | {fmt(c['latency_success_ms']['p99'])} |")
    print("\n| fault on a/1 | window s | a: ok/sent | breaker open after ms | fast-fail p99 ms (n) | "
          "fast-fail p50 ms | half-open / closed after end ms | recovery ms |")
    print("|---|---|---|---|---|---|---|---|")
    for f in per_fault:
        ws = f"{f['window_ms'][0]/1e3:.1f}–{f['window_ms'][1]/1e3:.1f}"
        ff = f["open_fast_fail_latency_ms"]
        print(f"| {f['name']} | {ws} | {f['succeeded_a']}/{f['requests_a']} | "
              f"{fmt(f['breaker_opened_after_ms'])} | {fmt(ff['p99'])} ({ff['n']}) | {fmt(ff['p50'])} | "
              f"{fmt(f['half_open_after_end_ms'])} / {fmt(f['closed_after_end_ms'])} | "
              f"{fmt(f['recovery_ms'])} |")
    bi = res["b_isolation"]
    print("\n| check | result | target |")
    print("|---|---|---|")
    print(f"| b p99 during a/1's model faults vs out-of-fault baseline | {fmt(bi['during_faults_ms']['p99'])} vs "
          f"{fmt(bi['baseline_out_of_fault_ms']['p99'])} ms (×{fmt(bi['p99_ratio'])}), "
          f"{bi['during_failed']} b failures in windows; b p99 during the transient-I/O windows "
          f"{fmt(bi['during_transient_io_ms']['p99'])} ms | ≤ ×1.2 |")
    t = res["transient"]
    print(f"| transient faults recovered without a client-visible error | {t['recovered_without_client_error']}/"
          f"{t['faults']}; reloads {t['repository_reloads_ok']}/{len(loads)} answered 200 | all |")
    print(f"| hung connections | {res['hung_connections']} | 0 |")
    print(f"| malformed requests answered 5xx (or not at all) | {len(bad5)} of {len(malformed)} "
          f"(statuses {res['malformed']['statuses']}) | 0 |")
    au = res["audit"]
    print(f"| audit: infer answered − infer records | {au['infer_requests_answered']} − "
          f"{au['infer_records']} = {au['lost']} ({au['verify'][:60]}) | 0 |")


def cmd_overload_report(a):
    w = a.work
    stamp = json.loads(a.stamp) if a.stamp else {}
    cfg = json.load(open(os.path.join(w, "params.json")))
    sweep = json.load(open(os.path.join(w, "sweep.json")))
    res = {**stamp, "what": "overload", "params": cfg, "sweep": sweep, "runs": {}}
    print(f"\nSweep (each {cfg['sweep_s']} s; sustainable = highest rate with ≥ 99 % success and "
          f"p99 < deadline {cfg['request_timeout_ms']} ms):\n")
    print("| rate req/s | success % | goodput/s | p99 ms |")
    print("|---|---|---|---|")
    for s in sweep:
        print(f"| {s['rate']} | {s['success_pct']:.1f} | {s['goodput']:.1f} | {fmt(s['p99'])} |")
    sus = cfg["sustainable_rate"]
    print(f"\nSustainable rate: {sus} req/s; overload at {cfg['overload_rate']} req/s "
          f"({cfg['overload_rate']/sus:.1f}×) for {cfg['run_s']} s each.\n")
    print("| degradation | sent | 2xx | goodput/s | goodput / sustainable | p99 ms (2xx) | p99 ms (all) "
          "| degraded % of 2xx | 503 (Retry-After) | 504 | other failures | hung |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for mode in ("on", "off"):
        p = os.path.join(w, f"timeline_{mode}.jsonl")
        if not os.path.exists(p):
            continue
        rs = read_jsonl(p)
        c = counts(rs)
        good = [r for r in rs if ok(r)]
        gp = len(good) / cfg["run_s"]
        n503 = sum(1 for r in rs if r["status"] == 503)
        n503ra = sum(1 for r in rs if r["status"] == 503 and r.get("retry_after"))
        n504 = sum(1 for r in rs if r["status"] == 504)
        other = c["failed"] - n503 - n504
        r = {**c, "goodput_rps": round(gp, 2), "goodput_vs_sustainable": round(gp / sus, 3),
             "latency_success_ms": lat(good), "latency_all_ms": lat([x for x in rs if x["status"]]),
             "degraded_fraction_of_2xx": round(c["degraded"] / len(good), 3) if good else None,
             "n_samples_served": sorted({x.get("n_samples") for x in good if x.get("n_samples")}),
             "status_503": n503, "status_503_with_retry_after": n503ra, "status_504": n504,
             "other_failures": other}
        res["runs"][mode] = r
        print(f"| {mode} | {c['sent']} | {c['succeeded']} | {gp:.1f} | {gp/sus*100:.0f} % | "
              f"{fmt(r['latency_success_ms']['p99'])} | {fmt(r['latency_all_ms']['p99'])} | "
              f"{fmt(None if r['degraded_fraction_of_2xx'] is None else r['degraded_fraction_of_2xx']*100)} | "
              f"{n503} ({n503ra}) | {n504} | {other} | {c['hung']} |")
    metrics = {}
    for mode in ("on", "off"):
        mp = os.path.join(w, f"metrics_{mode}.txt")
        if os.path.exists(mp):
            for line in open(mp):
                if line.startswith(("pno_degraded_total", "pno_shed_total", "pno_cancelled_total",
                                    "pno_failures_total")):
                    k, _, v = line.rpartition(" ")
                    metrics[f"{mode}:{k}"] = float(v)
    res["metrics"] = metrics
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


# ---- bench/reload.sh: config hot reload under load ----------------------------------------------
# Two behaviour-checkable states; every valid reload flips between them, every invalid file
# carries the other state's values plus one defect (so that a wrongly accepted file would show).
RELOAD_RPS = 20.0
RELOAD_STATES = [{"burst": 10, "max_batch": 8}, {"burst": 20, "max_batch": 16}]
RELOAD_DEFECTS = ["bad_value", "unknown_key", "restart_only", "malformed_toml"]


def reload_config(work, port, state, defect=None):
    listen_port = port + 1 if defect == "restart_only" else port
    if listen_port > 65535:
        listen_port = port - 1
    t = f"""listen = "127.0.0.1:{listen_port}"
repository = "{work}/repo"
keys = "{work}/keys.json"
[audit]
path = "{work}/audit.log"
[limits]
max_batch = {state['max_batch']}
request_timeout_ms = 10000
[rate_limit]
per_key_rps = {RELOAD_RPS}
per_key_burst = {state['burst']}
per_ip_rps = 100000.0
per_ip_burst = 100000
"""
    if defect == "unknown_key":
        t += "per_key_brust = 5\n"
    if defect == "bad_value":
        t += "[breaker]\nfailure_rate = 3.0\n"
    if defect == "malformed_toml":
        t += "[breaker\nfailure_rate = = 0.5\n"
    return t


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def cmd_reload_config(a):
    sys.stdout.write(reload_config(a.work, a.port, RELOAD_STATES[0]))


def metrics_of(url, key):
    s, b, _ = request(url, "GET", "/metrics", key, timeout=5)
    if s != 200:
        return {"status": s}
    out = {"status": s}
    for line in b.splitlines():
        if line.startswith("pno_config_last_reload_successful "):
            out["reload_ok"] = int(float(line.split()[-1]))
        elif line.startswith("pno_config_info{"):
            out["hash"] = line.split('hash="', 1)[1].split('"', 1)[0]
        elif line.startswith("pno_config_last_reload_success_timestamp_seconds "):
            out["success_ts"] = float(line.split()[-1])
    return out


def max_batch_of(url, key):
    s, b, _ = request(url, "GET", "/v2/models/a", key, timeout=5)
    if s != 200:
        return None
    return json.loads(b).get("parameters", {}).get("max_batch")


def burst_probe(url, key, n, src="127.0.0.2"):
    """n GETs of /v2/models/a with the probe key at once (pre-connected sockets from address
    src, released together): (statuses, span_ms)."""
    u = urllib.parse.urlparse(url)
    assert u.hostname in ("127.0.0.1", "localhost", "::1"), "loopback only"
    conns = []
    for _ in range(n):
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=10, source_address=(src, 0))
        try:
            c.connect()
        except OSError:  # 127.0.0.2 not usable: fall back to the default source address
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
            c.connect()
        conns.append(c)
    statuses = [0] * n
    go = threading.Barrier(n + 1)

    def one(i):
        go.wait()
        try:
            conns[i].request("GET", "/v2/models/a", headers={"Authorization": f"Bearer {key}",
                                                              "Connection": "close"})
            r = conns[i].getresponse()
            r.read()
            statuses[i] = r.status
        except Exception:  # noqa: BLE001 - status 0
            statuses[i] = 0
        finally:
            conns[i].close()
    ths = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ths:
        t.start()
    go.wait()
    t0 = now_ms()
    for t in ths:
        t.join()
    return statuses, round(now_ms() - t0, 1)


def audit_reload_count(path):
    n = 0
    try:
        with open(path) as f:
            for line in f:
                if '"config.reload"' in line:
                    n += 1
    except OSError:
        pass
    return n


def cmd_reload_drive(a):
    url, key, t0, work = a.url, a.admin_key, a.t0_ms, a.work
    audit = os.path.join(work, "audit.log")
    rel = lambda: now_ms() - t0  # noqa: E731
    baseline_s, n = a.baseline, a.reloads
    interval = min(2.0, max(0.5, (a.dur - baseline_s - 5) / n))

    def sleep_until(t_ms):
        while rel() < t_ms:
            time.sleep(min(0.05, max(0.0, (t_ms - rel()) / 1e3)))

    last_probe = [0.0]

    def observe(state):
        m = metrics_of(url, key)
        mb = max_batch_of(url, key)
        # The probe key's bucket must be full again (it was emptied by the previous probe).
        full_at = last_probe[0] + (max(s["burst"] for s in RELOAD_STATES) / RELOAD_RPS + 0.2) * 1e3
        sleep_until(full_at)
        st, span = burst_probe(url, a.probe_key, state["burst"] + 1)
        last_probe[0] = rel()
        n429 = sum(1 for x in st if x == 429)
        n200 = sum(1 for x in st if x == 200)
        refill = RELOAD_RPS * span / 1e3  # tokens the probe's bucket may regain during the probe
        burst_ok = (n200 >= state["burst"] and n200 + n429 == len(st)
                    and (n429 >= 1 or refill >= 1) and n200 <= state["burst"] + math.floor(refill))
        return {"metrics": m, "max_batch": mb, "probe": {"sent": len(st), "ok": n200,
                "429": n429, "other": len(st) - n200 - n429, "span_ms": span},
                "max_batch_ok": mb == state["max_batch"], "burst_ok": burst_ok}

    # The initial config (state 0), checked in the baseline's last seconds (no reload yet).
    sleep_until((baseline_s - 3) * 1e3)
    cur = 0
    initial = {"t_ms": round(rel(), 1), **observe(RELOAD_STATES[cur])}
    prev_hash = initial["metrics"].get("hash")
    steps = []
    for i in range(n):
        sleep_until((baseline_s + i * interval) * 1e3)
        valid = i % 2 == 0
        nxt = 1 - cur
        defect = None if valid else RELOAD_DEFECTS[(i // 2) % len(RELOAD_DEFECTS)]
        write_atomic(a.config, reload_config(work, a.port, RELOAD_STATES[nxt], defect))
        before = audit_reload_count(audit)
        t_hup = rel()
        os.kill(a.pid, signal.SIGHUP)
        # Done when its audit record is written (the gauge is set just before it).
        while audit_reload_count(audit) <= before and rel() - t_hup < 5000:
            time.sleep(0.01)
        t_done = rel()
        if valid:
            cur = nxt
        obs = observe(RELOAD_STATES[cur])
        m = obs["metrics"]
        expect_ok = 1 if valid else 0
        hash_changed = m.get("hash") != prev_hash
        correct = (m.get("reload_ok") == expect_ok and hash_changed == valid
                   and obs["max_batch_ok"] and obs["burst_ok"])
        steps.append({"i": i + 1, "kind": "valid" if valid else defect, "t_hup_ms": round(t_hup, 1),
                      "audited_after_ms": round(t_done - t_hup, 1),
                      "audited": t_done - t_hup < 5000,
                      "expected_reload_ok": expect_ok, "expected_state": RELOAD_STATES[cur],
                      "hash_changed": hash_changed, "correct": correct, **obs})
        prev_hash = m.get("hash", prev_hash)
        print(f"reload {i+1:2d} {steps[-1]['kind']:14s} gauge {m.get('reload_ok')} (want "
              f"{expect_ok}) max_batch {obs['max_batch']} probe {obs['probe']['ok']}x200 "
              f"{obs['probe']['429']}x429 in {obs['probe']['span_ms']} ms -> "
              f"{'ok' if correct else 'WRONG'}", file=sys.stderr)
    with open(os.path.join(work, "reload_steps.json"), "w") as f:
        json.dump({"interval_s": interval, "baseline_s": baseline_s, "initial": initial,
                   "steps": steps}, f, indent=1)


def cmd_reload_report(a):
    w = a.work
    stamp = json.loads(a.stamp) if a.stamp else {}
    cfg = json.load(open(os.path.join(w, "params.json")))
    d = json.load(open(os.path.join(w, "reload_steps.json")))
    rs = read_jsonl(os.path.join(w, "timeline.jsonl"))
    steps = d["steps"]
    start = steps[0]["t_hup_ms"] if steps else cfg["baseline_s"] * 1e3
    end = (steps[-1]["t_hup_ms"] + 1000) if steps else start
    phases = {
        "baseline": [r for r in rs if 1000 <= r["start_ms"] < cfg["baseline_s"] * 1e3],
        "reload_phase": [r for r in rs if start <= r["start_ms"] < end],
        "after": [r for r in rs if r["start_ms"] >= end],
        "all": rs,
    }
    res = {**stamp, "what": "reload", "params": cfg}
    res["load"] = {k: {**counts(v), "latency_success_ms": lat([r for r in v if ok(r)])}
                   for k, v in phases.items()}
    valid = [s for s in steps if s["kind"] == "valid"]
    invalid = [s for s in steps if s["kind"] != "valid"]
    acc = [s for s in steps if s["metrics"].get("reload_ok") == 1 and s["hash_changed"]]
    res["reloads"] = {
        "total": len(steps), "expected_accepted": len(valid), "expected_rejected": len(invalid),
        "accepted": len(acc), "rejected": len(steps) - len(acc),
        "correct": sum(1 for s in steps if s["correct"]),
        "wrong": [s for s in steps if not s["correct"]],
        "initial_check": d["initial"], "steps": steps, "interval_s": d["interval_s"],
    }
    recs = []
    for line in open(os.path.join(w, "audit.log")):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r.get("action") == "config.reload":
            recs.append({"actor": r.get("actor"), "status": r.get("status"),
                         "outcome": str(r.get("outcome"))[:200]})
    verify = open(os.path.join(w, "audit_verify.txt")).read().strip()
    res["audit"] = {"config_reload_records": len(recs),
                    "ok_records": sum(1 for r in recs if r["status"] == 200),
                    "rejected_records": sum(1 for r in recs if r["status"] != 200),
                    "verify": verify, "verify_rc": cfg.get("audit_verify_rc"), "records": recs}
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)

    L = res["load"]
    print(f"\nConfig reload under load: {cfg['rate']} req/s on model a for {cfg['dur_s']} s "
          f"(key `load`, per-key {RELOAD_RPS:g}/s, burst ≥ {RELOAD_STATES[0]['burst']}); "
          f"{len(steps)} SIGHUP reloads every {d['interval_s']:g} s after a "
          f"{cfg['baseline_s']} s baseline.\n")
    print("| load phase | sent | succeeded | failed | client dropped | hung | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for k in ("baseline", "reload_phase", "after", "all"):
        c = L[k]
        print(f"| {k.replace('_', ' ')} | {c['sent']} | {c['succeeded']} | {c['failed']} | "
              f"{c['client_dropped']} | {c['hung']} | {fmt(c['latency_success_ms']['p50'])} | "
              f"{fmt(c['latency_success_ms']['p99'])} |")
    print("\n| # | file | gauge (want) | hash changed | max_batch | probe 200/429 (span ms) | correct |")
    print("|---|---|---|---|---|---|---|")
    for s in steps:
        p = s["probe"]
        print(f"| {s['i']} | {s['kind']} | {s['metrics'].get('reload_ok')} ({s['expected_reload_ok']}) | "
              f"{'yes' if s['hash_changed'] else 'no'} | {s['max_batch']} (want "
              f"{s['expected_state']['max_batch']}) | {p['ok']}/{p['429']} ({p['span_ms']:g}) | "
              f"{'yes' if s['correct'] else '**NO**'} |")
    rl, au = res["reloads"], res["audit"]
    b, r = L["baseline"]["latency_success_ms"], L["reload_phase"]["latency_success_ms"]
    print("\n| check | result | target |")
    print("|---|---|---|")
    print(f"| failed or dropped load requests | {L['all']['failed']} failed, "
          f"{L['all']['client_dropped']} dropped of {L['all']['scheduled']} | 0 |")
    print(f"| p50 / p99 reload phase vs baseline | {fmt(r['p50'])} / {fmt(r['p99'])} vs "
          f"{fmt(b['p50'])} / {fmt(b['p99'])} ms | – |")
    print(f"| reloads accepted / rejected (expected) | {rl['accepted']} / {rl['rejected']} "
          f"({rl['expected_accepted']} / {rl['expected_rejected']}); correct {rl['correct']}/"
          f"{rl['total']} | all |")
    print(f"| audit `config.reload` records (ok / rejected) | {au['config_reload_records']} "
          f"({au['ok_records']} / {au['rejected_records']}) | {rl['total']} |")
    print(f"| `pno audit verify` | {au['verify'][:80]} | ok |")


def main():
    p = argparse.ArgumentParser()
    sp = p.add_subparsers(dest="cmd", required=True)
    b = sp.add_parser("body")
    b.add_argument("out")
    b.add_argument("--n-samples", type=int, default=32)
    b.add_argument("--res", type=int, default=32)
    d = sp.add_parser("drive")
    d.add_argument("--url", required=True)
    d.add_argument("--admin-key", required=True)
    d.add_argument("--t0-ms", type=float, required=True)
    d.add_argument("--dur", type=float, required=True)
    d.add_argument("--work", required=True)
    d.add_argument("--slow-ms", type=int, default=600)
    rd = sp.add_parser("reload-drive")
    for k in ("--url", "--admin-key", "--probe-key", "--config", "--work"):
        rd.add_argument(k, required=True)
    rd.add_argument("--pid", type=int, required=True)
    rd.add_argument("--port", type=int, required=True)
    rd.add_argument("--t0-ms", type=float, required=True)
    rd.add_argument("--dur", type=float, required=True)
    rd.add_argument("--baseline", type=float, default=15)
    rd.add_argument("--reloads", type=int, default=20)
    rc = sp.add_parser("reload-config")
    rc.add_argument("--work", required=True)
    rc.add_argument("--port", type=int, required=True)
    for name in ("chaos-report", "overload-report", "reload-report"):
        r = sp.add_parser(name)
        r.add_argument("--work", required=True)
        r.add_argument("--out", required=True)
        r.add_argument("--stamp")
        r.add_argument("--note")
    a = p.parse_args()
    {"body": cmd_body, "drive": cmd_drive, "chaos-report": cmd_chaos_report,
     "overload-report": cmd_overload_report, "reload-drive": cmd_reload_drive,
     "reload-config": cmd_reload_config, "reload-report": cmd_reload_report}[a.cmd](a)


if __name__ == "__main__":
    main()
