//! Health, metadata, OpenAPI, metrics and the JSON 404/405 answers.

use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use crate::*;

#[tokio::test]
async fn health_live_and_ready() {
    let (_d, st) = setup();
    let (s, v) = call(&st, get("/v2/health/live")).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"live": true})));
    let (s, v) = call(&st, get("/v2/health/ready")).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"ready": true})));
}

#[tokio::test]
async fn not_ready_without_a_model() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("repo")).unwrap();
    let st = state(config(&dir.path().join("repo")));
    let r = send(&st, get("/v2/health/ready")).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    let (s, v) = call(&st, get("/v2/health/ready")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["ready"], false);
    // Live all the same.
    assert_eq!(call(&st, get("/v2/health/live")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn server_metadata_advertises_binary_tensor_data() {
    let (_d, st) = setup();
    let (s, v) = call(&st, get("/v2")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["name"], "pno-serve");
    assert!(v["version"].is_string());
    let ext: Vec<&str> = v["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(ext.contains(&"binary_tensor_data"), "{ext:?}");
}

#[tokio::test]
async fn model_metadata_and_readiness_plain_and_versioned() {
    let (_d, st) = setup();
    for path in ["/v2/models/pno", "/v2/models/pno/versions/1"] {
        let (s, v) = call(&st, get(path)).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        assert_eq!(v["name"], "pno");
        assert_eq!(v["versions"], json!(["1"]));
        assert_eq!(
            v["inputs"],
            json!([{"name": "x", "datatype": "FP32", "shape": [-1, 1, S, S]}])
        );
        let names: Vec<&str> = v["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["mean", "std", "quantiles", "samples"]);
        assert_eq!(v["platform"], "pno_pno_d");
        let (s, v) = call(&st, get(&format!("{path}/ready"))).await;
        assert_eq!(
            (s, v),
            (StatusCode::OK, json!({"name": "pno", "ready": true}))
        );
    }
}

#[tokio::test]
async fn unknown_model_version_and_route_are_json_404() {
    let (_d, st) = setup();
    for path in [
        "/v2/models/nope",
        "/v2/models/nope/ready",
        "/v2/models/pno/versions/999",
        "/v2/models/pno/versions/999/ready",
        "/v2/models/pno/versions/abc",
        "/no/such/route",
    ] {
        let (s, v) = call(&st, get(path)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {v}");
    }
    let (s, _) = call(&st, post_json("/v2/models/nope/infer", &json!({}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(
        &st,
        post_json("/v2/models/pno/versions/7/infer", &json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn wrong_method_is_json_405() {
    let (_d, st) = setup();
    let r = Request::builder()
        .method(Method::PUT)
        .uri("/v2/models/pno/infer")
        .body(axum::body::Body::empty())
        .unwrap();
    let (s, _) = call(&st, r).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    let (s, _) = call(&st, get("/v2/models/pno/infer")).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn openapi_documents_every_route_and_every_documented_route_exists() {
    let (_d, st) = setup();
    let (s, v) = call(&st, get("/v2/openapi.json")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["openapi"], "3.1.0");
    for r in pno_serve::openapi::ROUTES {
        assert!(
            v["paths"][r.path][r.method].is_object(),
            "{} {} missing from the document",
            r.method,
            r.path
        );
        let path = r
            .path
            .replace("{name}", "pno")
            .replace("{version}", "1")
            .replace("{id}", "nokey");
        let req = Request::builder()
            .method(r.method.to_uppercase().as_str())
            .uri(&path)
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = send(&st, req).await;
        assert_ne!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        let b = body_bytes(resp).await;
        assert!(
            !String::from_utf8_lossy(&b).contains("no route"),
            "{} {path} is documented but not routed",
            r.method
        );
    }
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_model_labels_and_buckets() {
    let (_d, st) = setup();
    let x = input(1);
    let (s, _) = call(
        &st,
        post_json(
            "/v2/models/pno/infer",
            &infer_body(&x, 1, json!({"n_samples": 4})),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(
        &st,
        post_json("/v2/models/pno/infer", &json!({"inputs": []})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let r = send(&st, get("/metrics")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(body_bytes(r).await).unwrap();
    for needle in [
        "pno_inference_request_success_total{model=\"pno\",version=\"1\",replica=\"t\"} 1",
        "pno_inference_request_failure_total{model=\"pno\",version=\"1\",status=\"400\",replica=\"t\"} 1",
        "pno_inference_count_total{model=\"pno\",version=\"1\",replica=\"t\"} 1",
        "# TYPE pno_inference_request_duration_seconds histogram",
        "pno_inference_compute_duration_seconds_bucket{model=\"pno\",version=\"1\",le=\"0.1\",replica=\"t\"}",
        "pno_inference_queue_duration_seconds_count{model=\"pno\",version=\"1\",replica=\"t\"} 1",
        "pno_inference_request_duration_seconds_bucket{model=\"pno\",version=\"1\",le=\"+Inf\",replica=\"t\"} 2",
        "pno_inference_pending_request_count{replica=\"t\"} 0",
        "pno_http_in_flight_requests{replica=\"t\"} 1",
        "pno_model_loaded{model=\"pno\",version=\"1\",replica=\"t\"} 1",
        "pno_ready{replica=\"t\"} 1",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_cpu_seconds_total counter",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let rss: f64 = text
        .lines()
        .find(|l| l.starts_with("process_resident_memory_bytes{replica=\"t\"} "))
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(rss > 1e6, "{rss}");
    // The queue's capacity (limits.max_queue) and the memory budget (the same reader as
    // pno_core::resources, so the same value), for the saturation and memory alerts.
    let cap = format!(
        "pno_inference_queue_capacity{{replica=\"t\"}} {}",
        st.config().limits.max_queue
    );
    assert!(text.contains(&cap), "missing {cap:?}");
    let b = pno_core::resources::memory_budget().expect("a Linux memory budget");
    let line = format!(
        "pno_memory_budget_bytes{{source=\"{}\",replica=\"t\"}} {}",
        b.source, b.bytes
    );
    assert!(text.contains(&line), "missing {line:?} in\n{text}");
    assert!(b.bytes as f64 > rss, "budget {} below rss {rss}", b.bytes);
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let (_d, st) = setup();
    let r = send(&st, get("/v2/health/live")).await;
    assert!(r.headers().contains_key("x-request-id"));
    let mut req = get("/v2/health/live");
    req.headers_mut()
        .insert("x-request-id", "my-id-123".parse().unwrap());
    let r = send(&st, req).await;
    assert_eq!(r.headers()["x-request-id"], "my-id-123");
}

#[tokio::test]
async fn a_w3c_traceparent_is_echoed_and_a_malformed_one_ignored() {
    let (_d, st) = setup();
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut req = get("/v2/health/live");
    req.headers_mut().insert("traceparent", tp.parse().unwrap());
    req.headers_mut()
        .insert("tracestate", "vendor=abc".parse().unwrap());
    let r = send(&st, req).await;
    // No exporter in this process: the caller's context comes back unchanged.
    assert_eq!(r.headers()["traceparent"], tp);
    assert_eq!(r.headers()["tracestate"], "vendor=abc");
    for bad in [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "nonsense",
    ] {
        let mut req = get("/v2/health/live");
        req.headers_mut()
            .insert("traceparent", bad.parse().unwrap());
        let r = send(&st, req).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().get("traceparent").is_none(), "{bad}");
    }
}

#[test]
fn tracing_settings_are_validated_naming_the_key() {
    for (text, key) in [
        (
            "[tracing]\notlp_endpoint = \"collector:4318\"\n",
            "tracing.otlp_endpoint",
        ),
        (
            "[tracing]\notlp_protocol = \"http/json\"\n",
            "otlp_protocol",
        ),
        ("[tracing]\nsample_ratio = 1.5\n", "tracing.sample_ratio"),
        ("[tracing]\nexporter = \"jaeger\"\n", "exporter"),
    ] {
        let e = pno_serve::ServeConfig::from_toml_str(&format!("repository = \"r\"\n{text}"))
            .and_then(|c| c.validate().map(|()| c))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{text}: {e}");
    }
    let c = pno_serve::ServeConfig::from_toml_str(
        "repository = \"r\"\n[tracing]\notlp_endpoint = \"http://127.0.0.1:4317\"\notlp_protocol = \"grpc\"\n",
    )
    .unwrap();
    c.validate().unwrap();
}
