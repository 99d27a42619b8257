#!/usr/bin/env bash
# Chaos benchmark of `pno serve` (dev build with the fault-injection feature): steady open-loop
# load (pno-load) on two models a and b while faults are injected on a/1 — slow calls, hangs,
# panics, failures, non-finite outputs, transient I/O on the audit log and on the repository —
# each for ~15 s with 10 s gaps after a fault-free baseline. Measures failures by class, p50/p99
# per model, MTTR per fault (pno-load mttr), isolation time of the breaker and its fast-fail
# latency, model b's p99 during faults vs outside them, breaker recovery through half-open,
# hung connections, 5xx for malformed requests, and audit records lost.
#   bash bench/chaos.sh
# Env: DUR (s of load, 180; the schedule scales with it), RATE (req/s per model; default 60 % of
#      the capacity measured with both models busy), SKIP_BUILD=1 with PNO=…, LOAD=… (built
#      binaries, copied to WORK/bin), WORK (scratch folder), OUT (results JSON, default
#      bench/results/<date>-<commit>-chaos.json).
# Loopback only; bounded in time (DUR + ~60 s); everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
. bench/resilience.sh
DUR=${DUR:-180}
TIMEOUT_MS=2000   # the server's request deadline
SLOW_MS=600       # injected slow call, above breaker.slow_call_ms
WORK=${WORK:-$(mktemp -d /tmp/pno-chaos.XXXXXX)}
mkdir -p "$WORK"
res_build "$WORK/bin"
OUT=${OUT:-$(res_results_file chaos)}
echo "work: $WORK  results: $OUT" >&2
trap 'res_stop_all; kill $(jobs -p) 2>/dev/null || true' EXIT
started=$(date +%s)
res_setup "$WORK"
PORT=$(res_port)
URL=http://127.0.0.1:$PORT
BREAKER='window = 20
min_calls = 5
failure_rate = 0.5
slow_call_ms = 300
slow_call_rate = 0.5
consecutive_failures = 3
open_ms = 2000
half_open_calls = 2'
{
  res_config "$WORK" "$PORT"
  cat <<TOML
[audit]
path = "$WORK/audit.log"
[limits]
request_timeout_ms = $TIMEOUT_MS
max_concurrency = 2
max_queue = 32
[bulkhead]
max_concurrency = 1
max_queue = 16
[breaker]
$BREAKER
TOML
} > "$WORK/serve.toml"
res_start "$WORK/serve.toml" "$WORK/serve.log" "$URL"
H="Authorization: Bearer $ADMIN_KEY"
res_has_faults "$URL" || { echo "error: $PNO has no PUT /v2/debug/faults: it was not built with --features pno-serve/fault-injection (another build may have replaced debug/pno in the shared target folder; rebuild)" >&2; exit 1; }

# Capacity with both models busy (closed loop, 2 in flight each, 5 s), after a short warm-up.
for m in a b; do
  "$LOAD" --url "$URL/v2/models/$m/infer" --body "$WORK/body.json" --header "$H" \
    --rate 1000 --duration 1 --max-in-flight 1 >/dev/null
done
CAP_PIDS=()
for m in a b; do
  "$LOAD" --url "$URL/v2/models/$m/infer" --body "$WORK/body.json" --header "$H" \
    --rate 1000 --duration 5 --max-in-flight 2 --summary "$WORK/cap_$m.json" >/dev/null &
  CAP_PIDS+=($!)
done
wait "${CAP_PIDS[@]}"
CAP_A=$(res_goodput "$WORK/cap_a.json"); CAP_B=$(res_goodput "$WORK/cap_b.json")
RATE=${RATE:-$(python3 -c "import sys; print(max(2, round(0.6 * min(float(sys.argv[1]), float(sys.argv[2])))))" "$CAP_A" "$CAP_B")}
echo "capacity with both busy: a $CAP_A/s, b $CAP_B/s -> $RATE req/s per model" >&2
res_idle "$URL"
# Every infer answered from here on must have an audit record; the capacity probe's records
# (counted now) are subtracted in the report.
python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(l).get("action")=="infer"))' "$WORK/audit.log" > "$WORK/audit_before.txt"

cat > "$WORK/params.json" <<JSON
{"dur_s": $DUR, "rate": $RATE, "capacity_a": $CAP_A, "capacity_b": $CAP_B,
 "request_timeout_ms": $TIMEOUT_MS, "slow_fault_ms": $SLOW_MS, "client_timeout_ms": 5000,
 "bulkhead": "max_concurrency 1, max_queue 16 per model; global 2/32",
 "breaker": "$(echo "$BREAKER" | tr '\n' ' ' | sed 's/ *$//')",
 "build": "dev profile, --features pno-serve/fault-injection", "fallback": "previous (a has one version)"}
JSON

LOAD_PIDS=()
T0=$(date +%s%3N)
for m in a b; do
  "$LOAD" --url "$URL/v2/models/$m/infer" --body "$WORK/body.json" --header "$H" \
    --rate "$RATE" --duration "$DUR" --timeout-ms 5000 --seed 7 \
    --out "$WORK/timeline_$m.jsonl" --summary "$WORK/summary_$m.json" > "$WORK/load_$m.md" &
  LOAD_PIDS+=($!)
done
python3 bench/resilience.py drive --url "$URL" --admin-key "$ADMIN_KEY" --t0-ms "$T0" \
  --dur "$DUR" --work "$WORK" --slow-ms "$SLOW_MS" &
DRIVER=$!
wait "$DRIVER"
wait "${LOAD_PIDS[@]}"
curl -sf "$URL/metrics" > "$WORK/metrics.txt" || true
res_stop_all
"$PNO" audit verify "$WORK/audit.log" > "$WORK/audit_verify.txt" 2>&1 || true
"$LOAD" mttr --timeline "$WORK/timeline_a.jsonl" --faults "$WORK/faults.json" --out "$WORK/mttr.json" > "$WORK/mttr.md"
load_after=$(cut -d' ' -f1 /proc/loadavg)
STAMP="{$(bench_stamp),\"wall_s\":$(( $(date +%s) - started )),\"loadavg_after\":$load_after,\"command\":\"DUR=$DUR bash bench/chaos.sh\"}"
python3 bench/resilience.py chaos-report --work "$WORK" --out "$OUT" --stamp "$STAMP"
echo "results: $OUT (wall $(( $(date +%s) - started )) s)" >&2
