#!/usr/bin/env bash
# The real-client integration test: the unmodified PyPI `tritonclient[http]` (sync and asyncio)
# and the Python peer's unchanged smoke.py against a real `pno serve` on 127.0.0.1, then the
# same client over HTTPS (native TLS, a test CA made with openssl).
#   bash crates/pno-serve/tests/tritonclient/run.sh [PNO_BINARY]
# Creates (or reuses) a venv under $CARGO_TARGET_DIR/../venv-tritonclient, trains a tiny 64² PNO_D
# (1 epoch, seconds), serves it as model `pno` version 1 with anonymous readers and an operator
# key, runs check.py and smoke.py, then SIGTERMs the server and expects exit 0 and an audit log
# that verifies. Exit status non-zero on any failure.
# Environment: PNO_PEER_SMOKE=/path/to/smoke.py (default: peer_smoke.py beside this script, an
# unchanged copy of the Python peer server's protocol smoke test, docs/peers.md); PNO_REQUIRE_PEER_SMOKE=1 makes a missing smoke.py a failure (otherwise it is
# reported as SKIPPED); a smoke.py that is found but fails a check or runs none always fails the
# run; TRITON_VENV=/path/to/venv.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pno-physics-bench/target}"
PNO="${1:-$CARGO_TARGET_DIR/debug/pno}"
[ -x "$PNO" ] || { echo "no pno binary at $PNO (run the tests first)" >&2; exit 1; }
SMOKE="${PNO_PEER_SMOKE:-$HERE/peer_smoke.py}"
if [ ! -f "$SMOKE" ] && [ "${PNO_REQUIRE_PEER_SMOKE:-0}" = "1" ]; then
  echo "peer smoke.py: SKIPPED (not found at $SMOKE; set PNO_PEER_SMOKE=path)" >&2
  echo "peer smoke.py is required (PNO_REQUIRE_PEER_SMOKE=1): failing" >&2
  exit 1
fi
VENV="${TRITON_VENV:-$(dirname "$CARGO_TARGET_DIR")/venv-tritonclient}"
if ! "$VENV/bin/python" -c "import tritonclient.http, tritonclient.http.aio, numpy" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "tritonclient[http]" numpy
fi
"$VENV/bin/python" -c "import importlib.metadata as m; print('tritonclient', m.version('tritonclient'), 'numpy', m.version('numpy'))"

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then kill "$SERVER_PID"; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

"$PNO" generate darcy --resolution 64 --n 10 --seed 1 --out "$WORK/d64" --quiet
mkdir -p "$WORK/repo/pno"
"$PNO" train --config "$ROOT/configs/darcy64_pno_d.toml" --data "$WORK/d64" --out "$WORK/repo/pno/1" --quiet \
  --set train.epochs=1 --set data.n_train=6 --set data.n_test=2 --set train.batch_size=3 \
  --set model.hidden_channels=8 --set model.lifting_channels=8 --set model.projection_channels=8 \
  --set model.n_layers=2 --set model.n_modes=[6,6]
KEY="$("$PNO" keys create --role operator --keys "$WORK/keys.json" 2>/dev/null)"
cat > "$WORK/serve.toml" <<TOML
listen = "127.0.0.1:0"
repository = "$WORK/repo"
keys = "$WORK/keys.json"
anonymous = "reader"
[audit]
path = "$WORK/audit.log"
fsync = "batch"
[limits]
max_concurrency = 2
TOML
# start_server CONFIG SCHEME: run `pno serve`, set SERVER_PID and ADDR (HOST:PORT).
start_server() {
  "$PNO" serve --config "$1" > "$WORK/stdout" 2> "$WORK/server.log" &
  SERVER_PID=$!
  for _ in $(seq 1 300); do
    grep -q "listening on" "$WORK/stdout" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
    sleep 0.1
  done
  ADDR="$(sed -n "s#.*listening on $2://##p" "$WORK/stdout" | head -1)"
  [ -n "$ADDR" ] || { echo "server did not start ($2)" >&2; cat "$WORK/stdout" "$WORK/server.log" >&2; exit 1; }
  echo "pno serve on $2://$ADDR"
}
start_server "$WORK/serve.toml" http

fails=0
"$VENV/bin/python" "$HERE/check.py" "$ADDR" "$KEY" pno || fails=$((fails + 1))
if [ -f "$SMOKE" ]; then
  echo "== peer smoke.py (unchanged) against pno serve: $SMOKE"
  smoke_rc=0
  python3 "$SMOKE" --base "http://$ADDR" --model pno > "$WORK/smoke.out" 2>&1 || smoke_rc=$?
  cat "$WORK/smoke.out"
  smoke_ok="$(grep -c '^ok ' "$WORK/smoke.out" || true)"
  smoke_fail="$(grep -c '^FAIL ' "$WORK/smoke.out" || true)"
  smoke_total=$((smoke_ok + smoke_fail))
  if [ "$smoke_rc" -eq 0 ] && [ "$smoke_fail" -eq 0 ] && [ "$smoke_total" -gt 0 ]; then
    echo "peer smoke.py: RAN ($smoke_ok/$smoke_total passed)"
  elif [ "$smoke_total" -eq 0 ]; then
    echo "peer smoke.py: FAILED (exit $smoke_rc, no checks ran: $SMOKE)" >&2
    fails=$((fails + 1))
  else
    echo "peer smoke.py: RAN ($smoke_ok/$smoke_total passed, exit $smoke_rc)" >&2
    fails=$((fails + 1))
  fi
else
  echo "peer smoke.py: SKIPPED (not found at $SMOKE; set PNO_PEER_SMOKE=path)"
fi

kill -TERM "$SERVER_PID"
rc=0; wait "$SERVER_PID" || rc=$?
SERVER_PID=""
if [ "$rc" -ne 0 ]; then echo "pno serve exited $rc after SIGTERM" >&2; tail -20 "$WORK/server.log" >&2; fails=$((fails + 1)); fi
grep -q 'draining' "$WORK/server.log" || { echo "no drain in the server log" >&2; fails=$((fails + 1)); }
"$PNO" audit verify "$WORK/audit.log" || fails=$((fails + 1))

# The same model over HTTPS: native TLS with a test CA made here (ECDSA P-256, openssl).
echo "== tritonclient over HTTPS"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$WORK/ca.key" -out "$WORK/ca.pem" -subj /CN=pno-test-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$WORK/server.key" -out "$WORK/server.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > "$WORK/server.ext"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
  -days 2 -extfile "$WORK/server.ext" -out "$WORK/server.pem" 2>/dev/null
cat > "$WORK/serve-tls.toml" <<TOML
listen = "127.0.0.1:0"
repository = "$WORK/repo"
anonymous = "reader"
[limits]
max_concurrency = 2
[tls]
cert = "$WORK/server.pem"
key = "$WORK/server.key"
TOML
start_server "$WORK/serve-tls.toml" https
"$VENV/bin/python" "$HERE/tls_check.py" "$ADDR" "$WORK/ca.pem" pno || fails=$((fails + 1))
kill -TERM "$SERVER_PID"
rc=0; wait "$SERVER_PID" || rc=$?
SERVER_PID=""
if [ "$rc" -ne 0 ]; then echo "pno serve (TLS) exited $rc after SIGTERM" >&2; tail -20 "$WORK/server.log" >&2; fails=$((fails + 1)); fi
if [ "$fails" -ne 0 ]; then
  echo "tritonclient integration: $fails failing part(s)" >&2
  tail -30 "$WORK/server.log" >&2
  exit 1
fi
echo "tritonclient integration: passed"
