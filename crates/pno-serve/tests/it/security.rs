//! Security behaviours: keys and roles (401 vs 403), hashed storage, lockout, rate limits per key
//! and per address, body and JSON limits, slow bodies, load shedding, deadlines and drain.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use pno_serve::auth::{KeyStore, Role};
use pno_serve::config::AnonymousRole;
use serde_json::json;

use crate::*;

/// A state with a keys file holding one key per role; anonymous access off.
fn secured(dir: &std::path::Path) -> (AppState, String, String, String) {
    let repo = repo(dir, "pno", &[1]);
    let keys_path = dir.join("keys.json");
    let store = KeyStore::open(&keys_path).unwrap();
    let (reader, _) = store.create(Role::Reader).unwrap();
    let (operator, _) = store.create(Role::Operator).unwrap();
    let (admin, _) = store.create(Role::Admin).unwrap();
    let mut cfg = config(&repo);
    cfg.keys = Some(keys_path);
    cfg.audit.path = Some(dir.join("audit.log"));
    (state(cfg), reader, operator, admin)
}

fn from(mut r: Request<Body>, ip: [u8; 4]) -> Request<Body> {
    r.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
    r
}

#[tokio::test]
async fn keys_are_stored_hashed_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (_st, reader, _, _) = secured(dir.path());
    let text = std::fs::read_to_string(dir.path().join("keys.json")).unwrap();
    let secret = reader.rsplit('_').next().unwrap();
    assert!(!text.contains(secret), "the key itself must not be stored");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("keys.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "keys file readable by others: {mode:o}");
    }
    let store = KeyStore::open(&dir.path().join("keys.json")).unwrap();
    assert_eq!(store.verify(&reader).unwrap().role, Role::Reader);
    let mut wrong = reader.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == '0' { '1' } else { '0' });
    assert!(store.verify(&wrong).is_none());
    assert!(store.verify("pno_short").is_none());
    assert!(store.verify("").is_none());
}

#[tokio::test]
async fn missing_key_is_401_wrong_role_is_403() {
    let dir = tempfile::tempdir().unwrap();
    let (st, reader, operator, admin) = secured(dir.path());
    let infer = || {
        post_json(
            "/v2/models/pno/infer",
            &infer_body(&input(1), 1, json!({"n_samples": 2})),
        )
    };
    // No key: 401 with WWW-Authenticate.
    let r = send(&st, infer()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(call(&st, infer()).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call(&st, get("/v2/models/pno")).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Invalid key: 401.
    let bad = with_key(
        infer(),
        "pno_000000000000_0000000000000000000000000000000000000000000000000000000000000000",
    );
    assert_eq!(call(&st, bad).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call(&st, with_key(infer(), "garbage")).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Public routes need no key.
    assert_eq!(call(&st, get("/v2/health/ready")).await.0, StatusCode::OK);
    assert_eq!(call(&st, get("/metrics")).await.0, StatusCode::OK);
    // Reader: infer and metadata yes; load, unload, index, keys, audit: 403.
    assert_eq!(
        call(&st, with_key(infer(), &reader)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&st, with_key(get("/v2/models/pno"), &reader)).await.0,
        StatusCode::OK
    );
    let load = || post_json("/v2/repository/models/pno/load", &json!({}));
    let index = || post_json("/v2/repository/index", &json!({}));
    let keys = || get("/v2/admin/keys");
    let verify = || get("/v2/admin/audit/verify");
    for (what, req) in [
        ("load", with_key(load(), &reader)),
        (
            "unload",
            with_key(
                post_json("/v2/repository/models/pno/unload", &json!({})),
                &reader,
            ),
        ),
        ("index", with_key(index(), &reader)),
        ("keys", with_key(keys(), &reader)),
        ("audit", with_key(verify(), &reader)),
        ("keys as operator", with_key(keys(), &operator)),
        ("audit as operator", with_key(verify(), &operator)),
    ] {
        let (s, v) = call(&st, req).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{what}: {v}");
    }
    // Operator: load and index; admin: everything.
    assert_eq!(
        call(&st, with_key(load(), &operator)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&st, with_key(index(), &operator)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&st, with_key(infer(), &operator)).await.0,
        StatusCode::OK
    );
    let (s, v) = call(&st, with_key(keys(), &admin)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["keys"].as_array().unwrap().len(), 3);
    assert!(!v.to_string().contains("sha256"));
    let (s, v) = call(&st, with_key(verify(), &admin)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["ok"], true, "{v}");
    // Admin creates a reader key over HTTP; it works at once; revoking it locks it out.
    let (s, v) = call(
        &st,
        with_key(
            post_json("/v2/admin/keys", &json!({"role": "reader"})),
            &admin,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let new_key = v["key"].as_str().unwrap().to_string();
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(
        call(&st, with_key(get("/v2/models/pno"), &new_key)).await.0,
        StatusCode::OK
    );
    let del = Request::delete(format!("/v2/admin/keys/{id}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&st, with_key(del, &admin)).await.0, StatusCode::OK);
    assert_eq!(
        call(&st, with_key(get("/v2/models/pno"), &new_key)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, _) = call(
        &st,
        with_key(
            post_json("/v2/admin/keys", &json!({"role": "root"})),
            &admin,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn anonymous_reader_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (st, ..) = secured(dir.path());
    let mut cfg = (*st.config()).clone();
    cfg.anonymous = Some(AnonymousRole::Reader);
    let st = state(cfg);
    assert_eq!(call(&st, get("/v2/models/pno")).await.0, StatusCode::OK);
    let (s, _) = call(&st, post_json("/v2/repository/index", &json!({}))).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "anonymous has no operator role: it needs a key"
    );
}

#[tokio::test]
async fn repeated_failed_authentication_locks_the_address_out() {
    let dir = tempfile::tempdir().unwrap();
    let (st, reader, ..) = secured(dir.path());
    let mut cfg = (*st.config()).clone();
    cfg.rate_limit.max_auth_failures = 3;
    cfg.rate_limit.lockout_s = 60;
    let st = state(cfg);
    let ip = [10, 0, 0, 7];
    for _ in 0..3 {
        let r = from(with_key(get("/v2/models/pno"), "wrong"), ip);
        assert_eq!(call(&st, r).await.0, StatusCode::UNAUTHORIZED);
    }
    // Locked: even the right key is refused, with Retry-After.
    let r = send(&st, from(with_key(get("/v2/models/pno"), &reader), ip)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Other addresses are unaffected.
    let r = from(with_key(get("/v2/models/pno"), &reader), [10, 0, 0, 8]);
    assert_eq!(call(&st, r).await.0, StatusCode::OK);
    // The failures and the lockout are in the audit log.
    let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(log.contains("\"action\":\"auth.lockout\""), "{log}");
}

#[tokio::test]
async fn rate_limits_per_key_and_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let (st, reader, operator, _) = secured(dir.path());
    let mut cfg = (*st.config()).clone();
    cfg.rate_limit.per_key_rps = 0.01;
    cfg.rate_limit.per_key_burst = 3;
    let st = state(cfg);
    for _ in 0..3 {
        let r = from(with_key(get("/v2/models/pno"), &reader), [10, 0, 0, 1]);
        assert_eq!(call(&st, r).await.0, StatusCode::OK);
    }
    let r = send(
        &st,
        from(with_key(get("/v2/models/pno"), &reader), [10, 0, 0, 2]),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "per key, whatever the address"
    );
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let r = from(with_key(get("/v2/models/pno"), &operator), [10, 0, 0, 1]);
    assert_eq!(
        call(&st, r).await.0,
        StatusCode::OK,
        "another key has its own bucket"
    );

    let mut cfg = (*st.config()).clone();
    cfg.rate_limit.per_key_burst = 1000;
    cfg.rate_limit.per_ip_rps = 0.01;
    cfg.rate_limit.per_ip_burst = 2;
    let st = state(cfg);
    for _ in 0..2 {
        let r = from(with_key(get("/v2/models/pno"), &reader), [10, 0, 0, 3]);
        assert_eq!(call(&st, r).await.0, StatusCode::OK);
    }
    let r = from(with_key(get("/v2/models/pno"), &operator), [10, 0, 0, 3]);
    let (s, v) = call(&st, r).await;
    assert_eq!(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "per address, whatever the key: {v}"
    );
    let r = from(with_key(get("/v2/models/pno"), &reader), [10, 0, 0, 4]);
    assert_eq!(call(&st, r).await.0, StatusCode::OK);
}

#[tokio::test]
async fn body_and_json_size_limits_are_413() {
    let (dir, _) = setup();
    let mut cfg = config(&dir.path().join("repo"));
    cfg.limits.max_body_bytes = 4096;
    let st = state(cfg);
    let body = infer_body(&input(1), 1, json!({})).to_string();
    assert!(body.len() > 4096);
    // Announced by Content-Length.
    let r = Request::post("/v2/models/pno/infer")
        .header("content-length", body.len())
        .body(Body::from(body.clone()))
        .unwrap();
    assert_eq!(call(&st, r).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    // Streamed without a length.
    let r = Request::post("/v2/models/pno/infer")
        .body(Body::new(Chunks(vec![Bytes::from(body.clone())])))
        .unwrap();
    assert_eq!(call(&st, r).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    // JSON header limit separately (binary bodies may be larger than their JSON).
    let mut cfg = config(&dir.path().join("repo"));
    cfg.limits.max_json_bytes = 1000;
    let st = state(cfg);
    let (s, _) = call(
        &st,
        post_json(
            "/v2/models/pno/infer",
            &serde_json::from_str(&body).unwrap(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // Compressed bodies are refused, not decompressed unbounded.
    let r = Request::post("/v2/models/pno/infer")
        .header("content-encoding", "gzip")
        .body(Body::from("x"))
        .unwrap();
    assert_eq!(call(&st, r).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

/// A body that yields its chunks, then (if `Stall`) never ends.
struct Chunks(Vec<Bytes>);
struct Stall;

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.0.is_empty() {
            Poll::Ready(None)
        } else {
            let b = self.0.remove(0);
            Poll::Ready(Some(Ok(http_body::Frame::data(b))))
        }
    }
}

impl http_body::Body for Stall {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Poll::Pending
    }
}

#[tokio::test]
async fn slow_bodies_are_cut_off_with_408() {
    let (dir, _) = setup();
    let mut cfg = config(&dir.path().join("repo"));
    cfg.limits.body_timeout_ms = 200;
    let st = state(cfg);
    let t = std::time::Instant::now();
    let r = Request::post("/v2/models/pno/infer")
        .body(Body::new(Stall))
        .unwrap();
    assert_eq!(call(&st, r).await.0, StatusCode::REQUEST_TIMEOUT);
    assert!(t.elapsed().as_secs() < 5);
}

#[tokio::test]
async fn full_queue_sheds_with_503_and_readiness_turns_false() {
    let (dir, _) = setup();
    let mut cfg = config(&dir.path().join("repo"));
    cfg.limits.max_concurrency = 1;
    cfg.limits.max_queue = 0;
    let st = state(cfg);
    // Occupy the only compute slot.
    let slot = st.gate().acquire().await.unwrap();
    let body = infer_body(&input(1), 1, json!({"n_samples": 2}));
    let r = send(&st, post_json("/v2/models/pno/infer", &body)).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        call(&st, get("/v2/health/ready")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    drop(slot);
    assert_eq!(
        call(&st, post_json("/v2/models/pno/infer", &body)).await.0,
        StatusCode::OK
    );
    assert_eq!(call(&st, get("/v2/health/ready")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn deadlines_end_requests_that_wait_too_long() {
    let (dir, _) = setup();
    let mut cfg = config(&dir.path().join("repo"));
    cfg.limits.max_concurrency = 1;
    cfg.limits.max_queue = 4;
    let st = state(cfg);
    let slot = st.gate().acquire().await.unwrap();
    // The request's own `timeout` parameter (µs, as Triton).
    let body = infer_body(&input(1), 1, json!({"n_samples": 2, "timeout": 100_000}));
    let t = std::time::Instant::now();
    let (s, v) = call(&st, post_json("/v2/models/pno/infer", &body)).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{v}");
    assert!(t.elapsed().as_millis() < 3000);
    // The server's whole-request deadline.
    let mut cfg = (*st.config()).clone();
    cfg.limits.request_timeout_ms = 150;
    let st2 = state(cfg);
    let _slot2 = st2.gate().acquire().await.unwrap();
    let body = infer_body(&input(1), 1, json!({"n_samples": 2}));
    let (s, _) = call(&st2, post_json("/v2/models/pno/infer", &body)).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    drop(slot);
}

#[tokio::test]
async fn draining_refuses_new_requests_and_turns_readiness_false() {
    let (_d, st) = setup();
    st.start_drain();
    assert_eq!(
        call(&st, get("/v2/health/ready")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(call(&st, get("/v2/health/live")).await.0, StatusCode::OK);
    let body = infer_body(&input(1), 1, json!({}));
    let r = send(&st, post_json("/v2/models/pno/infer", &body)).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        call(&st, get("/v2/models/pno")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[test]
fn bad_config_names_the_key() {
    for (text, key) in [
        ("listen = \"nowhere\"", "listen"),
        ("[limits]\nmax_concurrency = 0", "limits.max_concurrency"),
        ("[limits]\nmax_batch = -1", "limits.max_batch"),
        ("[limits]\ndefault_samples = 500", "limits.default_samples"),
        ("[limits]\nmin_resolution = 8", "limits.max_resolution"),
        ("[rate_limit]\nper_key_rps = 0.0", "rate_limit.per_key_rps"),
        ("[rate_limit]\nbogus = 1", "rate_limit"),
        ("surprise = 1", "surprise"),
        ("anonymous = \"root\"", "anonymous"),
        ("[audit]\nfsync = \"sometimes\"", "audit.fsync"),
        ("[batching]\nmax_wait_ms = 5000", "batching.max_wait_ms"),
        ("[batching]\nmax_rows = 0", "batching.max_rows"),
        ("[batching]\nmax_rows = 100000", "batching.max_rows"),
        ("[batching]\nwait = 5", "batching"),
        (
            "[models.pno]\nversion_policy = { specific = [] }",
            "models.pno.version_policy.specific",
        ),
    ] {
        let e = pno_serve::ServeConfig::from_toml_str(text)
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{text:?}: {e}");
    }
}

#[test]
fn the_shipped_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/serve.toml");
    let cfg = pno_serve::ServeConfig::from_file(&path).unwrap();
    assert_eq!(cfg.listen, "127.0.0.1:8000");
    assert_eq!(cfg.audit.fsync, pno_serve::config::FsyncPolicy::Batch);
}

#[tokio::test]
async fn every_refusal_writes_exactly_one_audit_record_with_its_class() {
    let dir = tempfile::tempdir().unwrap();
    let (st, reader, _, _) = secured(dir.path());
    let mut cfg = (*st.config()).clone();
    cfg.rate_limit.per_ip_rps = 0.01;
    cfg.rate_limit.per_ip_burst = 2;
    cfg.rate_limit.max_auth_failures = 2;
    cfg.limits.max_body_bytes = 1000;
    let st = state(cfg);
    let big = "x".repeat(5000);
    let mut expected: Vec<(u16, &str, &str)> = Vec::new();
    // (request, expected status, expected action, expected class)
    let r = from(get("/v2/models/pno"), [10, 0, 0, 1]);
    assert_eq!(call(&st, r).await.0, StatusCode::UNAUTHORIZED);
    expected.push((401, "model.metadata", "security"));
    let r = from(
        with_key(get("/v2/repository/index"), &reader),
        [10, 0, 0, 1],
    );
    let r = send(&st, r).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    expected.push((405, "request", "input"));
    // The per-address bucket (burst 2) is now empty.
    let r = from(with_key(get("/v2/models/pno"), &reader), [10, 0, 0, 1]);
    assert_eq!(call(&st, r).await.0, StatusCode::TOO_MANY_REQUESTS);
    expected.push((429, "model.metadata", "security"));
    // Bad keys from another address: 401, then locked out (audited by the key check), then
    // refused at the door while locked out.
    for _ in 0..2 {
        let r = from(
            with_key(get("/v2/models/pno"), "pno_bad_key"),
            [10, 0, 0, 2],
        );
        assert_eq!(call(&st, r).await.0, StatusCode::UNAUTHORIZED);
    }
    expected.push((401, "auth", "security"));
    expected.push((401, "auth.lockout", "security"));
    let r = from(with_key(get("/v2/models/pno"), &reader), [10, 0, 0, 2]);
    assert_eq!(call(&st, r).await.0, StatusCode::TOO_MANY_REQUESTS);
    expected.push((429, "model.metadata", "security"));
    // Size limit and unknown route, from fresh addresses.
    let r = from(
        with_key(
            Request::post("/v2/models/pno/infer")
                .body(Body::from(big))
                .unwrap(),
            &reader,
        ),
        [10, 0, 0, 3],
    );
    assert_eq!(call(&st, r).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    expected.push((413, "infer", "input"));
    let r = from(with_key(get("/v2/nowhere"), &reader), [10, 0, 0, 4]);
    assert_eq!(call(&st, r).await.0, StatusCode::NOT_FOUND);
    expected.push((404, "request", "input"));
    // Draining.
    st.start_drain();
    let r = from(with_key(get("/v2/models/pno"), &reader), [10, 0, 0, 5]);
    assert_eq!(call(&st, r).await.0, StatusCode::SERVICE_UNAVAILABLE);
    expected.push((503, "model.metadata", "transient"));

    let text = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    let recs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(u16, String, String)> = recs
        .iter()
        .map(|r| {
            (
                r["status"].as_u64().unwrap() as u16,
                r["action"].as_str().unwrap().to_string(),
                r["class"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want: Vec<(u16, String, String)> = expected
        .iter()
        .map(|(s, a, c)| (*s, a.to_string(), c.to_string()))
        .collect();
    assert_eq!(got, want, "{text}");
    assert_eq!(
        recs[2]["actor"], "anonymous",
        "refused before authentication"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_limits_and_lockout_are_per_client_and_forged_headers_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (st, reader, _, _) = secured(dir.path());
    let mut cfg = (*st.config()).clone();
    cfg.trusted_proxies = vec!["10.0.0.0/8".into()];
    cfg.rate_limit.max_auth_failures = 2;
    let st = state(cfg);
    let via = |key: &str, xff: &str, peer: [u8; 4]| {
        let mut r = from(with_key(get("/v2/models/pno"), key), peer);
        r.headers_mut()
            .insert("x-forwarded-for", xff.parse().unwrap());
        r
    };
    // An attacker behind the proxy locks only itself out.
    for _ in 0..2 {
        let r = via("pno_bad", "203.0.113.66", [10, 0, 0, 1]);
        assert_eq!(call(&st, r).await.0, StatusCode::UNAUTHORIZED);
    }
    let r = via(&reader, "203.0.113.66", [10, 0, 0, 1]);
    assert_eq!(call(&st, r).await.0, StatusCode::TOO_MANY_REQUESTS);
    let r = via(&reader, "203.0.113.7", [10, 0, 0, 1]);
    assert_eq!(
        call(&st, r).await.0,
        StatusCode::OK,
        "another client behind the same proxy"
    );
    // A stranger cannot forge the header: it is judged by its own address.
    for _ in 0..2 {
        let r = via("pno_bad", "203.0.113.8", [198, 51, 100, 9]);
        assert_eq!(call(&st, r).await.0, StatusCode::UNAUTHORIZED);
    }
    let r = via(&reader, "203.0.113.9", [198, 51, 100, 9]);
    assert_eq!(call(&st, r).await.0, StatusCode::TOO_MANY_REQUESTS);
    let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(log.contains("\"client\":\"203.0.113.66\""), "{log}");
    assert!(!log.contains("203.0.113.8"), "forged: {log}");
}

#[test]
fn bad_trusted_proxies_and_lockout_settings_name_the_key() {
    for (toml, key) in [
        (
            "trusted_proxies = [\"10.0.0.0/8\", \"bogus\"]",
            "trusted_proxies[1]",
        ),
        ("trusted_proxies = [\"10.0.0.0/40\"]", "trusted_proxies[0]"),
        (
            "[rate_limit]\nlockout_escalation = 0.5",
            "rate_limit.lockout_escalation",
        ),
        (
            "[rate_limit]\nlockout_s = 600\nmax_lockout_s = 60",
            "rate_limit.max_lockout_s",
        ),
    ] {
        let e = pno_serve::ServeConfig::from_toml_str(toml)
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{toml:?}: {e}");
    }
}
