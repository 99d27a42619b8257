//! The model repository: version policies, load/unload/reload, refusal of broken versions while
//! the previous one keeps serving.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use pno_serve::config::{ModelConfig, VersionPolicy};
use serde_json::json;

use crate::*;

fn corrupt_weights(dir: &std::path::Path) {
    let w = dir.join("weights.safetensors");
    let mut b = std::fs::read(&w).unwrap();
    let n = b.len();
    b[n - 5] ^= 0x40;
    std::fs::write(&w, b).unwrap();
}

async fn served_version(st: &AppState) -> String {
    let body = infer_body(&input(1), 1, json!({"n_samples": 2, "seed": 1}));
    let (s, v) = call(st, post_json("/v2/models/pno/infer", &body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["model_version"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn latest_policy_serves_the_newest_version() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1, 2]);
    let st = state(config(&repo));
    assert_eq!(served_version(&st).await, "2");
    let (_, v) = call(&st, get("/v2/models/pno")).await;
    assert_eq!(v["versions"], json!(["2"]));
    assert_eq!(
        call(&st, get("/v2/models/pno/versions/1")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn all_and_specific_policies() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1, 2, 3]);
    let mut cfg = config(&repo);
    cfg.models = BTreeMap::from([(
        "pno".to_string(),
        ModelConfig {
            version_policy: VersionPolicy::All,
            ..ModelConfig::default()
        },
    )]);
    let st = state(cfg.clone());
    let (_, v) = call(&st, get("/v2/models/pno")).await;
    assert_eq!(v["versions"], json!(["1", "2", "3"]));
    for ver in ["1", "2", "3"] {
        let body = infer_body(&input(1), 1, json!({"n_samples": 2}));
        let (s, v) = call(
            &st,
            post_json(&format!("/v2/models/pno/versions/{ver}/infer"), &body),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["model_version"], ver);
    }
    cfg.models.get_mut("pno").unwrap().version_policy = VersionPolicy::Specific(vec![1, 3]);
    let st = state(cfg);
    let (_, v) = call(&st, get("/v2/models/pno")).await;
    assert_eq!(v["versions"], json!(["1", "3"]));
    assert_eq!(served_version(&st).await, "3");
}

#[tokio::test]
async fn a_corrupt_new_version_is_refused_and_the_old_one_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1]);
    let st = state(config(&repo));
    assert_eq!(served_version(&st).await, "1");
    // Version 2 arrives with corrupt weights: the reload is refused with the reason.
    copy_dir(&fixture_run(), &repo.join("pno/2"));
    corrupt_weights(&repo.join("pno/2"));
    let (s, v) = call(
        &st,
        op_post(&st, "/v2/repository/models/pno/load", &json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("version 2") && msg.contains("checksum"),
        "{msg}"
    );
    assert!(msg.contains("still serving versions [\"1\"]"), "{msg}");
    assert_eq!(served_version(&st).await, "1");
    assert_eq!(call(&st, get("/v2/health/ready")).await.0, StatusCode::OK);
    // The index says why.
    let (_, idx) = call(&st, op_post(&st, "/v2/repository/index", &json!({}))).await;
    let rows = idx.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["state"], "READY");
    assert_eq!(rows[1]["state"], "UNAVAILABLE");
    assert!(
        rows[1]["reason"].as_str().unwrap().contains("checksum"),
        "{idx}"
    );
    // A bad config (model.json) is refused too.
    std::fs::write(repo.join("pno/2/model.json"), b"{\"format\": 1}").unwrap();
    let (s, v) = call(
        &st,
        op_post(&st, "/v2/repository/models/pno/load", &json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("model.json"), "{v}");
    assert_eq!(served_version(&st).await, "1");
    // Fixed: the reload swaps to version 2.
    std::fs::remove_dir_all(repo.join("pno/2")).unwrap();
    copy_dir(&fixture_run(), &repo.join("pno/2"));
    let (s, v) = call(
        &st,
        op_post(&st, "/v2/repository/models/pno/load", &json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["serving"], json!(["2"]));
    assert_eq!(served_version(&st).await, "2");
}

#[tokio::test]
async fn startup_falls_back_to_the_newest_version_that_loads() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1, 2]);
    corrupt_weights(&repo.join("pno/2"));
    let st =
        pno_serve::AppState::new(config(&repo), pno_models::burn::tensor::Device::flex()).unwrap();
    let errors = st.repository().load_all().unwrap();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().contains("version 2"), "{}", errors[0]);
    assert_eq!(served_version(&st).await, "1");
}

#[tokio::test]
async fn unload_load_and_pin_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1, 2]);
    let st = state(config(&repo));
    let (s, _) = call(
        &st,
        op_post(&st, "/v2/repository/models/pno/unload", &json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        call(&st, get("/v2/models/pno/ready")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&st, get("/v2/health/ready")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (s, _) = call(
        &st,
        op_post(&st, "/v2/repository/models/pno/unload", &json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Pin version 1 explicitly.
    let (s, v) = call(
        &st,
        op_post(
            &st,
            "/v2/repository/models/pno/load",
            &json!({"parameters": {"version": "1"}}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(served_version(&st).await, "1");
    assert_eq!(call(&st, get("/v2/health/ready")).await.0, StatusCode::OK);
    // Unknown model, unknown version, bad version, bad names: 404 / 400, nothing changes.
    for (body, path, status) in [
        (
            json!({}),
            "/v2/repository/models/nope/load",
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"parameters": {"version": 9}}),
            "/v2/repository/models/pno/load",
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"parameters": {"version": "x"}}),
            "/v2/repository/models/pno/load",
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"parameters": {"version": -2}}),
            "/v2/repository/models/pno/load",
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({}),
            "/v2/repository/models/..%2F..%2Fetc/load",
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({}),
            "/v2/repository/models/.hidden/load",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (s, v) = call(&st, op_post(&st, path, &body)).await;
        assert_eq!(s, status, "{path} {body}: {v}");
    }
    let (key, _) = st.keys().create(pno_serve::auth::Role::Operator).unwrap();
    let r = with_key(
        axum::http::Request::post("/v2/repository/models/pno/load")
            .body(axum::body::Body::from("not json"))
            .unwrap(),
        &key,
    );
    assert_eq!(call(&st, r).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(served_version(&st).await, "1");
}

/// A gate record for a version folder (what `pno promote` writes), passing or not.
fn gate_record(dir: &std::path::Path, passed: bool) {
    let rec = pno_run::GateRecord {
        gate_sha256: String::new(),
        gate_file: String::new(),
        data_sha256: "ab".into(),
        data_path: "data".into(),
        split: None,
        n_functions: 4,
        n_samples: 8,
        seed: 0,
        metrics: BTreeMap::from([("rel_l2".to_string(), 0.1)]),
        champion: None,
        rows: vec![pno_run::GateRow {
            check: "rel_l2 <= 0.05".into(),
            metric: "rel_l2".into(),
            value: 0.1,
            threshold: "rel_l2 <= 0.05".into(),
            champion: None,
            passed,
        }],
        passed,
        time_unix: 0,
    };
    pno_run::write_json(&dir.join(pno_run::GATE_FILE), &rec).unwrap();
}

#[tokio::test]
async fn require_gate_loads_only_versions_with_a_passing_gate_record() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1, 2, 3]);
    gate_record(&repo.join("pno/1"), true);
    gate_record(&repo.join("pno/2"), false);
    // Version 3 has no gate record at all.
    let cfg = ServeConfig {
        require_gate: true,
        ..config(&repo)
    };
    let st = pno_serve::AppState::new(cfg, pno_models::burn::tensor::Device::flex()).unwrap();
    let errors = st.repository().load_all().unwrap();
    // Newest first: 3 (no record) and 2 (failed gate) are refused, 1 serves.
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        text.iter()
            .any(|e| e.contains("version 3") && e.contains("no gate record")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|e| e.contains("version 2") && e.contains("rel_l2 <= 0.05")),
        "{text:?}"
    );
    assert_eq!(served_version(&st).await, "1");
    // Asking for version 3 explicitly is refused with the reason; 1 keeps serving.
    let (s, v) = call(
        &st,
        op_post(
            &st,
            "/v2/repository/models/pno/load",
            &json!({"parameters": {"version": 3}}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("gate.json") && msg.contains("still serving"),
        "{msg}"
    );
    assert_eq!(served_version(&st).await, "1");
    // Promoted properly, it loads.
    gate_record(&repo.join("pno/3"), true);
    let (s, v) = call(
        &st,
        op_post(&st, "/v2/repository/models/pno/load", &json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(served_version(&st).await, "3");
    // A per-model override turns the requirement off for that model.
    let mut models = BTreeMap::new();
    models.insert(
        "pno".to_string(),
        ModelConfig {
            require_gate: Some(false),
            ..ModelConfig::default()
        },
    );
    let dir2 = tempfile::tempdir().unwrap();
    let repo2 = crate::repo(dir2.path(), "pno", &[1]);
    let st2 = state(ServeConfig {
        require_gate: true,
        models,
        ..config(&repo2)
    });
    assert_eq!(served_version(&st2).await, "1");
}
