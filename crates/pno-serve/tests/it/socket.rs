//! A real server on 127.0.0.1:0: HTTP/1.1 over TCP, keep-alive, and a graceful drain that lets
//! the in-flight request finish, refuses new ones and flushes the audit log.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::*;

/// One HTTP/1.1 request on a fresh connection; returns (status, headers, body).
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, buf[split + 4..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_socket_serves_and_drains_gracefully() {
    let (dir, _) = setup();
    let mut cfg = config(&dir.path().join("repo"));
    cfg.limits.max_concurrency = 1;
    cfg.audit.path = Some(dir.path().join("audit.log"));
    cfg.audit.fsync = pno_serve::config::FsyncPolicy::Never;
    cfg.shutdown.drain_timeout_s = 20;
    let st = state(cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(pno_serve::serve(listener, st.clone(), async {
        let _ = rx.await;
    }));

    let (s, _, b) = http(addr, "GET", "/v2/health/ready", b"").await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let body = infer_body(&input(1), 1, json!({"n_samples": 3, "seed": 5})).to_string();
    let (s, head, b) = http(addr, "POST", "/v2/models/pno/infer", body.as_bytes()).await;
    assert_eq!(s, 200);
    assert!(head.to_ascii_lowercase().contains("x-request-id"), "{head}");
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["outputs"][0]["shape"], json!([1, 1, S, S]));
    let (s, _, b) = http(addr, "POST", "/v2/models/pno/infer", b"{oops").await;
    assert_eq!(s, 400);
    assert!(serde_json::from_slice::<Value>(&b).unwrap()["error"].is_string());

    // An in-flight request (held in the queue behind an occupied slot) …
    let slot = st.gate().acquire().await.unwrap();
    let body2 = body.clone();
    let inflight =
        tokio::spawn(
            async move { http(addr, "POST", "/v2/models/pno/infer", body2.as_bytes()).await },
        );
    let t = std::time::Instant::now();
    while st.gate().waiting() != 1 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "request never queued"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // … then SIGTERM: readiness false, new requests refused …
    tx.send(()).unwrap();
    let t = std::time::Instant::now();
    while !st.is_draining() {
        assert!(t.elapsed() < Duration::from_secs(20), "never drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(st.readiness().is_err());
    // … the in-flight one still finishes, and the server exits cleanly.
    drop(slot);
    let (s, _, b) = inflight.await.unwrap();
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("server did not stop")
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
    let v = pno_serve::audit::verify(&dir.path().join("audit.log")).unwrap();
    assert_eq!(
        v.records, 3,
        "two infers and one refused infer, flushed at exit"
    );
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let (dir, _) = setup();
    let mut cfg = config(&dir.path().join("repo"));
    cfg.limits.header_timeout_ms = 300;
    let st = state(cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(pno_serve::serve(listener, st, async {
        let _ = rx.await;
    }));
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let t = std::time::Instant::now();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("connection kept open");
    assert!(
        n.is_err() || t.elapsed() >= Duration::from_millis(250),
        "{n:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    // Well-behaved clients are served.
    let (status, _, _) = http(addr, "GET", "/v2/health/live", b"").await;
    assert_eq!(status, 200);
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(20), "{what}: timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_request_whose_client_leaves_is_dropped_before_it_starts() {
    let (_dir, st) = setup();
    let (addr, tx, server) = start(&st).await;
    let slot = st.model_gate("pno").acquire().await.unwrap();
    // A request queues behind the held slot, then its client goes away.
    let body = infer_body(&input(1), 1, json!({"n_samples": 3, "seed": 5})).to_string();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v2/models/pno/infer HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let gate = st.model_gate("pno");
    wait_for("queued", || gate.waiting() == 1).await;
    drop(s);
    wait_for("left the queue", || gate.waiting() == 0).await;
    drop(slot);
    let m = String::from_utf8(http(addr, "GET", "/metrics", b"").await.2).unwrap();
    assert!(
        m.contains("pno_cancelled_total{reason=\"disconnect\",replica=\"t\"} 1"),
        "{m}"
    );
    // It never computed.
    assert!(!m.contains("pno_inference_exec_count_total{"), "{m}");
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_503_and_keep_alive_is_bounded() {
    let (dir, _) = setup();
    let mut cfg = config(&dir.path().join("repo"));
    cfg.limits.max_connections = 1;
    cfg.limits.max_requests_per_connection = 2;
    let st = state(cfg);
    let (addr, tx, server) = start(&st).await;
    // One keep-alive connection: the second request's answer closes it.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = b"GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\n\r\n";
    s.write_all(req).await.unwrap();
    // While it is open, another connection is refused with 503.
    let (status, head, b) = http(addr, "GET", "/v2/health/live", b"").await;
    assert_eq!(status, 503, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["class"], "transient");
    s.write_all(req).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("the server closes the connection after its last allowed request")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    assert_eq!(text.matches("http/1.1 200").count(), 2, "{text}");
    assert!(text.contains("connection: close"), "{text}");
    drop(s);
    // The slot is free again.
    wait_for("connection slot freed", || true).await;
    let mut ok = false;
    for _ in 0..100 {
        if http(addr, "GET", "/v2/health/live", b"").await.0 == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "a new connection is served once the old one closed");
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_writes_signed_checkpoints_that_pin_its_audit_log() {
    use pno_serve::audit::checkpoint::{VerifierKey, open, verify_against};
    let (dir, _) = setup();
    let (signer, verifier) = pno_serve::audit::checkpoint::generate_key("pno-serve/test").unwrap();
    let key = dir.path().join("audit-key");
    std::fs::write(&key, signer).unwrap();
    let mut cfg = config(&dir.path().join("repo"));
    let log = dir.path().join("audit.log");
    cfg.audit.path = Some(log.clone());
    cfg.audit.checkpoint_key = Some(key);
    cfg.audit.checkpoint_every_s = 1;
    let st = state(cfg);
    let (addr, tx, server) = start(&st).await;
    let body = infer_body(&input(1), 1, json!({"n_samples": 2})).to_string();
    for _ in 0..3 {
        assert_eq!(
            http(addr, "POST", "/v2/models/pno/infer", body.as_bytes())
                .await
                .0,
            200
        );
    }
    let latest = dir.path().join("audit.log.checkpoints/latest.txt");
    wait_for("a periodic checkpoint", || latest.exists()).await;
    let vk = VerifierKey::parse(&verifier).unwrap();
    let cp = open(&std::fs::read_to_string(&latest).unwrap(), &vk).unwrap();
    assert!(cp.size >= 3, "{}", cp.size);
    assert_eq!(verify_against(&log, &cp).unwrap(), cp.size);
    // One more request, then shutdown: the final checkpoint covers every record.
    assert_eq!(
        http(addr, "POST", "/v2/models/pno/infer", body.as_bytes())
            .await
            .0,
        200
    );
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    let cp = open(&std::fs::read_to_string(&latest).unwrap(), &vk).unwrap();
    let all = pno_serve::audit::verify(&log).unwrap().records;
    assert_eq!(cp.size, all);
    // A truncated log is caught against it.
    let text = std::fs::read_to_string(&log).unwrap();
    let cut: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&log, cut).unwrap();
    assert!(verify_against(&log, &cp).is_err());
}
