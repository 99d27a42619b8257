#!/usr/bin/env bash
# Overload benchmark of `pno serve` (the same dev build with the fault-injection feature as
# bench/chaos.sh; no fault is injected here): find the sustainable open-loop rate of model a
# (highest rate of a short sweep with ≥ 99 % success and p99 under the deadline, degradation off
# so every answer has the full 32 draws), then offer 4× that rate with degradation on (the
# default [degrade] config) and off ([degrade] enabled = false). Reports goodput (2xx/s) against
# the sustainable rate, p99 against the deadline, the degraded fraction, and 503 (with
# Retry-After) vs 504 counts.
#   bash bench/overload.sh
# Env: RUN_S (s per overload run, 40), SWEEP_S (s per sweep step, 8), FACTOR (4), SKIP_BUILD=1,
#      PNO=…, LOAD=…, WORK, OUT (default bench/results/<date>-<commit>-overload.json).
# Loopback only; bounded in time (~2 × RUN_S + 5 × SWEEP_S + ~60 s); cleanup on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
. bench/resilience.sh
RUN_S=${RUN_S:-40}; SWEEP_S=${SWEEP_S:-8}; FACTOR=${FACTOR:-4}
TIMEOUT_MS=2000
WORK=${WORK:-$(mktemp -d /tmp/pno-overload.XXXXXX)}
mkdir -p "$WORK"
res_build "$WORK/bin"
OUT=${OUT:-$(res_results_file overload)}
echo "work: $WORK  results: $OUT" >&2
trap 'res_stop_all; kill $(jobs -p) 2>/dev/null || true' EXIT
started=$(date +%s)
res_setup "$WORK"
H="Authorization: Bearer $ADMIN_KEY"
declare -A URLS
for mode in on off; do
  port=$(res_port)
  URLS[$mode]=http://127.0.0.1:$port
  {
    res_config "$WORK" "$port"
    cat <<TOML
[limits]
request_timeout_ms = $TIMEOUT_MS
max_concurrency = 2
max_queue = 32
[bulkhead]
max_concurrency = 2
max_queue = 16
TOML
    [ "$mode" = off ] && printf '[degrade]\nenabled = false\n'
  } > "$WORK/serve_$mode.toml"
  res_start "$WORK/serve_$mode.toml" "$WORK/serve_$mode.log" "${URLS[$mode]}"
done

load() {  # URL RATE SECONDS NAME
  "$LOAD" --url "$1/v2/models/a/infer" --body "$WORK/body.json" --header "$H" \
    --rate "$2" --duration "$3" --timeout-ms 5000 --seed 3 \
    --out "$WORK/timeline_$4.jsonl" --summary "$WORK/summary_$4.json" > "$WORK/load_$4.md"
}

BUILD="dev profile, plain (no fault-injection feature)"
res_has_faults "${URLS[on]}" && BUILD="dev profile, --features pno-serve/fault-injection (no faults injected)"

# Closed-loop capacity (4 in flight, 5 s) after a warm-up, on the degradation-off server.
U=${URLS[off]}
"$LOAD" --url "$U/v2/models/a/infer" --body "$WORK/body.json" --header "$H" --rate 1000 --duration 2 --max-in-flight 2 >/dev/null
"$LOAD" --url "$U/v2/models/a/infer" --body "$WORK/body.json" --header "$H" --rate 1000 --duration 5 \
  --max-in-flight 4 --summary "$WORK/cap.json" >/dev/null
CAP=$(res_goodput "$WORK/cap.json")
echo "closed-loop capacity: $CAP/s" >&2

# Sweep: open-loop rates around the capacity; sustainable = the highest that passes.
SUS=0
echo "[" > "$WORK/sweep.json"
first=1
for f in 0.5 0.7 0.85 1.0 1.15; do
  r=$(python3 -c "import sys; print(max(1, round(float(sys.argv[1]) * float(sys.argv[2]), 1)))" "$f" "$CAP")
  res_idle "$U"
  load "$U" "$r" "$SWEEP_S" "sweep_$r"
  line=$(python3 - "$WORK/summary_sweep_$r.json" "$r" "$TIMEOUT_MS" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1])); r = float(sys.argv[2]); dl = float(sys.argv[3])
succ = 100.0 * s["succeeded"] / max(1, s["sent"])
p99 = s["latency_all_ms"]["p99"]
ok = succ >= 99.0 and p99 is not None and p99 < dl and s["client_dropped"] == 0
print(json.dumps({"rate": r, "sent": s["sent"], "success_pct": round(succ, 2), "goodput": s["goodput_rps"],
                  "p99": p99, "pass": ok}))
PYEOF
)
  echo "sweep: $line" >&2
  [ $first = 1 ] || echo "," >> "$WORK/sweep.json"
  first=0
  echo "$line" >> "$WORK/sweep.json"
  if echo "$line" | grep -q '"pass": true'; then SUS=$r; fi
done
echo "]" >> "$WORK/sweep.json"
[ "$SUS" != 0 ] || { echo "error: no sweep rate was sustainable" >&2; SUS=$(python3 -c "print(round(0.5*$CAP,1))"); }
OVER=$(python3 -c "print(round($FACTOR * $SUS, 1))")
echo "sustainable $SUS/s -> overload $OVER/s" >&2
cat > "$WORK/params.json" <<JSON
{"capacity_closed_loop": $CAP, "sustainable_rate": $SUS, "overload_rate": $OVER, "factor": $FACTOR,
 "run_s": $RUN_S, "sweep_s": $SWEEP_S, "request_timeout_ms": $TIMEOUT_MS, "client_timeout_ms": 5000,
 "model": "a (32² PNO_D, n_samples 32)", "bulkhead": "max_concurrency 2, max_queue 16; global 2/32",
 "degrade_on": "default [degrade] (queue_fraction 0.5, min_samples 8)", "degrade_off": "[degrade] enabled = false",
 "build": "$BUILD"}
JSON

for mode in on off; do
  res_idle "${URLS[$mode]}"
  load "${URLS[$mode]}" "$OVER" "$RUN_S" "$mode"
  curl -sf "${URLS[$mode]}/metrics" > "$WORK/metrics_$mode.txt" || true
  echo "overload, degradation $mode: $(res_goodput "$WORK/summary_$mode.json") 2xx/s" >&2
done
res_stop_all
load_after=$(cut -d' ' -f1 /proc/loadavg)
STAMP="{$(bench_stamp),\"wall_s\":$(( $(date +%s) - started )),\"loadavg_after\":$load_after,\"command\":\"RUN_S=$RUN_S SWEEP_S=$SWEEP_S FACTOR=$FACTOR bash bench/overload.sh\"}"
python3 bench/resilience.py overload-report --work "$WORK" --out "$OUT" --stamp "$STAMP"
echo "results: $OUT (wall $(( $(date +%s) - started )) s)" >&2
