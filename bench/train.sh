#!/usr/bin/env bash
# Training throughput, inference latency and peak memory: pno (burn flex) vs PyTorch + neuraloperator,
# same architecture, same machine, same run, 2 threads each. One configuration per process.
#   bash bench/train.sh PYTHON        (or PNO_PEER_PYTHON=PYTHON bash bench/train.sh)
# PYTHON: an interpreter with torch and neuraloperator (`pip install torch neuraloperator`,
# docs/peers.md); the peer is bench/peers/train_peer.py.
# Writes one JSON line per (engine, case) to bench/results/<date>-<commit>-train.jsonl (or $OUT),
# each stamped with date, commit and machine, and prints a Markdown table at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
PY=${1:-${PNO_PEER_PYTHON:-}}
bench_require_python "$PY" "the PyTorch training peer (bench/peers/train_peer.py)" torch neuralop
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pno-physics-bench/target}
BIN=$(bench_build_train_bench)
[ -n "$BIN" ] && [ -x "$BIN" ] ||
  { echo "error: cargo built no executable for pno-train's 'train' bench" >&2; exit 1; }
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 RAYON_NUM_THREADS=2
OUT=${OUT:-$(bench_results_file train)}
: > "$OUT"
echo "results: $OUT" >&2
cases=(
  "fno2d-64-b16|--model fno --dim 2 --res 64 --batch 16 --hidden 32 --layers 4 --modes 12 12 --lifting 256 --projection 256 --steps 6 --warmup 2"
  "pno_d2d-64-b16|--model pno_d --dim 2 --res 64 --batch 16 --hidden 32 --layers 4 --modes 12 12 --lifting 256 --projection 256 --dropout 0.2 --steps 4 --warmup 1 --infer-samples 32"
  "fno2d-16-b32|--model fno --dim 2 --res 16 --batch 32 --hidden 32 --layers 4 --modes 12 12 --lifting 128 --projection 128 --steps 10 --warmup 2"
  "fno1d-1024-b32|--model fno --dim 1 --res 1024 --batch 32 --hidden 64 --layers 4 --modes 16 --lifting 128 --projection 128 --steps 10 --warmup 2"
)
for c in "${cases[@]}"; do
  name=${c%%|*}; flags=${c#*|}
  load=$(cut -d' ' -f1 /proc/loadavg)
  echo "== $name (load $load)" >&2
  r=$("$BIN" $flags)
  echo "{$(bench_stamp),\"loadavg_before\":$load,\"case\":\"$name\",\"rust\":$r}" | tee -a "$OUT"
  load=$(cut -d' ' -f1 /proc/loadavg)
  p=$("$PY" bench/peers/train_peer.py $flags --threads 2 | tail -1)
  echo "{$(bench_stamp),\"loadavg_before\":$load,\"case\":\"$name\",\"torch\":$p}" | tee -a "$OUT"
done
"$PY" - "$OUT" <<'PYEOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    d = json.loads(line); k = d["case"]
    rows.setdefault(k, {}).update({e: d[e] for e in ("rust", "torch") if e in d})
print("| case | params | pno train samples/s | PyTorch train samples/s | ratio | pno infer ms | PyTorch infer ms | pno peak MB | PyTorch peak MB |")
print("|---|---|---|---|---|---|---|---|---|")
for k, v in rows.items():
    r, t = v["rust"], v["torch"]
    print(f"| {k} | {r['params']} | {r['train_samples_per_s']:.1f} | {t['train_samples_per_s']:.1f} | "
          f"{r['train_samples_per_s']/t['train_samples_per_s']:.2f}x | {r['infer_ms_median']:.0f} ({r['infer_samples']} draws) | "
          f"{t['infer_ms_median']:.0f} ({t['infer_samples']} draws) | {r['peak_rss_mb']:.0f} | {t['peak_rss_mb']:.0f} |")
PYEOF
