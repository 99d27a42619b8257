//! `pno train --anomaly-webhook`: anomaly events reach a real local HTTP receiver (after a 503
//! and a retry), an unreachable webhook neither fails nor stalls training, a bad URL is refused
//! before training starts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{assert_errors_name, config, darcy, pno, train_args};

/// One received POST: path, content type, body.
type Received = (String, String, String);

/// A receiver on 127.0.0.1 that answers 503 to the first POST and 200 to the rest, recording
/// every request. Returns the URL of `/hook` and the record.
fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let record = got.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { continue };
            if let Some(req) = read_request(&conn) {
                let first = {
                    let mut g = record.lock().unwrap();
                    g.push(req);
                    g.len() == 1
                };
                let status = if first {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                };
                let _ = (&conn).write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
            }
        }
    });
    (url, got)
}

fn read_request(conn: &TcpStream) -> Option<Received> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let (mut len, mut ctype) = (0usize, String::new());
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().ok()?,
            "content-type" => ctype = v.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((path, ctype, String::from_utf8(body).ok()?))
}

/// A tiny FNO whose learning rate is too small to move an f32 weight: the validation metric
/// stays where it starts, so the watch's plateau detector (8 epochs without a 1e-3 relative
/// improvement) fires at epoch 9 — and nothing else fires (18 steps stay inside the step
/// detectors' 32-step warm-up).
const PLATEAU: [&str; 11] = [
    "train.epochs=9",
    "train.lr=1e-30",
    "train.batch_size=6",
    "data.n_train=12",
    "data.n_test=4",
    "model.hidden_channels=4",
    "model.n_layers=1",
    "model.n_modes=[4,4]",
    "model.lifting_channels=8",
    "model.projection_channels=8",
    "train.patience=0",
];

/// Runs `pno train` on the plateau config with `extra` arguments: (success, stderr, seconds).
fn train(data: &str, run: &Path, extra: &[&str]) -> (bool, String, f64) {
    let mut args = train_args("darcy16_fno.toml", data, run.to_str().unwrap(), &PLATEAU);
    args.extend(extra.iter().map(|s| (*s).to_string()));
    let t0 = Instant::now();
    let out = pno(&args.iter().map(String::as_str).collect::<Vec<_>>());
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        t0.elapsed().as_secs_f64(),
    )
}

/// The `anomaly` lines of a run's log.jsonl.
fn logged_anomalies(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == "anomaly")
        .collect()
}

#[test]
fn anomaly_events_reach_the_webhook_after_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let data = darcy(&dir.path().join("d16"), 16, 16, 1);
    let run = dir.path().join("run");
    let (url, got) = receiver();
    let (ok, stderr, _) = train(&data, &run, &["--anomaly-webhook", &url]);
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("warning: anomaly webhook"), "{stderr}");
    let logged = logged_anomalies(&run);
    assert_eq!(logged.len(), 1, "{logged:?}");
    let line = &logged[0];
    assert_eq!(
        (line["detector"].as_str(), line["epoch"].as_u64()),
        (Some("plateau"), Some(9))
    );
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "a 503, then the retry: {got:?}");
    assert_eq!(got[0], got[1], "the retry sends the same body");
    let (path, ctype, body) = &got[1];
    assert_eq!(
        (path.as_str(), ctype.as_str()),
        ("/hook", "application/json")
    );
    let body: Value = serde_json::from_str(body).unwrap();
    for k in [
        "kind", "detector", "epoch", "step", "count", "value", "baseline", "message",
    ] {
        assert_eq!(body[k], line[k], "{k}: {body} vs {line}");
    }
    let abs = std::path::absolute(&run).unwrap();
    assert_eq!(body["run"].as_str(), abs.to_str());
    assert!(
        body["ts_ms"]
            .as_u64()
            .is_some_and(|t| t > 1_600_000_000_000),
        "{body}"
    );
}

#[test]
fn an_unreachable_webhook_neither_fails_nor_stalls_training() {
    let dir = tempfile::tempdir().unwrap();
    let data = darcy(&dir.path().join("d16"), 16, 16, 1);
    // A port nobody listens on: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let (ok, stderr, plain_s) = train(&data, &dir.path().join("plain"), &[]);
    assert!(ok, "{stderr}");
    let run = dir.path().join("run");
    let (ok, stderr, hooked_s) = train(&data, &run, &["--anomaly-webhook", &url]);
    assert!(ok, "training must not fail: {stderr}");
    assert_eq!(logged_anomalies(&run).len(), 1, "the log keeps the event");
    assert!(
        stderr.contains("warning: anomaly webhook") && stderr.contains("0 of 1 event(s) delivered"),
        "the loss is reported: {stderr}"
    );
    assert!(
        hooked_s <= plain_s + 15.0,
        "{hooked_s:.1} s with the webhook vs {plain_s:.1} s without"
    );
}

#[test]
fn a_bad_anomaly_webhook_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let data = darcy(&dir.path().join("d16"), 16, 12, 1);
    let run = dir.path().join("r");
    let cfg = config("darcy16_fno.toml");
    let train = [
        "train",
        "--config",
        cfg.as_str(),
        "--data",
        data.as_str(),
        "--out",
        run.to_str().unwrap(),
    ];
    let with = |extra: &[&'static str]| [train.as_slice(), extra].concat();
    assert_errors_name(&[
        (
            &with(&["--anomaly-webhook", "ftp://x"]),
            &["--anomaly-webhook", "ftp://x"],
        ),
        (
            &with(&[
                "--anomaly-webhook",
                "https://x/",
                "--anomaly-webhook-ca",
                "/nonexistent/ca.pem",
            ]),
            &["--anomaly-webhook-ca", "/nonexistent/ca.pem"],
        ),
    ]);
    assert!(!run.exists(), "no run folder: training never started");
}
