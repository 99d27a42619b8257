#!/usr/bin/env bash
# Train and evaluate every model config on both Darcy setups; prints a Markdown table.
#   bash bench/models.sh DARCY16_TRAIN.pt DARCY16_TEST.pt [OUT_DIR]
# darcy16: neuraloperator's darcy_train_16.pt / darcy_test_16.pt (pip download --no-deps
# neuraloperator==0.3.0; the files are in neuralop/datasets/data/). darcy64: generated here with
# configs/darcy64.toml (1000 samples; the configs hold out the last 100 as the test split).
# Trained runs are kept in OUT_DIR (default /tmp/pno-models) and reused by a rerun; one JSON line per
# (data, model), stamped with date, commit and machine, goes to
# bench/results/<date>-<commit>-models.jsonl (or $RES).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
[ $# -ge 2 ] && [ -f "$1" ] && [ -f "$2" ] ||
  { echo "usage: bash bench/models.sh DARCY16_TRAIN.pt DARCY16_TEST.pt [OUT_DIR] (the files: docs/peers.md)" >&2; exit 2; }
TRAIN16=$1; TEST16=$2; OUT=${3:-/tmp/pno-models}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pno-physics-bench/target}
cargo build --release --locked -p pno-cli -p pno-train --bins --benches >/dev/null
PNO=$CARGO_TARGET_DIR/release/pno
mkdir -p "$OUT/runs"
[ -d "$OUT/darcy64" ] || $PNO generate darcy --config configs/darcy64.toml --out "$OUT/darcy64" --quiet
MODELS=${MODELS:-"fno deeponet mc_dropout ensemble laplace pno_d pno_r vi_pno"}
SETS=${SETS:-"darcy16 darcy64"}
RES=${RES:-$(bench_results_file models)}
: > "$RES"
echo "results: $RES" >&2
for ds in $SETS; do
  for m in $MODELS; do
    run=$OUT/runs/${ds}_$m
    if [ ! -f "$run/summary.json" ]; then
      rm -rf "$run"
      if [ "$ds" = darcy16 ]; then data=$TRAIN16; else data=$OUT/darcy64; fi
      $PNO train --config configs/${ds}_$m.toml --data "$data" --out "$run" --quiet --json > "$run.train.json"
    fi
    if [ "$ds" = darcy16 ]; then
      ev=$($PNO eval --run "$run" --data "$TEST16" --samples 100 --json)
    else
      ev=$($PNO eval --run "$run" --data "$OUT/darcy64" --split test --samples 100 --json)
    fi
    echo "{$(bench_stamp),\"set\":\"$ds\",\"model\":\"$m\",\"train\":$(cat "$run.train.json"),\"eval\":$ev}" | tee -a "$RES"
  done
done
python3 - "$RES" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| data | model | params | epochs | train s | test rel-L2 | CRPS | coverage 90 % | interval width 90 | energy score |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    t, e = r["train"], r["eval"]
    print(f"| {r['set']} | {r['model']} | {t['params']} | {t['epochs']} | {t['seconds']:.0f} | {e['rel_l2']:.4f} | "
          f"{e['crps']:.4g} | {e['coverage_90']:.3f} | {e['interval_width_90']:.4g} | {e['energy_score']:.4g} |")
PY
