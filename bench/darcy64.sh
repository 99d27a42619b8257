#!/usr/bin/env bash
# The Darcy recipes on a generated Darcy 64² set (issue 17: "the same on a generated Darcy 64² set,
# so results do not hinge on one small file"): per method and seed, train, evaluate raw on the
# run's recorded test split, calibrate (split conformal on the recorded calibration split) and
# evaluate again; print mean ± std over seeds.
#   bash bench/darcy64.sh [OUT_DIR]
# METHODS (default: every method below) and SEEDS (default "0 1 2") choose the cells; EPOCHS
# (default 10) and N (default 700 generated samples: 500 train, 100 calibration, 100 test) size
# the run. One JSON line per (method, seed) goes to bench/results/<date>-<commit>-darcy64.jsonl
# (or $RES); the data and trained runs stay in OUT_DIR (default /tmp/pno-darcy64) and are reused by
# a rerun. PNO (a release `pno`) skips the build.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
OUT=${1:-/tmp/pno-darcy64}
SEEDS=${SEEDS:-"0 1 2"}
EPOCHS=${EPOCHS:-10}
N=${N:-700}
# method: config, then its --set overrides (the configs' own recipes for the three shipped ones,
# the 16² section's overrides of darcy16_fno.toml for the others)
declare -A CONFIG=(
  [fno]=darcy16_fno
  [mc_dropout]=darcy16_mc_dropout_recipe
  [pno_d]=darcy16_pno_d_recipe
  [vi_pno]=darcy16_fno
  [laplace]=darcy16_fno
  [pno_r]=darcy16_fno
  [ensemble]=darcy16_fno
)
declare -A SETS=(
  [fno]=""
  [mc_dropout]=""
  [pno_d]=""
  [vi_pno]='model.kind="vi_pno" model.use_mlp=true train.loss="elbo" train.h1_weight=0.5'
  [laplace]='model.kind="laplace" model.use_mlp=true'
  [pno_r]='model.kind="pno_r" model.use_mlp=true train.loss="crps" train.h1_weight=0.5'
  [ensemble]='model.kind="ensemble" model.n_members=5 model.use_mlp=true'
)
METHODS=${METHODS:-"fno mc_dropout pno_d vi_pno laplace pno_r ensemble"}
for m in $METHODS; do
  [ -n "${CONFIG[$m]:-}" ] || { echo "unknown method '$m' in METHODS (known: ${!CONFIG[*]})" >&2; exit 2; }
done
bench_release_pno
RES=${RES:-$(bench_results_file darcy64)}
mkdir -p "$OUT"
: > "$RES"
echo "results: $RES" >&2
DATA=$OUT/d64
if [ ! -f "$DATA/manifest.json" ]; then
  rm -rf "$DATA"
  $PNO --json generate darcy --config configs/darcy64.toml --n "$N" --seed 1 --out "$DATA" > "$OUT/generate.json"
fi
# the data's own geometry (Dirichlet, unit square), 100 test and 100 calibration samples
COMMON=(data.periodic=false data.domain_length=1.0 data.n_test=100 data.n_calibration=100 "train.epochs=$EPOCHS")
for s in $SEEDS; do
  for m in $METHODS; do
    run=$OUT/$m-s$s
    # shellcheck disable=SC2206  # the overrides are space-separated words without spaces
    sets=("${COMMON[@]}" ${SETS[$m]} "train.seed=$s")
    args=()
    for kv in "${sets[@]}"; do args+=(--set "$kv"); done
    if [ ! -f "$run/summary.json" ]; then
      rm -rf "$run"
      $PNO train --config "configs/${CONFIG[$m]}.toml" --data "$DATA" --out "$run" "${args[@]}" \
        --quiet --json > "$run.train.json"
    fi
    raw=$($PNO eval --run "$run" --data "$DATA" --samples 100 --json)
    cal=null; after=null
    if [ "$m" != fno ]; then
      cal=$($PNO calibrate --run "$run" --data "$DATA" --split calibration --level 0.9 --json)
      after=$($PNO eval --run "$run" --data "$DATA" --samples 100 --json)
    fi
    sets_json=$(printf '%s\n' "${sets[@]}" | python3 -c 'import json,sys; print(json.dumps([l.rstrip("\n") for l in sys.stdin]))')
    echo "{$(bench_stamp),\"method\":\"$m\",\"config\":\"${CONFIG[$m]}\",\"sets\":$sets_json,\"seed\":$s,\"train\":$(cat "$run.train.json"),\"raw64\":$raw,\"calibrate\":$cal,\"cal64\":$after}" >> "$RES"
    echo "$m seed $s done" >&2
  done
done
python3 - "$RES" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def ms(v, f="{:.4g}"):
    v = [x for x in v if x is not None]
    if not v: return "–"
    if len(v) == 1: return f.format(v[0])
    return f.format(statistics.mean(v)) + " ± " + "{:.2g}".format(statistics.stdev(v))
def get(r, part, key):
    d = r.get(part)
    return d.get(key) if isinstance(d, dict) else None
print("| method | seeds | rel-L2 | CRPS raw | cov 90 raw | cov 95 raw | width 90 raw | cov 90 calibrated | CRPS calibrated | width 90 calibrated | train s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for m in dict.fromkeys(r["method"] for r in rows):
    rs = [r for r in rows if r["method"] == m]
    cells = [ms([get(r, "raw64", "rel_l2") for r in rs]), ms([get(r, "raw64", "crps") for r in rs]),
             ms([get(r, "raw64", "coverage_90") for r in rs]), ms([get(r, "raw64", "coverage_95") for r in rs]),
             ms([get(r, "raw64", "interval_width_90") for r in rs]),
             ms([get(r, "cal64", "coverage_90") for r in rs]), ms([get(r, "cal64", "crps") for r in rs]),
             ms([get(r, "cal64", "interval_width_90") for r in rs]),
             ms([r["train"]["seconds"] for r in rs], "{:.0f}")]
    print(f"| {m} | {len(rs)} | " + " | ".join(cells) + " |")
PY
