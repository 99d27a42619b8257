#!/usr/bin/env bash
# A robustness tour of `pno serve`: starts a local server on 127.0.0.1 (a free port) and shows
# each defence acting, step by step — what was sent (the curl command, abbreviated) and what came
# back (status, Retry-After, the JSON body or its relevant fields). Every step checks what it
# shows, so the tour doubles as a smoke test: it exits non-zero if a step did not show what it
# should. See docs/robustness-tour.md.
#
#   bash scripts/tour.sh
#
# Environment:
#   PNO, PNO_LOAD      the `pno` and `pno-load` binaries; unset: built here in the dev profile
#   CARGO_TARGET_DIR   where to build them (default ~/.cache/pno-physics-bench/target)
#   TOUR_KEEP=1        keep the temp dir (server log, audit log, load timeline) for a look
#   TOUR_RATE=N        arrivals per second of the overload in step 6 (default 100)
#
# Needs bash, curl and python3 (standard library only) besides the binaries. Bounded in time:
# every curl has --max-time, the load runs 5 s, the whole tour takes about a minute or two after
# the build.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
T0=$SECONDS

# ---------------------------------------------------------------------------------------------
# Output and checks

if [[ -t 1 ]]; then B=$'\e[1m'; G=$'\e[32m'; R=$'\e[31m'; D=$'\e[2m'; N=$'\e[0m'; else B= G= R= D= N=; fi
FAILED=()
STEP=""

step() { STEP="$1"; printf '\n%s== step %s ==%s\n' "$B" "$1" "$N"; }
note() { printf '%s   %s%s\n' "$D" "$*" "$N"; }
ok() { printf '   %s✓ %s%s\n' "$G" "$*" "$N"; }
bad() {
    printf '   %s✗ %s%s\n' "$R" "$*" "$N"
    FAILED+=("step $STEP: $*")
}
die() { printf '%serror: %s%s\n' "$R" "$*" "$N" >&2; exit 1; }

# check DESCRIPTION EXPECTED GOT
check() {
    if [[ "$2" == "$3" ]]; then ok "$1: $3"; else bad "$1: expected $2, got ${3:-<nothing>}"; fi
}

# ---------------------------------------------------------------------------------------------
# Binaries

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pno-physics-bench/target}
if [[ -z "${PNO:-}" || -z "${PNO_LOAD:-}" ]]; then
    printf '%sbuilding pno and pno-load (dev profile) in %s (minutes on a fresh target dir)%s\n' "$B" "$CARGO_TARGET_DIR" "$N"
    build_out=$(cd "$ROOT" && cargo build -q -p pno-cli -p pno-load 2>&1) || { printf '%s\n' "$build_out"; die "cargo build failed"; }
    PNO=${PNO:-$CARGO_TARGET_DIR/debug/pno}
    PNO_LOAD=${PNO_LOAD:-$CARGO_TARGET_DIR/debug/pno-load}
fi
[[ -x "$PNO" ]] || die "PNO=$PNO is not an executable"
[[ -x "$PNO_LOAD" ]] || die "PNO_LOAD=$PNO_LOAD is not an executable"
for t in curl python3; do command -v "$t" >/dev/null || die "$t is needed"; done

# ---------------------------------------------------------------------------------------------
# Temp dir, server, cleanup

T=$(mktemp -d "${TMPDIR:-/tmp}/pno-tour.XXXXXX")
SERVER_PID=""
LOAD_PID=""
SLOW_PID=""
cleanup() {
    local rc=$?
    for p in $SLOW_PID $LOAD_PID $SERVER_PID; do
        kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    if [[ -n "${TOUR_KEEP:-}" ]]; then echo "kept $T"; else rm -rf "$T"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$T" || die "no temp dir"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"

# start_server CONFIG: start `pno serve` and wait (≤ 30 s) until it is live.
start_server() {
    "$PNO" serve --config "$1" >>server.log 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 300); do
        curl -s -o /dev/null --max-time 1 "$URL/v2/health/live" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 server.log; die "pno serve exited at start"; }
        sleep 0.1
    done
    tail -20 server.log
    die "pno serve did not come up within 30 s"
}

# ---------------------------------------------------------------------------------------------
# HTTP: req METHOD PATH KEY [BODY_FILE] — sends, prints the abbreviated command and the answer;
# sets STATUS, RETRY (Retry-After), SECS (time taken) and leaves the body in body.json.

KEY_NAMES=()
abbrev_key() { [[ -n "$1" ]] && printf '%s…' "${1:0:8}"; }

req() {
    local method=$1 path=$2 key=$3 body=${4:-}
    local args=(-s -X "$method" --max-time 15 -D headers.txt -o body.json -w '%{http_code} %{time_total}')
    local shown="curl -X $method $path"
    if [[ -n "$key" ]]; then
        args+=(-H "Authorization: Bearer $key")
        shown+=" -H 'Authorization: Bearer $(abbrev_key "$key")'"
    fi
    if [[ -n "$body" ]]; then
        args+=(-H 'Content-Type: application/json' --data-binary "@$body")
        shown+=" -d @$(basename "$body")"
    fi
    local out
    out=$(curl "${args[@]}" "$URL$path") || true
    STATUS=${out%% *}
    SECS=${out##* }
    RETRY=$(tr -d '\r' <headers.txt 2>/dev/null | awk 'tolower($1)=="retry-after:" {print $2}')
    [[ -f body.json ]] || : >body.json
    printf '   → %s\n' "$shown"
    printf '   ← %s%s%s (%s s)%s\n' "$B" "$STATUS" "$N" "$SECS" "${RETRY:+  Retry-After: $RETRY}"
}

# show [FIELDS…]: print the JSON body (tensor data abbreviated), or only the named dotted fields.
show() {
    python3 - "$@" <<'EOF'
import json, sys
try:
    body = json.load(open("body.json"))
except Exception:
    raw = open("body.json", "rb").read()[:300]
    print("     " + (raw.decode("utf-8", "replace") or "<empty body>"))
    sys.exit(0)
def squash(v):
    if isinstance(v, dict):
        return {k: (f"<{len(x)} values, {min(x):.3g}..{max(x):.3g}>" if k == "data" and isinstance(x, list) and x and all(isinstance(y, (int, float)) for y in x) else squash(x)) for k, x in v.items()}
    if isinstance(v, list):
        return [squash(x) for x in v]
    return v
def get(v, path):
    for p in path.split("."):
        if isinstance(v, list):
            v = v[int(p)]
        else:
            v = v.get(p) if isinstance(v, dict) else None
    return v
if len(sys.argv) > 1:
    for f in sys.argv[1:]:
        print(f"     {f} = {json.dumps(get(body, f))}")
else:
    s = json.dumps(squash(body))
    print("     " + (s if len(s) <= 600 else s[:600] + " …"))
EOF
}

# field PATH: one dotted field of body.json, as compact JSON text without quotes for strings.
field() {
    python3 - "$1" <<'EOF'
import json, sys
try:
    v = json.load(open("body.json"))
    for p in sys.argv[1].split("."):
        v = v[int(p)] if isinstance(v, list) else v.get(p)
except Exception:
    v = None
print("" if v is None else v if isinstance(v, str) else json.dumps(v))
EOF
}

expect_status() { check "status" "$1" "$STATUS"; }
expect_field() { check "$1" "$2" "$(field "$1")"; }
expect_retry_after() {
    if [[ "$RETRY" =~ ^[0-9]+$ ]]; then ok "Retry-After: $RETRY"; else bad "expected a Retry-After header, got ${RETRY:-none}"; fi
}

# A 1×1×32×32 OIP v2 request: infer_body FILE N_SAMPLES [EXTRA_PARAMS_JSON] [BATCH]
infer_body() {
    python3 - "$@" <<'EOF'
import json, math, sys
out, n = sys.argv[1], int(sys.argv[2])
extra = json.loads(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] else {}
batch = int(sys.argv[4]) if len(sys.argv) > 4 else 1
x = [round(math.sin(0.013 * i), 5) for i in range(batch * 32 * 32)]
body = {
    "id": "tour",
    "parameters": {"n_samples": n, "seed": 1, **extra},
    "inputs": [{"name": "x", "shape": [batch, 1, 32, 32], "datatype": "FP32", "data": x}],
    "outputs": [{"name": "mean"}, {"name": "std"}],
}
json.dump(body, open(out, "w"))
EOF
}

# ---------------------------------------------------------------------------------------------
printf '%sSetting up in %s%s\n' "$B" "$T" "$N"

note "pno generate darcy --resolution 32 --n 24 --seed 1 --out D --quiet"
"$PNO" generate darcy --resolution 32 --n 24 --seed 1 --out D --quiet || die "pno generate failed"
note "pno train --config configs/darcy64_pno_d.toml --data D --out RUN --quiet (1 epoch, a tiny model)"
"$PNO" train --config "$ROOT/configs/darcy64_pno_d.toml" --data D --out RUN --quiet \
    --set train.epochs=1 --set data.n_train=16 --set data.n_test=4 --set train.batch_size=8 \
    --set model.hidden_channels=8 --set model.lifting_channels=8 --set model.projection_channels=8 \
    --set 'model.n_modes=[4,4]' --set model.n_layers=2 || die "pno train failed"
mkdir -p REPO/pno && cp -r RUN REPO/pno/1

# new_key ROLE: create a key, print only the key (keys print once).
new_key() {
    "$PNO" keys create --role "$1" --keys keys.json 2>/dev/null | python3 -c '
import re, sys
text = sys.stdin.read()
m = re.search(r"pno_[A-Za-z0-9_-]{16,}", text) or re.search(r"\b[A-Za-z0-9_-]{24,}\b", text)
print(m.group(0) if m else "")'
}
K_ADMIN=$(new_key admin)
K_READ=$(new_key reader)
K_B=$(new_key reader)
K_LOAD=$(new_key reader)
[[ -n "$K_ADMIN" && -n "$K_READ" && -n "$K_B" && -n "$K_LOAD" ]] || die "could not read the keys printed by 'pno keys create'"
note "keys: admin $(abbrev_key "$K_ADMIN"), readers $(abbrev_key "$K_READ") $(abbrev_key "$K_B") $(abbrev_key "$K_LOAD") (in keys.json, hashed)"

# write_config FILE PER_KEY_RPS PER_KEY_BURST
write_config() {
    cat >"$1" <<EOF
listen = "127.0.0.1:$PORT"
repository = "REPO"
keys = "keys.json"
anonymous = "none"
fallback = "previous"
[limits]
max_concurrency = 2
max_queue = 4
request_timeout_ms = 10000
[bulkhead]
max_concurrency = 1
max_queue = 2
[breaker]
window = 10
min_calls = 4
consecutive_failures = 3
open_ms = 3000
half_open_calls = 2
[degrade]
enabled = true
queue_fraction = 0.5
min_samples = 4
[rate_limit]
per_key_rps = $2
per_key_burst = $3
max_auth_failures = 3
auth_failure_window_s = 60
lockout_s = 5
[audit]
path = "audit.log"
fsync = "always"
[models.pno]
version_policy = "all"
EOF
}
write_config serve.toml 5.0 10
note "serve.toml: per-key 5 req/s (burst 10), lockout after 3 bad keys for 5 s, bulkhead 1 running + 2 queued,"
note "breaker opens after 3 failures in a row for 3 s, degrade at a half-full queue, fallback = previous"
start_server serve.toml
note "pno serve --config serve.toml  (pid $SERVER_PID, $URL)"
infer_body good.json 16

# ---------------------------------------------------------------------------------------------
step "1: health, readiness and one good inference"
req GET /v2/health/live ""
expect_status 200
req GET /v2/health/ready ""
expect_status 200
req POST /v2/models/pno/infer "$K_READ" good.json
expect_status 200
show model_name model_version parameters outputs.0.name outputs.0.shape outputs.1.name
expect_field parameters.n_samples 16

# ---------------------------------------------------------------------------------------------
step "2a: lockout after failed authentication"
for i in 1 2 3; do
    req GET /v2/models/pno "not-a-key-$i"
    expect_status 401
    show error
done
note "the good key from the same address is now refused too:"
req GET /v2/models/pno "$K_READ"
expect_status 429
expect_retry_after
show error
wait_s=${RETRY:-5}
[[ "$wait_s" =~ ^[0-9]+$ ]] || wait_s=5
note "waiting out the lockout (Retry-After: ${wait_s} s)…"
sleep "$wait_s"
req GET /v2/models/pno "$K_READ"
if [[ "$STATUS" == 429 ]]; then
    # A client that honours Retry-After must not be refused again.
    bad "after waiting Retry-After ($wait_s s) the good key is still locked out (429, Retry-After ${RETRY:-none}): the lockout's Retry-After rounds the time left down"
    sleep "${RETRY:-1}"
    req GET /v2/models/pno "$K_READ"
fi
expect_status 200
show name versions

step "2b: rate limit per API key (5/s, burst 10): 15 quick requests"
codes=()
first_429=""
for i in $(seq 15); do
    code=$(curl -s -o body.json -D headers.txt --max-time 5 -w '%{http_code}' \
        -H "Authorization: Bearer $K_READ" "$URL/v2/models/pno")
    codes+=("$code")
    if [[ "$code" == 429 && -z "$first_429" ]]; then
        first_429=$(tr -d '\r' <headers.txt | awk 'tolower($1)=="retry-after:" {print $2}')
        cp body.json first429.json
    fi
done
printf '   → 15 × curl %s/v2/models/pno -H '"'"'Authorization: Bearer %s'"'"'\n' "" "$(abbrev_key "$K_READ")"
printf '   ← %s\n' "${codes[*]}"
n429=$(printf '%s\n' "${codes[@]}" | grep -c '^429$')
if ((n429 > 0)); then ok "$n429 of 15 refused with 429"; else bad "expected some 429 in a burst of 15, got none"; fi
if [[ "$first_429" =~ ^[0-9]+$ ]]; then ok "Retry-After on the first 429: $first_429"; else bad "expected Retry-After on a 429, got ${first_429:-none}"; fi
[[ -f first429.json ]] && cp first429.json body.json && show error

# ---------------------------------------------------------------------------------------------
step "3: a broken version trips its circuit breaker"
python3 "$ROOT/scripts/break_run.py" RUN broken >/dev/null || die "break_run.py failed"
mv broken REPO/pno/2
note "python3 scripts/break_run.py RUN REPO/pno/2   (weights ×1e30: finite, but every forward pass overflows)"
echo '{"parameters": {"version": 2}}' >load2.json
req POST /v2/repository/models/pno/load "$K_ADMIN" load2.json
expect_status 200
show
for i in 1 2 3; do
    req POST /v2/models/pno/versions/2/infer "$K_B" good.json
    expect_status 500
    expect_field class persistent
    show error
done
note "the breaker is open now: refused at once, without computing"
req POST /v2/models/pno/versions/2/infer "$K_B" good.json
expect_status 503
expect_field breaker open
expect_retry_after
show error
if python3 -c "import sys; sys.exit(0 if float('$SECS') < 0.5 else 1)"; then ok "answered in $SECS s"; else bad "expected a fast refusal (< 0.5 s), took $SECS s"; fi
req GET /v2/models/pno/versions/2/stats "$K_ADMIN"
expect_status 200
show model_stats.0.version model_stats.0.breaker
expect_field model_stats.0.breaker.state open
printf '   → curl %s/metrics | grep pno_breaker_state\n' ""
curl -s --max-time 5 -H "Authorization: Bearer $K_ADMIN" "$URL/metrics" | grep '^pno_breaker_state' >metrics.txt
sed 's/^/     /' metrics.txt
if grep -q 'version="2"' metrics.txt; then ok "pno_breaker_state has a series for version 2"; else bad "expected a pno_breaker_state line for version 2 in /metrics"; fi

# ---------------------------------------------------------------------------------------------
step "4: an unpinned request falls back to the previous version"
req POST /v2/models/pno/infer "$K_B" good.json
expect_status 200
show model_version parameters
expect_field model_version 1
expect_field parameters.fallback_from 2

# ---------------------------------------------------------------------------------------------
step "5: the breaker closes once the version is replaced"
rm -rf REPO/pno/2 && cp -r RUN REPO/pno/.2.new && mv REPO/pno/.2.new REPO/pno/2
note "cp -r RUN REPO/pno/2   (the good weights replace the broken ones)"
req POST /v2/repository/models/pno/load "$K_ADMIN" load2.json
expect_status 200
req GET /v2/models/pno/versions/2/stats "$K_ADMIN"
show model_stats.0.breaker.state
expect_field model_stats.0.breaker.state closed
req POST /v2/models/pno/versions/2/infer "$K_B" good.json
expect_status 200
show model_version parameters
expect_field model_version 2

# ---------------------------------------------------------------------------------------------
step "6: degraded answers and shedding under overload"
note "restarting the server with the per-key limit lifted (1000/s), or step 2's 5/s would turn the load into 429s"
kill -TERM "$SERVER_PID"; wait "$SERVER_PID"; SERVER_PID=""
write_config serve-load.toml 1000.0 1000
start_server serve-load.toml
infer_body load.json 64
infer_body strict.json 64 '{"degrade": false}'
RATE=${TOUR_RATE:-100}
printf '   → pno-load --url %s/v2/models/pno/infer --body load.json (n_samples 64) --rate %s --duration 5 --out timeline.jsonl --summary summary.json\n' "" "$RATE"
"$PNO_LOAD" --url "$URL/v2/models/pno/infer" --body load.json --header "Authorization: Bearer $K_LOAD" \
    --rate "$RATE" --duration 5 --timeout-ms 15000 --out timeline.jsonl --summary summary.json >load.out 2>&1 &
LOAD_PID=$!
sleep 1.5
note "meanwhile, a request that refuses to be degraded (sent until the queue is past its threshold):"
for _ in $(seq 1 20); do
  req POST /v2/models/pno/infer "$K_B" strict.json
  [[ $STATUS == 503 ]] && break
  note "  (answered $STATUS: the queue was below the threshold at that moment; again)"
  sleep 0.15
done
expect_status 503
show error class
wait "$LOAD_PID"; load_rc=$?; LOAD_PID=""
[[ $load_rc == 0 ]] || { cat load.out; bad "pno-load exited with $load_rc"; }
python3 - <<'EOF' >load.txt
import json
s = json.load(open("summary.json"))
print(f"     scheduled {s['scheduled']}, succeeded {s['succeeded']}, degraded {s['degraded']}, failed {s['failed']}, by status {json.dumps(s['failed_by_status'])}")
deg = n503 = n503_retry = 0
samples = set()
example = None
for line in open("timeline.jsonl"):
    r = json.loads(line)
    if r.get("degraded"):
        deg += 1
        samples.add(r.get("n_samples"))
        example = example or r
    if r.get("status") == 503:
        n503 += 1
        n503_retry += r.get("retry_after") is not None
print(f"     timeline: {deg} lines with \"degraded\": true (n_samples {sorted(samples)}), {n503} × 503 of which {n503_retry} with Retry-After")
if example:
    print("     e.g. " + json.dumps({k: example[k] for k in ("id", "status", "degraded", "n_samples", "latency_ms")}))
print(f"RESULT {s['degraded']} {','.join(map(str, sorted(samples)))} {n503} {n503_retry}")
EOF
grep -v '^RESULT' load.txt
read -r _ n_deg deg_samples n503 n503_retry < <(grep '^RESULT' load.txt)
if ((${n_deg:-0} > 0)); then ok "degraded answers: $n_deg"; else bad "expected degraded > 0 in the summary at $RATE req/s, got ${n_deg:-none}"; fi
check "n_samples of the degraded answers" 4 "${deg_samples:-}"
if ((${n503:-0} > 0 && ${n503_retry:-0} == ${n503:-0})); then
    ok "shed: $n503 × 503, all with Retry-After"
else
    bad "expected some 503 with Retry-After when the queue is full, got ${n503:-0} × 503 (${n503_retry:-0} with Retry-After)"
fi

# ---------------------------------------------------------------------------------------------
step "7: draining on SIGTERM"
infer_body slow.json 256 '{"degrade": false}' 16
note "a slow request (16 inputs × 256 draws) in flight, then SIGTERM:"
printf '   → curl -X POST /v2/models/pno/infer -d @slow.json &   (in the background)\n'
t_start=$(date +%s.%N)
curl -s -o slow-body.json --max-time 15 -w '%{http_code} %{time_total}' -H "Authorization: Bearer $K_B" \
    -H 'Content-Type: application/json' --data-binary @slow.json "$URL/v2/models/pno/infer" >slow-code.txt &
SLOW_PID=$!
# Wait (≤ 3 s) until the server counts it in flight (the /metrics request itself is the other one).
for _ in $(seq 30); do
    inflight=$(curl -s --max-time 2 -H "Authorization: Bearer $K_ADMIN" "$URL/metrics" |
        awk '$1 ~ /^pno_http_in_flight_requests/ {print $2}')
    ((${inflight:-0} >= 2)) && break
    sleep 0.1
done
note "pno_http_in_flight_requests ${inflight:-?} (the slow request and this /metrics request)"
printf '   → kill -TERM %s\n' "$SERVER_PID"
kill -TERM "$SERVER_PID"
t_term=$(python3 -c "print(round($(date +%s.%N) - $t_start, 3))")
sleep 0.3
req POST /v2/models/pno/infer "$K_B" good.json
if [[ "$STATUS" == 503 || "$STATUS" == 000 ]]; then
    ok "a new request is refused: $([[ $STATUS == 000 ]] && echo 'connection refused' || echo 503)"
else
    bad "expected 503 or connection refused for a request after SIGTERM, got $STATUS"
fi
wait "$SLOW_PID"; SLOW_PID=""
read -r slow slow_s <slow-code.txt
printf '   ← the in-flight request: %s after %s s (SIGTERM was sent at %s s)\n' "$slow" "$slow_s" "$t_term"
check "in-flight request finished" 200 "$slow"
if python3 -c "import sys; sys.exit(0 if float('${slow_s:-0}') > $t_term else 1)"; then
    ok "it was still in flight when SIGTERM arrived"
else
    bad "the slow request ended before SIGTERM ($slow_s s ≤ $t_term s): nothing was in flight to drain"
fi
wait "$SERVER_PID"; server_rc=$?; SERVER_PID=""
check "server exit status" 0 "$server_rc"

# ---------------------------------------------------------------------------------------------
step "8: the audit log is tamper-evident"
printf '   → pno audit verify audit.log\n'
"$PNO" audit verify audit.log >verify.txt 2>&1; rc=$?
sed 's/^/     /' verify.txt | head -8
check "exit status" 0 "$rc"
python3 - <<'EOF' >flip.txt
data = bytearray(open("audit.log", "rb").read())
i = len(data) // 2
while not chr(data[i]).isalnum():
    i += 1
line = data[:i].count(b"\n") + 1
old = chr(data[i])
data[i] ^= 1
open("audit.log", "wb").write(data)
print(f"flipped byte {i} ({old!r} -> {chr(data[i])!r}) on line {line}")
print(line)
EOF
note "$(head -1 flip.txt)"
line=$(tail -1 flip.txt)
printf '   → pno audit verify audit.log\n'
"$PNO" audit verify audit.log >verify.txt 2>&1; rc=$?
sed 's/^/     /' verify.txt | head -8
if ((rc != 0)); then ok "exit status $rc"; else bad "expected a non-zero exit for a tampered log, got 0"; fi
if grep -q "record $line\b" verify.txt; then ok "the message names record $line"; else bad "expected the message to name record $line (the line whose byte was flipped)"; fi

# ---------------------------------------------------------------------------------------------
printf '\n%s== summary ==%s (%d s)\n' "$B" "$N" $((SECONDS - T0))
if ((${#FAILED[@]})); then
    printf '%s%d check(s) failed:%s\n' "$R" "${#FAILED[@]}" "$N"
    printf '  %s\n' "${FAILED[@]}"
    exit 1
fi
printf '%severy step showed what it should%s\n' "$G" "$N"
