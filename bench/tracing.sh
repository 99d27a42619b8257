#!/usr/bin/env bash
# Overhead of OpenTelemetry tracing on request latency (issue 13): the same `pno serve` (dev
# build, one tiny 32² model `a`) with no exporter, exporting over http/protobuf, and exporting over
# grpc to a real OTLP agent (rotel-agent, blackhole exporter) on 127.0.0.1. Open-loop load with
# pno-load: inference (32 draws) at RATE_INFER/s and metadata reads at RATE_META/s, DUR s each,
# the three settings interleaved ROUNDS times so drift in the machine's load hits all alike.
#   bash bench/tracing.sh
# Env: DUR (20), ROUNDS (2), RATE_INFER (10), RATE_META (100), SKIP_BUILD=1 with PNO=… LOAD=…,
#      ROTEL_VENV (default $CARGO_TARGET_DIR/../venv-rotel, made when missing), WORK, OUT.
# Loopback only; bounded (about 3 × ROUNDS × 2 × DUR s plus start-ups).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
. bench/resilience.sh
DUR=${DUR:-20}
ROUNDS=${ROUNDS:-2}
RATE_INFER=${RATE_INFER:-10}
RATE_META=${RATE_META:-100}
WORK=${WORK:-$(mktemp -d /tmp/pno-tracing.XXXXXX)}
mkdir -p "$WORK/bin"
cleanup() {
  res_stop_all
  [ -n "${AGENT_PID:-}" ] && kill "$AGENT_PID" 2>/dev/null || true
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build -q -p pno-cli -p pno-load
  cp "$CARGO_TARGET_DIR/debug/pno" "$CARGO_TARGET_DIR/debug/pno-load" "$WORK/bin/"
else
  cp "${PNO:-$CARGO_TARGET_DIR/debug/pno}" "$WORK/bin/pno"
  cp "${LOAD:-$CARGO_TARGET_DIR/debug/pno-load}" "$WORK/bin/pno-load"
fi
PNO=$WORK/bin/pno
LOAD=$WORK/bin/pno-load
VENV=${ROTEL_VENV:-$(dirname "$CARGO_TARGET_DIR")/venv-rotel}
if ! "$VENV/bin/python" -c "import rotel" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check rotel
fi
AGENT="$("$VENV/bin/python" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')"
OUT=${OUT:-$(res_results_file tracing)}
echo "work: $WORK  results: $OUT" >&2
res_setup "$WORK"
rm -rf "$WORK/repo/b"
GRPC=$(res_port); HTTP=$(res_port)
"$AGENT" start --otlp-grpc-endpoint "127.0.0.1:$GRPC" --otlp-http-endpoint "127.0.0.1:$HTTP" \
  --exporter blackhole --debug-log traces > "$WORK/rotel.log" 2>&1 &
AGENT_PID=$!
sleep 1
load_before=$(cut -d' ' -f1 /proc/loadavg)
: > "$WORK/runs.jsonl"
for round in $(seq 1 "$ROUNDS"); do
  for mode in off http grpc; do
    PORT=$(res_port)
    URL=http://127.0.0.1:$PORT
    res_config "$WORK" "$PORT" > "$WORK/serve.toml"
    case $mode in
      off) unset OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_PROTOCOL ;;
      http) export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$HTTP OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf ;;
      grpc) export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$GRPC OTEL_EXPORTER_OTLP_PROTOCOL=grpc ;;
    esac
    res_start "$WORK/serve.toml" "$WORK/serve-$mode.log" "$URL"
    unset OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_PROTOCOL
    # Warm-up (not measured).
    "$LOAD" --url "$URL/v2/models/a/infer" --body "$WORK/body.json" --header "Authorization: Bearer $ADMIN_KEY" \
      --rate "$RATE_INFER" --duration 2 >/dev/null
    res_idle "$URL"
    "$LOAD" --url "$URL/v2/models/a/infer" --body "$WORK/body.json" --header "Authorization: Bearer $ADMIN_KEY" \
      --rate "$RATE_INFER" --duration "$DUR" --summary "$WORK/infer.json" >/dev/null
    "$LOAD" --url "$URL/v2/models/a" --header "Authorization: Bearer $ADMIN_KEY" \
      --rate "$RATE_META" --duration "$DUR" --summary "$WORK/meta.json" >/dev/null
    res_stop "$SERVER_PID"
    python3 - "$mode" "$round" "$WORK/infer.json" "$WORK/meta.json" >> "$WORK/runs.jsonl" <<'PY'
import json, sys
mode, rnd, infer, meta = sys.argv[1], int(sys.argv[2]), json.load(open(sys.argv[3])), json.load(open(sys.argv[4]))
pick = lambda s: {"sent": s["sent"], "failed": s["failed"], **{k: s["latency_success_ms"][k] for k in ("p50", "p90", "p99")}}
print(json.dumps({"mode": mode, "round": rnd, "infer": pick(infer), "meta": pick(meta)}))
PY
    echo "round $round $mode: $(tail -1 "$WORK/runs.jsonl")" >&2
  done
done
load_after=$(cut -d' ' -f1 /proc/loadavg)
received=$(grep -c "Received traces" "$WORK/rotel.log" || true)
spans=$(python3 -c 'import re,sys; t=re.sub(r"\x1b\[[0-9;]*m","",open(sys.argv[1]).read()); print(sum(int(x) for x in re.findall(r"spans=(\d+)", t)))' "$WORK/rotel.log")
python3 - "$WORK/runs.jsonl" "$OUT" "$(git rev-parse --short HEAD)" "$load_before" "$load_after" "$DUR" "$RATE_INFER" "$RATE_META" "$spans" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
out = {"commit": sys.argv[3], "load_before": sys.argv[4], "load_after": sys.argv[5], "dur_s": int(sys.argv[6]),
       "rate_infer": float(sys.argv[7]), "rate_meta": float(sys.argv[8]), "spans_received": int(sys.argv[9] or 0),
       "runs": runs}
json.dump(out, open(sys.argv[2], "w"), indent=1)
print("| exporter | inference p50 / p99 ms | metadata p50 / p99 ms | failed |")
print("|---|---|---|---|")
for mode in ("off", "http", "grpc"):
    rs = [r for r in runs if r["mode"] == mode]
    med = lambda kind, q: statistics.median(r[kind][q] for r in rs)
    failed = sum(r["infer"]["failed"] + r["meta"]["failed"] for r in rs)
    print(f"| {mode} | {med('infer','p50'):.1f} / {med('infer','p99'):.1f} | {med('meta','p50'):.2f} / {med('meta','p99'):.2f} | {failed} |")
PY
echo "rotel: $received batches, $spans spans received" >&2
