#!/usr/bin/env bash
# Recipe parity on neuraloperator's own small Darcy files: train each config with several seeds
# on darcy_train_16.pt, evaluate on darcy_test_16.pt and (zero-shot) darcy_test_32.pt, print
# mean ± std over seeds next to neuraloperator's numbers (docs/recipes.md, docs/peers.md).
#   bash bench/recipes.sh DARCY_DIR [OUT_DIR]
# DARCY_DIR holds darcy_train_16.pt, darcy_test_16.pt, darcy_test_32.pt (from the neuraloperator
# 0.3.0 wheel: pip download --no-deps neuraloperator==0.3.0, unzip, neuralop/datasets/data/).
# CONFIGS (default "darcy16_fno darcy16_tfno") and SEEDS (default "0 1 2") choose the cells;
# PEER_JSON (a fno_darcy_peer.py result file) adds the peer's row for the same configs.
# One JSON line per (config, seed) goes to bench/results/<date>-<commit>-recipes.jsonl (or $RES);
# trained runs stay in OUT_DIR (default /tmp/pno-recipes) and are reused by a rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DIR=${1:-}
[ -n "$DIR" ] && [ -f "$DIR/darcy_train_16.pt" ] && [ -f "$DIR/darcy_test_16.pt" ] && [ -f "$DIR/darcy_test_32.pt" ] ||
  { echo "usage: bash bench/recipes.sh DARCY_DIR [OUT_DIR] (DARCY_DIR with darcy_train_16.pt, darcy_test_16.pt, darcy_test_32.pt)" >&2; exit 2; }
OUT=${2:-/tmp/pno-recipes}
CONFIGS=${CONFIGS:-"darcy16_fno darcy16_tfno"}
SEEDS=${SEEDS:-"0 1 2"}
SAMPLES=${SAMPLES:-100}
bench_release_pno
RES=${RES:-$(bench_results_file recipes)}
mkdir -p "$OUT"
: > "$RES"
echo "results: $RES" >&2
for c in $CONFIGS; do
  for s in $SEEDS; do
    run=$OUT/$c-s$s
    if [ ! -f "$run/summary.json" ]; then
      rm -rf "$run"
      $PNO train --config "configs/$c.toml" --data "$DIR/darcy_train_16.pt" --out "$run" \
        --set "train.seed=$s" --quiet --json > "$run.train.json"
    fi
    e16=$($PNO eval --run "$run" --data "$DIR/darcy_test_16.pt" --samples "$SAMPLES" --json)
    e32=$($PNO eval --run "$run" --data "$DIR/darcy_test_32.pt" --samples "$SAMPLES" --json)
    echo "{$(bench_stamp),\"config\":\"$c\",\"seed\":$s,\"train\":$(cat "$run.train.json"),\"test16\":$e16,\"test32\":$e32}" >> "$RES"
    echo "$c seed $s done" >&2
  done
done
python3 - "$RES" "${PEER_JSON:-}" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = [("test16", "rel_l2"), ("test32", "rel_l2"), ("test16", "crps"), ("test16", "energy_score"),
        ("test16", "coverage_90"), ("test16", "coverage_95"), ("test16", "interval_width_90")]
def ms(v):
    v = [x for x in v if x is not None]
    if not v: return "–"
    if len(v) == 1: return f"{v[0]:.4g}"
    return f"{statistics.mean(v):.4g} ± {statistics.stdev(v):.2g}"
print("| config | seeds | params | train s | rel-L2 @16 | rel-L2 @32 | CRPS @16 | ES @16 | cov 90 @16 | cov 95 @16 | width 90 @16 |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for c in dict.fromkeys(r["config"] for r in rows):
    rs = [r for r in rows if r["config"] == c]
    cells = [ms([r[s].get(k) for r in rs]) for s, k in keys]
    print(f"| {c} | {len(rs)} | {rs[0]['train']['params']:,} | {ms([r['train']['seconds'] for r in rs])} | " + " | ".join(cells) + " |")
if sys.argv[2]:
    peer = json.load(open(sys.argv[2]))
    for name, m in peer.get("models", {}).items():
        t16, t32 = m.get("test16", {}), m.get("test32_superres", m.get("test32", {}))
        print(f"| neuraloperator {name} | 1 | {m.get('n_params') or '–'} | {m.get('train_time_s') and round(m['train_time_s']) or '–'} | "
              f"{ms([t16.get('rel_l2')])} | {ms([t32.get('rel_l2')])} | {ms([t16.get('crps_gaussian')])} | – | "
              f"{ms([t16.get('coverage_90')])} | {ms([t16.get('coverage_95')])} | – |")
PY
