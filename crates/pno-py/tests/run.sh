#!/usr/bin/env bash
# Installs the `pno` Python package into a venv the way a user does (`pip install
# ./crates/pno-py`, through maturin's PEP 517 backend) and runs its tests (called by .ci/run).
#   bash crates/pno-py/tests/run.sh PATH/TO/pno
# Builds with the dev profile into the workspace's target directory (CARGO_TARGET_DIR), so the
# extension reuses the already-built crates (a user's plain `pip install` builds release); the
# venv is cached next to it.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
PNO_BIN="${1:?usage: run.sh PATH/TO/pno}"
VENV="${PNO_PY_VENV:-$HOME/.cache/pno-physics-bench/venv-py}"
if [ ! -x "$VENV/bin/maturin" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "maturin>=1.9,<2" numpy pytest scoringrules properscoring matplotlib
fi
"$VENV/bin/pip" install -q --force-reinstall --no-deps "$HERE" \
  --config-settings=build-args="--profile dev --locked"
cd "$HERE/tests"
PNO_BIN="$(realpath "$PNO_BIN")" "$VENV/bin/python" -m pytest -q -p no:cacheprovider .
