//! Replica identity: the id is validated where it is configured, and every audit record,
//! checkpoint and metric series this server writes names it.

use axum::http::StatusCode;
use pno_serve::ServeConfig;
use pno_serve::audit::checkpoint::{VerifierKey, key_pair, open, verify_against};
use serde_json::{Value, json};

use super::*;

#[test]
fn a_bad_replica_is_refused_naming_the_key_what_is_expected_and_what_was_found() {
    for (value, found) in [
        ("\"\"", "an empty string"),
        ("\"pod 0\"", "\"pod 0\""),
        ("\"ns/pod\"", "'/'"),
    ] {
        let e = ServeConfig::from_toml_str(&format!("replica = {value}\nrepository = \"m\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("replica"), "{e}");
        assert!(e.contains("1-63 characters of [A-Za-z0-9._-]"), "{e}");
        assert!(e.contains(found), "{value}: {e}");
    }
    let long = "a".repeat(64);
    let e = ServeConfig::from_toml_str(&format!("replica = \"{long}\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("replica") && e.contains("64 characters"), "{e}");
    let ok = ServeConfig::from_toml_str("replica = \"pno-serve-7d9f.b_1\"\n").unwrap();
    assert_eq!(ok.replica.as_deref(), Some("pno-serve-7d9f.b_1"));
}

#[tokio::test]
async fn records_checkpoints_and_every_metric_series_name_the_replica() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1]);
    let (signer, verifier) = key_pair("pno-serve/audit", &[3u8; 32]);
    let key = dir.path().join("audit-key");
    std::fs::write(&key, signer).unwrap();
    let log = dir.path().join("audit.log");
    let mut cfg = config(&repo);
    cfg.replica = Some("r-1".into());
    cfg.audit.path = Some(log.clone());
    cfg.audit.checkpoint_key = Some(key);
    let st = state(cfg);
    assert_eq!(st.replica(), "r-1");

    let body = infer_body(&input(1), 1, json!({"n_samples": 2}));
    assert_eq!(
        call(&st, post_json("/v2/models/pno/infer", &body)).await.0,
        StatusCode::OK
    );
    let (s, _) = call(&st, post_json("/v2/repository/models/pno/load", &json!({}))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // /metrics: every sample line ends its label set with replica="r-1", and the info gauge.
    let m = String::from_utf8(body_bytes(send(&st, get("/metrics")).await).await).unwrap();
    let samples: Vec<&str> = m.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(samples.len() > 20, "{m}");
    for l in &samples {
        let (series, _) = l.rsplit_once(' ').unwrap();
        assert!(
            series.ends_with(",replica=\"r-1\"}") || series.ends_with("{replica=\"r-1\"}"),
            "{l}"
        );
        assert_eq!(l.matches("replica=").count(), 1, "{l}");
    }
    let info = format!(
        "pno_replica_info{{version=\"{}\",replica=\"r-1\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(samples.contains(&info.as_str()), "{info} missing from\n{m}");
    assert!(m.contains("# TYPE pno_replica_info gauge"), "{m}");
    assert!(
        m.contains(
            "pno_inference_request_success_total{model=\"pno\",version=\"1\",replica=\"r-1\"} 1"
        ),
        "{m}"
    );
    assert!(
        m.contains("pno_inference_request_duration_seconds_bucket{model=\"pno\",version=\"1\",le=\"+Inf\",replica=\"r-1\"} "),
        "{m}"
    );

    // The audit log: every record says which replica wrote it; the chain verifies.
    let text = std::fs::read_to_string(&log).unwrap();
    let recs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 2, "{text}");
    for r in &recs {
        assert_eq!(r["replica"], "r-1", "{r}");
    }
    assert_eq!(
        pno_serve::audit::verify(&log).unwrap().records,
        recs.len() as u64
    );

    // The checkpoint: origin <key name>/<replica>, signed, pinning the log.
    let cp_file = st.write_checkpoint().unwrap().unwrap();
    assert!(
        cp_file.note.starts_with("pno-serve/audit/r-1\n"),
        "{}",
        cp_file.note
    );
    let vk = VerifierKey::parse(&verifier).unwrap();
    let cp = open(&cp_file.note, &vk).unwrap();
    assert_eq!(cp.replica("pno-serve/audit"), Some("r-1"));
    assert_eq!(verify_against(&log, &cp).unwrap(), cp.size);
    let forged = cp_file.note.replacen("/r-1\n", "/r-2\n", 1);
    assert!(
        open(&forged, &vk).is_err(),
        "a changed replica must not verify"
    );
}

#[tokio::test]
async fn a_reload_that_changes_the_replica_is_refused_as_restart_only() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1]);
    let file = dir.path().join("serve.toml");
    let write = |replica: &str| {
        std::fs::write(
            &file,
            format!(
                "replica = \"{replica}\"\nrepository = {:?}\n",
                repo.display().to_string()
            ),
        )
        .unwrap()
    };
    write("r-1");
    let st = state(ServeConfig::from_file(&file).unwrap());
    let f = file.clone();
    st.set_config_source(Box::new(move || ServeConfig::from_file(&f)));
    write("r-2");
    let e = st.reload("test").await.unwrap_err().to_string();
    assert!(e.contains("need a restart") && e.contains("replica"), "{e}");
    assert_eq!(st.replica(), "r-1");
    assert_eq!(st.config().replica.as_deref(), Some("r-1"));
}
