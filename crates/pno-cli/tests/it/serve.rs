//! `pno serve`, `pno keys`, `pno audit` as processes: config validation, keys shown once and
//! stored hashed, a real server that answers and drains on SIGTERM with exit 0, and audit-log
//! tamper detection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{assert_errors_name, darcy, pno_err, pno_ok, tiny_train};

/// A repository `<dir>/repo/pno/1/` holding a 1-epoch PNO_D run on 16² Darcy.
fn repository(dir: &Path) -> String {
    let data = darcy(&dir.join("d16"), 16, 16, 1);
    let run = dir.join("repo/pno/1");
    std::fs::create_dir_all(run.parent().unwrap()).unwrap();
    tiny_train(
        "darcy16_pno_d.toml",
        &data,
        run.to_str().unwrap(),
        &[
            "train.epochs=1",
            "data.n_train=8",
            "data.n_test=4",
            "train.batch_size=4",
            "model.hidden_channels=8",
            "model.lifting_channels=8",
            "model.projection_channels=8",
            "model.n_layers=2",
        ],
    );
    dir.join("repo").display().to_string()
}

fn http(addr: &str, method: &str, path: &str, key: Option<&str>, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

#[test]
fn bad_configs_are_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("serve.toml");
    for (text, key) in [
        ("[limits]\nmax_concurrency = 0\n", "limits.max_concurrency"),
        ("[limits]\nmax_queue = \"many\"\n", "limits.max_queue"),
        ("listen = \"nowhere\"\n", "listen"),
        ("bogus_key = 1\n", "bogus_key"),
    ] {
        std::fs::write(&cfg, text).unwrap();
        let err = pno_err(&["serve", "--config", cfg.to_str().unwrap()]);
        assert!(err.contains(key), "{text:?}: {err}");
    }
    let repo = dir.path().to_str().unwrap();
    assert_errors_name(&[
        (
            &["serve", "--repository", repo, "--listen", "1.2.3"],
            &["listen"],
        ),
        (
            &[
                "serve",
                "--repository",
                "/no/such/repo",
                "--listen",
                "127.0.0.1:0",
            ],
            &["/no/such/repo"],
        ),
    ]);
}

#[test]
fn keys_are_printed_once_and_stored_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let k = keys.to_str().unwrap();
    let key = pno_ok(&["keys", "create", "--role", "operator", "--keys", k]);
    let key = key.trim();
    assert!(
        key.starts_with("pno_") && key.len() == 4 + 12 + 1 + 64,
        "{key}"
    );
    let stored = std::fs::read_to_string(&keys).unwrap();
    assert!(
        !stored.contains(key) && !stored.contains(&key[17..]),
        "{stored}"
    );
    let list = pno_ok(&["keys", "list", "--keys", k]);
    assert!(
        list.contains(&key[4..16]) && list.contains("operator"),
        "{list}"
    );
    let err = pno_err(&["keys", "create", "--role", "root", "--keys", k]);
    assert!(err.contains("--role"), "{err}");
    let json = pno_ok(&["--json", "keys", "create", "--role", "admin", "--keys", k]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["role"], "admin");
    pno_ok(&["keys", "revoke", &key[4..16], "--keys", k]);
    assert!(!pno_ok(&["keys", "list", "--keys", k]).contains("operator"));
}

#[test]
fn serve_answers_then_drains_on_sigterm_and_the_audit_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path());
    let keys = dir.path().join("keys.json");
    let key = pno_ok(&[
        "keys",
        "create",
        "--role",
        "reader",
        "--keys",
        keys.to_str().unwrap(),
    ]);
    let key = key.trim().to_string();
    let audit = dir.path().join("audit.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pno"))
        .args([
            "serve",
            "--repository",
            &repo,
            "--listen",
            "127.0.0.1:0",
            "--keys",
            keys.to_str().unwrap(),
            "--audit",
            audit.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let (s, _) = http(&addr, "GET", "/v2/health/ready", None, "");
    assert_eq!(s, 200);
    let (s, body) = http(&addr, "GET", "/v2/models/pno", None, "");
    assert_eq!(s, 401, "{body}");
    let (s, body) = http(&addr, "GET", "/v2/models/pno", Some(&key), "");
    assert_eq!(s, 200, "{body}");
    let x: Vec<f32> = (0..256).map(|i| (i as f32 * 0.1).sin().abs()).collect();
    let req = serde_json::json!({"parameters": {"n_samples": 4, "seed": 3},
        "inputs": [{"name": "x", "shape": [1, 1, 16, 16], "datatype": "FP32", "data": x}]});
    let (s, body) = http(
        &addr,
        "POST",
        "/v2/models/pno/infer",
        Some(&key),
        &req.to_string(),
    );
    assert_eq!(s, 200, "{body}");
    let (s, _) = http(&addr, "GET", "/metrics", None, "");
    assert_eq!(s, 200);
    // SIGTERM: drain and exit 0.
    let t = Instant::now();
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "pno serve did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(status.success(), "exit {status:?}\n{logs}");
    // Structured JSON logs with request ids.
    let first = logs
        .lines()
        .find(|l| l.contains("request_id"))
        .unwrap_or_else(|| panic!("{logs}"));
    let v: serde_json::Value = serde_json::from_str(first).unwrap();
    assert!(
        v["span"]["request_id"].is_string() || first.contains("\"request_id\""),
        "{first}"
    );
    assert!(logs.contains("draining"), "{logs}");
    let out = pno_ok(&["audit", "verify", audit.to_str().unwrap()]);
    assert!(out.starts_with("ok: 3 records"), "{out}");
}

#[test]
fn audit_verify_names_the_first_tampered_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log =
        pno_serve::audit::AuditLog::open(&path, pno_serve::config::FsyncPolicy::Always, 1).unwrap();
    for i in 0..3 {
        log.append(pno_serve::audit::AuditEvent {
            actor: format!("key{i}"),
            action: "infer".into(),
            outcome: "ok".into(),
            status: 200,
            ..Default::default()
        })
        .unwrap();
    }
    drop(log);
    let p = path.to_str().unwrap();
    assert!(pno_ok(&["audit", "verify", p]).contains("3 records"));
    let good = std::fs::read(&path).unwrap();
    let second = good.iter().position(|&b| b == b'\n').unwrap() + 1;
    // One byte inside record 2 ("key1" -> "kez1").
    let mut bad = good.clone();
    let at = second
        + String::from_utf8_lossy(&good[second..])
            .find("key1")
            .unwrap()
        + 2;
    bad[at] = b'z';
    std::fs::write(&path, &bad).unwrap();
    let err = pno_err(&["audit", "verify", p]);
    assert!(err.contains("record 2"), "{err}");
    let err = pno_err(&[
        "audit",
        "verify",
        dir.path().join("none.log").to_str().unwrap(),
    ]);
    assert!(err.contains("none.log"), "{err}");
}
