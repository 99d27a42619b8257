//! The pre-flight checks as a library: `preflight::run` on real files, and readiness held at
//! 503 by a failed check at start (`AppState::set_preflight`) until it is cleared.

use axum::http::StatusCode;
use pno_models::burn::tensor::Device;
use pno_serve::preflight::{self, Options, Status};

use crate::*;

fn status_of(r: &preflight::Report, name: &str) -> Status {
    r.checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} in {r:?}"))
        .status
}

#[test]
fn preflight_run_passes_a_good_repository_and_fails_an_empty_one() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1]);
    let mut cfg = config(&repo);
    cfg.listen = "127.0.0.1:0".into();
    let r = preflight::run(Ok(&cfg), "test", Device::flex(), &Options::default());
    assert!(r.passed(), "{}", r.to_text("pre-flight"));
    assert_eq!(r.checks.len(), preflight::NAMES.len());
    for name in ["config", "models", "smoke", "listen"] {
        assert_eq!(
            status_of(&r, name),
            Status::Ok,
            "{}",
            r.to_text("pre-flight")
        );
    }
    // An empty repository: nothing to serve is a `models` failure, the smoke has nothing to do.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let r = preflight::run(
        Ok(&config(&empty)),
        "test",
        Device::flex(),
        &Options::default(),
    );
    assert_eq!(status_of(&r, "models"), Status::Fail, "{r:?}");
    assert_eq!(status_of(&r, "smoke"), Status::Warn, "{r:?}");
    assert!(!r.passed());
}

#[tokio::test]
async fn preflight_failure_at_start_keeps_ready_false_and_says_why() {
    let (_d, st) = setup();
    let s2 = st.clone();
    let report =
        tokio::task::spawn_blocking(move || preflight::at_start(&s2, &[], &Options::default()))
            .await
            .unwrap();
    assert!(report.passed(), "{}", report.to_text("pre-flight"));
    st.set_preflight(report.failures());
    assert_eq!(call(&st, get("/v2/health/ready")).await.0, StatusCode::OK);
    st.set_preflight(Some("keys: /k.json: mode 0644".into()));
    let (s, v) = call(&st, get("/v2/health/ready")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let why = v["error"].as_str().unwrap();
    assert!(
        why.contains("pre-flight") && why.contains("mode 0644"),
        "{v}"
    );
    st.set_preflight(None);
    assert_eq!(call(&st, get("/v2/health/ready")).await.0, StatusCode::OK);
}

/// An audit log of `n` records at `path` (replacing any).
fn audit_log(path: &std::path::Path, n: usize) -> pno_serve::audit::AuditLog {
    let _ = std::fs::remove_file(path);
    let log =
        pno_serve::audit::AuditLog::open(path, pno_serve::config::FsyncPolicy::Always, 1).unwrap();
    for i in 0..n {
        log.append(pno_serve::audit::AuditEvent {
            actor: format!("key{i}"),
            action: "infer".into(),
            outcome: "ok".into(),
            status: 200,
            ..Default::default()
        })
        .unwrap();
    }
    log
}

#[test]
fn preflight_audit_check_verifies_the_chain_and_the_latest_signed_checkpoint() {
    use pno_serve::audit::checkpoint::{SignerKey, key_pair, of_log};
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1]);
    let log_path = dir.path().join("audit.log");
    let key_path = dir.path().join("audit-key");
    let (signer, _) = key_pair("pno-serve/audit", &[7u8; 32]);
    std::fs::write(&key_path, &signer).unwrap();
    let mut cfg = config(&repo);
    cfg.listen = "127.0.0.1:0".into();
    cfg.audit.path = Some(log_path.clone());
    cfg.audit.checkpoint_key = Some(key_path.clone());
    let audit = |cfg: &pno_serve::ServeConfig| {
        let r = preflight::run(Ok(cfg), "test", Device::flex(), &Options::default());
        r.checks.into_iter().find(|c| c.name == "audit").unwrap()
    };
    // A log and a checkpoint of its three records, signed by the configured key.
    let log = audit_log(&log_path, 3);
    let (_, note) = of_log(&log, &SignerKey::parse(&signer).unwrap()).unwrap();
    drop(log);
    let cps = dir.path().join("audit.log.checkpoints");
    std::fs::create_dir_all(&cps).unwrap();
    std::fs::write(cps.join("latest.txt"), &note).unwrap();
    let c = audit(&cfg);
    assert_eq!(c.status, Status::Ok, "{c:?}");
    assert!(
        c.detail.contains("3 records") && c.detail.contains("checkpoint"),
        "{c:?}"
    );
    // Rewritten with a valid chain of two records: the checkpoint catches it.
    drop(audit_log(&log_path, 2));
    let c = audit(&cfg);
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(
        c.detail.contains("latest.txt") && c.detail.contains("truncated"),
        "{c:?}"
    );
    // A checkpoint signed by another key is refused too.
    let (other, _) = key_pair("pno-serve/audit", &[8u8; 32]);
    std::fs::write(&key_path, &other).unwrap();
    let c = audit(&cfg);
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.detail.contains("checkpoint"), "{c:?}");
}
