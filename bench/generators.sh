#!/usr/bin/env bash
# Generator throughput, Rust (compute-only bench and end-to-end `pno generate`) vs the Python reference
# generators `pde_ref` (numpy/scipy, docs/peers.md), one core each, same machine, same run.
#
# usage: bash bench/generators.sh PYTHON PDE_REF   (or PNO_PEER_PYTHON=… PDE_REF=… bash bench/generators.sh)
#   PYTHON: an interpreter with numpy + scipy; PDE_REF: a copy of the peer's pde_ref/ folder (bench.py).
# Prints a Markdown table of seconds/sample and the ratio; writes one JSON line per case, stamped with
# date, commit and machine, to bench/results/<date>-<commit>-generators.jsonl (or $RESULTS); raw
# outputs in $OUT (default /tmp/pno-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
PY=${1:-${PNO_PEER_PYTHON:-}}
PDE_REF=${2:-${PDE_REF:-}}
bench_require_python "$PY" "the Python reference generators (pde_ref/bench.py)" numpy scipy
bench_require_peer_dir "$PDE_REF" "pde_ref" "Pass the pde_ref folder as the second argument or set PDE_REF" bench.py
OUT=${OUT:-/tmp/pno-bench}
rm -rf "$OUT"; mkdir -p "$OUT"
cargo build --release --locked -p pno-cli >&2
PNO=${CARGO_TARGET_DIR:-target}/release/pno

run() {  # name, then pno generate args
  local name=$1; shift
  "$PNO" --json generate "$@" --threads 1 --out "$OUT/data-$name" > "$OUT/rust-$name.json"
  echo "rust cli $name: $("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.5g s/sample" % (1/d["samples_per_second"]))' "$OUT/rust-$name.json")" >&2
  rm -rf "$OUT/data-$name"
}
run darcy64        darcy --resolution 64 --n 400
run darcy421       darcy --resolution 421 --n 6
run darcy_pdebench darcy --config configs/darcy128_pdebench.toml --n 100
run ns64_ci        navier_stokes --config configs/ns64_ci.toml --n 6
run burgers1024    burgers --config configs/burgers1024.toml --n 100
run burgers8192    burgers --config configs/burgers1024.toml --resolution 8192 --n 8
run ks256          ks --config configs/ks256.toml --n 100
run heat64         heat --config configs/heat64.toml --n 2000
run wave64         wave --config configs/wave64.toml --n 2000

# compute only, one thread, no I/O
cargo bench --locked -p pno-solvers --bench generators > "$OUT/rust-compute.jsonl"
cat "$OUT/rust-compute.jsonl" >&2

"$PY" "$PDE_REF/bench.py" --no-checks --repeats 3 --out "$OUT/peer.json" >&2

RESULTS=${RESULTS:-$(bench_results_file generators)}
echo "results: $RESULTS" >&2

"$PY" - "$OUT" "$RESULTS" "{$(bench_stamp)}" <<'PYEOF'
import json, sys
out, results, stamp = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
peer_json = json.load(open(f"{out}/peer.json"))
peer = {r["name"]: r for rows in peer_json["results"].values() for r in rows}
peer_meta = {k: peer_json.get("meta", {}).get(k) for k in ("python", "numpy", "scipy", "cholmod")}
lines = []
cases = [  # rust case, peer rows (the fastest available is the baseline), description
    ("darcy64", ["darcy_fno_64_splu", "darcy_fno_64_cholmod"], "Darcy FNO 64² nodes"),
    ("darcy421", ["darcy_fno_421_splu", "darcy_fno_421_cholmod"], "Darcy FNO 421² nodes"),
    ("darcy_pdebench", ["darcy_pdebench_128_splu"], "Darcy PDEBench 128² cells"),
    ("ns64_ci", ["ns_64_ci_dt1e-3_T10_batch4", "ns_64_ci_dt1e-3_T10_batch1"], "NS 64² ci, dt 1e-3, T 10"),
    ("burgers1024", ["burgers_1024_T1_batch8", "burgers_1024_T1_batch1"], "Burgers 1024, dt 1e-3, T 1"),
    ("burgers8192", ["burgers_8192_T1_batch2"], "Burgers 8192, dt 1e-3, T 1"),
    ("ks256", ["ks_256_L100_T100_batch8", "ks_256_L100_T100_batch1"], "KS 256, L 100, h 0.05, T 100"),
    ("heat64", ["heat_per_64_exact_21frames"], "Heat 64², 21 exact frames"),
    ("wave64", ["wave_per_64_exact_21frames"], "Wave 64², 21 exact frames"),
]
compute = {}
for line in open(f"{out}/rust-compute.jsonl"):
    line = line.strip()
    if line.startswith("{"):
        d = json.loads(line); compute[d["case"]] = d["seconds_per_sample"]
print("| case | Rust compute s/sample (1 thread) | Python s/sample (best row, 1 thread) | ratio | Rust `pno generate --threads 1` end-to-end s/sample | ratio end-to-end |")
print("|---|---|---|---|---|---|")
for key, rows, desc in cases:
    r = json.load(open(f"{out}/rust-{key}.json"))
    e2e = 1.0 / r["samples_per_second"]
    rs = compute.get(key)  # None if the compute bench has no such case
    ps = [(peer[n]["seconds_per_sample"], n) for n in rows if n in peer]
    p, pn = min(ps) if ps else (None, None)
    lines.append(dict(stamp, case=key, description=desc, rust_compute_s_per_sample=rs,
                      rust_end_to_end_s_per_sample=e2e, peer_row=pn, peer_s_per_sample=p,
                      peer=dict(peer_meta, name="pde_ref")))
    rs = float("nan") if rs is None else rs
    if not ps:
        print(f"| {desc} | {rs:.4g} | n/a | n/a | {e2e:.4g} | n/a |"); continue
    print(f"| {desc} | {rs:.4g} | {p:.4g} (`{pn}`) | **{p / rs:.1f}×** | {e2e:.4g} | {p / e2e:.1f}× |")
# the FFTs alone (the `*_fft` cases): their share of the compute time, and the ratio to the peer
# that the solver would reach if all its other work were free
print()
print("| case | FFTs alone s/sample | share of compute | ratio cap (FFTs only) |")
print("|---|---|---|---|")
for line in lines:
    floor = compute.get(line["case"] + "_fft")
    if floor is None or line["rust_compute_s_per_sample"] is None:
        continue
    line["fft_floor_s_per_sample"] = floor
    p = line["peer_s_per_sample"]
    cap = f"{p / floor:.1f}×" if p else "n/a"
    print(f"| {line['description']} | {floor:.4g} | {floor / line['rust_compute_s_per_sample']:.0%} | {cap} |")
with open(results, "w") as f:
    for line in lines:
        f.write(json.dumps(line) + "\n")
PYEOF
