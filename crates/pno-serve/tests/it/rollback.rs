//! Automated rollback on a served socket: versions 1 and 2 loaded, 2 serving; ground truth for
//! version 2's answers far outside its intervals collapses its coverage, and within the policy's
//! windows unpinned traffic moves to version 1 (answers say `fallback_from: "2"`), audited and
//! counted, while a steady load through the switch loses no request and requests naming version
//! 2 still reach it. No flapping (one rollback per cool-down), an operator's pin wins, and an
//! operator's load brings version 2 back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::*;

async fn unpinned(st: &AppState, seed: u64, id: Option<&str>) -> Value {
    let mut r = post_json(
        "/v2/models/pno/infer",
        &infer_body(&input(1), 1, json!({"n_samples": 4, "seed": seed})),
    );
    if let Some(id) = id {
        r.headers_mut().insert("x-request-id", id.parse().unwrap());
    }
    let (s, v) = call(st, r).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

async fn op(st: &AppState, path: &str, body: Value) -> (StatusCode, Value) {
    call(st, op_post(st, path, &body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collapsed_coverage_rolls_traffic_back_without_losing_requests() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1, 2]);
    let mut cfg = config(&repo);
    cfg.audit.path = Some(dir.path().join("audit.log"));
    cfg.models.insert(
        "pno".into(),
        toml::from_str("version_policy = \"all\"").unwrap(),
    );
    cfg.alerting.window_s = 1;
    cfg.feedback.window = 10;
    cfg.feedback.min_functions = 5;
    cfg.rollback = toml::from_str("windows = 2\nrequire_gate = false\nmin_requests = 1").unwrap();
    let st = state(cfg);
    let (_addr, tx, server) = start(&st).await;
    assert_eq!(unpinned(&st, 1, None).await["model_version"], "2");

    // A steady load through everything that follows.
    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let (st, stop) = (st.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let body = infer_body(&input(1), 1, json!({"n_samples": 2}));
                let (s, v) = call(&st, post_json("/v2/models/pno/infer", &body)).await;
                seen.push((
                    s.as_u16(),
                    v["model_version"].as_str().unwrap_or("").to_string(),
                ));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        })
    };

    // Truth four standard deviations off for version 2's answers.
    for i in 0..10 {
        let id = format!("bad-{i}");
        let v = unpinned(&st, 10 + i, Some(&id)).await;
        assert_eq!(v["model_version"], "2");
        let (m, s) = (
            floats(&v["outputs"][0]["data"]),
            floats(&v["outputs"][1]["data"]),
        );
        let truth: Vec<f32> = m.iter().zip(&s).map(|(m, s)| m + 4.0 * s + 1e-3).collect();
        let body = json!({"request_id": id, "truth": {"shape": [1, 1, S, S], "data": truth}});
        let (code, b) = op(&st, "/v2/models/pno/feedback", body).await;
        assert_eq!(code, StatusCode::OK, "{b}");
    }
    let collapsed_at = Instant::now();
    // Within the policy's two 1 s windows (plus the window in progress), traffic moves.
    let moved = loop {
        let v = unpinned(&st, 99, None).await;
        if v["model_version"] == "1" {
            break v;
        }
        assert!(
            collapsed_at.elapsed() < Duration::from_secs(8),
            "no rollback: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = collapsed_at.elapsed();
    assert_eq!(moved["parameters"]["fallback_from"], "2", "{moved}");
    eprintln!("rollback: traffic on v1 {took:?} after the collapse was reported");
    // A request naming version 2 still reaches it.
    let (s, v) = call(
        &st,
        post_json(
            "/v2/models/pno/versions/2/infer",
            &infer_body(&input(1), 1, json!({"n_samples": 2})),
        ),
    )
    .await;
    assert_eq!(
        (s, v["model_version"].as_str()),
        (StatusCode::OK, Some("2"))
    );
    let m = String::from_utf8(body_bytes(send(&st, get("/metrics")).await).await).unwrap();
    assert!(
        m.contains("pno_rollbacks_total{model=\"pno\",version=\"2\",to=\"1\",replica=\"t\"} 1"),
        "{m}"
    );
    let (_, stats) = call(&st, get("/v2/models/pno/stats")).await;
    assert_eq!(stats["routing"]["rolled_back"]["2"]["to"], 1, "{stats}");

    // No flapping: still on v1 two windows later, one rollback counted.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(unpinned(&st, 5, None).await["model_version"], "1");
    let m = String::from_utf8(body_bytes(send(&st, get("/metrics")).await).await).unwrap();
    assert!(
        m.contains("pno_rollbacks_total{model=\"pno\",version=\"2\",to=\"1\",replica=\"t\"} 1"),
        "{m}"
    );

    // An operator's pin wins; unpinning returns to the rollback's choice.
    let (s, v) = op(
        &st,
        "/v2/repository/models/pno/pin",
        json!({"version": "2"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(unpinned(&st, 6, None).await["model_version"], "2");
    let (s, _) = op(
        &st,
        "/v2/repository/models/pno/pin",
        json!({"version": null}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(unpinned(&st, 7, None).await["model_version"], "1");
    let (s, v) = op(&st, "/v2/repository/models/pno/pin", json!({"version": 9})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, _) = op(&st, "/v2/repository/models/pno/pin", json!({"verison": 1})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (key, _) = st.keys().create(pno_serve::auth::Role::Reader).unwrap();
    let (s, _) = call(
        &st,
        with_key(
            post_json("/v2/repository/models/pno/pin", &json!({"version": 1})),
            &key,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    stop.store(true, Ordering::SeqCst);
    let seen = loader.await.unwrap();
    assert!(
        seen.iter().all(|(s, _)| *s == 200),
        "a request failed during the switch"
    );
    assert!(seen.iter().any(|(_, v)| v == "2") && seen.iter().any(|(_, v)| v == "1"));

    // The audit log has the decision with its evidence.
    let log = audit_log_with(&dir.path().join("audit.log"), &["\"model.rollback\""]).await;
    let line = log
        .lines()
        .find(|l| l.contains("\"model.rollback\""))
        .expect("audited");
    assert!(
        line.contains("coverage collapsed") && line.contains("to v1"),
        "{line}"
    );
    assert!(log.contains("\"model.pin\""));

    // An operator's load brings version 2 back.
    let (s, v) = op(&st, "/v2/repository/models/pno/load", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(unpinned(&st, 8, None).await["model_version"], "2");
    let _ = tx.send(());
    let _ = server.await;
}

#[test]
fn nonsense_lifecycle_settings_are_refused_naming_the_key() {
    for (toml, key) in [
        ("[drift]\nwindow_s = 0", "drift.window_s"),
        ("[drift]\nmin_samples = 500", "drift.min_samples"),
        ("[drift]\nalpha = 0.7", "drift.alpha"),
        ("[drift]\ncorrection = \"holm\"", "drift.correction"),
        ("[drift]\npsi_bins = 1", "drift.psi_bins"),
        ("[drift]\nsamplez = 64", "samplez"),
        ("[feedback]\nttl_s = 0", "feedback.ttl_s"),
        ("[feedback]\nlevels = [0.9, 1.2]", "feedback.levels"),
        ("[feedback]\nmin_functions = 500", "feedback.min_functions"),
        ("[feedback]\nalpha = 0.0", "feedback.alpha"),
        ("[rollback]\nwindows = 0", "rollback.windows"),
        ("[rollback]\nerror_rate = 2.0", "rollback.error_rate"),
        ("[rollback]\np99_ms = -1.0", "rollback.p99_ms"),
        ("[rollback]\nwindowz = 2", "windowz"),
        (
            "[rollback]\non_coverage_collapse = false\nerror_rate = 0.0",
            "rollback.enabled",
        ),
        // Contradictions across sections: a condition whose evidence is off.
        (
            "[drift]\nenabled = false\n[rollback]\non_drift = true",
            "rollback.on_drift",
        ),
        (
            "[feedback]\nenabled = false\n[rollback]\nerror_rate = 0.0",
            "rollback.on_coverage_collapse",
        ),
    ] {
        let e = ServeConfig::from_toml_str(toml).unwrap_err().to_string();
        assert!(e.contains(key), "{toml:?}: {e}");
    }
    // Off together is consistent: the defaults with feedback off still roll back on errors.
    ServeConfig::from_toml_str("[feedback]\nenabled = false").unwrap();
    ServeConfig::from_toml_str("[drift]\nenabled = false").unwrap();
}
