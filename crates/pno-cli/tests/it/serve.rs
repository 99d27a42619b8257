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
pub(crate) fn repository(dir: &Path) -> String {
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

/// Start `pno serve ARGS` (stdout and stderr piped) and read the address it listens on.
pub(crate) fn spawn_serve(args: &[&str]) -> (std::process::Child, String) {
    spawn_serve_env(args, &[])
}

/// [`spawn_serve`] with extra environment variables.
pub(crate) fn spawn_serve_env(
    args: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Child, String) {
    let mut child = Command::new(crate::pno_bin())
        .arg("serve")
        .args(args)
        // (the allocator setting the server picks for itself unless told: see the test below)
        .env_remove("MIMALLOC_PURGE_DELAY")
        .envs(env.iter().copied())
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
    (child, addr)
}

pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, String) {
    http_with(addr, method, path, key, &[], body)
}

/// SIGTERM to a server from [`spawn_serve`], wait for it: its exit status and its log (stderr).
pub(crate) fn stop_serve(child: &mut std::process::Child) -> (std::process::ExitStatus, String) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut logs = String::new();
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut logs).unwrap();
    }
    (status, logs)
}

/// [`http`] with extra request headers.
pub(crate) fn http_with(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut extra = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    for (name, value) in headers {
        extra.push_str(&format!("{name}: {value}\r\n"));
    }
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
        ("[breaker]\nfailure_rate = 2.0\n", "breaker.failure_rate"),
        ("[degrade]\nmin_samples = 100000\n", "degrade.min_samples"),
        ("[breaker]\nwindow = -5\n", "breaker.window"),
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
    let key = crate::new_key(&keys, "reader");
    let audit = dir.path().join("audit.log");
    // The replica id from the environment (a Kubernetes Deployment sets it to the pod name).
    let (mut child, addr) = spawn_serve_env(
        &[
            "--repository",
            &repo,
            "--listen",
            "127.0.0.1:0",
            "--keys",
            keys.to_str().unwrap(),
            "--audit",
            audit.to_str().unwrap(),
        ],
        &[("PNO_REPLICA", "pno-serve-0")],
    );
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
    let (s, m) = http(&addr, "GET", "/metrics", None, "");
    assert_eq!(s, 200);
    assert!(
        m.contains(&format!(
            "pno_replica_info{{version=\"{}\",replica=\"pno-serve-0\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{m}"
    );
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
    let text = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(
        text.matches("\"replica\":\"pno-serve-0\"").count(),
        3,
        "every record names the replica:\n{text}"
    );
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

/// Copy a run with every weight scaled by 1e30: finite (it loads, its checksum is updated) but
/// every forward pass overflows.
pub(crate) fn broken_copy(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
    let w = dst.join("weights.safetensors");
    let (mut tensors, meta) = pno_run::from_safetensors(&std::fs::read(&w).unwrap(), &w).unwrap();
    for t in tensors.values_mut() {
        t.values.iter_mut().for_each(|v| *v *= 1e30);
    }
    let out = pno_run::to_safetensors(&tensors, meta).unwrap();
    std::fs::write(&w, &out).unwrap();
    let mp = dst.join("model.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mp).unwrap()).unwrap();
    m["weights_sha256"] = pno_core::sha256_hex(&out).into();
    std::fs::write(&mp, m.to_string()).unwrap();
}

#[test]
fn a_failing_version_trips_its_breaker_and_unpinned_requests_fall_back_on_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path());
    broken_copy(
        &dir.path().join("repo/pno/1"),
        &dir.path().join("repo/pno/2"),
    );
    let audit = dir.path().join("audit.log");
    let cfg = dir.path().join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "replica = \"pno-a\"\nlisten = \"127.0.0.1:0\"\nrepository = {repo:?}\nfallback = \"previous\"\n\
             [breaker]\nconsecutive_failures = 3\nopen_ms = 60000\n\
             [audit]\npath = {:?}\n[models.pno]\nversion_policy = \"all\"\n",
            audit.display().to_string()
        ),
    )
    .unwrap();
    let (mut child, addr) = spawn_serve(&["--config", cfg.to_str().unwrap()]);
    let x: Vec<f32> = (0..256).map(|i| (i as f32 * 0.1).sin().abs()).collect();
    let req = serde_json::json!({"parameters": {"n_samples": 4, "seed": 3},
        "inputs": [{"name": "x", "shape": [1, 1, 16, 16], "datatype": "FP32", "data": x}]})
    .to_string();
    let pinned = "/v2/models/pno/versions/2/infer";
    for _ in 0..3 {
        let (s, body) = http(&addr, "POST", pinned, None, &req);
        assert_eq!(s, 500, "{body}");
        assert!(body.contains("\"class\":\"persistent\""), "{body}");
    }
    let t = Instant::now();
    let (s, body) = http(&addr, "POST", pinned, None, &req);
    let fail_fast = t.elapsed();
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("\"breaker\":\"open\""), "{body}");
    let (s, body) = http(&addr, "POST", "/v2/models/pno/infer", None, &req);
    assert_eq!(s, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            v["model_version"].as_str(),
            v["parameters"]["fallback_from"].as_str()
        ),
        (Some("1"), Some("2"))
    );
    let (_, m) = http(&addr, "GET", "/metrics", None, "");
    assert!(
        m.contains("pno_breaker_state{model=\"pno\",version=\"2\",replica=\"pno-a\"} 1"),
        "{m}"
    );
    assert!(
        m.contains(
            "pno_failures_total{class=\"persistent\",model=\"pno\",version=\"2\",replica=\"pno-a\"} 3"
        ),
        "{m}"
    );
    let (status, logs) = stop_serve(&mut child);
    assert!(status.success(), "{logs}");
    assert!(logs.contains("circuit breaker opened"), "{logs}");
    assert!(
        logs.contains("\"class\":\"persistent\""),
        "the log line carries the class: {logs}"
    );
    let audit_text = std::fs::read_to_string(&audit).unwrap();
    assert!(
        audit_text.contains("\"action\":\"breaker.open\""),
        "{audit_text}"
    );
    assert!(
        audit_text.contains("\"class\":\"persistent\""),
        "{audit_text}"
    );
    let out = pno_ok(&["audit", "verify", audit.to_str().unwrap()]);
    assert!(out.starts_with("ok:"), "{out}");
    eprintln!("breaker fail-fast answer on a real server: {fail_fast:?}");
}

#[test]
fn sighup_reloads_the_config_and_a_bad_file_leaves_the_old_one_serving() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path());
    let cfg = dir.path().join("serve.toml");
    let write = |extra: &str| {
        std::fs::write(
            &cfg,
            format!(
                "replica = \"pno-b\"\nlisten = \"127.0.0.1:0\"\nrepository = {repo:?}\n{extra}"
            ),
        )
        .unwrap();
    };
    write("[limits]\nmax_batch = 4\n");
    let (mut child, addr) = spawn_serve(&["--config", cfg.to_str().unwrap()]);
    let max_batch = || {
        let (s, body) = http(&addr, "GET", "/v2/models/pno", None, "");
        assert_eq!(s, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["parameters"]["max_batch"].as_u64().unwrap()
    };
    let metric = |name: &str| {
        let (_, m) = http(&addr, "GET", "/metrics", None, "");
        m.lines()
            .find(|l| l.starts_with(&format!("{name}{{replica=\"pno-b\"}} ")))
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
            .unwrap_or_default()
    };
    let hup = || {
        Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
    };
    let wait_for = |what: &str, f: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !f() {
            assert!(t.elapsed() < Duration::from_secs(20), "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(max_batch(), 4);
    write("[limits]\nmax_batch = 9\n");
    hup();
    wait_for("reloaded", &|| max_batch() == 9);
    assert_eq!(metric("pno_config_last_reload_successful"), "1");
    // A broken file: rejected, the server keeps serving max_batch 9, the gauge says so.
    write("[limits]\nmax_batch = \"nine\"\n");
    hup();
    wait_for("rejection seen", &|| {
        metric("pno_config_last_reload_successful") == "0"
    });
    assert_eq!(max_batch(), 9);
    let (status, logs) = stop_serve(&mut child);
    assert!(status.success(), "{logs}");
    assert!(logs.contains("config reloaded"), "{logs}");
    assert!(
        logs.contains("limits.max_batch"),
        "the rejection names the key: {logs}"
    );
}

/// Poll `GET path` with `key` until it answers `want`; panics after `within`.
fn until_status(addr: &str, path: &str, key: &str, want: u16, within: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let (s, body) = http(addr, "GET", path, Some(key), "");
        if s == want {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < within,
            "still {s} (not {want}) after {within:?}: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn keys_created_revoked_and_rotated_by_the_cli_take_effect_on_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path());
    let keys = dir.path().join("keys.json");
    let k = keys.to_str().unwrap();
    let first = crate::new_key(&keys, "reader");
    let cfg = dir.path().join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\nrepository = {repo:?}\nkeys = {k:?}\n\
             [rate_limit]\nmax_auth_failures = 1000\n"
        ),
    )
    .unwrap();
    let (mut child, addr) = spawn_serve(&["--config", cfg.to_str().unwrap()]);
    let model = "/v2/models/pno";
    let second = Duration::from_secs(1);
    assert_eq!(http(&addr, "GET", model, Some(&first), "").0, 200);
    // Created while the server runs: usable within a second.
    let json = pno_ok(&["--json", "keys", "create", "--role", "reader", "--keys", k]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let fresh = v["key"].as_str().unwrap().to_string();
    until_status(&addr, model, &fresh, 200, second);
    // Revoked while the server runs: refused within a second.
    pno_ok(&["keys", "revoke", v["id"].as_str().unwrap(), "--keys", k]);
    let took = until_status(&addr, model, &fresh, 401, second);
    assert!(took < second, "{took:?}");
    // Rotated with a 2 s grace: both secrets work, then only the new one.
    let id = &first[4..16];
    let rotated = pno_ok(&["keys", "rotate", id, "--grace", "2s", "--keys", k]);
    let rotated = rotated.trim().to_string();
    assert!(rotated.starts_with(&format!("pno_{id}_")) && rotated != first);
    until_status(&addr, model, &rotated, 200, second);
    assert_eq!(http(&addr, "GET", model, Some(&first), "").0, 200);
    until_status(&addr, model, &first, 401, Duration::from_secs(4));
    assert_eq!(http(&addr, "GET", model, Some(&rotated), "").0, 200);
    let err = pno_err(&["keys", "rotate", id, "--grace", "soon", "--keys", k]);
    assert!(err.contains("--grace"), "{err}");
    let err = pno_err(&[
        "keys",
        "create",
        "--role",
        "reader",
        "--expires-in",
        "2 weeks",
        "--keys",
        k,
    ]);
    assert!(err.contains("--expires-in"), "{err}");
    // The server wrote the last-use times on its way out; the listing shows them.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    let list = pno_ok(&["keys", "list", "--keys", k]);
    assert!(list.contains(id) && list.contains("last used"), "{list}");
}

#[test]
fn concurrent_keys_create_processes_lose_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let k = keys.to_str().unwrap();
    let children: Vec<_> = (0..12)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_pno"))
                .args(["--json", "keys", "create", "--role", "reader", "--keys", k])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let ids: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            v["id"].as_str().unwrap().to_string()
        })
        .collect();
    let list = pno_ok(&["keys", "list", "--keys", k]);
    assert_eq!(list.lines().count(), 12, "{list}");
    for id in &ids {
        assert!(list.contains(id.as_str()), "lost {id}: {list}");
    }
}

/// A temporary folder with a trained repository and `serve.toml` (an ephemeral port, that
/// repository, nothing else); returns the folder (keep it alive) and the config's path.
fn minimal_config() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path());
    let cfg = dir.path().join("serve.toml");
    std::fs::write(
        &cfg,
        format!("listen = \"127.0.0.1:0\"\nrepository = {repo:?}\n"),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    (dir, cfg)
}

/// SIGTERM and SIGHUP that arrive the moment the address is announced: the handlers are
/// registered before it, so the server drains and exits 0 (or reloads) instead of dying of the
/// signal's default action.
#[test]
fn signals_right_after_start_are_handled_not_fatal() {
    let (_dir, cfg) = minimal_config();
    for round in 0..20 {
        let (mut child, addr) = spawn_serve(&["--config", &cfg]);
        if round % 2 == 1 {
            Command::new("kill")
                .args(["-HUP", &child.id().to_string()])
                .status()
                .unwrap();
            let (s, _) = http(&addr, "GET", "/v2/health/live", None, "");
            assert_eq!(s, 200, "alive after an early SIGHUP (round {round})");
        }
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "round {round}: {status:?}");
    }
}

/// The environment of a running process, as `NAME=value` lines.
#[cfg(target_os = "linux")]
fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap()
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[cfg(target_os = "linux")]
#[test]
fn the_server_keeps_freed_pages_unless_the_environment_already_says() {
    let (_dir, cfg) = minimal_config();
    let cfg = cfg.as_str();
    // Unset: the server re-executes itself (same PID, same arguments) with the pages kept, and
    // that process is the one answering.
    let (mut child, addr) = spawn_serve(&["--config", cfg]);
    let env = environ(child.id());
    assert!(
        env.iter().any(|v| v == "MIMALLOC_PURGE_DELAY=-1"),
        "{env:?}"
    );
    let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", child.id())).unwrap();
    assert!(cmdline.contains("serve\0--config\0"), "{cmdline:?}");
    let (s, body) = http(&addr, "GET", "/v2/health/live", None, "");
    assert_eq!(s, 200, "{body}");
    let (status, log) = stop_serve(&mut child);
    assert!(status.success(), "{status:?}: {log}");
    // Set by the operator (any value): respected, no re-execution.
    let (mut child, _) = spawn_serve_env(&["--config", cfg], &[("MIMALLOC_PURGE_DELAY", "25")]);
    let env = environ(child.id());
    assert!(
        env.iter().any(|v| v == "MIMALLOC_PURGE_DELAY=25"),
        "{env:?}"
    );
    assert!(
        !env.iter().any(|v| v == "MIMALLOC_PURGE_DELAY=-1"),
        "{env:?}"
    );
    let (status, log) = stop_serve(&mut child);
    assert!(status.success(), "{status:?}: {log}");
}

/// The outputs of an OIP v2 JSON response by name.
fn outputs(body: &str) -> std::collections::BTreeMap<String, Vec<f64>> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let data = o["data"].as_array().unwrap();
            (
                o["name"].as_str().unwrap().to_string(),
                data.iter().map(|x| x.as_f64().unwrap()).collect(),
            )
        })
        .collect()
}

/// A counter's value in a Prometheus exposition (summed over label sets).
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn concurrent_requests_are_batched_and_each_gets_its_own_seeds_draws() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path());
    let start = |wait_ms: u64| {
        let cfg = dir.path().join(format!("serve-{wait_ms}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:0\"\nrepository = {repo:?}\n\
                 [batching]\nmax_wait_ms = {wait_ms}\nmax_rows = 16\n"
            ),
        )
        .unwrap();
        spawn_serve(&["--config", cfg.to_str().unwrap()])
    };
    // Six requests with their own seeds, one or two inputs each, and one with another draw
    // count (a batch of its own).
    let body = |k: usize| {
        let n = 1 + k % 2;
        let x: Vec<f32> = (0..n * 256)
            .map(|i| ((i + 37 * k) as f32 * 0.07).sin().abs())
            .collect();
        let samples = if k == 5 { 3 } else { 4 };
        serde_json::json!({"parameters": {"n_samples": samples, "seed": 100 + k},
            "inputs": [{"name": "x", "shape": [n, 1, 16, 16], "datatype": "FP32", "data": x}],
            "outputs": [{"name": "mean"}, {"name": "samples"}]})
        .to_string()
    };
    let (mut batched, addr) = start(400);
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|k| {
                let (addr, b) = (&addr, body(k));
                s.spawn(move || http(addr, "POST", "/v2/models/pno/infer", None, &b))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (_, m) = http(&addr, "GET", "/metrics", None, "");
    let (batches, requests) = (
        counter(&m, "pno_batches_total"),
        counter(&m, "pno_batched_requests_total"),
    );
    assert_eq!(requests, 6.0, "{m}");
    assert!(
        batches <= 3.0,
        "6 concurrent requests within a 400 ms window ran as {batches} batches"
    );
    assert_eq!(
        counter(&m, "pno_inference_exec_count_total"),
        batches,
        "{m}"
    );
    stop_serve(&mut batched);
    // The same requests one at a time on a server without batching: the same numbers.
    let (mut alone, addr) = start(0);
    for (k, (status, got)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "{got}");
        let (s, want) = http(&addr, "POST", "/v2/models/pno/infer", None, &body(k));
        assert_eq!(s, 200, "{want}");
        assert_eq!(outputs(got), outputs(&want), "request {k}");
    }
    let (_, m) = http(&addr, "GET", "/metrics", None, "");
    assert_eq!(
        counter(&m, "pno_batches_total"),
        0.0,
        "batching is off at 0 ms"
    );
    stop_serve(&mut alone);
}
