#!/usr/bin/env bash
# Builds the `pno` Python package into a venv and runs its tests (called by .ci/run).
#   bash crates/pno-py/tests/run.sh PATH/TO/pno
# Reuses the workspace's target directory (CARGO_TARGET_DIR) and the dev profile, so the
# extension links the already-built crates; the venv is cached next to it.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
PNO_BIN="${1:?usage: run.sh PATH/TO/pno}"
VENV="${PNO_PY_VENV:-$HOME/.cache/pno-physics-bench/venv-py}"
if [ ! -x "$VENV/bin/maturin" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "maturin>=1.9,<2" numpy pytest scoringrules properscoring matplotlib
fi
dist=$(mktemp -d)
trap 'rm -rf "$dist"' EXIT
(cd "$HERE" && "$VENV/bin/maturin" build --profile dev --locked -q -o "$dist" -i "$VENV/bin/python")
"$VENV/bin/pip" install -q --force-reinstall --no-deps "$dist"/pno-*.whl
cd "$HERE/tests"
PNO_BIN="$(realpath "$PNO_BIN")" "$VENV/bin/python" -m pytest -q -p no:cacheprovider .
