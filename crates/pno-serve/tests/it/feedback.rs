//! Online calibration from ground truth on a served socket: predictions are kept by request id;
//! truth drawn at the predictive distribution's own quantiles keeps coverage at nominal, truth
//! four standard deviations off collapses it, which `/metrics`, the calibration endpoint and the
//! critical `CoverageCollapse` alert (audited) show; unknown, expired, misshapen and non-finite
//! feedback gets a 4xx naming why.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::*;

/// Infer one input with request id `id`; the answer's (mean, std).
async fn predict(st: &AppState, id: &str, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let x: Vec<f32> = input(1).iter().map(|v| v + seed as f32 * 0.01).collect();
    let mut r = post_json(
        "/v2/models/pno/infer",
        &infer_body(&x, 1, json!({"n_samples": 8, "seed": seed})),
    );
    r.headers_mut().insert("x-request-id", id.parse().unwrap());
    let (s, v) = call(st, r).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    (
        floats(&v["outputs"][0]["data"]),
        floats(&v["outputs"][1]["data"]),
    )
}

async fn send_feedback(st: &AppState, id: &str, truth: &[f32]) -> (StatusCode, Value) {
    let body = json!({"request_id": id, "truth": {"shape": [1, 1, S, S], "data": truth}});
    call(st, op_post(st, "/v2/models/pno/feedback", &body)).await
}

/// Truth at evenly spaced quantiles of N(mean, std) per point, shifted by `shift` std.
fn truth(mean: &[f32], std: &[f32], shift: f64) -> Vec<f32> {
    let p = mean.len();
    // A fixed permutation of the quantiles over the points (stride coprime to p).
    (0..p)
        .map(|i| {
            let k = (i * 97) % p;
            let q = pno_metrics::normal_quantile((k as f64 + 0.5) / p as f64) + shift;
            (f64::from(mean[i]) + q * f64::from(std[i])) as f32
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truth_from_the_predictive_distribution_holds_and_a_shift_collapses_coverage() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1]);
    let mut cfg = config(&repo);
    cfg.audit.path = Some(dir.path().join("audit.log"));
    cfg.feedback.window = 20;
    cfg.feedback.min_functions = 10;
    let st = state(cfg);
    let (_addr, tx, server) = start(&st).await;

    for i in 0..20 {
        let id = format!("cal-{i}");
        let (m, s) = predict(&st, &id, i).await;
        let (code, v) = send_feedback(&st, &id, &truth(&m, &s, 0.0)).await;
        assert_eq!(code, StatusCode::OK, "{v}");
        assert_eq!(
            (v["version"].as_str(), v["functions"].as_u64()),
            (Some("1"), Some(1))
        );
    }
    let (code, v) = call(&st, get("/v2/models/pno/calibration")).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    let c = &v["versions"][0];
    assert_eq!(c["functions"], 20);
    assert_eq!(c["collapsed"], false, "{v}");
    for l in c["levels"].as_array().unwrap() {
        let (cov, level) = (
            l["coverage"].as_f64().unwrap(),
            l["level"].as_f64().unwrap(),
        );
        // Evenly spaced quantiles: the coverage is the level up to one point in S².
        assert!((cov - level).abs() <= 1.0 / (S * S) as f64 + 1e-9, "{l}");
    }

    // Truth four standard deviations off: every level collapses; the alert fires.
    for i in 0..20 {
        let id = format!("off-{i}");
        let (m, s) = predict(&st, &id, 100 + i).await;
        assert_eq!(
            send_feedback(&st, &id, &truth(&m, &s, 4.0)).await.0,
            StatusCode::OK
        );
    }
    let (_, v) = call(&st, get("/v2/models/pno/calibration")).await;
    assert_eq!(v["versions"][0]["collapsed"], true, "{v}");
    let t = Instant::now();
    let alert = loop {
        let (key, _) = st.keys().create(pno_serve::auth::Role::Admin).unwrap();
        let (_, a) = call(&st, with_key(get("/v2/admin/alerts"), &key)).await;
        if let Some(x) = a["firing"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "CoverageCollapse")
        {
            break x.clone();
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no CoverageCollapse: {a}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(alert["severity"], "critical");
    assert!(
        alert["summary"]
            .as_str()
            .unwrap()
            .contains("interval covers"),
        "{alert}"
    );
    let m = String::from_utf8(body_bytes(send(&st, get("/metrics")).await).await).unwrap();
    assert!(
        m.contains("pno_calibration_collapsed{model=\"pno\",version=\"1\",replica=\"t\"} 1"),
        "{m}"
    );
    assert!(m.contains(
        "pno_calibration_coverage{model=\"pno\",version=\"1\",level=\"0.9\",replica=\"t\"}"
    ));
    let log = audit_log_with(
        &dir.path().join("audit.log"),
        &["CoverageCollapse (critical)", "\"feedback\""],
    )
    .await;
    assert!(log.contains("CoverageCollapse (critical)"), "{log}");
    assert!(
        log.contains("\"feedback\""),
        "feedback requests are audited"
    );
    let _ = tx.send(());
    let _ = server.await;
}

#[tokio::test]
async fn bad_feedback_is_refused_naming_why() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), "pno", &[1]);
    let mut cfg = config(&repo);
    cfg.feedback.ttl_s = 1;
    let st = state(cfg);
    let (m, s) = predict(&st, "r1", 1).await;
    let good = truth(&m, &s, 0.0);
    let (code, v) = send_feedback(&st, "nope", &good).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{v}");
    assert!(v["error"].as_str().unwrap().contains("\"nope\""), "{v}");
    let body = json!({"request_id": "r1", "truth": {"shape": [1, 1, S, S - 1], "data": &good[..S * (S - 1)]}});
    let (code, v) = call(&st, op_post(&st, "/v2/models/pno/feedback", &body)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("expected shape"),
        "{v}"
    );
    let body = json!({"request_id": "r1", "truth": {"shape": [1, 1, S, S], "data": [1.0]}});
    let (code, v) = call(&st, op_post(&st, "/v2/models/pno/feedback", &body)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");
    let mut inf = good.clone();
    inf[5] = 1e39_f64 as f32;
    let body = json!({"request_id": "r1", "truth": {"shape": [1, 1, S, S], "data": inf.iter().map(|v| if v.is_finite() { f64::from(*v) } else { 1e39 }).collect::<Vec<f64>>()}});
    let (code, v) = call(&st, op_post(&st, "/v2/models/pno/feedback", &body)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not finite"), "{v}");
    let body =
        json!({"request_id": "r1", "truth": {"shape": [1, 1, S, S], "data": &good}, "extra": 1});
    let (code, v) = call(&st, op_post(&st, "/v2/models/pno/feedback", &body)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("extra"), "{v}");
    // A reader may not send feedback.
    let (key, _) = st.keys().create(pno_serve::auth::Role::Reader).unwrap();
    let body = json!({"request_id": "r1", "truth": {"shape": [1, 1, S, S], "data": &good}});
    let (code, _) = call(
        &st,
        with_key(post_json("/v2/models/pno/feedback", &body), &key),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    // The input again instead of the id: the same values find the prediction, others do not;
    // neither or both of the two names is a 400.
    let x: Vec<f32> = input(1).iter().map(|v| v + 0.01).collect();
    let by_input = |x: &[f32]| json!({"input": {"shape": [1, 1, S, S], "data": x}, "truth": {"shape": [1, 1, S, S], "data": &good}});
    let (code, v) = call(&st, op_post(&st, "/v2/models/pno/feedback", &by_input(&x))).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(v["request_id"], "r1", "{v}");
    let mut other = x.clone();
    other[0] += 0.5;
    let (code, v) = call(
        &st,
        op_post(&st, "/v2/models/pno/feedback", &by_input(&other)),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("from this input"),
        "{v}"
    );
    let mut both = by_input(&x);
    both["request_id"] = json!("r1");
    let (code, v) = call(&st, op_post(&st, "/v2/models/pno/feedback", &both)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("exactly one"), "{v}");
    let neither = json!({"truth": {"shape": [1, 1, S, S], "data": &good}});
    let (code, v) = call(&st, op_post(&st, "/v2/models/pno/feedback", &neither)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");
    // Past feedback.ttl_s: 410.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (code, v) = send_feedback(&st, "r1", &good).await;
    assert_eq!(code, StatusCode::GONE, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("feedback.ttl_s"),
        "{v}"
    );
}
