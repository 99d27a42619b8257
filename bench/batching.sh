#!/usr/bin/env bash
# Dynamic batching in `pno serve`: requests/s and latency with `[batching]` off and on, closed
# loop (wrk -t1 -cC) at C = 1, 8, 32, for two PNO_D models: neuraloperator's Darcy size (16²,
# 32 draws per request; a pass per request is small, so batching fills it) and the serving
# benchmark's 64² model (a pass per request is already large). Same binary, same model files,
# same machine, servers run one at a time.
#   bash bench/batching.sh
# Env: PNO (release `pno`, else built), DUR (s per level, 10), WARM (s, 3), LEVELS ("1 8 32"),
#      WAIT_MS (batching.max_wait_ms when on, 5), ROWS (batching.max_rows, 64), WORK, OUT
#      (default bench/results/<date>-<commit>-batching.jsonl).
# Loopback only; bounded (~2 models × 2 modes × levels × (DUR + WARM) s plus ~1 min of setup).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
command -v wrk >/dev/null || { echo "error: needs wrk (apt-get install -y wrk)" >&2; exit 1; }
DUR=${DUR:-10}; WARM=${WARM:-3}; LEVELS=${LEVELS:-"1 8 32"}; WAIT_MS=${WAIT_MS:-5}; ROWS=${ROWS:-64}
bench_release_pno
WORK=${WORK:-$(mktemp -d /tmp/pno-batching.XXXXXX)}
OUT=${OUT:-$(bench_results_file batching)}
: > "$OUT"
echo "work: $WORK  results: $OUT" >&2
SERVER=
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; true' EXIT

# Two one-epoch PNO_D runs (throughput does not depend on the weights' quality).
for res in 16 64; do
  repo=$WORK/repo$res
  if [ ! -f "$repo/pno/1/weights.safetensors" ]; then
    "$PNO" generate darcy --resolution "$res" --n 24 --seed 1 --out "$WORK/d$res" --quiet >/dev/null
    mkdir -p "$repo/pno"
    cfg=configs/darcy16_pno_d.toml; [ "$res" = 64 ] && cfg=configs/darcy64_pno_d.toml
    "$PNO" train --config "$cfg" --data "$WORK/d$res" --out "$repo/pno/1" --quiet \
      --set train.epochs=1 --set data.n_test=4 >/dev/null
  fi
  python3 - "$res" > "$WORK/body$res.json" <<'PY'
import json, math, sys
n = int(sys.argv[1])
x = [abs(math.sin(0.1 * i)) for i in range(n * n)]
print(json.dumps({"parameters": {"n_samples": 32},
                  "inputs": [{"name": "x", "shape": [1, 1, n, n], "datatype": "FP32", "data": x}]}))
PY
done
cat > "$WORK/post.lua" <<'LUA'
local f = io.open(os.getenv("BODY"), "r")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
LUA

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for res in 16 64; do
  for mode in off on; do
    wait=0; [ "$mode" = on ] && wait=$WAIT_MS
    cat > "$WORK/serve.toml" <<TOML
listen = "127.0.0.1:$port"
repository = "$WORK/repo$res"
[limits]
max_concurrency = 2
max_queue = 256
[bulkhead]
max_concurrency = 2
max_queue = 256
[degrade]
enabled = false
[batching]
max_wait_ms = $wait
max_rows = $ROWS
TOML
    "$PNO" serve --config "$WORK/serve.toml" > "$WORK/serve.out" 2> "$WORK/serve.log" &
    SERVER=$!
    for _ in $(seq 1 100); do
      curl -fs "http://127.0.0.1:$port/v2/health/ready" >/dev/null 2>&1 && break
      sleep 0.1
    done
    url=http://127.0.0.1:$port/v2/models/pno/infer
    BODY=$WORK/body$res.json wrk -t1 -c8 -d"${WARM}s" --timeout 60s -s "$WORK/post.lua" "$url" >/dev/null
    for c in $LEVELS; do
      load=$(cut -d' ' -f1 /proc/loadavg)
      m0=$(curl -fs "http://127.0.0.1:$port/metrics")
      BODY=$WORK/body$res.json wrk -t1 -c"$c" -d"${DUR}s" --timeout 60s --latency -s "$WORK/post.lua" "$url" > "$WORK/wrk.txt"
      m=$(curl -fs "http://127.0.0.1:$port/metrics")
      python3 - "$WORK/wrk.txt" "$res" "$mode" "$c" "$wait" "$load" "$(bench_stamp)" "$m0" "$m" >> "$OUT" <<'PY'
import json, re, sys
text, res, mode, c, wait, load, stamp, m0, m1 = sys.argv[1:]
t = open(text).read()
def ms(s):
    v, u = re.match(r"([\d.]+)(us|ms|s)", s).groups()
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[u]
lat = {p: ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", t, re.M)}
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
errors = re.search(r"Socket errors: (.*)", t)
def counter(metrics, name):
    return sum(float(l.rsplit(" ", 1)[1]) for l in metrics.splitlines()
               if l.startswith(name) and l[len(name)] in "{ ")
delta = lambda name: counter(m1, name) - counter(m0, name)
batches, batched = delta("pno_batches_total"), delta("pno_batched_requests_total")
print("{" + stamp + "," + json.dumps({
    "grid": int(res), "batching": mode, "max_wait_ms": int(wait), "concurrency": int(c),
    "loadavg_before": float(load), "rps": rps, "p50_ms": lat.get("50"), "p90_ms": lat.get("90"),
    "p99_ms": lat.get("99"), "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    "socket_errors": errors.group(1) if errors else None,
    "batches": batches, "batched_requests": batched,
    "mean_batch": (batched / batches) if batches else None})[1:])
PY
      tail -1 "$OUT" >&2
    done
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=
  done
done
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| grid | C | off: req/s | on: req/s | on / off | off: p50 / p99 ms | on: p50 / p99 ms | mean batch (on) |")
print("|---|---|---|---|---|---|---|---|")
for g in sorted({r["grid"] for r in rows}):
    for c in sorted({r["concurrency"] for r in rows}):
        o = next(r for r in rows if r["grid"] == g and r["concurrency"] == c and r["batching"] == "off")
        n = next(r for r in rows if r["grid"] == g and r["concurrency"] == c and r["batching"] == "on")
        mb = f"{n['mean_batch']:.1f}" if n["mean_batch"] else "–"
        print(f"| {g}² | {c} | {o['rps']:.1f} | {n['rps']:.1f} | {n['rps'] / o['rps']:.2f}× | "
              f"{o['p50_ms']:.0f} / {o['p99_ms']:.0f} | {n['p50_ms']:.0f} / {n['p99_ms']:.0f} | {mb} |")
PY
