//! The log itself: appends across segments, streaming verification, checkpoints that catch
//! truncation and rewriting, reports.

use std::path::Path;

use pno_audit::checkpoint::{
    Checkpoint, SignerKey, VerifierKey, generate_key, open, sign, verify_against,
};
use pno_audit::report::report;
use pno_audit::{AuditEvent, AuditLog, FsyncPolicy, LogOptions, segments, verify};

fn event(i: usize) -> AuditEvent {
    AuditEvent {
        actor: format!("k{}", i % 3),
        role: "reader".into(),
        client: format!("10.0.0.{}", i % 4),
        action: if i % 10 == 9 {
            "model.load".into()
        } else {
            "infer".into()
        },
        model: Some("pno".into()),
        version: Some("1".into()),
        outcome: if i % 5 == 4 {
            "error".into()
        } else {
            "ok".into()
        },
        status: if i % 5 == 4 { 429 } else { 200 },
        request_id: format!("r{i}"),
        input_sha256: None,
        class: None,
    }
}

fn write(path: &Path, n: usize, segment_bytes: Option<u64>) -> AuditLog {
    let log = AuditLog::open_with(
        path,
        LogOptions {
            fsync: FsyncPolicy::Never,
            every: 1,
            segment_bytes,
        },
    )
    .unwrap();
    for i in 0..n {
        log.append(event(i)).unwrap();
    }
    log.flush().unwrap();
    log
}

#[test]
fn segments_chain_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.log");
    write(&p, 40, Some(2000));
    let segs = segments(&p).unwrap();
    assert!(segs.len() >= 3, "rotated into {} segments", segs.len());
    assert_eq!(segs.last().unwrap(), &p);
    let v = verify(&p).unwrap();
    assert_eq!(v.records, 40);
    // Reopening continues the sequence and the chain across segments.
    let log = write(&p, 5, Some(2000));
    assert_eq!(log.len(), 45);
    assert_eq!(verify(&p).unwrap().records, 45);
    // Removing a middle segment breaks the chain at the next one, naming it.
    std::fs::remove_file(&segs[1]).unwrap();
    let e = verify(&p).unwrap_err().to_string();
    assert!(
        e.contains(&segs[2].display().to_string()) && e.contains("record 1"),
        "{e}"
    );
}

#[test]
fn checkpoint_detects_truncation_and_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.log");
    write(&p, 20, None);
    let (sk, vk) = generate_key("test/audit").unwrap();
    let (sk, vk) = (
        SignerKey::parse(&sk).unwrap(),
        VerifierKey::parse(&vk).unwrap(),
    );
    let v = verify(&p).unwrap();
    let note = sign(
        &Checkpoint {
            origin: "test/audit".into(),
            size: v.records,
            root: v.root,
        },
        &sk,
    );
    let cp = open(&note, &vk).unwrap();
    // Growth is fine: the checkpoint pins a prefix.
    write(&p, 7, None);
    assert_eq!(verify_against(&p, &cp).unwrap(), 27);
    // Truncating the tail to before the checkpoint is caught (the chain alone cannot see it).
    let text = std::fs::read_to_string(&p).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let truncated: String = lines[..15].iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&p, &truncated).unwrap();
    assert_eq!(
        verify(&p).unwrap().records,
        15,
        "the chain itself still verifies"
    );
    let e = verify_against(&p, &cp).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    // A wholesale rewrite (a fresh, valid chain of other records) is caught too.
    std::fs::remove_file(&p).unwrap();
    let log = AuditLog::open(&p, FsyncPolicy::Never, 1).unwrap();
    for i in 0..27 {
        let mut e = event(i);
        e.actor = "someone-else".into();
        log.append(e).unwrap();
    }
    log.flush().unwrap();
    assert_eq!(verify(&p).unwrap().records, 27);
    let e = verify_against(&p, &cp).unwrap_err().to_string();
    assert!(e.contains("rewritten"), "{e}");
}

#[test]
fn report_counts_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.log");
    write(&p, 30, Some(1500));
    let r = report(&p, None, None).unwrap();
    assert_eq!((r.records, r.records_total), (30, 30));
    assert_eq!(r.by_status[&429], 6);
    assert_eq!(
        r.by_class.values().sum::<u64>(),
        6,
        "every refusal has a class: {:?}",
        r.by_class
    );
    assert_eq!(r.by_action["model.load"], 3);
    assert_eq!(r.changes.len(), 3);
    assert_eq!(r.by_actor.values().sum::<u64>(), 30);
    assert_eq!(r.keys["k0"].requests, 10);
    // Refusals come from i % 5 == 4 → clients 10.0.0.0 (i = 4, 24, …) and 10.0.0.{…}.
    let refused: u64 = r.top_refused_clients.iter().map(|(_, n)| n).sum();
    assert_eq!(refused, 6);
    let none = report(&p, Some(u64::MAX - 1), None).unwrap();
    assert_eq!((none.records, none.records_total), (0, 30));
}

#[test]
fn a_missing_log_is_an_error_and_an_edit_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.log");
    assert!(verify(&p).is_err());
    write(&p, 5, None);
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, text.replacen("\"k1\"", "\"k9\"", 1)).unwrap();
    let e = verify(&p).unwrap_err().to_string();
    assert!(e.contains("record 2") && e.contains("hash mismatch"), "{e}");
}

#[test]
fn reads_are_not_changes_and_breaker_transitions_and_reloads_are() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.log");
    let log = AuditLog::open(&p, FsyncPolicy::Never, 1).unwrap();
    for (action, status, class) in [
        ("model.metadata", 200, None),
        ("model.load", 200, None),
        ("breaker.open", 0, None),
        ("config.reload", 400, Some("input")),
        ("infer", 503, Some("transient")),
        ("infer", 401, None),
    ] {
        log.append(AuditEvent {
            action: action.into(),
            status,
            class: class.map(str::to_string),
            ..event(0)
        })
        .unwrap();
    }
    log.flush().unwrap();
    let r = report(&p, None, None).unwrap();
    let changes: Vec<&str> = r.changes.iter().map(|c| c.action.as_str()).collect();
    assert_eq!(changes, ["model.load", "breaker.open", "config.reload"]);
    assert_eq!(r.by_class["input"], 1);
    assert_eq!(r.by_class["transient"], 1);
    assert_eq!(
        r.by_class["unclassified"], 1,
        "a record from before classes"
    );
}

/// Writes a large log for `pno audit verify` timing (BENCHMARKS.md): `PNO_AUDIT_BIG=path
/// PNO_AUDIT_RECORDS=1000000 cargo nextest run -p pno-audit --run-ignored only -E
/// 'test(write_a_large_log)'`.
#[test]
#[ignore = "writes a large log for a benchmark; run on demand"]
fn write_a_large_log() {
    let Ok(path) = std::env::var("PNO_AUDIT_BIG") else {
        return;
    };
    let n: usize = std::env::var("PNO_AUDIT_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let log = AuditLog::open_with(
        Path::new(&path),
        LogOptions {
            fsync: FsyncPolicy::Never,
            every: 1,
            segment_bytes: Some(64 << 20),
        },
    )
    .unwrap();
    for i in 0..n {
        log.append(event(i)).unwrap();
    }
    log.flush().unwrap();
}
