#!/usr/bin/env bash
# Build `pno` and run the main job on built-in default data: generate a small seeded Darcy
# dataset (and a Kuramoto–Sivashinsky trajectory set), run the data-quality gate, train a
# probabilistic neural operator (PNO_D) on it, and evaluate its accuracy and calibration on the
# held-out test split. Takes a few minutes after the first build (the first release build of
# burn takes ~20 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --locked -p pno-cli
PNO=${CARGO_TARGET_DIR:-target}/release/pno
rm -rf data/quickstart runs/quickstart
$PNO generate darcy --config configs/darcy64.toml --n 96 --out data/quickstart/darcy64
$PNO data check data/quickstart/darcy64
$PNO generate ks --config configs/ks256.toml --n 8 --set t_final=40 --out data/quickstart/ks256
$PNO data check data/quickstart/ks256
$PNO data info data/quickstart/darcy64
$PNO train --config configs/darcy64_pno_d.toml --data data/quickstart/darcy64 --out runs/quickstart/pno_d \
  --set data.n_train=72 --set data.n_test=16 --set train.epochs=15
$PNO eval --run runs/quickstart/pno_d --data data/quickstart/darcy64 --split test --samples 32
echo "datasets in data/quickstart/, the trained run in runs/quickstart/pno_d/"
