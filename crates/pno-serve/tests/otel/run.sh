#!/usr/bin/env bash
# Traces to a real OTLP receiver: `rotel-agent` (PyPI `rotel`, a real OpenTelemetry agent) on
# 127.0.0.1 receives the spans of a real `pno serve` over http/protobuf and over grpc, set through
# the standard OTEL_EXPORTER_OTLP_* variables; check.py asserts the caller's trace id is
# propagated, every phase span arrives with its attributes, and without an endpoint the phases
# are in the JSON log.
#   bash crates/pno-serve/tests/otel/run.sh [PNO_BINARY]
# Creates (or reuses) a venv under $CARGO_TARGET_DIR/../venv-rotel. Loopback only; about 30 s.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pno-physics-bench/target}"
PNO="${1:-$CARGO_TARGET_DIR/debug/pno}"
[ -x "$PNO" ] || { echo "no pno binary at $PNO (run the tests first)" >&2; exit 1; }
VENV="${ROTEL_VENV:-$(dirname "$CARGO_TARGET_DIR")/venv-rotel}"
AGENT="$VENV/lib/python3.11/site-packages/rotel/rotel-agent"
if ! "$VENV/bin/python" -c "import rotel" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check rotel
fi
AGENT="$("$VENV/bin/python" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')"
"$AGENT" --version
python3 "$HERE/check.py" --pno "$PNO" --agent "$AGENT" --config "$ROOT/configs/darcy16_pno_d.toml"
