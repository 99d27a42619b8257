//! The resilience layer without any test-only switch: a version whose weights make every
//! forward pass non-finite (a real artifact, finite weights scaled by 1e30) trips its circuit
//! breaker, unpinned requests fall back to the previous version, replacing the version closes
//! it; input and security failures never count against a model; degradation serves the first
//! draws of the full answer; bulkheads keep one model's overload away from another; bad
//! settings are refused naming the key.

use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use pno_serve::ServeConfig;
use serde_json::{Value, json};

use super::*;

/// Copy the fixture run to `dst` with every weight scaled by 1e30: still finite (it loads and
/// its checksum matches), but every forward pass overflows to non-finite values.
pub(crate) fn broken_copy(src: &Path, dst: &Path) {
    copy_dir(src, dst);
    let w = dst.join("weights.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    let (mut tensors, meta) = pno_run::from_safetensors(&bytes, &w).unwrap();
    for t in tensors.values_mut() {
        for v in &mut t.values {
            *v *= 1e30;
        }
    }
    let out = pno_run::to_safetensors(&tensors, meta).unwrap();
    std::fs::write(&w, &out).unwrap();
    let mpath = dst.join("model.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    m["weights_sha256"] = pno_core::sha256_hex(&out).into();
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

/// Model `pno`: version 1 good, version 2 broken, both served.
fn two_versions(dir: &Path, tweak: impl FnOnce(&mut ServeConfig)) -> AppState {
    let repo = repo(dir, "pno", &[1]);
    broken_copy(&fixture_run(), &repo.join("pno").join("2"));
    let mut cfg = config(&repo);
    cfg.models.insert(
        "pno".into(),
        toml::from_str("version_policy = \"all\"").unwrap(),
    );
    cfg.breaker.consecutive_failures = 3;
    cfg.breaker.open_ms = 60_000;
    tweak(&mut cfg);
    state(cfg)
}

fn body(seed: u64, samples: usize) -> Value {
    infer_body(
        &input(1),
        1,
        json!({"n_samples": samples, "seed": seed, "binary_data_output": false}),
    )
}

async fn metrics(st: &AppState) -> String {
    String::from_utf8(body_bytes(send(st, get("/metrics")).await).await).unwrap()
}

#[tokio::test]
async fn a_version_that_fails_every_call_opens_its_breaker_fails_fast_and_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let st = two_versions(dir.path(), |_| {});
    let pinned = "/v2/models/pno/versions/2/infer";
    for i in 0..3 {
        let (s, v) = call(&st, post_json(pinned, &body(1, 4))).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "call {i}: {v}");
        assert_eq!(v["class"], "persistent", "{v}");
        assert!(v["error"].as_str().unwrap().contains("non-finite"), "{v}");
    }
    // Open: refused at once with Retry-After, without computing.
    let t = Instant::now();
    let r = send(&st, post_json(pinned, &body(1, 4))).await;
    let dt = t.elapsed();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let v: Value = serde_json::from_slice(&body_bytes(r).await).unwrap();
    assert_eq!(
        (v["class"].as_str(), v["breaker"].as_str()),
        (Some("transient"), Some("open"))
    );
    assert!(dt < Duration::from_secs(1), "fail-fast took {dt:?}");

    // Unpinned: version 2 is the newest, but its breaker is open: version 1 answers.
    let (s, v) = call(&st, post_json("/v2/models/pno/infer", &body(1, 4))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["model_version"], "1");
    assert_eq!(v["parameters"]["fallback_from"], "2");

    // Readiness and stats say so; the model as a whole is still ready (version 1).
    let (s, v) = call(&st, get("/v2/models/pno/versions/2/ready")).await;
    assert_eq!(
        (s, &v["breaker"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!("open"))
    );
    let (s, _) = call(&st, get("/v2/models/pno/ready")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(&st, get("/v2/models/pno/versions/2/stats")).await;
    assert_eq!(s, StatusCode::OK);
    let b = &v["model_stats"][0]["breaker"];
    assert_eq!(
        (b["state"].as_str(), b["opened"].as_u64()),
        (Some("open"), Some(1)),
        "{v}"
    );
    assert_eq!(
        b["consecutive_failures"], 0,
        "the window is reset when it opens"
    );

    let m = metrics(&st).await;
    for line in [
        "pno_breaker_state{model=\"pno\",version=\"2\",replica=\"t\"} 1",
        "pno_breaker_state{model=\"pno\",version=\"1\",replica=\"t\"} 0",
        "pno_failures_total{class=\"persistent\",model=\"pno\",version=\"2\",replica=\"t\"} 3",
        "pno_failures_total{class=\"transient\",model=\"pno\",version=\"2\",replica=\"t\"} 1",
        "pno_breaker_transitions_total{model=\"pno\",version=\"2\",to=\"open\",replica=\"t\"} 1",
        "pno_fallback_total{model=\"pno\",version=\"1\",from=\"2\",replica=\"t\"} 1",
    ] {
        assert!(m.contains(line), "missing {line}\n{m}");
    }
}

#[tokio::test]
async fn without_fallback_an_unpinned_request_is_refused_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let st = two_versions(dir.path(), |c| {
        c.fallback = pno_serve::config::Fallback::Off
    });
    for _ in 0..3 {
        call(&st, post_json("/v2/models/pno/infer", &body(1, 4))).await;
    }
    let (s, v) = call(&st, post_json("/v2/models/pno/infer", &body(1, 4))).await;
    assert_eq!(
        (s, &v["breaker"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!("open")),
        "{v}"
    );
    assert!(
        v["error"].as_str().unwrap().contains("no healthy version"),
        "{v}"
    );
}

#[tokio::test]
async fn replacing_the_broken_version_closes_its_breaker() {
    let dir = tempfile::tempdir().unwrap();
    let st = two_versions(dir.path(), |_| {});
    let pinned = "/v2/models/pno/versions/2/infer";
    for _ in 0..4 {
        call(&st, post_json(pinned, &body(1, 4))).await;
    }
    let v2 = dir.path().join("repo/pno/2");
    std::fs::remove_dir_all(&v2).unwrap();
    copy_dir(&fixture_run(), &v2);
    let (s, v) = call(
        &st,
        op_post(
            &st,
            "/v2/repository/models/pno/load",
            &json!({"parameters": {"version": 2}}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = call(&st, post_json(pinned, &body(1, 4))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = call(&st, get("/v2/models/pno/versions/2/stats")).await;
    assert_eq!(v["model_stats"][0]["breaker"]["state"], "closed");
    assert!(metrics(&st).await.contains(
        "pno_breaker_transitions_total{model=\"pno\",version=\"2\",to=\"closed\",replica=\"t\"} 1"
    ));
}

#[tokio::test]
async fn input_and_security_failures_never_count_against_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1]);
    let mut cfg = config(&repo);
    cfg.breaker.consecutive_failures = 1;
    cfg.breaker.min_calls = 1;
    cfg.breaker.window = 1;
    let st = state(cfg);
    let nine = vec![0.0f32; 9];
    let bad_shape =
        json!({"inputs": [{"name": "x", "shape": [1, 1, 3, 3], "datatype": "FP32", "data": nine}]});
    let nan = infer_body(&[f32::NAN; S * S], 1, json!({}));
    let wrong_type = infer_body(&input(1), 1, json!({"degrade": "yes"}));
    for b in [&bad_shape, &nan, &wrong_type] {
        let (s, v) = call(&st, post_json("/v2/models/pno/infer", b)).await;
        assert_eq!(
            (s, v["class"].as_str()),
            (StatusCode::BAD_REQUEST, Some("input")),
            "{v}"
        );
    }
    let (s, v) = call(
        &st,
        with_key(post_json("/v2/models/pno/infer", &body(1, 4)), "pno_bogus"),
    )
    .await;
    assert_eq!(
        (s, v["class"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("security")),
        "{v}"
    );
    let (_, v) = call(&st, get("/v2/models/pno/stats")).await;
    let b = &v["model_stats"][0]["breaker"];
    assert_eq!(
        (b["state"].as_str(), b["calls"].as_u64()),
        (Some("closed"), Some(0)),
        "{v}"
    );
    // One good call enters the window.
    let (s, _) = call(&st, post_json("/v2/models/pno/infer", &body(1, 4))).await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = call(&st, get("/v2/models/pno/stats")).await;
    assert_eq!(v["model_stats"][0]["breaker"]["calls"], 1);
    let m = metrics(&st).await;
    assert!(
        m.contains(
            "pno_failures_total{class=\"input\",model=\"pno\",version=\"1\",replica=\"t\"} 3"
        ),
        "{m}"
    );
    assert!(
        m.contains(
            "pno_failures_total{class=\"security\",model=\"\",version=\"\",replica=\"t\"} 1"
        ),
        "{m}"
    );
}

#[tokio::test]
async fn degraded_answers_are_the_first_draws_of_the_full_answer() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1]);
    let mut cfg = config(&repo);
    // Any compute at all puts the latency average over 0.001 s: every later request degrades.
    cfg.degrade.latency_ewma_ms = 1;
    cfg.degrade.min_samples = 3;
    let st = state(cfg);
    let full = |degrade: bool| {
        infer_body(
            &input(1),
            1,
            json!({"n_samples": 12, "seed": 7, "degrade": degrade}),
        )
    };
    let with_samples = |mut b: Value| {
        b["outputs"] = json!([{"name": "samples"}, {"name": "mean"}]);
        b
    };
    let (s, a) = call(
        &st,
        post_json("/v2/models/pno/infer", &with_samples(full(true))),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            a["parameters"]["degraded"].as_bool(),
            a["parameters"]["n_samples"].as_u64()
        ),
        (Some(false), Some(12)),
        "the first call has no latency history"
    );
    let (s, d) = call(
        &st,
        post_json("/v2/models/pno/infer", &with_samples(full(true))),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let p = &d["parameters"];
    assert_eq!(
        (
            p["degraded"].as_bool(),
            p["n_samples"].as_u64(),
            p["requested_samples"].as_u64(),
            p["degrade_reason"].as_str()
        ),
        (Some(true), Some(3), Some(12), Some("latency")),
        "{p}"
    );
    let all = floats(&a["outputs"][0]["data"]);
    let few = floats(&d["outputs"][0]["data"]);
    assert_eq!(d["outputs"][0]["shape"][0], 3);
    assert_eq!(few.len() * 4, all.len());
    assert_eq!(
        few[..],
        all[..few.len()],
        "degraded draws are the first draws"
    );
    // Opting out under the same pressure: 503, never a silent downgrade.
    let (s, v) = call(&st, post_json("/v2/models/pno/infer", &full(false))).await;
    assert_eq!(
        (s, v["class"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("transient")),
        "{v}"
    );
    assert!(
        v["error"].as_str().unwrap().contains("\"degrade\": false"),
        "{v}"
    );
    let m = metrics(&st).await;
    assert!(
        m.contains(
            "pno_degraded_total{model=\"pno\",version=\"1\",reason=\"latency\",replica=\"t\"} 1"
        ),
        "{m}"
    );
}

#[tokio::test]
async fn the_work_budget_keeps_as_many_draws_as_fit() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1]);
    let mut cfg = config(&repo);
    cfg.degrade.max_work = 10 * S * S;
    cfg.degrade.min_samples = 2;
    let st = state(cfg);
    let (s, v) = call(&st, post_json("/v2/models/pno/infer", &body(1, 40))).await;
    assert_eq!(s, StatusCode::OK);
    let p = &v["parameters"];
    assert_eq!(
        (p["n_samples"].as_u64(), p["degrade_reason"].as_str()),
        (Some(10), Some("work")),
        "{p}"
    );
}

#[tokio::test]
async fn a_saturated_model_is_shed_while_another_model_answers() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "a", &[1]);
    copy_dir(&fixture_run(), &repo.join("b").join("1"));
    let mut cfg = config(&repo);
    cfg.bulkhead.max_queue = Some(1);
    cfg.degrade.enabled = false;
    let st = state(cfg);
    // Model a: its one slot taken and its one queue place taken.
    let _slot = st.model_gate("a").acquire().await.unwrap();
    let st2 = st.clone();
    let queued =
        tokio::spawn(async move { call(&st2, post_json("/v2/models/a/infer", &body(1, 4))).await });
    while st.model_gate("a").waiting() == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (s, v) = call(&st, post_json("/v2/models/a/infer", &body(1, 4))).await;
    assert_eq!(
        (s, v["class"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("transient")),
        "{v}"
    );
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("model 'a' is overloaded"),
        "{v}"
    );
    // Model b is untouched.
    let (s, v) = call(&st, post_json("/v2/models/b/infer", &body(1, 4))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    drop(_slot);
    let (s, _) = queued.await.unwrap();
    assert_eq!(s, StatusCode::OK);
    // Shedding is overload, not the model's failure.
    let (_, v) = call(&st, get("/v2/models/a/stats")).await;
    assert_eq!(v["model_stats"][0]["breaker"]["calls"], 1);
}

#[tokio::test]
async fn a_queued_request_past_its_deadline_leaves_the_queue_and_is_counted() {
    let (_d, st) = setup();
    let slot = st.model_gate("pno").acquire().await.unwrap();
    let (s, v) = call(
        &st,
        post_json(
            "/v2/models/pno/infer",
            &infer_body(&input(1), 1, json!({"timeout": 50_000})),
        ),
    )
    .await;
    assert_eq!(
        (s, v["class"].as_str()),
        (StatusCode::GATEWAY_TIMEOUT, Some("transient")),
        "{v}"
    );
    assert_eq!(st.model_gate("pno").waiting(), 0);
    drop(slot);
    let m = metrics(&st).await;
    assert!(
        m.contains("pno_cancelled_total{reason=\"deadline\",replica=\"t\"} 1"),
        "{m}"
    );
    assert!(
        m.contains(
            "pno_shed_total{model=\"pno\",version=\"1\",reason=\"queue_deadline\",replica=\"t\"} 1"
        ),
        "{m}"
    );
}

#[test]
fn nonsense_resilience_settings_are_refused_naming_the_key() {
    for (toml, key) in [
        ("[breaker]\nfailure_rate = 1.5", "breaker.failure_rate"),
        ("[breaker]\nslow_call_rate = 0.0", "breaker.slow_call_rate"),
        ("[breaker]\nwindow = -1", "breaker.window"),
        (
            "[breaker]\nmin_calls = 99\nwindow = 10",
            "breaker.min_calls",
        ),
        ("[breaker]\nopen_ms = 0", "breaker.open_ms"),
        ("[breaker]\nhalf_open = 3", "breaker"),
        ("[degrade]\nqueue_fraction = -0.1", "degrade.queue_fraction"),
        ("[degrade]\nmin_samples = 500", "degrade.min_samples"),
        ("[degrade]\nmin_samples = 0", "degrade.min_samples"),
        (
            "[bulkhead]\nmax_concurrency = 9",
            "bulkhead.max_concurrency",
        ),
        ("[bulkhead]\nmax_queue = 1000", "bulkhead.max_queue"),
        ("fallback = \"sideways\"", "fallback"),
        ("[retry]\nattempts = 0", "retry.attempts"),
        ("[retry]\nbase_ms = 500\nmax_ms = 100", "retry.base_ms"),
        ("[limits]\nmax_connections = 0", "limits.max_connections"),
        (
            "[models.pno]\nmax_concurrency = 99",
            "models.pno.max_concurrency",
        ),
    ] {
        let e = ServeConfig::from_toml_str(toml).unwrap_err().to_string();
        assert!(e.contains(key), "{toml:?}: {e}");
    }
}
