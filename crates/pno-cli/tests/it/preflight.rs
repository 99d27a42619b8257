//! `pno serve --check`, the same checks at a real server's start, and `pno doctor`: real
//! processes, real files (a trained repository, a keys file, an audit log, a bound port).

use std::path::Path;
use std::process::Output;

use crate::pno;
use crate::serve::{broken_copy, http, repository, spawn_serve, stop_serve};

/// The `name` of every entry of a report's `checks`, in order.
fn check_names(v: &serde_json::Value) -> Vec<&str> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

/// `pno --json serve --check ARGS`: (exit code, parsed report, stderr).
fn check_json(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let mut all = vec!["--json", "serve", "--check"];
    all.extend_from_slice(args);
    let out: Output = pno(&all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "pno {all:?}: stdout is not JSON ({e}):\n{stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.code(),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The check named `name` in a report.
fn named<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {v}"))
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A keys file (written by `pno keys create`, mode 0600) and an audit log of three records.
fn keys_and_audit(dir: &Path) -> (String, String) {
    let keys = dir.join("keys.json");
    crate::new_key(&keys, "reader");
    let audit = dir.join("audit.log");
    let log = pno_serve::audit::AuditLog::open(&audit, pno_serve::config::FsyncPolicy::Always, 1)
        .unwrap();
    for i in 0..3 {
        log.append(pno_serve::audit::AuditEvent {
            actor: format!("key{i}"),
            role: "reader".into(),
            client: "127.0.0.1".into(),
            action: "infer".into(),
            outcome: "ok".into(),
            status: 200,
            ..Default::default()
        })
        .unwrap();
    }
    (keys.display().to_string(), audit.display().to_string())
}

#[test]
fn preflight_passes_a_good_config_and_names_each_failure() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let repo = repository(d);
    let (keys, audit) = keys_and_audit(d);
    let cfg = d.join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\nrepository = {repo:?}\nkeys = {keys:?}\n[audit]\npath = {audit:?}\n"
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();

    // A good config: every check ok or warn, exit 0, in the documented order.
    let (code, v, err) = check_json(&["--config", c]);
    assert_eq!(code, Some(0), "{v}\n{err}");
    assert_eq!(v["ok"], true);
    let names = check_names(&v);
    assert_eq!(
        names,
        [
            "config", "keys", "tls", "audit", "listen", "disk", "models", "smoke", "memory"
        ]
    );
    for ch in v["checks"].as_array().unwrap() {
        assert!(ch["status"] == "ok" || ch["status"] == "warn", "{ch}");
    }
    for (name, needle) in [
        ("keys", "1 key(s)"),
        ("audit", "3 records"),
        ("models", "pno/1"),
        ("smoke", "pno/1"),
    ] {
        let ch = named(&v, name);
        assert_eq!(ch["status"], "ok", "{ch}");
        assert!(ch["detail"].as_str().unwrap().contains(needle), "{ch}");
    }
    // The text form: one line per check and a summary.
    let out = pno(&["serve", "--check", "--config", c]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("[ok]   config   ") && text.contains("pre-flight: "),
        "{text}"
    );
    assert_eq!(text.lines().count(), 10, "{text}");

    // A keys file others may read: `keys` fails naming the file and the mode; exit 1.
    let keys_path = Path::new(&keys);
    chmod(keys_path, 0o644);
    let (code, v, err) = check_json(&["--config", c]);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["ok"], false);
    let k = named(&v, "keys");
    let detail = k["detail"].as_str().unwrap();
    assert_eq!(k["status"], "fail", "{k}");
    assert!(detail.contains(&keys) && detail.contains("0644"), "{k}");
    assert!(err.contains("keys"), "{err}");
    // ... a warning with --ignore-check, and exit 0 (comma lists and repeats accepted).
    let (code, v, _) = check_json(&["--config", c, "--ignore-check", "disk,keys"]);
    assert_eq!(code, Some(0), "{v}");
    let k = named(&v, "keys");
    assert_eq!(k["status"], "warn", "{k}");
    assert_eq!(k["ignored"], true, "{k}");
    // An unknown name is refused, naming it and the valid ones.
    let out = pno(&["serve", "--check", "--config", c, "--ignore-check", "nope"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("`nope`") && err.contains("listen"), "{err}");
    chmod(keys_path, 0o600);

    // A tampered audit log: `audit` fails naming the record.
    let good = std::fs::read(&audit).unwrap();
    let second = good.iter().position(|&b| b == b'\n').unwrap() + 1;
    let at = second
        + String::from_utf8_lossy(&good[second..])
            .find("key1")
            .unwrap()
        + 2;
    let mut bad = good.clone();
    bad[at] = b'z';
    std::fs::write(&audit, &bad).unwrap();
    let (code, v, _) = check_json(&["--config", c]);
    assert_eq!(code, Some(1), "{v}");
    let a = named(&v, "audit");
    assert_eq!(a["status"], "fail", "{a}");
    assert!(a["detail"].as_str().unwrap().contains("record 2"), "{a}");
    std::fs::write(&audit, &good).unwrap();

    // A port already bound (the --listen flag overrides the file): `listen` fails naming it.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let (code, v, _) = check_json(&["--config", c, "--listen", &addr]);
    assert_eq!(code, Some(1), "{v}");
    let l = named(&v, "listen");
    assert_eq!(l["status"], "fail", "{l}");
    assert!(l["detail"].as_str().unwrap().contains(&addr), "{l}");
    drop(held);

    // Version 2 with corrupted weights: `models` fails naming it (version 1 still loads).
    let v2 = Path::new(&repo).join("pno/2");
    std::fs::create_dir_all(&v2).unwrap();
    for e in std::fs::read_dir(Path::new(&repo).join("pno/1")).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            std::fs::copy(e.path(), v2.join(e.file_name())).unwrap();
        }
    }
    let w = v2.join("weights.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    let mid = bytes.len() - 16;
    bytes[mid] ^= 0x55;
    std::fs::write(&w, &bytes).unwrap();
    let (code, v, _) = check_json(&["--config", c]);
    assert_eq!(code, Some(1), "{v}");
    let m = named(&v, "models");
    let detail = m["detail"].as_str().unwrap();
    assert_eq!(m["status"], "fail", "{m}");
    assert!(
        detail.contains("version 2") && detail.contains("pno/1"),
        "{m}"
    );
    std::fs::remove_dir_all(&v2).unwrap();

    // Version 2 loads but overflows: `smoke` fails naming it.
    broken_copy(&Path::new(&repo).join("pno/1"), &v2);
    let (code, v, _) = check_json(&["--config", c]);
    assert_eq!(code, Some(1), "{v}");
    let s = named(&v, "smoke");
    assert_eq!(s["status"], "fail", "{s}");
    assert!(
        s["detail"].as_str().unwrap().contains("version 2")
            && s["detail"].as_str().unwrap().contains("non-finite"),
        "{s}"
    );

    // A bad config value: the `config` check fails naming the key, and nothing else runs.
    let bad_cfg = d.join("bad.toml");
    std::fs::write(&bad_cfg, "[limits]\nmax_batch = 0\n").unwrap();
    let (code, v, _) = check_json(&["--config", bad_cfg.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["checks"].as_array().unwrap().len(), 1, "{v}");
    let cf = named(&v, "config");
    assert_eq!(cf["status"], "fail");
    assert!(
        cf["detail"].as_str().unwrap().contains("limits.max_batch"),
        "{cf}"
    );
}

/// Starts `pno serve ARGS`, asks `/v2/health/ready`, stops it with SIGTERM; returns the ready
/// answer and the server's log.
fn ready_at_start(args: &[&str]) -> (u16, String, String) {
    let (mut child, addr) = spawn_serve(args);
    let (status, body) = http(&addr, "GET", "/v2/health/ready", None, "");
    let (exit, logs) = stop_serve(&mut child);
    assert!(exit.success(), "{exit:?}\n{logs}");
    (status, body, logs)
}

#[test]
fn a_failed_preflight_check_at_start_keeps_the_server_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path());
    let (keys, _) = keys_and_audit(dir.path());
    chmod(Path::new(&keys), 0o644);
    let args = [
        "--repository",
        &repo,
        "--listen",
        "127.0.0.1:0",
        "--keys",
        &keys,
    ];
    let (status, body, logs) = ready_at_start(&args);
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("pre-flight") && body.contains("0644"),
        "{body}"
    );
    let line = logs
        .lines()
        .find(|l| l.contains("pre-flight check failed"))
        .unwrap_or_else(|| panic!("{logs}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["fields"]["check"], "keys", "{line}");
    // Ignored, the same failure is a warning: the server becomes ready.
    let mut ignoring = args.to_vec();
    ignoring.extend(["--ignore-check", "keys"]);
    let (status, body, logs) = ready_at_start(&ignoring);
    assert_eq!(status, 200, "{body}\n{logs}");
    assert!(logs.contains("pre-flight check warns"), "{logs}");
}

#[test]
fn doctor_reports_threads_and_memory() {
    let out = pno(&["--json", "doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(v["threads"].as_u64().unwrap() > 0, "{v}");
    assert!(v["memory"]["bytes"].as_u64().unwrap() > 0, "{v}");
    let names = check_names(&v);
    assert_eq!(
        names,
        ["threads", "memory", "cpu", "font", "chromium", "cuda"]
    );
    // Exit 1 exactly when a check failed.
    let failed = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["status"] == "fail");
    assert_eq!(out.status.code(), Some(i32::from(failed)), "{v}");
    assert_eq!(v["ok"], !failed);
    let text = crate::pno(&["doctor"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("threads") && text.contains("doctor: "),
        "{text}"
    );
}
