//! Replica ids: records written by a named replica carry it, logs written before replicas were
//! named still verify byte for byte (a golden log built by `tests/golden/gen_pre_replica_log.py`
//! with the Python standard library), and checkpoints name the replica in their signed origin.

use std::path::{Path, PathBuf};

use pno_audit::checkpoint::{SignerKey, VerifierKey, key_pair, of_log, open, verify_against};
use pno_audit::report::report;
use pno_audit::{AuditEvent, AuditLog, FsyncPolicy, verify};

fn golden_copy(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/pre-replica.log");
    let p = dir.join("audit.log");
    std::fs::copy(src, &p).unwrap();
    p
}

fn event(i: usize) -> AuditEvent {
    AuditEvent {
        actor: "k2".into(),
        role: "operator".into(),
        client: "10.0.0.9".into(),
        action: "model.load".into(),
        outcome: "ok".into(),
        status: 200,
        request_id: format!("n{i}"),
        ..AuditEvent::default()
    }
}

#[test]
fn a_log_from_before_replicas_verifies_unchanged_and_takes_named_records() {
    let dir = tempfile::tempdir().unwrap();
    let p = golden_copy(dir.path());
    let before = std::fs::read_to_string(&p).unwrap();
    assert!(!before.contains("replica"));
    let v = verify(&p).unwrap();
    assert_eq!(v.records, 3);
    let r = report(&p, None, None).unwrap();
    assert_eq!(
        r.by_replica.into_iter().collect::<Vec<_>>(),
        [("unnamed".to_string(), 3)]
    );

    let log = AuditLog::open(&p, FsyncPolicy::Always, 1)
        .unwrap()
        .with_replica("pno-a")
        .unwrap();
    assert_eq!(log.replica(), Some("pno-a"));
    for i in 0..2 {
        log.append(event(i)).unwrap();
    }
    log.flush().unwrap();
    assert_eq!(verify(&p).unwrap().records, 5);
    let after = std::fs::read_to_string(&p).unwrap();
    assert!(after.starts_with(&before), "old records rewritten");
    for line in after.lines().skip(3) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["replica"], "pno-a", "{line}");
        assert!(line.contains(",\"ts_ms\":") && line.contains(",\"replica\":\"pno-a\",\"actor\""));
    }
    let r = report(&p, None, None).unwrap();
    assert_eq!(
        r.by_replica.into_iter().collect::<Vec<_>>(),
        [("pno-a".to_string(), 2), ("unnamed".to_string(), 3)]
    );

    // The replica is hashed with the record: changing it breaks the chain.
    let forged = after.replacen("\"replica\":\"pno-a\"", "\"replica\":\"pno-b\"", 1);
    std::fs::write(&p, forged).unwrap();
    let e = verify(&p).unwrap_err().to_string();
    assert!(e.contains("record 4") && e.contains("hash mismatch"), "{e}");
}

#[test]
fn bad_replica_ids_are_refused_naming_what_was_found() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.log");
    for (bad, found) in [
        ("", "an empty string"),
        ("a b", "\"a b\""),
        ("pod/0", "'/'"),
        (&"x".repeat(64), "64 characters"),
    ] {
        let e = AuditLog::open(&p, FsyncPolicy::Never, 1)
            .unwrap()
            .with_replica(bad)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("replica: expected 1-63 characters of [A-Za-z0-9._-]"),
            "{e}"
        );
        assert!(e.contains(found), "{bad:?}: {e}");
    }
    let ok = "P0d.name_x-".to_string() + &"y".repeat(52);
    assert_eq!(ok.len(), 63);
    assert!(
        AuditLog::open(&p, FsyncPolicy::Never, 1)
            .unwrap()
            .with_replica(&ok)
            .is_ok()
    );
}

fn keys() -> (SignerKey, VerifierKey) {
    let (sk, vk) = key_pair("pno-serve/audit", &[7u8; 32]);
    (
        SignerKey::parse(&sk).unwrap(),
        VerifierKey::parse(&vk).unwrap(),
    )
}

#[test]
fn a_replica_checkpoint_names_it_in_the_signed_origin_and_a_changed_name_fails() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.log");
    let log = AuditLog::open(&p, FsyncPolicy::Never, 1)
        .unwrap()
        .with_replica("pno-a")
        .unwrap();
    for i in 0..5 {
        log.append(event(i)).unwrap();
    }
    let (sk, vk) = keys();
    let (cp, note) = of_log(&log, &sk).unwrap();
    assert_eq!(cp.origin, "pno-serve/audit/pno-a");
    assert!(note.starts_with("pno-serve/audit/pno-a\n5\n"), "{note}");
    let opened = open(&note, &vk).unwrap();
    assert_eq!(opened, cp);
    assert_eq!(opened.replica("pno-serve/audit"), Some("pno-a"));
    assert_eq!(verify_against(&p, &opened).unwrap(), 5);

    // The replica is part of the signed body: naming another one breaks the signature.
    let forged = note.replacen("pno-serve/audit/pno-a\n", "pno-serve/audit/pno-b\n", 1);
    assert_ne!(forged, note);
    let e = open(&forged, &vk).unwrap_err().to_string();
    assert!(e.contains("does not verify"), "{e}");
}

#[test]
fn a_log_without_a_replica_keeps_the_bare_key_name_as_origin() {
    let dir = tempfile::tempdir().unwrap();
    let p = golden_copy(dir.path());
    let log = AuditLog::open(&p, FsyncPolicy::Never, 1).unwrap();
    let (sk, vk) = keys();
    let (cp, note) = of_log(&log, &sk).unwrap();
    assert_eq!(cp.origin, "pno-serve/audit");
    let opened = open(&note, &vk).unwrap();
    assert_eq!(opened.replica("pno-serve/audit"), None);
    assert_eq!(verify_against(&p, &opened).unwrap(), 3);
}
