//! The memory budget (`[resources]`): a version whose estimated footprint does not fit in
//! `load_fraction` of the budget is refused at startup and through the load API (507) naming
//! its estimate and the budget while the others keep serving; footprints of loaded versions add
//! up, a version replacing itself counts once; above the high-water mark (`shed_fraction` of
//! the budget, taken live from a reload) inference is shed with 503 + `Retry-After`, counted,
//! and served again once the budget is raised; nonsense values are refused naming the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use pno_models::config::ModelConfig;
use pno_run::{DataSpec, FORMAT, ModelFile, Normalizers, RunDir, to_safetensors, write_json};
use pno_serve::ServeConfig;
use serde_json::{Value, json};

use super::*;

/// An untrained FNO run folder on `n`² (a fresh init is a valid artifact to load and size).
fn synthetic_run(dir: &Path, n: usize) {
    let spec = ModelConfig {
        kind: Some("fno".into()),
        hidden_channels: Some(8),
        n_layers: Some(2),
        n_modes: Some(vec![8, 8]),
        lifting_channels: Some(16),
        projection_channels: Some(16),
        ..Default::default()
    }
    .validate(1, 1, &[n, n])
    .unwrap();
    let model = spec.init(1, &Device::flex());
    let bytes =
        to_safetensors(&pno_models::weights::named_tensors(&model), BTreeMap::new()).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let run = RunDir::new(dir);
    std::fs::write(run.weights(), &bytes).unwrap();
    let file = ModelFile {
        format: FORMAT.into(),
        model: spec,
        train: json!({"seed": 1}),
        data: DataSpec {
            x: "x".into(),
            y: "y".into(),
            n_train: None,
            n_test: 0,
            val_fraction: 0.1,
            subsample: 1,
            normalize: false,
            check: false,
            domain_length: 1.0,
            periodic: false,
            n_calibration: 0,
            window: None,
        },
        in_channels: 1,
        out_channels: 1,
        grid: vec![n, n],
        weights_sha256: pno_core::sha256_hex(&bytes),
        spread_scale: 1.0,
        calibration: None,
    };
    write_json(&run.model(), &file).unwrap();
    write_json(&run.normalizer(), &Normalizers { x: None, y: None }).unwrap();
}

/// A repository with `small` (the trained fixture, 16²) and `big` (an FNO on 64²: at the
/// default limits, 64 inputs × 256 draws, its answer alone is hundreds of MiB), version 1 each.
fn two_models(dir: &Path) -> PathBuf {
    let repo = repo(dir, "small", &[1]);
    synthetic_run(&repo.join("big").join("1"), 64);
    repo
}

async fn metrics(st: &AppState) -> String {
    String::from_utf8(body_bytes(send(st, get("/metrics")).await).await).unwrap()
}

/// The value of the sample of `metric` whose labels contain `labels`.
fn sample(text: &str, metric: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(labels))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// `(small, big)` footprints (bytes) as `/metrics` shows them with a budget that fits both.
async fn footprints(repo: &Path) -> (f64, f64) {
    let mut cfg = config(repo);
    cfg.resources.memory_budget_mb = 1 << 30;
    let st = state(cfg);
    let m = metrics(&st).await;
    let small = sample(
        &m,
        "pno_model_footprint_bytes",
        "model=\"small\",version=\"1\"",
    )
    .unwrap();
    let big = sample(
        &m,
        "pno_model_footprint_bytes",
        "model=\"big\",version=\"1\"",
    )
    .unwrap();
    assert!(
        big > 4.0 * small && small > 1e6,
        "the fixture's sizes: small {small} big {big}"
    );
    (small, big)
}

fn infer_small() -> Request<Body> {
    post_json(
        "/v2/models/small/infer",
        &infer_body(&input(1), 1, json!({"n_samples": 4, "seed": 1})),
    )
}

fn anonymous(mut cfg: ServeConfig) -> ServeConfig {
    cfg.anonymous = Some(pno_serve::config::AnonymousRole::Reader);
    cfg
}

#[tokio::test]
async fn a_version_over_the_budget_is_refused_at_startup_and_by_the_load_api() {
    let dir = tempfile::tempdir().unwrap();
    let repo = two_models(dir.path());
    let (small, big) = footprints(&repo).await;
    // The share (0.8 of the budget) is halfway between the two: small fits, big does not.
    let share = (small + big) / 2.0;
    let mut cfg = anonymous(config(&repo));
    cfg.resources.memory_budget_mb = (share / 0.8 / 1048576.0).round() as u64;
    let st = AppState::new(cfg, Device::flex()).unwrap();
    let errors = st.repository().load_all().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = errors[0].to_string();
    for part in [
        "model `big` version 1",
        "estimated footprint",
        "resources.load_fraction = 0.8",
        "config memory budget",
        "64 inputs × 256 draws on [64, 64]",
    ] {
        assert!(e.contains(part), "{part:?} in {e}");
    }
    assert_eq!(st.repository().loaded(), [("small".to_string(), 1)]);
    assert_eq!(call(&st, infer_small()).await.0, StatusCode::OK);

    // Through the load API: 507, the same reason, and small keeps serving.
    let (s, v) = call(
        &st,
        op_post(&st, "/v2/repository/models/big/load", &json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::INSUFFICIENT_STORAGE, "{v}");
    assert_eq!(v["class"], "persistent");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("version 1")
            && msg.contains("estimated footprint")
            && msg.contains("already loaded use")
            && msg.contains("resources.load_fraction"),
        "{msg}"
    );
    let (_, idx) = call(&st, op_post(&st, "/v2/repository/index", &json!({}))).await;
    let row = idx
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "big")
        .unwrap();
    assert_eq!(row["state"], "UNAVAILABLE");
    assert!(
        row["reason"]
            .as_str()
            .unwrap()
            .contains("estimated footprint"),
        "{row}"
    );
    assert_eq!(call(&st, infer_small()).await.0, StatusCode::OK);
    let m = metrics(&st).await;
    assert!(
        sample(
            &m,
            "pno_model_footprint_bytes",
            "model=\"small\",version=\"1\""
        ) == Some(small),
        "{m}"
    );
    assert!(sample(&m, "pno_model_footprint_bytes", "model=\"big\"").is_none());
    assert!(
        m.contains("pno_memory_budget_bytes{source=\"config\",replica=\"t\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn loaded_footprints_add_up_and_a_version_replacing_itself_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let (small, _) = footprints(&two_models(&dir.path().join("sizing"))).await;
    let repo = repo(dir.path(), "small", &[1, 2]);
    // Room for one version of small, not two.
    let mut cfg = anonymous(config(&repo));
    cfg.resources.memory_budget_mb = (1.5 * small / 0.8 / 1048576.0).ceil() as u64;
    cfg.models.insert(
        "small".into(),
        toml::from_str("version_policy = \"all\"").unwrap(),
    );
    let st = AppState::new(cfg, Device::flex()).unwrap();
    // Policy `all` is all or nothing: versions 1 and 2 together do not fit.
    let errors = st.repository().load_all().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].to_string().contains("version 2"), "{errors:?}");
    assert!(!st.repository().any_loaded());
    let load = |v: u64| {
        op_post(
            &st,
            "/v2/repository/models/small/load",
            &json!({"parameters": {"version": v}}),
        )
    };
    assert_eq!(call(&st, load(1)).await.0, StatusCode::OK);
    let (s, v) = call(&st, load(2)).await;
    assert_eq!(s, StatusCode::INSUFFICIENT_STORAGE, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("still serving versions [\"1\"]"),
        "{v}"
    );
    // Version 1 again replaces itself: it does not count twice.
    let (s, v) = call(&st, load(1)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(call(&st, infer_small()).await.0, StatusCode::OK);
}

/// A state whose config source is `file` (`text` after the repository line).
fn reloadable(repo: &Path, file: &Path, text: &str) -> AppState {
    let head = format!(
        "repository = {:?}\nanonymous = \"reader\"\n",
        repo.display().to_string()
    );
    std::fs::write(file, format!("{head}{text}")).unwrap();
    let st = state(ServeConfig::from_file(file).unwrap());
    let f = file.to_path_buf();
    st.set_config_source(Box::new(move || ServeConfig::from_file(&f)));
    st
}

async fn reload_with(st: &AppState, repo: &Path, file: &Path, text: &str) -> (StatusCode, Value) {
    let head = format!(
        "repository = {:?}\nanonymous = \"reader\"\n",
        repo.display().to_string()
    );
    std::fs::write(file, format!("{head}{text}")).unwrap();
    let (key, _) = st.keys().create(pno_serve::auth::Role::Admin).unwrap();
    call(
        st,
        with_key(post_json("/v2/admin/config/reload", &json!({})), &key),
    )
    .await
}

#[tokio::test]
async fn above_the_high_water_mark_inference_is_shed_until_the_budget_is_raised() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "small", &[1]);
    let file = dir.path().join("serve.toml");
    let roomy = "[resources]\nmemory_budget_mb = 1048576\n";
    let st = reloadable(&repo, &file, roomy);
    assert_eq!(call(&st, infer_small()).await.0, StatusCode::OK);

    // A budget whose high-water mark (0.9 of it) is well below what this process holds.
    let (rss, _) = pno_core::resources::rss_bytes().unwrap();
    let tight_mb = ((rss as f64 / 0.9) * 0.75 / 1048576.0).floor() as u64;
    let tight = format!("[resources]\nmemory_budget_mb = {tight_mb}\n");
    let (s, v) = reload_with(&st, &repo, &file, &tight).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["changed"], json!(["resources.memory_budget_mb"]));
    for _ in 0..2 {
        let r = send(&st, infer_small()).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().get("retry-after").is_some());
        let v: Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
        assert_eq!(v["class"], "transient");
        let e = v["error"].as_str().unwrap();
        assert!(
            e.contains("memory is above the high-water mark")
                && e.contains("resources.shed_fraction = 0.9")
                && e.contains(&format!("config memory budget of {tight_mb}.0 MiB")),
            "{e}"
        );
    }
    let m = metrics(&st).await;
    assert_eq!(
        sample(
            &m,
            "pno_shed_total",
            "model=\"small\",version=\"1\",reason=\"memory\""
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "pno_memory_budget_bytes", "source=\"config\""),
        Some((tight_mb << 20) as f64)
    );
    // Readiness is untouched; the memory check, on the same budget, says why.
    assert_eq!(call(&st, get("/v2/health/ready")).await.0, StatusCode::OK);
    let deps = st.check_dependencies().await;
    let mem = deps.iter().find(|d| d.name == "memory").unwrap();
    assert_eq!(mem.state, "failing");
    assert!(
        mem.error.as_deref().unwrap().contains("config budget"),
        "{mem:?}"
    );
    assert!(!mem.critical);

    // Raised again: served.
    let (s, v) = reload_with(&st, &repo, &file, roomy).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(call(&st, infer_small()).await.0, StatusCode::OK);
}

#[test]
fn nonsense_resource_settings_are_refused_naming_the_key() {
    for (toml, key) in [
        (
            "[resources]\nload_fraction = 0.0",
            "resources.load_fraction",
        ),
        (
            "[resources]\nload_fraction = 1.5",
            "resources.load_fraction",
        ),
        (
            "[resources]\nshed_fraction = -0.1",
            "resources.shed_fraction",
        ),
        (
            "[resources]\nshed_fraction = nan",
            "resources.shed_fraction",
        ),
        (
            "[resources]\nload_fraction = 0.9\nshed_fraction = 0.5",
            "resources.shed_fraction",
        ),
        (
            "[resources]\nmemory_budget_mb = 2199023255552",
            "resources.memory_budget_mb",
        ),
        (
            "[resources]\nmemory_budget_mb = -1",
            "resources.memory_budget_mb",
        ),
        ("[resources]\nbudget = 1", "budget"),
    ] {
        let e = ServeConfig::from_toml_str(toml).unwrap_err().to_string();
        assert!(e.contains(key), "{toml:?}: {e}");
    }
    let ok = ServeConfig::from_toml_str(
        "[resources]\nmemory_budget_mb = 512\nload_fraction = 0.5\nshed_fraction = 0.5",
    )
    .unwrap();
    assert_eq!(ok.resources.memory_budget_mb, 512);
}
