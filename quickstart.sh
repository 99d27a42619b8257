#!/usr/bin/env bash
# Build `pno` and run the main job on the built-in default data:
# generate a small seeded Darcy dataset and a Kuramoto–Sivashinsky trajectory set, then run the
# data-quality gate on both and print their summaries.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --locked -p pno-cli
PNO=${CARGO_TARGET_DIR:-target}/release/pno
rm -rf data/quickstart
$PNO generate darcy --config configs/darcy64.toml --n 64 --out data/quickstart/darcy64
$PNO data check data/quickstart/darcy64
$PNO generate ks --config configs/ks256.toml --n 8 --set t_final=40 --out data/quickstart/ks256
$PNO data check data/quickstart/ks256
$PNO data info data/quickstart/darcy64
echo "datasets written to data/quickstart/"
