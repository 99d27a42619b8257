#!/usr/bin/env python3
"""Write pno-serve.test.yml, the promtool unit tests of ../rules/pno-serve.rules.yml.

  python3 deploy/prometheus/tests/gen_tests.py     # needs PyYAML; rewrites pno-serve.test.yml

Each case below gives input series, when to look, and what must (or must not) fire, with the
rendered text of every templated annotation written out by hand (that is what the test checks);
annotations without a template are copied from the rules file, because promtool compares
annotations exactly. `promtool test rules deploy/prometheus/tests/pno-serve.test.yml` runs them
(.ci/run does). Every alert of the rules file must have a firing case and a quiet case: the
script refuses to write the file otherwise.
"""
import pathlib
import sys

import yaml

HERE = pathlib.Path(__file__).resolve().parent
RULES = HERE.parent / "rules" / "pno-serve.rules.yml"
OUT = HERE / "pno-serve.test.yml"
I = {"job": "pno-serve", "instance": "a:1"}
# Every series pno serve exports carries its replica id; `up` (made by Prometheus) does not.
R = {"replica": "pno-a"}


def sel(name, **labels):
    ls = {**I, **({} if name == "up" else R), **labels}
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in ls.items()) + "}"


def base(alert):
    """The labels every firing of `alert` carries: job, instance and (but on `up`) replica."""
    return I if alert == "PnoDown" else {**I, **R}


# (title, interval, input series [(selector, values)], checks [(eval_time, alert, [fired])]);
# fired = (extra labels, {annotation: rendered text}) — labels beyond job/instance/replica/severity.
CASES = [
    ("config reload failed for a minute", "1m",
     [(sel("pno_config_last_reload_successful"), "1 0 0 0")],
     [("1m", "PnoConfigReloadFailed", []),
      ("3m", "PnoConfigReloadFailed", [({}, {"summary": "a:1 rejected its new configuration"})])]),
    ("config reloads fine", "1m",
     [(sel("pno_config_last_reload_successful"), "1 1 1 1")],
     [("3m", "PnoConfigReloadFailed", [])]),
    ("keys file refused", "1m",
     [(sel("pno_keys_reload_success"), "1 0 0 0")],
     [("3m", "PnoKeysReloadFailed", [({}, {"summary": "a:1 refuses its keys file"})])]),
    ("keys file fine", "1m",
     [(sel("pno_keys_reload_success"), "1 1 1 1")],
     [("3m", "PnoKeysReloadFailed", [])]),
    ("audit unhealthy", "1m",
     [(sel("pno_audit_healthy"), "1 1 0 0 0"), (sel("pno_audit_append_failures_total"), "0 0 0 0 0")],
     [("4m", "PnoAuditUnhealthy", [({}, {"summary": "a:1 cannot write its audit log"})])]),
    ("audit appends failed once, then recovered", "1m",
     [(sel("pno_audit_healthy"), "1x12"), (sel("pno_audit_append_failures_total"), "0 0 1 1 1 1 1 1 1 1 1 1")],
     [("4m", "PnoAuditUnhealthy", [({}, {"summary": "a:1 cannot write its audit log"})]),
      ("9m", "PnoAuditUnhealthy", [])]),
    ("not ready and not draining", "1m",
     [(sel("pno_ready"), "1 0 0 0 0"), (sel("pno_draining"), "0 0 0 0 0")],
     [("2m", "PnoNotReady", []),
      ("4m", "PnoNotReady", [({}, {"summary": "a:1 is not ready and not draining"})])]),
    ("not ready because draining", "1m",
     [(sel("pno_ready"), "1 0 0 0 0"), (sel("pno_draining"), "0 1 1 1 1")],
     [("4m", "PnoNotReady", [])]),
    ("the repository fails its checks", "1m",
     [(sel("pno_dependency_up", dependency="repository", kind="repository", critical="true"), "1 0 0 0 0 0 0 0")],
     [("4m", "PnoDependencyFailing", []),
      ("7m", "PnoDependencyFailing", [({"dependency": "repository", "kind": "repository", "critical": "true"}, {
          "summary": "a:1: dependency repository is failing its scheduled checks",
          "description": "Kind repository, critical true (a critical one also makes the server not ready)."})])]),
    ("a dependency that recovers", "1m",
     [(sel("pno_dependency_up", dependency="memory", kind="memory", critical="false"), "1 0 0 1 1 1 1 1")],
     [("7m", "PnoDependencyFailing", [])]),
    ("target down", "1m",
     [(sel("up"), "1 0 0 0")],
     [("3m", "PnoDown", [({}, {"summary": "Prometheus cannot scrape a:1"})])]),
    ("target up", "1m",
     [(sel("up"), "1 1 1 1")],
     [("3m", "PnoDown", [])]),
    ("a breaker stays open", "1m",
     [(sel("pno_breaker_state", model="m", version="2"), "0 1 1 1 1")],
     [("4m", "PnoBreakerOpen", [({"model": "m", "version": "2"}, {
         "summary": "Circuit breaker of m version 2 on a:1 is not closed",
         "description": "State 1 (1 open, 2 half-open): its requests fail fast or fall back to another version.",
         "runbook": "GET /v2/models/m/versions/2/stats for the failure classes; unload the version or fix its host; the breaker closes by itself after successful probes."})])]),
    ("a breaker that recovers between scrapes does not page", "1m",
     [(sel("pno_breaker_state", model="m", version="2"), "0 1 0 1 0")],
     [("4m", "PnoBreakerOpen", [])]),
    ("queue 90 % full for 6 minutes", "1m",
     [(sel("pno_inference_pending_request_count"), "0 9 9 9 9 9 9 9"), (sel("pno_inference_queue_capacity"), "10x8")],
     [("4m", "PnoQueueSaturated", []),
      ("7m", "PnoQueueSaturated", [({}, {"summary": "a:1's inference queue is 90% full"})])]),
    ("queue half full", "1m",
     [(sel("pno_inference_pending_request_count"), "5x8"), (sel("pno_inference_queue_capacity"), "10x8")],
     [("7m", "PnoQueueSaturated", [])]),
    ("shedding 1 request/s", "1m",
     [(sel("pno_shed_total", model="m", version="1", reason="queue_full"), "0+60x20")],
     [("12m", "PnoShedding", [({"model": "m", "reason": "queue_full"}, {
         "summary": "a:1 sheds m requests (queue_full)",
         "description": "1 requests/s refused with 503 under pressure over the last 5m."})])]),
    ("a few shed requests", "1m",
     [(sel("pno_shed_total", model="m", version="1", reason="queue_full"), "0+3x20")],
     [("12m", "PnoShedding", [])]),
    ("a version answers NaN", "1m",
     [(sel("pno_failures_total", **{"class": "persistent"}, model="m", version="2"), "0+6x20")],
     [("12m", "PnoPersistentModelFailures", [({"model": "m", "version": "2"}, {
         "summary": "m version 2 answers finite inputs with non-finite outputs",
         "description": "Persistent (model) failures at 0.1/s over 5m."})])]),
    ("only client errors", "1m",
     [(sel("pno_failures_total", **{"class": "input"}, model="m", version="2"), "0+60x20")],
     [("12m", "PnoPersistentModelFailures", [])]),
    ("slow: every answer between 5 and 10 s", "1m",
     [(sel("pno_inference_request_duration_seconds_bucket", model="m", version="1", le="1"), "0x30"),
      (sel("pno_inference_request_duration_seconds_bucket", model="m", version="1", le="5"), "0x30"),
      (sel("pno_inference_request_duration_seconds_bucket", model="m", version="1", le="10"), "0+60x30"),
      (sel("pno_inference_request_duration_seconds_bucket", model="m", version="1", le="+Inf"), "0+60x30")],
     [("15m", "PnoHighP99Latency", [({"model": "m"}, {
         "summary": "p99 inference latency of m on a:1 is 9.95s"})])]),
    ("fast: every answer under a second", "1m",
     [(sel("pno_inference_request_duration_seconds_bucket", model="m", version="1", le="1"), "0+60x30"),
      (sel("pno_inference_request_duration_seconds_bucket", model="m", version="1", le="+Inf"), "0+60x30")],
     [("15m", "PnoHighP99Latency", [])]),
    ("10 % of inferences fail: fast burn", "1m",
     [(sel("pno_http_requests_total", **{"class": "infer"}, status="200"), "0+54x120"),
      (sel("pno_http_requests_total", **{"class": "infer"}, status="503"), "0+6x120")],
     [("70m", "PnoErrorBudgetBurnFast", [({}, {
         "summary": "a:1 burns its inference error budget fast",
         "description": "5xx ratio of inference requests is 10% (1h or 6h window); at this rate the 30-day budget of 0.1 % is gone within days."})])]),
    ("0.5 % fail: slow burn only", "1m",
     [(sel("pno_http_requests_total", **{"class": "infer"}, status="200"), "0+59.7x150"),
      (sel("pno_http_requests_total", **{"class": "infer"}, status="500"), "0+0.3x150")],
     [("140m", "PnoErrorBudgetBurnFast", []),
      ("140m", "PnoErrorBudgetBurnSlow", [({}, {"summary": "a:1 burns its inference error budget"})])]),
    ("0.05 % fail: within budget", "1m",
     [(sel("pno_http_requests_total", **{"class": "infer"}, status="200"), "0+59.97x150"),
      (sel("pno_http_requests_total", **{"class": "infer"}, status="500"), "0+0.03x150"),
      (sel("pno_http_requests_total", **{"class": "infer"}, status="400"), "0+30x150")],
     [("140m", "PnoErrorBudgetBurnFast", []), ("140m", "PnoErrorBudgetBurnSlow", [])]),
    ("memory at 95 % of the budget", "1m",
     [(sel("process_resident_memory_bytes"), "950x10"), (sel("pno_memory_budget_bytes", source="cgroup_v2"), "1000x10")],
     [("7m", "PnoMemoryHigh", [({}, {"summary": "a:1 uses 95% of its memory budget"})])]),
    ("memory at half the budget", "1m",
     [(sel("process_resident_memory_bytes"), "500x10"), (sel("pno_memory_budget_bytes", source="meminfo"), "1000x10")],
     [("7m", "PnoMemoryHigh", [])]),
    # promtool's clock starts at 0: at 20m, time() = 1200.
    ("certificate expires in 10 days", "1m",
     [(sel("pno_tls_cert_expiry_timestamp_seconds", sha256="abcd"), str(1200 + 10 * 86400) + "x30")],
     [("20m", "PnoTLSCertExpiresSoon", [({"sha256": "abcd"}, {
         "summary": "a:1's TLS certificate expires in 10d 0h 0m 0s",
         "description": "The serving certificate (sha256 abcd) is close to its notAfter."})]),
      ("20m", "PnoTLSCertExpiresVerySoon", [])]),
    ("certificate expires in a day", "1m",
     [(sel("pno_tls_cert_expiry_timestamp_seconds", sha256="abcd"), str(1200 + 86400) + "x30")],
     [("20m", "PnoTLSCertExpiresVerySoon", [({"sha256": "abcd"}, {
         "summary": "a:1's TLS certificate expires in 1d 0h 0m 0s"})]),
      ("20m", "PnoTLSCertExpiresSoon", [({"sha256": "abcd"}, {
         "summary": "a:1's TLS certificate expires in 1d 0h 0m 0s",
         "description": "The serving certificate (sha256 abcd) is close to its notAfter."})])]),
    ("certificate good for a year", "1m",
     [(sel("pno_tls_cert_expiry_timestamp_seconds", sha256="abcd"), str(365 * 86400) + "x30")],
     [("20m", "PnoTLSCertExpiresSoon", []), ("20m", "PnoTLSCertExpiresVerySoon", [])]),
    ("a checkpoint delivery failed", "1m",
     [(sel("pno_audit_checkpoint_webhook_failures_total"), "0 0 1 1")],
     [("3m", "PnoCheckpointWebhookFailing", [({}, {"summary": "a:1 cannot deliver audit checkpoints to the witness"})])]),
    ("checkpoints delivered", "1m",
     [(sel("pno_audit_checkpoint_webhook_failures_total"), "0 0 0 0")],
     [("3m", "PnoCheckpointWebhookFailing", [])]),
    ("an in-process anomaly alert fires", "1m",
     [(sel("pno_alerts_firing", alertname="LatencyAnomaly", severity="warning"), "_ 1 1 1")],
     [("2m", "PnoInProcessAlert", [({"detector": "LatencyAnomaly", "severity": "warning", "source": "pno-serve"},
                                    {"summary": "a:1: in-process alert LatencyAnomaly (warning) is firing"})])]),
    ("no in-process alert", "1m",
     [(sel("pno_alerts_firing", alertname="ErrorRateAnomaly", severity="critical"), "0 0 0 0")],
     [("3m", "PnoInProcessAlert", [])]),
    ("coverage collapses", "1m",
     [(sel("pno_calibration_collapsed", model="darcy", version="3"), "0 1 1 1 1")],
     [("2m", "PnoCoverageCollapse", []),
      ("4m", "PnoCoverageCollapse", [({"model": "darcy", "version": "3"},
                                      {"summary": "a:1: the intervals of darcy v3 no longer cover the truth",
                                       "description": "Ground truth sent to /v2/models/darcy/feedback falls outside the served intervals far more often than their level (one-sided binomial test); pno_calibration_coverage has the levels."})])]),
    ("coverage holds", "1m",
     [(sel("pno_calibration_collapsed", model="darcy", version="3"), "0 0 0 0 0")],
     [("4m", "PnoCoverageCollapse", [])]),
    ("a version is rolled back", "1m",
     [(sel("pno_rollbacks_total", model="darcy", version="3", to="2"), "0 0 1 1")],
     [("3m", "PnoRollback", [({"model": "darcy", "version": "3", "to": "2"},
                              {"summary": "a:1 rolled back darcy v3 (traffic to 2)"})])]),
    ("no rollback", "1m",
     [(sel("pno_rollbacks_total", model="darcy", version="3", to="2"), "0 0 0 0")],
     [("3m", "PnoRollback", [])]),
    ("inputs drift for five minutes", "1m",
     [(sel("pno_drift_detected", model="darcy", version="2"), "0 1 1 1 1 1 1 1")],
     [("3m", "PnoInputDrift", []),
      ("7m", "PnoInputDrift", [({"model": "darcy", "version": "2"},
                                {"summary": "a:1: inputs of darcy v2 drifted from its training data"})])]),
    ("a drift verdict that flaps clears", "1m",
     [(sel("pno_drift_detected", model="darcy", version="2"), "0 1 0 1 0 1 0 1")],
     [("7m", "PnoInputDrift", [])]),
    ("alert notifications fail", "1m",
     [(sel("pno_alert_notifications_total", receiver="oncall", outcome="failed"), "0 0 2 2")],
     [("3m", "PnoAlertNotificationsFailing", [({"receiver": "oncall", "outcome": "failed"},
       {"summary": "a:1 cannot deliver alert notifications to receiver oncall",
        "description": "Outcome failed: failed after retries, or dropped on a full queue."})])]),
    ("alert notifications delivered", "1m",
     [(sel("pno_alert_notifications_total", receiver="oncall", outcome="delivered"), "0 1 2 3")],
     [("3m", "PnoAlertNotificationsFailing", [])]),
]

# Recording rules: exact values.
PROMQL = [
    ("the 5m error ratio", "1m",
     [(sel("pno_http_requests_total", **{"class": "infer"}, status="200"), "0+45x10"),
      (sel("pno_http_requests_total", **{"class": "infer"}, status="503"), "0+15x10"),
      (sel("pno_http_requests_total", **{"class": "model"}, status="500"), "0+100x10")],
     "10m", "pno:inference_errors:ratio_rate5m",
     [({"__name__": "pno:inference_errors:ratio_rate5m", **I, **R}, 0.25)]),
]


def main():
    rules = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    fired, quiet = set(), set()
    tests = []
    for title, interval, series, checks in CASES:
        t = {"name": title, "interval": interval,
             "input_series": [{"series": s, "values": v} for s, v in series], "alert_rule_test": []}
        for at, name, exp in checks:
            rule = alerts[name]
            out = []
            for labels, ann in exp:
                full = {}
                for k, text in rule.get("annotations", {}).items():
                    if k in ann:
                        full[k] = ann[k]
                    elif "{{" in text:
                        sys.exit(f"{title}: {name}: annotation `{k}` is templated; write its rendered text")
                    else:
                        full[k] = text
                # A rule without a severity label passes on its series' (PnoInProcessAlert).
                sev = rule["labels"].get("severity")
                out.append({"exp_labels": {**base(name), **({"severity": sev} if sev else {}), **labels},
                            "exp_annotations": full})
            (fired if out else quiet).add(name)
            t["alert_rule_test"].append({"eval_time": at, "alertname": name, "exp_alerts": out})
        tests.append(t)
    for title, interval, series, at, expr, samples in PROMQL:
        tests.append({"name": title, "interval": interval,
                      "input_series": [{"series": s, "values": v} for s, v in series],
                      "promql_expr_test": [{"expr": expr, "eval_time": at,
                                            "exp_samples": [{"labels": "{" + ",".join(f'{k}="{v}"' for k, v in ls.items()) + "}",
                                                             "value": v} for ls, v in samples]}]})
    missing = sorted(set(alerts) - fired) + sorted(set(alerts) - quiet)
    if missing:
        sys.exit(f"alerts without a firing and a quiet case: {missing}")
    doc = {"rule_files": ["../rules/pno-serve.rules.yml"], "evaluation_interval": "1m", "tests": tests}
    head = "# Generated by gen_tests.py (edit the cases there, not this file).\n"
    OUT.write_text(head + yaml.safe_dump(doc, sort_keys=False, width=200, allow_unicode=True))
    print(f"{OUT.name}: {len(tests)} tests over {len(alerts)} alerts")


if __name__ == "__main__":
    main()
