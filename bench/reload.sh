#!/usr/bin/env bash
# Config hot reload under load (issue 14): `pno serve --config FILE` (dev build, audit log on, one
# tiny model `a`) under steady open-loop load (pno-load, its own key `load`) for DUR s; after a
# BASELINE s no-reload baseline the file is changed 20 times, about every 2 s, alternating valid
# and invalid versions, each followed by `kill -HUP`. Valid files flip per_key_burst (10 <-> 20,
# per_key_rps 20) and limits.max_batch (8 <-> 16); invalid ones carry the other values plus one
# defect: a bad value ([breaker] failure_rate = 3.0), an unknown key, a restart-only change
# (listen), malformed TOML. After each reload: /metrics (pno_config_last_reload_successful,
# pno_config_info's hash), GET /v2/models/a (parameters.max_batch) and a probe key from
# 127.0.0.2 sending burst+1 requests at once (429s) must show the new config (valid) or the
# previous one (invalid). Reports the load's sent/succeeded/failed, p50/p99 in the reload phase
# vs the baseline, reloads accepted/rejected vs expected, and the `config.reload` audit records
# with `pno audit verify`.
#   bash bench/reload.sh
# Env: DUR (s of load, 60), BASELINE (s, 15), RATE (req/s, 10), SKIP_BUILD=1 with PNO=…, LOAD=…
#      (built binaries, copied to WORK/bin), WORK (scratch folder, removed at the end unless
#      KEEP_WORK=1), OUT (results JSON, default bench/results/<date>-<commit>-reload.json).
# Loopback only; bounded (DUR + ~30 s after the build); everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
. bench/resilience.sh
DUR=${DUR:-60}
BASELINE=${BASELINE:-15}
RATE=${RATE:-10}
WORK=${WORK:-$(mktemp -d /tmp/pno-reload.XXXXXX)}
mkdir -p "$WORK/bin"
cleanup() {
  res_stop_all
  kill $(jobs -p) 2>/dev/null || true
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
# Plain dev build (no fault injection needed); binaries copied because the target is shared.
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build -q -p pno-cli -p pno-load
  cp "$CARGO_TARGET_DIR/debug/pno" "$CARGO_TARGET_DIR/debug/pno-load" "$WORK/bin/"
else
  cp "${PNO:-$CARGO_TARGET_DIR/debug/pno}" "$WORK/bin/pno"
  cp "${LOAD:-$CARGO_TARGET_DIR/debug/pno-load}" "$WORK/bin/pno-load"
fi
PNO=$WORK/bin/pno
LOAD=$WORK/bin/pno-load
OUT=${OUT:-$(res_results_file reload)}
echo "work: $WORK  results: $OUT" >&2
started=$(date +%s)
load_before=$(cut -d' ' -f1 /proc/loadavg)
res_setup "$WORK"
rm -rf "$WORK/repo/b"   # one model
LOAD_KEY=$("$PNO" keys create --role reader --keys "$WORK/keys.json" 2>/dev/null | tail -1)
PROBE_KEY=$("$PNO" keys create --role reader --keys "$WORK/keys.json" 2>/dev/null | tail -1)
PORT=$(res_port)
URL=http://127.0.0.1:$PORT
CFG=$WORK/serve.toml
python3 bench/resilience.py reload-config --work "$WORK" --port "$PORT" > "$CFG"
res_start "$CFG" "$WORK/serve.log" "$URL"
PID=$SERVER_PID
# Warm-up (not measured), then wait until idle.
"$LOAD" --url "$URL/v2/models/a/infer" --body "$WORK/body.json" --header "Authorization: Bearer $LOAD_KEY" \
  --rate "$RATE" --duration 2 >/dev/null
res_idle "$URL"

cat > "$WORK/params.json" <<JSON
{"dur_s": $DUR, "baseline_s": $BASELINE, "rate": $RATE, "reloads": 20, "client_timeout_ms": 10000,
 "model": "tiny 32x32 PNO_D (1 epoch), n_samples 32", "trigger": "SIGHUP",
 "valid_toggles": "rate_limit.per_key_burst 10<->20 (per_key_rps 20), limits.max_batch 8<->16",
 "invalid": "breaker.failure_rate = 3.0 | unknown key rate_limit.per_key_brust | listen changed | malformed TOML",
 "build": "dev profile (dependencies optimised)", "load_key": "reader key of its own (per-key bucket 20/s, burst >= 10, load ${RATE}/s evenly spaced)",
 "probe": "reader key of its own from 127.0.0.2: burst+1 concurrent GET /v2/models/a"}
JSON

T0=$(date +%s%3N)
"$LOAD" --url "$URL/v2/models/a/infer" --body "$WORK/body.json" --header "Authorization: Bearer $LOAD_KEY" \
  --rate "$RATE" --duration "$DUR" --timeout-ms 10000 --seed 7 \
  --out "$WORK/timeline.jsonl" --summary "$WORK/summary.json" > "$WORK/load.md" &
LOAD_PID=$!
python3 bench/resilience.py reload-drive --url "$URL" --admin-key "$ADMIN_KEY" --probe-key "$PROBE_KEY" \
  --pid "$PID" --config "$CFG" --port "$PORT" --t0-ms "$T0" --dur "$DUR" --baseline "$BASELINE" \
  --work "$WORK"
wait "$LOAD_PID"
res_stop_all
kill -0 "$PID" 2>/dev/null && { echo "error: pno serve still running" >&2; exit 1; }
rc=0; "$PNO" audit verify "$WORK/audit.log" > "$WORK/audit_verify.txt" 2>&1 || rc=$?
python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); p["audit_verify_rc"]=int(sys.argv[2]); json.dump(p,open(sys.argv[1],"w"))' "$WORK/params.json" "$rc"
load_after=$(cut -d' ' -f1 /proc/loadavg)
STAMP="{$(bench_stamp),\"wall_s\":$(( $(date +%s) - started )),\"loadavg_before\":$load_before,\"loadavg_after\":$load_after,\"command\":\"DUR=$DUR BASELINE=$BASELINE RATE=$RATE bash bench/reload.sh\"}"
python3 bench/resilience.py reload-report --work "$WORK" --out "$OUT" --stamp "$STAMP"
echo "results: $OUT (wall $(( $(date +%s) - started )) s)" >&2
