//! Online input drift on a served socket: the fixture run's `reference.json` (its training
//! inputs' features) is the reference; inputs from the same recipe (new coefficients) leave the
//! verdict clean, inputs from another recipe (larger amplitudes, a finer mode) are detected
//! within a test window, fire `InputDrift`, are audited and shown in `/metrics`, and the verdict
//! clears when in-distribution inputs return. A run without the file serves without drift
//! monitoring.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::*;

/// One input of the fixture's training recipe (`pno_train::testing::synthetic_npz`), with the
/// coefficients scaled by `amp` and `hf` of a finer mode added (1, 0: in distribution).
fn field(seed: u64, amp: f32, hf: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut u = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let a: [f32; 4] = std::array::from_fn(|_| u() * amp);
    let t = std::f32::consts::TAU;
    let mut x = Vec::with_capacity(S * S);
    for i in 0..S {
        for j in 0..S {
            let (p, q) = (i as f32 / S as f32, j as f32 / S as f32);
            x.push(
                a[0] * (t * p).sin()
                    + a[1] * (t * q).cos()
                    + a[2] * (t * (p + q)).sin()
                    + a[3]
                    + hf * (5.0 * t * p).cos(),
            );
        }
    }
    x
}

async fn infer_one(st: &AppState, x: &[f32]) {
    let body = infer_body(x, 1, json!({"n_samples": 2, "seed": 1}));
    let r = send(st, post_json("/v2/models/pno/infer", &body)).await;
    assert_eq!(r.status(), StatusCode::OK);
}

async fn admin_alerts(st: &AppState) -> Value {
    let (key, _) = st.keys().create(pno_serve::auth::Role::Admin).unwrap();
    let (s, v) = call(st, with_key(get("/v2/admin/alerts"), &key)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

/// Wait (≤ 10 s) for the version's verdict to be `detected`.
async fn verdict(st: &AppState, detected: bool, after_s: u64) -> Value {
    let t = Instant::now();
    loop {
        let v = admin_alerts(st).await;
        if let Some(d) = v["drift"].as_array().and_then(|a| a.first())
            && d["verdict"]["detected"] == detected
            && d["verdict"]["at_s"].as_u64() >= Some(after_s)
        {
            return v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no verdict {detected}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shifted_inputs_are_detected_alerted_audited_and_clear_again() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1]);
    assert!(
        repo.join("pno/1/reference.json").is_file(),
        "the fixture run has reference stats"
    );
    let mut cfg = config(&repo);
    cfg.audit.path = Some(dir.path().join("audit.log"));
    cfg.drift.window_s = 1;
    cfg.drift.samples = 40;
    cfg.drift.min_samples = 40;
    cfg.drift.max_samples_per_s = 1000;
    cfg.alerting.resolve_windows = 1;
    let st = state(cfg);
    let (_addr, tx, server) = start(&st).await;

    // In distribution: the training recipe with new coefficients.
    let t0 = now_s();
    for i in 0..40 {
        infer_one(&st, &field(1000 + i, 1.0, 0.0)).await;
    }
    let v = verdict(&st, false, t0).await;
    assert_eq!(v["drift"][0]["recent"], 40, "{v}");
    let m = String::from_utf8(body_bytes(send(&st, get("/metrics")).await).await).unwrap();
    assert!(
        m.contains("pno_drift_detected{model=\"pno\",version=\"1\",replica=\"t\"} 0"),
        "{m}"
    );
    assert!(m.contains(
        "pno_drift_psi{model=\"pno\",version=\"1\",feature=\"x[0].mean\",replica=\"t\"}"
    ));

    // Another recipe: three times the amplitude and a finer mode.
    let t1 = now_s();
    for i in 0..40 {
        infer_one(&st, &field(5000 + i, 3.0, 1.0)).await;
    }
    let v = verdict(&st, true, t1).await;
    let feats = v["drift"][0]["verdict"]["features"].as_array().unwrap();
    assert!(
        feats
            .iter()
            .any(|f| f["feature"] == "x[0].std" && f["drifted"] == true),
        "{v}"
    );
    let v = {
        let t = Instant::now();
        loop {
            let v = admin_alerts(&st).await;
            if v["firing"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["name"] == "InputDrift")
            {
                break v;
            }
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "no InputDrift alert: {v}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let a = v["firing"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "InputDrift")
        .unwrap();
    assert!(a["summary"].as_str().unwrap().contains("x[0].std"), "{a}");
    let m = String::from_utf8(body_bytes(send(&st, get("/metrics")).await).await).unwrap();
    assert!(
        m.contains("pno_drift_detected{model=\"pno\",version=\"1\",replica=\"t\"} 1"),
        "{m}"
    );
    // The drift tests' largest PSI is a signal of the version's series (rules can use it).
    let (key, _) = st.keys().create(pno_serve::auth::Role::Admin).unwrap();
    let (_, s) = call(
        &st,
        with_key(get("/v2/admin/series?model=pno&last=30"), &key),
    )
    .await;
    let psi = s["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["drift_psi"].as_f64())
        .fold(0.0, f64::max);
    assert!(psi >= 0.25, "{s}");

    // Back in distribution: the ring refills and the verdict clears; the alert resolves.
    let t2 = now_s();
    for i in 0..40 {
        infer_one(&st, &field(9000 + i, 1.0, 0.0)).await;
    }
    verdict(&st, false, t2).await;
    let t = Instant::now();
    loop {
        let v = admin_alerts(&st).await;
        if v["resolved"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "InputDrift")
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "InputDrift never resolved: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = audit_log_with(
        &dir.path().join("audit.log"),
        &["\"drift.detected\"", "\"drift.cleared\""],
    )
    .await;
    assert!(
        log.contains("\"drift.detected\"") && log.contains("\"drift.cleared\""),
        "{log}"
    );
    let _ = tx.send(());
    let _ = server.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_reference_stats_serves_without_drift_monitoring() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1]);
    std::fs::remove_file(repo.join("pno/1/reference.json")).unwrap();
    let st = state(config(&repo));
    for i in 0..5 {
        infer_one(&st, &field(i, 3.0, 1.0)).await;
    }
    let v = admin_alerts(&st).await;
    assert_eq!(v["drift"], json!([]), "{v}");
}
