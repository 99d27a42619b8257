//! Retried appends under injected faults (needs `--features fault-injection`): each injected
//! failure half-writes its record, so these tests check that a retry never leaves a duplicate
//! or a partial record, and that a failed append leaves the file byte-identical.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use pno_audit::{AuditEvent, AuditLog, FsyncPolicy, LogOptions, verify};
use pno_core::retry::Backoff;

fn event(i: usize) -> AuditEvent {
    AuditEvent {
        actor: format!("k{i}"),
        role: "reader".into(),
        client: "10.0.0.1".into(),
        action: "infer".into(),
        outcome: "ok".into(),
        status: 200,
        request_id: format!("r{i}"),
        ..AuditEvent::default()
    }
}

fn open(path: &Path, fsync: FsyncPolicy) -> AuditLog {
    AuditLog::open_with(
        path,
        LogOptions {
            fsync,
            every: 2,
            segment_bytes: None,
        },
    )
    .unwrap()
}

/// The request ids of the records, in order.
fn request_ids(path: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    pno_audit::scan(path, |_, r| ids.push(r.event.request_id.clone())).unwrap();
    ids
}

#[test]
fn two_injected_failures_are_retried_without_a_duplicate() {
    for fsync in [FsyncPolicy::Always, FsyncPolicy::Batch, FsyncPolicy::Never] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.log");
        let log = open(&p, fsync);
        log.append(event(0)).unwrap();
        log.fail_next_writes(2);
        log.append(event(1)).unwrap();
        assert_eq!(log.retries(), 2, "{fsync:?}");
        log.append(event(2)).unwrap();
        log.flush().unwrap();
        let v = verify(&p).unwrap();
        assert_eq!(v.records, 3, "{fsync:?}");
        assert_eq!(log.len(), 3);
        assert_eq!(request_ids(&p), ["r0", "r1", "r2"], "{fsync:?}");
    }
}

#[test]
fn more_failures_than_attempts_leave_the_file_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.log");
    let log = open(&p, FsyncPolicy::Always);
    for i in 0..3 {
        log.append(event(i)).unwrap();
    }
    let before = std::fs::read(&p).unwrap();
    let attempts = Backoff::default().attempts;
    log.fail_next_writes(attempts + 1);
    let err = log.append(event(3)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("append") && msg.contains("injected fault"),
        "{msg}"
    );
    assert_eq!(log.retries(), u64::from(attempts - 1));
    assert_eq!(
        std::fs::read(&p).unwrap(),
        before,
        "no trace of the failed append"
    );
    assert_eq!(log.len(), 3, "the chain did not move on");
    assert_eq!(verify(&p).unwrap().records, 3);
    // One injected failure is still pending: the next append retries once and succeeds, and
    // takes the sequence number the failed one did not.
    log.append(event(4)).unwrap();
    assert_eq!(log.retries(), u64::from(attempts));
    let v = verify(&p).unwrap();
    assert_eq!(v.records, 4);
    assert_eq!(request_ids(&p), ["r0", "r1", "r2", "r4"]);
    // Reopening continues the same chain.
    drop(log);
    let log = open(&p, FsyncPolicy::Always);
    log.append(event(5)).unwrap();
    assert_eq!(verify(&p).unwrap().records, 5);
}

#[test]
fn without_retries_one_failure_fails_and_leaves_no_partial_record() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.log");
    let log = open(&p, FsyncPolicy::Never).with_retry(Backoff::none());
    log.append(event(0)).unwrap();
    let before = std::fs::read(&p).unwrap();
    log.fail_next_writes(1);
    assert!(log.append(event(1)).is_err());
    assert_eq!(log.retries(), 0);
    assert_eq!(std::fs::read(&p).unwrap(), before);
    log.append(event(2)).unwrap();
    assert_eq!(request_ids(&p), ["r0", "r2"]);
}

#[test]
fn retries_respect_the_time_budget() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.log");
    // Many attempts allowed, but no delay fits in 1 ns: the first failure is final.
    let log = open(&p, FsyncPolicy::Never).with_retry(Backoff {
        attempts: 100,
        max_elapsed: Duration::from_nanos(1),
        ..Backoff::default()
    });
    log.fail_next_writes(1);
    assert!(log.append(event(0)).is_err());
    assert_eq!(log.retries(), 0);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
    log.append(event(1)).unwrap();
    assert_eq!(verify(&p).unwrap().records, 1);
}

#[test]
fn retried_appends_across_rotation_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.log");
    let log = AuditLog::open_with(
        &p,
        LogOptions {
            fsync: FsyncPolicy::Never,
            every: 1,
            segment_bytes: Some(600),
        },
    )
    .unwrap();
    for i in 0..12 {
        if i % 3 == 1 {
            log.fail_next_writes(1);
        }
        log.append(event(i)).unwrap();
    }
    log.flush().unwrap();
    assert_eq!(log.retries(), 4);
    let v = verify(&p).unwrap();
    assert!(
        v.segments.len() >= 2,
        "rotated into {} segments",
        v.segments.len()
    );
    assert_eq!(v.records, 12);
    let want: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
    assert_eq!(request_ids(&p), want);
}
