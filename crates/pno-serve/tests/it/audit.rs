//! The audit log: what is recorded, the hash chain, and that a one-byte edit anywhere is found.

use axum::http::StatusCode;
use pno_serve::audit::{AuditEvent, AuditLog, verify};
use pno_serve::config::FsyncPolicy;
use serde_json::{Value, json};

use crate::*;

fn event(i: usize) -> AuditEvent {
    AuditEvent {
        actor: format!("k{i}"),
        role: "reader".into(),
        client: "127.0.0.1".into(),
        action: "infer".into(),
        model: Some("pno".into()),
        version: Some("1".into()),
        outcome: "ok".into(),
        status: 200,
        request_id: format!("r{i}"),
        input_sha256: Some("ab".repeat(32)),
        class: None,
    }
}

#[test]
fn the_chain_verifies_and_reopening_continues_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, FsyncPolicy::Batch, 2).unwrap();
    for i in 0..3 {
        log.append(event(i)).unwrap();
    }
    log.flush().unwrap();
    drop(log);
    let log = AuditLog::open(&path, FsyncPolicy::Always, 1).unwrap();
    assert_eq!(log.len(), 3);
    log.append(event(3)).unwrap();
    let v = verify(&path).unwrap();
    assert_eq!(v.records, 4);
    let last: Value = serde_json::from_str(
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["hash"], v.head);
    assert_eq!(last["seq"], 3);
}

#[test]
fn any_one_byte_edit_is_detected_and_the_first_bad_record_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, FsyncPolicy::Never, 1).unwrap();
    for i in 0..4 {
        log.append(event(i)).unwrap();
    }
    log.flush().unwrap();
    let good = std::fs::read(&path).unwrap();
    let line_of = |at: usize| good[..at].iter().filter(|&&b| b == b'\n').count() + 1;
    let bad = dir.path().join("bad.log");
    for at in 0..good.len() {
        for flip in [0x01u8, 0x20] {
            let mut b = good.clone();
            b[at] ^= flip;
            std::fs::write(&bad, &b).unwrap();
            let e = verify(&bad).expect_err(&format!("edit at byte {at} not detected"));
            let msg = e.to_string();
            let want = line_of(at);
            // A changed newline merges or splits records: the first bad one is at or just after.
            let named = (want..=want + 1).any(|l| msg.contains(&format!("record {l}:")));
            assert!(named, "edit at byte {at} (line {want}): {msg}");
        }
    }
    // Deleting or reordering a record breaks the chain too.
    let text = String::from_utf8(good).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let dropped = format!("{}\n{}\n{}\n", lines[0], lines[2], lines[3]);
    std::fs::write(&bad, dropped).unwrap();
    assert!(verify(&bad).unwrap_err().to_string().contains("record 2:"));
    let swapped = format!("{}\n{}\n{}\n{}\n", lines[1], lines[0], lines[2], lines[3]);
    std::fs::write(&bad, swapped).unwrap();
    assert!(verify(&bad).unwrap_err().to_string().contains("record 1:"));
    // A tampered log is refused when the server opens it.
    let mut b = text.into_bytes();
    b[10] ^= 1;
    std::fs::write(&bad, &b).unwrap();
    assert!(AuditLog::open(&bad, FsyncPolicy::Always, 1).is_err());
}

#[tokio::test]
async fn requests_are_recorded_with_actor_action_model_outcome_and_digest() {
    let (dir, _) = setup();
    let mut cfg = config(&dir.path().join("repo"));
    let path = dir.path().join("audit.log");
    cfg.audit.path = Some(path.clone());
    let st = state(cfg);
    let body = infer_body(&input(1), 1, json!({"n_samples": 2}));
    assert_eq!(
        call(&st, post_json("/v2/models/pno/infer", &body)).await.0,
        StatusCode::OK
    );
    let bad = json!({"inputs": []});
    assert_eq!(
        call(&st, post_json("/v2/models/pno/infer", &bad)).await.0,
        StatusCode::BAD_REQUEST
    );
    let (s, _) = call(&st, post_json("/v2/repository/models/pno/load", &json!({}))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "anonymous may not load");
    let text = std::fs::read_to_string(&path).unwrap();
    let recs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 3, "{text}");
    assert_eq!(recs[0]["action"], "infer");
    assert_eq!(recs[0]["actor"], "anonymous");
    assert_eq!(recs[0]["role"], "reader");
    assert_eq!(recs[0]["model"], "pno");
    assert_eq!(recs[0]["version"], "1");
    assert_eq!(recs[0]["outcome"], "ok");
    assert_eq!(recs[0]["status"], 200);
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(body.to_string().as_bytes()));
    assert_eq!(recs[0]["input_sha256"], digest);
    assert!(recs[0]["request_id"].as_str().unwrap().len() >= 8);
    assert_eq!(recs[1]["outcome"], "error");
    assert_eq!(recs[1]["status"], 400);
    assert_eq!(recs[2]["action"], "model.load");
    assert_eq!(recs[2]["status"], 401);
    assert_eq!(verify(&path).unwrap().records, 3);
}
