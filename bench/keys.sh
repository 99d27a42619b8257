#!/usr/bin/env bash
# Key lifecycle and TLS on a running server (issue 14): `pno serve` (dev build, keys file, one
# tiny model `a`, audit log on) and the `pno keys` CLI editing the same keys file.
#  - revocation: N times, a fresh reader key is created with the CLI and used until it answers
#    200 (the creation's propagation time), then revoked with the CLI; GET /v2/models/a is polled
#    every 10 ms until it answers 401 (the revocation's propagation time; target ≤ 1 s).
#  - rotation with grace: a key rotated with --grace 3s: the old and new secrets both work, the
#    old one is refused once the grace has ended (reports when).
#  - TLS: the same server restarted with [tls] (a test CA made with openssl): latency of GET
#    /v2/health/live on fresh connections (curl, handshake included) and of an inference, plain
#    HTTP vs HTTPS.
#   bash bench/keys.sh
# Env: N (revocations, 20), SKIP_BUILD=1 with PNO=… (a built binary, copied to WORK/bin), WORK,
#      OUT (results JSON, default bench/results/<date>-<commit>-keys.json).
# Loopback only; bounded (about N × 1.5 s + 60 s after the build); stops what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
. bench/resilience.sh
N=${N:-20}
WORK=${WORK:-$(mktemp -d /tmp/pno-keys.XXXXXX)}
mkdir -p "$WORK/bin"
cleanup() {
  res_stop_all
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build -q -p pno-cli
  cp "$CARGO_TARGET_DIR/debug/pno" "$WORK/bin/pno"
else
  cp "${PNO:-$CARGO_TARGET_DIR/debug/pno}" "$WORK/bin/pno"
fi
PNO=$WORK/bin/pno
OUT=${OUT:-$(res_results_file keys)}
echo "work: $WORK  results: $OUT" >&2
res_setup "$WORK"
rm -rf "$WORK/repo/b"
PORT=$(res_port)
URL=http://127.0.0.1:$PORT
CFG=$WORK/serve.toml
# Each revoked key's first 401 is a failed authentication: keep the address's lockout out of it.
{ res_config "$WORK" "$PORT"; printf 'max_auth_failures = 100000\n[audit]\npath = "%s"\n' "$WORK/audit.log"; } > "$CFG"
res_start "$CFG" "$WORK/serve.log" "$URL"

# Keys: the CLI and the poller in one Python process (times from a monotonic clock).
python3 - "$PNO" "$WORK/keys.json" "$URL" "$N" > "$WORK/keys.json.out" <<'PY'
import json, subprocess, sys, time, urllib.request, urllib.error
pno, keys, url, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def status(key):
    req = urllib.request.Request(url + "/v2/models/a", headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
def until(key, want, limit=5.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if status(key) == want:
            return time.monotonic() - t0
        time.sleep(0.01)
    return None
def cli(*args):
    return subprocess.run([pno, "keys", *args, "--keys", keys], check=True, capture_output=True, text=True).stdout
def create():
    v = json.loads(cli("create", "--role", "reader", "--json"))
    return v["id"], v["key"]
created, revoked = [], []
for i in range(n):
    t0 = time.monotonic()
    key_id, secret = create()
    created_in = until(secret, 200)
    t1 = time.monotonic()
    cli("revoke", key_id)
    cli_s = time.monotonic() - t1
    gone = until(secret, 401)
    created.append(None if created_in is None else (t1 - t0))
    revoked.append(None if gone is None else cli_s + gone)
# Rotation with a 3 s grace.
kid, old = create()
until(old, 200)
t0 = time.monotonic()
new = json.loads(cli("rotate", kid, "--grace", "3s", "--json"))["key"]
both = until(new, 200) is not None and status(old) == 200
old_gone = until(old, 401, limit=10.0)
rot = {"grace_s": 3, "both_work_during_grace": both, "new_works_after": status(new) == 200,
       "old_refused_after_s": None if old_gone is None else round(time.monotonic() - t0, 3)}
def q(xs, p):
    xs = sorted(x for x in xs if x is not None)
    return round(xs[min(len(xs) - 1, int(p * len(xs)))], 3) if xs else None
print(json.dumps({"n": n, "revoke_s": {"p50": q(revoked, .5), "p95": q(revoked, .95), "max": q(revoked, 1.0),
                  "missed": sum(x is None for x in revoked)},
                  "create_to_200_s": {"p50": q(created, .5), "max": q(created, 1.0)},
                  "rotation": rot}))
PY
res_stop "$SERVER_PID"

# TLS vs plain: a test CA and server certificate.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$WORK/ca.key" -out "$WORK/ca.pem" -subj /CN=pno-bench-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$WORK/server.key" -out "$WORK/server.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$WORK/ext"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
  -days 2 -extfile "$WORK/ext" -out "$WORK/server.pem" 2>/dev/null
{ res_config "$WORK" "$PORT"; printf '[tls]\ncert = "%s"\nkey = "%s"\n' "$WORK/server.pem" "$WORK/server.key"; } > "$WORK/serve-tls.toml"
measure() { # URL CURLFLAGS… → JSON of p50/p95 ms for health (fresh connections) and infer
  local url=$1; shift
  python3 - "$url" "$ADMIN_KEY" "$WORK/body.json" "$@" <<'PY'
import json, subprocess, sys
url, key, body, flags = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
def times(args, n):
    out = []
    for _ in range(n):
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", *flags, *args],
                           capture_output=True, text=True, check=True).stdout.split()
        assert r[0] == "200", r
        out.append(float(r[1]) * 1000)
    out.sort()
    return {"p50_ms": round(out[len(out) // 2], 2), "p95_ms": round(out[int(.95 * len(out))], 2)}
print(json.dumps({"health": times([url + "/v2/health/live"], 100),
                  "infer": times(["-H", f"Authorization: Bearer {key}", "-H", "Content-Type: application/json",
                                  "--data-binary", "@" + body, url + "/v2/models/a/infer"], 20)}))
PY
}
res_start "$CFG" "$WORK/serve.log" "$URL"
PLAIN=$(measure "$URL")
res_stop "$SERVER_PID"
HTTPS=https://localhost:$PORT
# res_start polls with plain curl: wait for the TLS server with the CA instead.
RUST_LOG=warn "$PNO" serve --config "$WORK/serve-tls.toml" >/dev/null 2>"$WORK/serve-tls.log" &
TLS_PID=$!; RES_PIDS+=("$TLS_PID")
for _ in $(seq 1 300); do
  curl -sf --cacert "$WORK/ca.pem" "$HTTPS/v2/health/ready" >/dev/null 2>&1 && break
  sleep 0.2
done
TLS=$(measure "$HTTPS" --cacert "$WORK/ca.pem")
PLAIN_TO_TLS=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v2/health/live" || true)
res_stop "$TLS_PID"
"$PNO" audit verify "$WORK/audit.log" > "$WORK/verify.txt"

python3 - "$WORK/keys.json.out" "$PLAIN" "$TLS" "$PLAIN_TO_TLS" "$OUT" "$(git rev-parse --short HEAD)" <<'PY'
import json, sys, platform, os
keys = json.load(open(sys.argv[1]))
res = {"commit": sys.argv[6], "nproc": os.cpu_count(), "keys": keys,
       "plain": json.loads(sys.argv[2]), "tls": json.loads(sys.argv[3]), "plain_http_to_tls_port": sys.argv[4]}
json.dump(res, open(sys.argv[5], "w"), indent=1)
r = keys["revoke_s"]
print(f"revocation (CLI revoke -> first 401), {keys['n']} runs: p50 {r['p50']} s, p95 {r['p95']} s, max {r['max']} s, missed {r['missed']}")
c = keys["create_to_200_s"]
print(f"creation (CLI create -> first 200): p50 {c['p50']} s, max {c['max']} s")
print(f"rotation with 3 s grace: {keys['rotation']}")
for k in ("health", "infer"):
    print(f"{k}: plain p50 {res['plain'][k]['p50_ms']} ms p95 {res['plain'][k]['p95_ms']} ms | "
          f"https p50 {res['tls'][k]['p50_ms']} ms p95 {res['tls'][k]['p95_ms']} ms")
print(f"plain HTTP to the TLS port: HTTP {sys.argv[4]}")
PY
