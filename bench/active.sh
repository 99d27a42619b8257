#!/usr/bin/env bash
# Active learning (issue 17, item 5): `pno active` on Darcy (16², PNO_D, 8 -> 64 labels) and on
# the heat equation (32² periodic, u(0) -> u(0.5), PNO_D, 8 -> 32 labels), batches of 8 from a
# pool of 128, acquisitions variance, energy and bald against random, SEEDS seeds each; learning
# curves (test rel-L2, CRPS, 90 % coverage against labelled samples, 64 test samples) and the
# labelled samples needed to reach the random baseline's error.
#   bash bench/active.sh
# Env: SEEDS (0,1,2), EPOCHS (30), ACQ (variance,energy,bald), COMPARE (random; "none" to skip
#      the baseline when an earlier run has it), RULE (greedy, or power: batches drawn with
#      probabilities proportional to the score, --batch-rule power), CASES (darcy16 heat32),
#      WORK (kept run folders), SKIP_BUILD=1 with PNO=path/to/pno,
#      OUT (default bench/results/<date>-<commit>-active.jsonl).
# Sized for ~30 min on 2 shared cores (small models, few labels); a re-run with the same WORK
# continues interrupted runs (pno active resumes).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pno-physics-bench/target}
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release --locked -p pno-cli >&2
  PNO=$CARGO_TARGET_DIR/release/pno
fi
PNO=${PNO:-$CARGO_TARGET_DIR/release/pno}
SEEDS=${SEEDS:-0,1,2}
EPOCHS=${EPOCHS:-30}
ACQ=${ACQ:-variance,energy,bald}
COMPARE=${COMPARE:-random}
RULE=${RULE:-greedy}
CASES=${CASES:-darcy16 heat32}
WORK=${WORK:-$(mktemp -d /tmp/pno-active.XXXXXX)}
OUT=${OUT:-$(bench_results_file active)}
echo "work: $WORK  results: $OUT" >&2
# A small PNO_D for both PDEs (the shipped configs, shrunk to fit the time box).
small=(--set model.hidden_channels=16 --set model.n_layers=3 --set model.lifting_channels=32
       --set model.projection_channels=32 --set "train.epochs=$EPOCHS" --set train.batch_size=4
       --set train.patience=0)
common=(--initial 8 --batch 8 --pool 128 --test 64 --draws 16 --eval-samples 32
        --acquisition "$ACQ" --compare "$COMPARE" --batch-rule "$RULE" --seeds "$SEEDS" --json --quiet)
run() {  # NAME ARGS...
  local name=$1; shift
  local load t0 t1 r
  load=$(cut -d' ' -f1 /proc/loadavg)
  echo "== $name (load $load): pno active $*" >&2
  t0=$(date +%s.%N)
  r=$("$PNO" active "$@" --out "$WORK/$name")
  t1=$(date +%s.%N)
  echo "{$(bench_stamp),\"loadavg_before\":$load,\"loadavg_after\":$(cut -d' ' -f1 /proc/loadavg),\"case\":\"$name\",\"wall_s\":$(echo "$t1 - $t0" | bc),\"command\":\"pno active $*\",\"result\":$r}" >> "$OUT"
  cat "$WORK/$name/table.md"
  echo
}
case " $CASES " in *" darcy16 "*)
run darcy16 --config configs/darcy16_pno_d.toml --pde darcy --resolution 16 --budget 64 \
  --set 'model.n_modes=[8,8]' "${small[@]}" "${common[@]}" ;;
esac
case " $CASES " in *" heat32 "*)
run heat32 --config configs/heat32_pno_d.toml --pde heat --data-config configs/heat64.toml \
  --resolution 32 --data-set n_times=6 --data-set dt_record=0.1 --budget 32 \
  --set 'model.n_modes=[8,8]' "${small[@]}" "${common[@]}" ;;
esac
echo "results: $OUT; run folders (curve.png, curve.svg, table.md): $WORK" >&2
