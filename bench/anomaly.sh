#!/usr/bin/env bash
# In-process anomaly detection and alert routing (issue 13): `pno serve` (dev build with fault
# injection, the default [alerting] thresholds, WINDOW-second windows) under steady open-loop load
# (pno-load) on model `a`, its alerts routed to a local webhook receiver (bench/anomaly.py). After
# STEADY s of steady load (the false-alarm measurement: alerts fired after the warm-up, and
# anomalous windows per detector), a latency shift (every call SLOW_MS slower) and then an error
# burst (a fraction FLAKY_P of calls fail, transient) are injected, each until its firing
# notification arrives and then cleared until the resolve arrives. Reports the false-alert rate
# per window, and per fault the detection delay (fault on -> notification received) and the
# resolve delay (fault off -> resolve received).
#   bash bench/anomaly.sh
# Env: STEADY (s, 600), WINDOW (s, 5), RATE (req/s, 20), SLOW_MS (100), FLAKY_P (0.2),
#      SKIP_BUILD=1 with PNO=…, LOAD=…, WORK, OUT (default bench/results/<date>-<commit>-anomaly.json).
# Loopback only; bounded (STEADY + at most ~10 min of fault phases); stops all it starts on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
. bench/resilience.sh
STEADY=${STEADY:-600}
WINDOW=${WINDOW:-5}
RATE=${RATE:-20}
SLOW_MS=${SLOW_MS:-100}
FLAKY_P=${FLAKY_P:-0.2}
WORK=${WORK:-$(mktemp -d /tmp/pno-anomaly.XXXXXX)}
mkdir -p "$WORK"
res_build "$WORK/bin"
OUT=${OUT:-$(res_results_file anomaly)}
echo "work: $WORK  results: $OUT" >&2
trap 'res_stop_all; kill $(jobs -p) 2>/dev/null || true' EXIT
started=$(date +%s)
res_setup "$WORK"
rm -rf "$WORK/repo/b"
PORT=$(res_port)
RECV=$(res_port)
URL=http://127.0.0.1:$PORT
WARMUP=12
{
  res_config "$WORK" "$PORT"
  cat <<TOML
[audit]
path = "$WORK/audit.log"
[alerting]
window_s = $WINDOW
warmup_windows = $WARMUP
[[alerting.receivers]]
name = "bench"
url = "http://127.0.0.1:$RECV/alerts"
min_severity = "info"
TOML
} > "$WORK/serve.toml"
cat > "$WORK/params.json" <<JSON
{"steady_s": $STEADY, "window_s": $WINDOW, "rate": $RATE, "slow_ms": $SLOW_MS, "flaky_p": $FLAKY_P,
 "warmup_windows": $WARMUP, "thresholds": "defaults (z 5, for_windows 2, resolve_windows 3, min_requests 20, latency_tolerance 0.5, error_rate_tolerance 0.05)",
 "build": "dev profile, --features pno-serve/fault-injection"}
JSON
res_start "$WORK/serve.toml" "$WORK/serve.log" "$URL"
res_has_faults "$URL" || { echo "error: the server has no fault injection" >&2; exit 1; }
H="Authorization: Bearer $ADMIN_KEY"
"$LOAD" --url "$URL/v2/models/a/infer" --body "$WORK/body.json" --header "$H" \
  --rate "$RATE" --duration $((STEADY + 1200)) --timeout-ms 5000 --seed 7 \
  --summary "$WORK/load.json" > "$WORK/load.md" &
LOAD_PID=$!
python3 bench/anomaly.py drive --url "$URL" --admin-key "$ADMIN_KEY" --receiver-port "$RECV" \
  --window "$WINDOW" --steady "$STEADY" --slow-ms "$SLOW_MS" --flaky-p "$FLAKY_P" --work "$WORK"
kill "$LOAD_PID" 2>/dev/null || true
wait "$LOAD_PID" 2>/dev/null || true
res_stop_all
STAMP="{$(bench_stamp),\"wall_s\":$(( $(date +%s) - started )),\"command\":\"STEADY=$STEADY WINDOW=$WINDOW RATE=$RATE bash bench/anomaly.sh\"}"
python3 bench/anomaly.py report --work "$WORK" --out "$OUT" --stamp "$STAMP"
echo "results: $OUT (wall $(( $(date +%s) - started )) s)" >&2
