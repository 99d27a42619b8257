//! Injected faults (the `fault-injection` feature, test builds only): hangs are cancelled at the
//! deadline and free their slot while another model keeps answering; panics are internal
//! failures; slow calls open the breaker on the slow-call rate; a breaker closes through
//! half-open once the fault clears, each transition audited; transient faults never count
//! against the model; transient I/O on the audit log and the repository is retried away.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use super::*;

fn put_fault(st: &AppState, v: &Value) -> Request<Body> {
    let (key, _) = st.keys().create(pno_serve::auth::Role::Operator).unwrap();
    let r = Request::put("/v2/debug/faults")
        .body(Body::from(v.to_string()))
        .unwrap();
    with_key(r, &key)
}

async fn inject(st: &AppState, v: Value) {
    let (s, b) = call(st, put_fault(st, &v)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

fn body() -> Value {
    infer_body(&input(1), 1, json!({"n_samples": 4, "seed": 1}))
}

async fn metrics(st: &AppState) -> String {
    String::from_utf8(body_bytes(send(st, get("/metrics")).await).await).unwrap()
}

/// Models `a` and `b`, version 1 each.
fn two_models(dir: &std::path::Path, tweak: impl FnOnce(&mut pno_serve::ServeConfig)) -> AppState {
    let repo = repo(dir, "a", &[1]);
    copy_dir(&fixture_run(), &repo.join("b").join("1"));
    let mut cfg = config(&repo);
    tweak(&mut cfg);
    state(cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_is_cancelled_at_its_deadline_and_frees_its_slot_while_another_model_answers() {
    let dir = tempfile::tempdir().unwrap();
    let st = two_models(dir.path(), |_| {});
    inject(&st, json!({"model": "a", "mode": "hang"})).await;
    let hang = infer_body(&input(1), 1, json!({"n_samples": 4, "timeout": 300_000}));
    let t = Instant::now();
    let (s, v) = call(&st, post_json("/v2/models/a/infer", &hang)).await;
    assert_eq!(
        (s, v["class"].as_str()),
        (StatusCode::GATEWAY_TIMEOUT, Some("transient")),
        "{v}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    // The hung computation sees its token and gives the slot back.
    let gate = st.model_gate("a");
    let t = Instant::now();
    while gate.running() > 0 {
        assert!(t.elapsed() < Duration::from_secs(5), "slot never freed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let st2 = st.clone();
    let stuck = tokio::spawn(async move {
        call(
            &st2,
            post_json(
                "/v2/models/a/infer",
                &infer_body(&input(1), 1, json!({"timeout": 1_500_000})),
            ),
        )
        .await
    });
    while st.model_gate("a").running() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Model b is not behind model a's hang.
    let (s, v) = call(&st, post_json("/v2/models/b/infer", &body())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = stuck.await.unwrap();
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    let m = metrics(&st).await;
    assert!(
        m.contains("pno_cancelled_total{reason=\"deadline\",replica=\"t\"} 2"),
        "{m}"
    );
}

#[tokio::test]
async fn panics_are_internal_failures_that_open_the_breaker() {
    let dir = tempfile::tempdir().unwrap();
    let st = two_models(dir.path(), |c| c.breaker.consecutive_failures = 2);
    inject(&st, json!({"model": "a", "version": "1", "mode": "panic"})).await;
    for _ in 0..2 {
        let (s, v) = call(&st, post_json("/v2/models/a/infer", &body())).await;
        assert_eq!(
            (s, v["class"].as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, Some("internal")),
            "{v}"
        );
    }
    let (s, v) = call(&st, post_json("/v2/models/a/infer", &body())).await;
    assert_eq!(
        (s, v["breaker"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("open")),
        "{v}"
    );
}

#[tokio::test]
async fn nan_outputs_are_persistent_and_flaky_transients_do_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let st = two_models(dir.path(), |c| c.breaker.consecutive_failures = 100);
    inject(
        &st,
        json!({"model": "a", "mode": "flaky", "p": 1.0, "count": 5}),
    )
    .await;
    for _ in 0..5 {
        let (s, v) = call(&st, post_json("/v2/models/a/infer", &body())).await;
        assert_eq!(
            (s, v["class"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("transient")),
            "{v}"
        );
    }
    let (_, v) = call(&st, get("/v2/models/a/stats")).await;
    assert_eq!(v["model_stats"][0]["breaker"]["calls"], 0, "{v}");
    inject(&st, json!({"model": "a", "mode": "nan", "count": 1})).await;
    let (s, v) = call(&st, post_json("/v2/models/a/infer", &body())).await;
    assert_eq!(
        (s, v["class"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("persistent")),
        "{v}"
    );
    // The count ran out: the next call is fine.
    let (s, _) = call(&st, post_json("/v2/models/a/infer", &body())).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn slow_calls_open_the_breaker_and_it_closes_through_half_open_once_the_fault_clears() {
    let dir = tempfile::tempdir().unwrap();
    let st = {
        let repo = repo(dir.path(), "a", &[1]);
        let mut cfg = config(&repo);
        cfg.audit.path = Some(dir.path().join("audit.log"));
        cfg.breaker.slow_call_ms = 300;
        cfg.breaker.slow_call_rate = 0.5;
        cfg.breaker.min_calls = 2;
        cfg.breaker.window = 4;
        cfg.breaker.open_ms = 200;
        cfg.breaker.half_open_calls = 2;
        cfg.degrade.enabled = false;
        state(cfg)
    };
    inject(&st, json!({"model": "a", "mode": "slow", "ms": 450})).await;
    for _ in 0..2 {
        let (s, _) = call(&st, post_json("/v2/models/a/infer", &body())).await;
        assert_eq!(s, StatusCode::OK, "slow calls still answer");
    }
    let (s, v) = call(&st, post_json("/v2/models/a/infer", &body())).await;
    assert_eq!(
        (s, v["breaker"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("open")),
        "{v}"
    );
    // The fault clears; after open_ms two probes succeed and the breaker closes.
    let (s, _) = call(
        &st,
        Request::delete("/v2/debug/faults")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the fault routes need the operator role"
    );
    let (key, _) = st.keys().create(pno_serve::auth::Role::Operator).unwrap();
    let (s, _) = call(
        &st,
        with_key(
            Request::delete("/v2/debug/faults")
                .body(Body::empty())
                .unwrap(),
            &key,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(220)).await;
    for _ in 0..2 {
        let (s, v) = call(&st, post_json("/v2/models/a/infer", &body())).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (_, v) = call(&st, get("/v2/models/a/stats")).await;
    assert_eq!(v["model_stats"][0]["breaker"]["state"], "closed", "{v}");
    let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    let actions: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|r| {
            r["event"]["action"]
                .as_str()
                .or(r["action"].as_str())
                .map(str::to_string)
        })
        .filter(|a| a.starts_with("breaker."))
        .collect();
    assert_eq!(
        actions,
        ["breaker.open", "breaker.half_open", "breaker.closed"],
        "{log}"
    );
}

#[tokio::test]
async fn transient_io_on_the_audit_log_and_the_repository_is_retried_away() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "a", &[1, 2]);
    let mut cfg = config(&repo);
    cfg.audit.path = Some(dir.path().join("audit.log"));
    cfg.retry.base_ms = 1;
    cfg.retry.max_ms = 5;
    let st = state(cfg);
    inject(&st, json!({"io": "audit", "count": 2})).await;
    let (s, _) = call(&st, post_json("/v2/models/a/infer", &body())).await;
    assert_eq!(s, StatusCode::OK);
    inject(&st, json!({"io": "repository", "count": 2})).await;
    let (s, v) = call(
        &st,
        op_post(
            &st,
            "/v2/repository/models/a/load",
            &json!({"parameters": {"version": 1}}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "two transient failures are retried: {v}");
    // More failures than attempts: the load is refused, version 2 keeps serving.
    inject(&st, json!({"io": "repository", "count": 3})).await;
    let (s, v) = call(
        &st,
        op_post(
            &st,
            "/v2/repository/models/a/load",
            &json!({"parameters": {"version": 1}}),
        ),
    )
    .await;
    assert_ne!(s, StatusCode::OK, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("injected transient I/O fault"),
        "{v}"
    );
    let (s, _) = call(&st, post_json("/v2/models/a/infer", &body())).await;
    assert_eq!(s, StatusCode::OK);
    let m = metrics(&st).await;
    assert!(
        m.contains("pno_retries_total{op=\"audit\",replica=\"t\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("pno_retries_total{op=\"repository\",replica=\"t\"} 4"),
        "{m}"
    );
    assert!(
        !m.contains("\npno_audit_append_failures_total"),
        "no record lost: {m}"
    );
    // Every request has its record and the chain verifies.
    drop(st);
    let v = pno_serve::audit::verify(&dir.path().join("audit.log")).unwrap();
    assert_eq!(
        v.records, 4,
        "two infers and two loads (fault routes and /metrics are not audited)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_computation_whose_client_leaves_stops_and_frees_its_slot() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let st = two_models(dir.path(), |_| {});
    inject(&st, json!({"model": "a", "mode": "hang"})).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(pno_serve::serve(listener, st.clone(), async {
        let _ = rx.await;
    }));
    let b = body().to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v2/models/a/infer HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        b.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(b.as_bytes()).await.unwrap();
    let gate = st.model_gate("a");
    let t = Instant::now();
    while gate.running() == 0 {
        assert!(t.elapsed() < Duration::from_secs(20), "never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The client leaves mid-computation: the compute sees its token and frees the slot long
    // before the 60 s request deadline.
    drop(s);
    let t = Instant::now();
    while gate.running() > 0 {
        assert!(t.elapsed() < Duration::from_secs(5), "slot never freed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let m = metrics(&st).await;
    assert!(
        m.contains("pno_cancelled_total{reason=\"disconnect\",replica=\"t\"} 1"),
        "{m}"
    );
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_unwritable_audit_record_withholds_the_answer_only_when_failing_closed() {
    for closed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path(), "a", &[1]);
        let mut cfg = config(&repo);
        cfg.audit.path = Some(dir.path().join("audit.log"));
        cfg.retry.base_ms = 1;
        if closed {
            cfg.audit.on_failure = pno_serve::config::AuditFailure::Closed;
        }
        let st = state(cfg);
        // More failures than the append's three attempts.
        inject(&st, json!({"io": "audit", "count": 3})).await;
        let (s, v) = call(&st, post_json("/v2/models/a/infer", &body())).await;
        let m = metrics(&st).await;
        assert!(m.contains("pno_audit_healthy{replica=\"t\"} 0"), "{m}");
        assert!(
            m.contains("\npno_audit_append_failures_total{replica=\"t\"} 1"),
            "{m}"
        );
        if closed {
            assert_eq!(
                (s, v["class"].as_str()),
                (StatusCode::SERVICE_UNAVAILABLE, Some("transient")),
                "{v}"
            );
            assert!(
                v["error"].as_str().unwrap().contains("audit.on_failure"),
                "{v}"
            );
        } else {
            assert_eq!(s, StatusCode::OK, "failing open answers: {v}");
        }
        // The log heals: the next record is written and the chain verifies.
        let (s, _) = call(&st, post_json("/v2/models/a/infer", &body())).await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            metrics(&st)
                .await
                .contains("pno_audit_healthy{replica=\"t\"} 1")
        );
        drop(st);
        assert_eq!(
            pno_serve::audit::verify(&dir.path().join("audit.log"))
                .unwrap()
                .records,
            1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_in_one_batched_request_stays_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let st = two_models(dir.path(), |c| {
        c.batching.max_wait_ms = 300;
        c.batching.max_rows = 16;
        c.degrade.enabled = false;
    });
    let req = |seed: u64| {
        post_json(
            "/v2/models/a/infer",
            &infer_body(&input(1), 1, json!({"n_samples": 4, "seed": seed})),
        )
    };
    for (mode, status, class) in [
        ("nan", StatusCode::INTERNAL_SERVER_ERROR, "persistent"),
        ("panic", StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        ("fail", StatusCode::INTERNAL_SERVER_ERROR, "persistent"),
    ] {
        // One request of the three takes the fault (count 1); all three share one batch.
        inject(&st, json!({"model": "a", "mode": mode, "count": 1})).await;
        let before = metrics(&st).await;
        let (a, b, c) = tokio::join!(call(&st, req(1)), call(&st, req(2)), call(&st, req(3)));
        let answers = [a, b, c];
        let failed: Vec<_> = answers
            .iter()
            .filter(|(s, _)| *s != StatusCode::OK)
            .collect();
        assert_eq!(failed.len(), 1, "{mode}: {answers:?}");
        assert_eq!(
            (failed[0].0, failed[0].1["class"].as_str()),
            (status, Some(class)),
            "{mode}: {:?}",
            failed[0].1
        );
        let after = metrics(&st).await;
        let count = |m: &str, name: &str| -> f64 {
            m.lines()
                .filter(|l| l.starts_with(name))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        assert_eq!(
            count(&after, "pno_batches_total") - count(&before, "pno_batches_total"),
            1.0,
            "{mode}: the three requests ran as one batch"
        );
        assert_eq!(
            count(&after, "pno_batched_requests_total")
                - count(&before, "pno_batched_requests_total"),
            3.0
        );
    }
}
