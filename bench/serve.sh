#!/usr/bin/env bash
# Serving load test: `pno serve` (release) vs the Python peer `serve_ref` (FastAPI + PyTorch,
# docs/peers.md) serving the same 64² PNO architecture on this machine, in the same run, with the
# same load generator (wrk -t1, the peer's wrk_post.lua and request body: one 64² input, n_samples 32).
#   bash bench/serve.sh PYTHON SERVE_REF    (or PNO_PEER_PYTHON=… SERVE_REF=… bash bench/serve.sh)
# PYTHON: an interpreter with torch, fastapi, uvicorn, orjson; SERVE_REF: a copy of the peer's
# serve_ref/ folder (server.py, smoke.py, load.py, wrk_post.lua), with torch_fno.py in its parent.
# Env: DUR (s per level, 20), WARM (s warm-up at C=8, 8), LEVELS ("1 8 32"),
#      OURS ("1 2": max_concurrency values), PEERS ("1x2 1x1c2": workers x threads [c forwards]),
#      SECURE (1: our servers run configs/serve.toml's security settings — API keys with
#      anonymous = "none" and the audit log — and wrk sends a reader key; 0: neither),
#      SKIP_BUILD=1 and PNO=path to reuse a built pno, OUT (default
#      bench/results/<date>-<commit>-serve.jsonl).
# Writes one JSON line per (server, level), stamped with date, commit and machine, and prints a
# Markdown table. Loopback only; bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
PY=${1:-${PNO_PEER_PYTHON:-}}
REF=${2:-${SERVE_REF:-}}
DUR=${DUR:-20}; WARM=${WARM:-8}; LEVELS=${LEVELS:-"1 8 32"}
OURS=${OURS:-"1 2"}; PEERS=${PEERS:-"1x2 1x1c2"}; SECURE=${SECURE:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pno-physics-bench/target}
command -v wrk >/dev/null || { echo "error: needs wrk (apt-get install -y wrk)" >&2; exit 1; }
bench_require_python "$PY" "the serving peer (serve_ref/server.py)" torch fastapi uvicorn orjson
bench_require_peer_dir "$REF" "serve_ref" "Pass the serve_ref folder as the second argument or set SERVE_REF" \
  server.py smoke.py load.py wrk_post.lua
[ -f "$(dirname "$REF")/torch_fno.py" ] ||
  { echo "error: $(dirname "$REF")/torch_fno.py not found: server.py imports it from the folder above serve_ref (docs/peers.md)" >&2; exit 2; }
REF=$(cd "$REF" && pwd)
# Same package set as bench/train.sh, so burn's features unify identically.
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --locked -p pno-cli -p pno-train --bins --benches
PNO=${PNO:-$CARGO_TARGET_DIR/release/pno}
WORK=${WORK:-$(dirname "$CARGO_TARGET_DIR")/bench-serve}
mkdir -p "$WORK"
export OMP_WAIT_POLICY=PASSIVE RAYON_NUM_THREADS=2
OUT=${OUT:-$(bench_results_file serve)}
: > "$OUT"
echo "results: $OUT" >&2

# The peer's architecture: width 32, 12x12 modes, 4 Fourier layers, projection 128, MC dropout 0.1
# (our PNO_D: dropout on Fourier coefficients and in the lifting/projection MLPs; our lifting is a
# 2-layer MLP, set to 32 channels, where the peer has one linear layer). Weights come from a 1-epoch
# training run: the timing does not depend on their values.
RUN=$WORK/repo/pno/1
if [ ! -f "$RUN/model.json" ]; then
  "$PNO" generate darcy --resolution 64 --n 24 --seed 1 --out "$WORK/d64" --quiet
  mkdir -p "$WORK/repo/pno"
  "$PNO" train --config configs/darcy64_pno_d.toml --data "$WORK/d64" --out "$RUN" --quiet \
    --set train.epochs=1 --set data.n_train=16 --set data.n_test=4 --set train.batch_size=8 \
    --set model.hidden_channels=32 --set model.n_modes=[12,12] --set model.n_layers=4 \
    --set model.lifting_channels=32 --set model.projection_channels=128 --set model.dropout=0.1
fi
"$PY" "$REF/load.py" body --out "$WORK/body.json" --n-samples 32 >/dev/null

PIDS=()
stop_all() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done; }
trap stop_all EXIT
wait_ready() {  # url pid
  for _ in $(seq 1 600); do
    curl -sf "$1/v2/health/ready" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}
wait_idle() {  # nothing queued or computing (pno-serve drops queued requests whose client left,
               # but a running forward finishes); the peer has no such metric: a short pause
  local url=$1
  for _ in $(seq 1 600); do
    m=$(curl -sf "$url/metrics" || true)
    [ -z "$m" ] && { sleep 2; return 0; }
    # Every series carries labels (replica=...) since replica ids exist.
    if echo "$m" | grep -Eq '^pno_inference_pending_request_count(\{[^}]*\})? 0$' &&
       echo "$m" | grep -Eq '^pno_inference_running_count(\{[^}]*\})? 0$'; then return 0; fi
    sleep 0.5
  done
}

# Start every server (idle ones use memory, not CPU), then interleave them level by level so that
# each pair of measurements sees the same machine load.
NAMES=(); URLS=(); LUAS=()
port=18431
# With SECURE=1 every request to our servers carries a reader key (checked against the hashed
# keys file) and is written to the audit log (fsync per batch, as configs/serve.toml ships it).
OUR_LUA=$REF/wrk_post.lua
if [ "$SECURE" = 1 ]; then
  rm -f "$WORK/keys.json" "$WORK"/audit_*.log
  AUTH=$("$PNO" keys create --keys "$WORK/keys.json" --role reader --quiet | tail -1)
  export AUTH
  sed 's|^wrk.headers\["Content-Type"\].*|&\nwrk.headers["Authorization"] = "Bearer " .. os.getenv("AUTH")|' \
    "$REF/wrk_post.lua" > "$WORK/wrk_post_auth.lua"
  OUR_LUA=$WORK/wrk_post_auth.lua
fi
for conc in $OURS; do
  {
    echo "listen = \"127.0.0.1:$port\""
    echo "repository = \"$WORK/repo\""
    if [ "$SECURE" = 1 ]; then
      echo "keys = \"$WORK/keys.json\""
      echo "anonymous = \"none\""
    fi
    # The model's own bulkhead too (its default is 1 slot and a queue of 16, which sheds at C = 32).
    printf '[limits]\nmax_concurrency = %s\nmax_queue = 64\n[bulkhead]\nmax_concurrency = %s\nmax_queue = 64\n' "$conc" "$conc"
    [ "$SECURE" = 1 ] && printf '[audit]\npath = "%s"\n' "$WORK/audit_$conc.log"
  } > "$WORK/serve_$conc.toml"
  RUST_LOG=warn "$PNO" serve --config "$WORK/serve_$conc.toml" >/dev/null 2>"$WORK/pno_serve_$conc.log" &
  PIDS+=($!)
  wait_ready "http://127.0.0.1:$port" "$!" || { echo "pno serve did not start" >&2; cat "$WORK/pno_serve_$conc.log" >&2; exit 1; }
  NAMES+=("pno-serve c$conc"); URLS+=("http://127.0.0.1:$port"); LUAS+=("$OUR_LUA"); port=$((port + 1))
done
# server.py imports torch_fno from the folder above it (its own sys.path entry assumes another layout).
for cfg in $PEERS; do
  w=${cfg%%x*}; rest=${cfg#*x}; t=${rest%%c*}; ic=1
  [[ "$rest" == *c* ]] && ic=${rest#*c}
  (cd "$REF" && PYTHONPATH="$(dirname "$REF")${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" server.py --port $port --workers "$w" --threads "$t" --infer-conc "$ic") >"$WORK/peer_$cfg.log" 2>&1 &
  PIDS+=($!)
  wait_ready "http://127.0.0.1:$port" "$!" || { echo "peer did not start" >&2; cat "$WORK/peer_$cfg.log" >&2; exit 1; }
  NAMES+=("python $cfg"); URLS+=("http://127.0.0.1:$port"); LUAS+=("$REF/wrk_post.lua"); port=$((port + 1))
done
for i in "${!NAMES[@]}"; do
  if [ "${LUAS[$i]}" = "$REF/wrk_post.lua" ]; then  # the peer's smoke test speaks without a key
    python3 "$REF/smoke.py" --base "${URLS[$i]}" > "$WORK/smoke_$i.txt" ||
      { echo "smoke failed for ${NAMES[$i]}" >&2; grep FAIL "$WORK/smoke_$i.txt" >&2; }
    echo "smoke ${NAMES[$i]}: $(tail -1 "$WORK/smoke_$i.txt")" >&2
  fi
  BODY=$WORK/body.json wrk -t1 -c8 -d"${WARM}s" --timeout 60s -s "${LUAS[$i]}" "${URLS[$i]}/v2/models/pno/infer" >/dev/null
  wait_idle "${URLS[$i]}"
done
for c in $LEVELS; do
  for i in "${!NAMES[@]}"; do
    wait_idle "${URLS[$i]}"; sleep 2
    load=$(cut -d' ' -f1 /proc/loadavg)
    line=$(BODY=$WORK/body.json wrk -t1 -c"$c" -d"${DUR}s" --timeout 60s -s "${LUAS[$i]}" \
      "${URLS[$i]}/v2/models/pno/infer" | sed -n 's/^WRKJSON //p')
    echo "{$(bench_stamp),\"server\":\"${NAMES[$i]}\",\"secure\":$([ "${LUAS[$i]}" = "$REF/wrk_post.lua" ] && echo false || echo true),\"concurrency\":$c,\"loadavg_before\":$load,\"wrk\":$line}" | tee -a "$OUT"
    wait_idle "${URLS[$i]}"
  done
done
stop_all
trap - EXIT

python3 - "$OUT" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| server | C | req/s | p50 ms | p90 ms | p99 ms | errors | load before |")
print("|---|---|---|---|---|---|---|---|")
best = {}
for r in rows:
    w = r["wrk"]; rps = w["requests"] / (w["duration_us"] / 1e6)
    errs = w["err_connect"] + w["err_read"] + w["err_write"] + w["err_status"] + w["err_timeout"]
    print(f"| {r['server']} | {r['concurrency']} | {rps:.2f} | {w['lat_p50_us']/1e3:.0f} | "
          f"{w['lat_p90_us']/1e3:.0f} | {w['lat_p99_us']/1e3:.0f} | {errs} | {r['loadavg_before']} |")
    side = "ours" if r["server"].startswith("pno") else "peer"
    k = (side, r["concurrency"])
    if k not in best or rps > best[k][0]:
        best[k] = (rps, w["lat_p99_us"] / 1e3, r["server"])
print()
print("| C | best pno-serve req/s (p99 ms) | best Python req/s (p99 ms) | throughput ratio |")
print("|---|---|---|---|")
for c in sorted({k[1] for k in best}):
    o, p = best.get(("ours", c)), best.get(("peer", c))
    if o and p:
        print(f"| {c} | {o[0]:.2f} ({o[1]:.0f}, {o[2]}) | {p[0]:.2f} ({p[1]:.0f}, {p[2]}) | {o[0]/p[0]:.2f}x |")
PYEOF
