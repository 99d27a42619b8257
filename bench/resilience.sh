# Shared setup of bench/chaos.sh and bench/overload.sh (sourced, not run): the dev builds
# (`pno` with fault injection, `pno-load`), a tiny 32² PNO_D trained for one epoch and copied
# into two models `a/1` and `b/1`, an admin key, the request body, and server start/stop.
# Loopback only. Needs bench/lib.sh sourced first.

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pno-physics-bench/target}
# Dev profile on purpose (dependencies are optimised there; a release build of burn takes 15+ min
# on this 2-core machine). The fault-injection feature adds PUT /v2/debug/faults. The target
# folder is shared with other builds, which may rebuild debug/pno without that feature at any
# time: res_build BINDIR copies both binaries to BINDIR at once, and res_has_faults checks the
# running server has the route.
res_build() {
  local bin=$1
  mkdir -p "$bin"
  if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build -q -p pno-cli --features pno-serve/fault-injection
    cp "$CARGO_TARGET_DIR/debug/pno" "$bin/pno"
    cargo build -q -p pno-load
    cp "$CARGO_TARGET_DIR/debug/pno-load" "$bin/pno-load"
  else
    cp "${PNO:-$CARGO_TARGET_DIR/debug/pno}" "$bin/pno"
    cp "${LOAD:-$CARGO_TARGET_DIR/debug/pno-load}" "$bin/pno-load"
  fi
  PNO=$bin/pno
  LOAD=$bin/pno-load
}

# res_has_faults URL: whether the server answers GET /v2/debug/faults (fault-injection build).
res_has_faults() {
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ADMIN_KEY" "$1/v2/debug/faults")" = 200 ]
}

# A results file bench/results/<date>-<commit>-WHAT.json (-2, -3, … when taken).
res_results_file() {
  local p
  p=$(bench_results_file "$1")
  echo "${p%.jsonl}.json"
}

# res_setup WORK: data, model, repository WORK/repo/{a,b}/1, keys WORK/keys.json ($ADMIN_KEY),
# body WORK/body.json. The model is cached in $RES_CACHE across runs.
res_setup() {
  local work=$1
  RES_CACHE=${RES_CACHE:-$(dirname "$CARGO_TARGET_DIR")/bench-resilience}
  mkdir -p "$RES_CACHE" "$work/repo/a" "$work/repo/b"
  if [ ! -f "$RES_CACHE/run/model.json" ]; then
    rm -rf "$RES_CACHE/run" "$RES_CACHE/d32"
    "$PNO" generate darcy --resolution 32 --n 12 --seed 1 --out "$RES_CACHE/d32" --quiet
    "$PNO" train --config configs/darcy16_pno_d.toml --data "$RES_CACHE/d32" --out "$RES_CACHE/run" --quiet \
      --set train.epochs=1 --set data.n_train=8 --set data.n_test=2 --set train.batch_size=4 \
      --set model.hidden_channels=16 --set model.n_modes=[8,8] --set model.n_layers=2 \
      --set model.lifting_channels=16 --set model.projection_channels=32
  fi
  cp -r "$RES_CACHE/run" "$work/repo/a/1"
  cp -r "$RES_CACHE/run" "$work/repo/b/1"
  ADMIN_KEY=$("$PNO" keys create --role admin --keys "$work/keys.json" 2>/dev/null | tail -1)
  python3 bench/resilience.py body "$work/body.json" --n-samples 32 --res 32
}

# A free loopback port.
res_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# res_config WORK PORT EXTRA_TOML > file: the common server config.
res_config() {
  local work=$1 port=$2
  cat <<TOML
listen = "127.0.0.1:$port"
repository = "$work/repo"
keys = "$work/keys.json"
[rate_limit]
per_key_rps = 100000.0
per_key_burst = 100000
per_ip_rps = 100000.0
per_ip_burst = 100000
TOML
}

RES_PIDS=()
res_stop_all() {
  local p
  for p in "${RES_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${RES_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  RES_PIDS=()
}

# res_start CONFIG LOG URL: start pno serve and wait (≤ 60 s) until it is ready.
res_start() {
  local cfg=$1 log=$2 url=$3 pid
  RUST_LOG=warn "$PNO" serve --config "$cfg" >/dev/null 2>"$log" &
  pid=$!
  RES_PIDS+=("$pid")
  for _ in $(seq 1 300); do
    curl -sf "$url/v2/health/ready" >/dev/null 2>&1 && { SERVER_PID=$pid; return 0; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  echo "error: pno serve did not start; its log:" >&2
  tail -20 "$log" >&2
  return 1
}

# res_stop PID: SIGTERM one server and wait for it.
res_stop() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# res_idle URL: wait (≤ 30 s) until nothing is queued or computing.
res_idle() {
  local m
  for _ in $(seq 1 60); do
    m=$(curl -sf -H "Authorization: Bearer $ADMIN_KEY" "$1/metrics" || true)
    if echo "$m" | grep -q '^pno_inference_pending_request_count 0$' &&
       echo "$m" | grep -q '^pno_inference_running_count 0$'; then return 0; fi
    sleep 0.5
  done
}

# res_goodput SUMMARY: 2xx per second from a pno-load summary.
res_goodput() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["goodput_rps"])' "$1"; }
