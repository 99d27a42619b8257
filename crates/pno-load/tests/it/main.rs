//! `pno-load` against real HTTP servers on 127.0.0.1:0.

#![allow(clippy::unwrap_used)]

mod server;

use std::time::{Duration, Instant};

use pno_load::{Outcome, RetryPolicy, RunConfig, Summary, Target};
use server::{reply, reply_chunked, start};

const OK: &str = r#"{"model_name":"pno","outputs":[],"parameters":{"n_samples":4}}"#;
const SHED: &str = r#"{"error":"queue full","class":"transient","breaker":"open"}"#;

fn config(url: &str, rate: f64, duration_s: f64, timeout_ms: u64) -> RunConfig {
    RunConfig {
        target: Target::parse(url).unwrap(),
        headers: vec![("Authorization".into(), "Bearer K".into())],
        body: Some(br#"{"inputs":[]}"#.to_vec()),
        rate,
        duration: Duration::from_secs_f64(duration_s),
        timeout: Duration::from_millis(timeout_ms),
        max_in_flight: 1000,
        poisson: false,
        retry: RetryPolicy::NONE,
        seed: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_is_respected() {
    let server = start(|_| reply("200 OK", "", OK)).await;
    let records = pno_load::run(&config(&server.url(), 50.0, 2.0, 5000))
        .await
        .unwrap();
    let s = Summary::of(&records, 2.0);
    assert!((98..=102).contains(&s.sent), "sent {}", s.sent);
    assert_eq!((s.succeeded, s.failed, s.client_dropped), (s.sent, 0, 0));
    assert_eq!(records[3].n_samples, Some(4));
    // The server saw them, spread over the 2 s (first to last arrival ≈ 1.98 s).
    let seen = server.arrivals.lock().unwrap().clone();
    assert_eq!(seen.len() as u64, s.sent);
    let span = seen[seen.len() - 1].duration_since(seen[0]).as_secs_f64();
    assert!((1.7..2.6).contains(&span), "span {span} s");
    assert_eq!(
        s.per_second.iter().map(|b| b.successes).collect::<Vec<_>>(),
        [50, 50]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_until_the_server_recovers() {
    let server = start(|n| {
        if n < 2 {
            reply("503 Service Unavailable", "retry-after: 1\r\n", SHED)
        } else {
            reply("200 OK", "", OK)
        }
    })
    .await;
    let mut cfg = config(&server.url(), 1.0, 1.0, 10_000);
    cfg.retry = RetryPolicy::default();
    let records = pno_load::run(&cfg).await.unwrap();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (
            r.status,
            r.attempts,
            r.retry_after.as_deref(),
            r.class.as_deref()
        ),
        (200, 3, Some("1"), None)
    );
    let s = Summary::of(&records, 1.0);
    assert_eq!((s.succeeded, s.failed, s.retried), (1, 0, 1));
    // Each retry came no sooner than Retry-After asked, and within its full-jitter window.
    let seen = server.arrivals.lock().unwrap().clone();
    for w in seen.windows(2) {
        let gap = w[1].duration_since(w[0]).as_secs_f64();
        assert!((0.99..2.5).contains(&gap), "gap {gap} s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_classes_and_degraded_answers_are_parsed() {
    let degraded = r#"{"parameters":{"degraded":true,"n_samples":16,"fallback_from":"2"}}"#;
    let server = start(move |n| {
        if n % 2 == 0 {
            reply("503 Service Unavailable", "Retry-After: 1\r\n", SHED)
        } else {
            reply_chunked("200 OK", degraded)
        }
    })
    .await;
    let records = pno_load::run(&config(&server.url(), 10.0, 1.0, 5000))
        .await
        .unwrap();
    let s = Summary::of(&records, 1.0);
    assert_eq!((s.sent, s.succeeded, s.degraded, s.failed), (10, 5, 5, 5));
    assert_eq!(s.failed_by_class.get("transient"), Some(&5));
    assert_eq!(s.failed_by_status.get("503"), Some(&5));
    for r in &records {
        assert_eq!(r.attempts, 1, "no retries without the policy");
        if r.status == 503 {
            assert_eq!(
                (r.breaker.as_deref(), r.retry_after.as_deref(), r.degraded),
                (Some("open"), Some("1"), false)
            );
        } else {
            assert_eq!(
                (
                    r.degraded,
                    r.n_samples,
                    r.fallback_from.as_deref(),
                    r.class.as_deref()
                ),
                (true, Some(16), Some("2"), None)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_counted_hung_within_the_bound() {
    let server = start(|_| None).await;
    let started = Instant::now();
    let records = pno_load::run(&config(&server.url(), 20.0, 1.0, 500))
        .await
        .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let s = Summary::of(&records, 1.0);
    assert_eq!((s.sent, s.hung, s.succeeded), (20, 20, 0));
    assert!(
        records
            .iter()
            .all(|r| r.outcome == Outcome::Hung && r.status == 0 && r.latency_ms == 500.0)
    );
    assert!(elapsed <= 1.0 + 0.5 + 1.0, "run took {elapsed} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_max_in_flight_are_counted_client_dropped() {
    let server = start(|_| None).await;
    let mut cfg = config(&server.url(), 20.0, 1.0, 2000);
    cfg.max_in_flight = 5;
    let records = pno_load::run(&cfg).await.unwrap();
    let s = Summary::of(&records, 1.0);
    assert_eq!(
        (s.scheduled, s.sent, s.hung, s.client_dropped),
        (20, 5, 5, 15)
    );
    assert!(
        records[5..]
            .iter()
            .all(|r| r.outcome == Outcome::ClientDropped && r.attempts == 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_an_error_with_status_0() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let records = pno_load::run(&config(
        &format!("http://127.0.0.1:{port}/"),
        5.0,
        1.0,
        1000,
    ))
    .await
    .unwrap();
    assert!(
        records
            .iter()
            .all(|r| r.outcome == Outcome::Error && r.status == 0 && r.error.is_some())
    );
    assert_eq!(Summary::of(&records, 1.0).connection_errors, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_closed_by_the_server_are_replaced() {
    // Every other answer silently closes its connection; the pooled connection then fails on
    // reuse and the client must open a fresh one rather than report an error.
    let server = start(|n| {
        if n % 2 == 0 {
            reply("200 OK", "x-close: 1\r\n", OK)
        } else {
            reply_chunked("200 OK", OK)
        }
    })
    .await;
    let records = pno_load::run(&config(&server.url(), 20.0, 1.0, 5000))
        .await
        .unwrap();
    let s = Summary::of(&records, 1.0);
    assert_eq!((s.sent, s.succeeded, s.connection_errors), (20, 20, 0));
    assert_eq!(
        server.arrivals.lock().unwrap().len(),
        20,
        "each request reached the server once"
    );
}

#[test]
fn the_cli_refuses_a_non_loopback_url() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pno-load"))
        .args([
            "--url",
            "http://192.0.2.1:8000/v2/models/pno/infer",
            "--rate",
            "1",
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing target host \"192.0.2.1\"") && stderr.contains("loopback"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_writes_timeline_summary_and_mttr() {
    let server = start(|n| {
        if (5..10).contains(&n) {
            reply(
                "500 Internal Server Error",
                "",
                r#"{"error":"x","class":"internal"}"#,
            )
        } else {
            reply("200 OK", "", OK)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (timeline, summary, faults) = (
        dir.path().join("t.jsonl"),
        dir.path().join("s.json"),
        dir.path().join("f.json"),
    );
    std::fs::write(dir.path().join("body.json"), "{}").unwrap();
    std::fs::write(&faults, r#"[{"name":"crash","start_ms":400,"end_ms":500}]"#).unwrap();
    let bin = env!("CARGO_BIN_EXE_pno-load");
    let url = server.url();
    let args: Vec<String> = [
        "--url",
        &url,
        "--rate",
        "10",
        "--duration",
        "3",
        "--timeout-ms",
        "2000",
        "--seed",
        "3",
    ]
    .into_iter()
    .map(String::from)
    .chain([
        "--body".into(),
        dir.path().join("body.json").display().to_string(),
    ])
    .chain([
        "--out".into(),
        timeline.display().to_string(),
        "--summary".into(),
        summary.display().to_string(),
    ])
    .collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("| succeeded (2xx) | 25 |"));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(
        (
            s["sent"].as_u64(),
            s["failed_by_class"]["internal"].as_u64()
        ),
        (Some(30), Some(5))
    );
    assert_eq!(pno_load::read_timeline(&timeline).unwrap().len(), 30);
    // Failures start at 500..=900 ms (requests 5..9), then 2 s of 2xx: recovery at 900 ms.
    let out = std::process::Command::new(bin)
        .args([
            "mttr",
            "--timeline",
            &timeline.display().to_string(),
            "--faults",
            &faults.display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("| crash | 400–500 | false | true | 400 | 1 | 100.0 % |")
    );
}
