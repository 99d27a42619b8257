#!/usr/bin/env bash
# Build `pno` and run the main job on built-in default data: the smoke suite generates small seeded
# Darcy (32²) and Kuramoto–Sivashinsky datasets, runs the data-quality gate on them, trains FNO,
# MC dropout and PNO_D with two seeds each, calibrates PNO_D with split-conformal prediction,
# evaluates every run on its held-out test split (KS: also a 3-window rollout) and writes the
# report to reports/smoke/ (index.html, tables.md, tables.tex, results.csv/json, plots).
# A few minutes after the first build (the first release build of burn takes ~20 minutes on
# 2 cores). Rerunning continues an interrupted suite; remove reports/smoke to start over.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --locked -p pno-cli
PNO=${CARGO_TARGET_DIR:-target}/release/pno
$PNO bench --suite configs/suite_smoke.toml --out reports/smoke
echo "report: reports/smoke/index.html"
