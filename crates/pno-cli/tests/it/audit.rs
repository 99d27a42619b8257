//! `pno audit` on a log written by the library: key generation, a signed checkpoint, verify
//! against it (growth fine; truncation and rewriting caught), proofs, reports.

use pno_audit::{AuditEvent, AuditLog, FsyncPolicy};

use crate::{pno_err, pno_ok};

fn append(log: &AuditLog, n: usize, actor: &str) {
    for i in 0..n {
        log.append(AuditEvent {
            actor: actor.into(),
            role: "reader".into(),
            client: "127.0.0.1".into(),
            action: if i == 3 {
                "keys.revoke".into()
            } else {
                "infer".into()
            },
            outcome: "ok".into(),
            status: if i % 4 == 1 { 401 } else { 200 },
            request_id: format!("r{i}"),
            ..AuditEvent::default()
        })
        .unwrap();
    }
    log.flush().unwrap();
}

#[test]
fn checkpoint_verify_prove_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let (log_path, key, cp) = (p("audit.log"), p("audit-key"), p("cp.txt"));
    let log = AuditLog::open(log_path.as_ref(), FsyncPolicy::Never, 1).unwrap();
    append(&log, 12, "k1");

    let out = pno_ok(&["audit", "keygen", "--name", "test/audit", "--out", &key]);
    assert!(out.contains("test/audit+"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "signer key mode {mode:o}");
    }
    pno_err(&["audit", "keygen", "--name", "test/audit", "--out", &key]);
    pno_ok(&[
        "audit",
        "checkpoint",
        &log_path,
        "--key",
        &key,
        "--out",
        &cp,
    ]);
    let note = std::fs::read_to_string(&cp).unwrap();
    assert!(
        note.starts_with("test/audit\n12\n") && note.contains("\n\n\u{2014} test/audit "),
        "{note}"
    );
    let public = format!("{key}.pub");
    let verify = [
        "audit",
        "verify",
        &log_path,
        "--checkpoint",
        &cp,
        "--public-key",
        &public,
    ];
    assert!(pno_ok(&verify).contains("first 12 records"));

    // The log grows: still consistent with the checkpoint; a consistency proof is emitted.
    append(&log, 5, "k2");
    pno_ok(&verify);
    let proof: serde_json::Value = serde_json::from_str(&pno_ok(&[
        "audit",
        "prove",
        "consistency",
        &log_path,
        "--old",
        "12",
    ]))
    .unwrap();
    assert_eq!(
        (proof["old"].as_u64(), proof["size"].as_u64()),
        (Some(12), Some(17))
    );
    let inc: serde_json::Value = serde_json::from_str(&pno_ok(&[
        "audit",
        "prove",
        "inclusion",
        &log_path,
        "--index",
        "3",
    ]))
    .unwrap();
    assert_eq!(
        inc["path"].as_array().unwrap().len(),
        5,
        "17 leaves: a path of 5"
    );

    // Truncate to 10 records: the chain verifies, the checkpoint catches it.
    let text = std::fs::read_to_string(&log_path).unwrap();
    let kept: String = text.lines().take(10).map(|l| format!("{l}\n")).collect();
    std::fs::write(&log_path, kept).unwrap();
    pno_ok(&["audit", "verify", &log_path]);
    let e = pno_err(&verify);
    assert!(e.contains("truncated"), "{e}");

    // A tampered checkpoint (another size) fails its signature.
    std::fs::write(&cp, note.replacen("\n12\n", "\n9\n", 1)).unwrap();
    let e = pno_err(&verify);
    assert!(e.contains("signature"), "{e}");

    let r: serde_json::Value =
        serde_json::from_str(&pno_ok(&["audit", "report", &log_path, "--json"])).unwrap();
    assert_eq!(r["records"], 10);
    assert_eq!(r["by_status"]["401"], 3);
    assert_eq!(r["changes"].as_array().unwrap().len(), 1);
    let e = pno_err(&["audit", "report", &log_path, "--since", "last tuesday"]);
    assert!(e.contains("--since"), "{e}");
}
