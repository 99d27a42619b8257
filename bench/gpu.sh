#!/usr/bin/env bash
# GPU: pno (burn's cuda backend) vs PyTorch + neuraloperator on the same GPU, in one run (issue 15).
#   bash bench/gpu.sh PYTHON        (or PNO_PEER_PYTHON=PYTHON bash bench/gpu.sh)
# PYTHON: an interpreter whose torch sees the GPU (torch.cuda.is_available()) and that has
# neuraloperator; the peer is bench/peers/train_peer.py --device cuda.
#
# Part 1, the same micro-benchmark cases as bench/train.sh (same architectures and parameter
# counts), on DEVICE: per engine the median steady training step, the first step (for pno: kernel
# JIT compilation and autotuning; for PyTorch: cuDNN/cuFFT plan set-up), inference latency, and the
# peak GPU memory of the process (nvidia-smi's used_memory of its pid, sampled every 100 ms; the
# same measure for both engines; PyTorch's allocator peak is recorded too). Ratios are pno/PyTorch.
# Part 2, end to end with `pno train --device DEVICE` and `pno predict --device DEVICE` on generated
# Darcy 64² (the shipped configs): epoch times (the first includes JIT) and a 32-draw prediction.
#
# Build: here with the CUDA feature (scripts/cuda-env.sh stands Debian's LLVM 22 in for the LLVM
# bundle; about 20 min on 2 cores). On a machine that cannot build, carry the binaries instead:
#   build elsewhere, then `xz -T0 -6` both and carry them; on the GPU machine
#   SKIP_BUILD=1 PNO=/path/to/pno BENCH=/path/to/train-bench bash bench/gpu.sh PYTHON
# (the bench executable's path is printed by `cargo bench -p pno-train --features cuda --bench
# train --no-run`). The NVIDIA driver is all the binaries need there; no CUDA toolkit.
# Env: DEVICE (cuda:0; `cpu` runs the whole script on the CPU backend and a CPU torch, without the
#      GPU memory columns: a rehearsal of the script where no GPU is lent), N (training samples
#      for part 2, 512), EPOCHS (part 2, 3), OUT.
# Writes JSON lines to bench/results/<date>-<commit>-gpu.jsonl (or $OUT) and prints two tables.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
PY=${1:-${PNO_PEER_PYTHON:-}}
bench_require_python "$PY" "the PyTorch GPU peer (bench/peers/train_peer.py)" torch neuralop
DEVICE=${DEVICE:-cuda:0}
GPU=1
[ "$DEVICE" = cpu ] && GPU=0
if [ $GPU = 1 ]; then
  "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' ||
    { echo "error: $PY's torch sees no GPU (torch.cuda.is_available() is False)" >&2; exit 2; }
  command -v nvidia-smi >/dev/null || { echo "error: nvidia-smi not found (no NVIDIA driver?)" >&2; exit 2; }
fi
N=${N:-512}
EPOCHS=${EPOCHS:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pno-physics-bench/target}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  features=()
  if [ $GPU = 1 ]; then
    # shellcheck source=../scripts/cuda-env.sh
    . scripts/cuda-env.sh
    features=(--features pno-cli/cuda,pno-train/cuda)
  fi
  BENCH=$(bench_build_train_bench "${features[@]}")
  PNO=$CARGO_TARGET_DIR/release/pno
fi
[ -x "${BENCH:-}" ] || { echo "error: no train bench executable (BENCH=${BENCH:-})" >&2; exit 1; }
[ -x "${PNO:-}" ] || { echo "error: no pno executable (PNO=${PNO:-})" >&2; exit 1; }
OUT=${OUT:-$(bench_results_file gpu)}
: > "$OUT"
WORK=$(mktemp -d /tmp/pno-gpu.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
echo "results: $OUT  work: $WORK  device: $DEVICE" >&2
gpu=cpu
[ $GPU = 1 ] && gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)

# Run "$@" with stdout to $WORK/out.txt, sampling its GPU memory into PEAK_MIB (MiB); call it
# in this shell (not in $(…)), then read the output file.
PEAK_MIB=0
with_gpu_peak() {
  local out="$WORK/out.txt" pid peak=0 m
  "$@" > "$out" &
  pid=$!
  while [ $GPU = 1 ] && kill -0 "$pid" 2>/dev/null; do
    m=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null |
        awk -F', ' -v p="$pid" '$1 == p {print $2}' | head -1)
    [ -n "$m" ] && [ "$m" -gt "$peak" ] && peak=$m
    sleep 0.1
  done
  wait "$pid"
  PEAK_MIB=$peak
}
last_line() { tail -1 "$WORK/out.txt"; }

cases=(
  "fno2d-64-b16|--model fno --dim 2 --res 64 --batch 16 --hidden 32 --layers 4 --modes 12 12 --lifting 256 --projection 256 --steps 20 --warmup 3"
  "pno_d2d-64-b16|--model pno_d --dim 2 --res 64 --batch 16 --hidden 32 --layers 4 --modes 12 12 --lifting 256 --projection 256 --dropout 0.2 --steps 20 --warmup 3 --infer-samples 32"
  "fno2d-128-b32|--model fno --dim 2 --res 128 --batch 32 --hidden 64 --layers 4 --modes 16 16 --lifting 256 --projection 256 --steps 20 --warmup 3"
  "fno1d-1024-b32|--model fno --dim 1 --res 1024 --batch 32 --hidden 64 --layers 4 --modes 16 --lifting 128 --projection 128 --steps 20 --warmup 3"
)
for c in "${cases[@]}"; do
  name=${c%%|*}; flags=${c#*|}
  echo "== $name" >&2
  with_gpu_peak "$BENCH" $flags --device "$DEVICE"
  r=$(last_line)
  echo "{$(bench_stamp),\"gpu\":\"$gpu\",\"case\":\"$name\",\"gpu_peak_mib\":$PEAK_MIB,\"rust\":$r}" | tee -a "$OUT"
  with_gpu_peak "$PY" bench/peers/train_peer.py $flags --device "$DEVICE"
  p=$(last_line)
  echo "{$(bench_stamp),\"gpu\":\"$gpu\",\"case\":\"$name\",\"gpu_peak_mib\":$PEAK_MIB,\"torch\":$p}" | tee -a "$OUT"
done

# Part 2: end to end on generated data with the shipped configs.
"$PNO" generate darcy --config configs/darcy64.toml --n "$N" --seed 1 --out "$WORK/d64" --quiet
for cfg in darcy64_fno darcy64_pno_d; do
  echo "== pno train $cfg on $DEVICE" >&2
  t0=$(date +%s%N)
  with_gpu_peak "$PNO" --json train --config "configs/$cfg.toml" --data "$WORK/d64" \
    --out "$WORK/$cfg" --device "$DEVICE" --quiet --set "train.epochs=$EPOCHS" --set data.n_test=32
  train_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  train_peak=$PEAK_MIB
  t0=$(date +%s%N)
  with_gpu_peak "$PNO" predict --run "$WORK/$cfg" --input "$WORK/d64" --samples 32 \
    --out "$WORK/$cfg-pred.npz" --device "$DEVICE"
  predict_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  epochs=$("$PY" -c '
import json, sys
print(json.dumps([{k: e[k] for k in ("epoch", "seconds", "samples_per_s", "val_rel_l2")}
                  for e in map(json.loads, open(sys.argv[1])) if e.get("kind") == "epoch"]))' "$WORK/$cfg/log.jsonl")
  echo "{$(bench_stamp),\"gpu\":\"$gpu\",\"case\":\"e2e-$cfg\",\"device\":\"$DEVICE\",\"n\":$N,\"train_ms\":$train_ms,\"train_gpu_peak_mib\":$train_peak,\"predict_all_32_draws_ms\":$predict_ms,\"predict_gpu_peak_mib\":$PEAK_MIB,\"epochs\":$epochs}" | tee -a "$OUT"
done

"$PY" - "$OUT" <<'PYEOF'
import json, sys
rows, e2e = {}, []
for line in open(sys.argv[1]):
    d = json.loads(line)
    if d["case"].startswith("e2e-"):
        e2e.append(d); continue
    for e in ("rust", "torch"):
        if e in d:
            rows.setdefault(d["case"], {})[e] = dict(d[e], gpu_peak_mib=d["gpu_peak_mib"])
print("| case | params | pno step ms | PyTorch step ms | train ratio | pno first step ms | PyTorch first step ms | pno infer ms | PyTorch infer ms | infer ratio | pno GPU MiB | PyTorch GPU MiB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for k, v in rows.items():
    r, t = v["rust"], v["torch"]
    print(f"| {k} | {r['params']} | {r['train_step_ms_median']:.2f} | {t['train_step_ms_median']:.2f} | "
          f"{t['train_step_ms_median']/r['train_step_ms_median']:.2f}x | {r['first_step_ms']:.0f} | {t['first_step_ms']:.0f} | "
          f"{r['infer_ms_median']:.2f} ({r['infer_samples']}) | {t['infer_ms_median']:.2f} ({t['infer_samples']}) | "
          f"{t['infer_ms_median']/r['infer_ms_median']:.2f}x | {r['gpu_peak_mib']} | {t['gpu_peak_mib']} |")
print()
print("| end to end | train s | epoch seconds (first includes JIT) | val rel-L2 | predict s (32 draws, all samples) | GPU MiB train / predict |")
print("|---|---|---|---|---|---|")
for d in e2e:
    ep = d["epochs"]
    secs = ", ".join("%.1f" % e["seconds"] for e in ep)
    print(f"| {d['case'][4:]} (n {d['n']}) | {d['train_ms'] / 1e3:.1f} | {secs} | "
          f"{ep[-1]['val_rel_l2']:.4f} | {d['predict_all_32_draws_ms'] / 1e3:.1f} | {d['train_gpu_peak_mib']} / {d['predict_gpu_peak_mib']} |")
PYEOF
