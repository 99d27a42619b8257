//! pno-serve against real run folders: every route and failure status with `oneshot`, the
//! security behaviours, the repository, the audit chain, and one real socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "fault-injection")]
mod alerting;
mod audit;
mod dependencies;
mod drift;
#[cfg(feature = "fault-injection")]
mod faults;
mod feedback;
mod infer;
mod keys;
mod preflight;
mod reload;
mod replica;
mod repository;
mod resilience;
mod resources;
mod rollback;
mod routes;
mod security;
mod socket;
mod tls;

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use pno_models::burn::tensor::Device;
use pno_serve::{AppState, ServeConfig, app};
use serde_json::{Value, json};
use tower::ServiceExt;

/// Side of the fixture grid.
pub(crate) const S: usize = pno_train::testing::GRID;

/// A tiny trained PNO_D run folder on [`S`]² synthetic data (trained once, cached under
/// `CARGO_TARGET_TMPDIR` while it still loads; tests copy it).
pub(crate) fn fixture_run() -> PathBuf {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pno-serve-fixture");
    pno_train::testing::cached_tiny_run(&cache, "pno_d", 24, 1).unwrap()
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// A repository `<dir>/repo/<model>/<version>/` with the fixture run at each given version.
pub(crate) fn repo(dir: &Path, model: &str, versions: &[u64]) -> PathBuf {
    let run = fixture_run();
    let repo = dir.join("repo");
    for v in versions {
        copy_dir(&run, &repo.join(model).join(v.to_string()));
    }
    std::fs::create_dir_all(&repo).unwrap();
    repo
}

/// A config serving `repo`.
pub(crate) fn config(repo: &Path) -> ServeConfig {
    ServeConfig {
        replica: Some("t".into()),
        repository: repo.to_path_buf(),
        ..ServeConfig::default()
    }
}

/// Serve `st` on a real socket at 127.0.0.1:0: its address, the shutdown trigger, the task.
pub(crate) async fn start(
    st: &AppState,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<pno_serve::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(pno_serve::serve(listener, st.clone(), async {
        let _ = rx.await;
    }));
    (addr, tx, server)
}

/// A loaded state.
pub(crate) fn state(cfg: ServeConfig) -> AppState {
    let st = AppState::new(cfg, Device::flex()).unwrap();
    let errors = st.repository().load_all().unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    st
}

/// The usual test setup: model `pno` version 1 in a fresh repository.
pub(crate) fn setup() -> (tempfile::TempDir, AppState) {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1]);
    let st = state(config(&repo));
    (dir, st)
}

pub(crate) fn input(n: usize) -> Vec<f32> {
    (0..n * S * S).map(|i| ((i as f32) * 0.013).sin()).collect()
}

pub(crate) fn infer_body(x: &[f32], n: usize, params: Value) -> Value {
    json!({
        "id": "t1",
        "parameters": params,
        "inputs": [{"name": "x", "shape": [n, 1, S, S], "datatype": "FP32", "data": x}]
    })
}

/// Send a request through the app.
pub(crate) async fn send(st: &AppState, req: Request<Body>) -> Response<Body> {
    app(st.clone()).oneshot(req).await.unwrap()
}

pub(crate) fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

pub(crate) fn post_json(path: &str, v: &Value) -> Request<Body> {
    // No Content-Type, as tritonclient sends it.
    Request::post(path).body(Body::from(v.to_string())).unwrap()
}

/// A POST with a fresh operator key of `st`.
pub(crate) fn op_post(st: &AppState, path: &str, v: &Value) -> Request<Body> {
    let (key, _) = st.keys().create(pno_serve::auth::Role::Operator).unwrap();
    with_key(post_json(path, v), &key)
}

pub(crate) fn with_key(mut r: Request<Body>, key: &str) -> Request<Body> {
    r.headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    r
}

/// The audit log at `path` once it holds every one of `needles` (the server writes the records
/// of its own decisions, alerts and rollbacks, just after they become visible through the API),
/// or as it is after 5 s.
pub(crate) async fn audit_log_with(path: &Path, needles: &[&str]) -> String {
    let t = std::time::Instant::now();
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if needles.iter().all(|n| log.contains(n))
            || t.elapsed() > std::time::Duration::from_secs(5)
        {
            return log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub(crate) async fn body_bytes(r: Response<Body>) -> Vec<u8> {
    axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec()
}

/// Status and JSON body; asserts that every non-2xx answer is `{"error": "...", "class": ...}`.
pub(crate) async fn call(st: &AppState, req: Request<Body>) -> (StatusCode, Value) {
    let r = send(st, req).await;
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let b = body_bytes(r).await;
    let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
    if !status.is_success() {
        assert!(
            ct.starts_with("application/json") && v["error"].is_string(),
            "{status}: error body must be JSON {{\"error\"}}: {ct} {}",
            String::from_utf8_lossy(&b)
        );
        let class = v["class"].as_str().unwrap_or("");
        assert!(
            ["input", "security", "transient", "persistent", "internal"].contains(&class),
            "{status}: error body must carry a failure class: {}",
            String::from_utf8_lossy(&b)
        );
    }
    (status, v)
}

pub(crate) fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// A local HTTP(S) webhook receiver: answers the first `fail` requests with 503, then 200; sends each
/// body it got.
pub(crate) async fn receiver(
    fail: usize,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut seen = 0;
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let status = if seen < fail { 503 } else { 200 };
            seen += 1;
            let mut io: Box<dyn Stream> = match &tls {
                None => Box::new(tcp),
                Some(cfg) => match tokio_rustls::TlsAcceptor::from(cfg.clone())
                    .accept(tcp)
                    .await
                {
                    Ok(s) => Box::new(s),
                    Err(_) => continue,
                },
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let n = io.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..split]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if buf.len() >= split + 4 + len {
                        break Some(
                            String::from_utf8_lossy(&buf[split + 4..split + 4 + len]).to_string(),
                        );
                    }
                }
            };
            let _ = io
                .write_all(
                    format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await;
            let _ = io.shutdown().await;
            if let (Some(b), 200) = (body, status) {
                let _ = tx.send(b);
            }
        }
    });
    (addr, rx)
}

pub(crate) trait Stream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send
{
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}
