//! Inference: JSON and binary tensors, outputs, parameters, reproducibility against the
//! `pno predict` path, and input validation at the edge.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use pno_models::burn::tensor::Device;
use serde_json::{Value, json};

use crate::*;

#[tokio::test]
async fn json_infer_matches_pno_predict_for_the_same_seed() {
    let (dir, st) = setup();
    let x = input(2);
    let body = infer_body(&x, 2, json!({"n_samples": 6, "seed": 42}));
    let (s, v) = call(&st, post_json("/v2/models/pno/infer", &body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["model_name"], "pno");
    assert_eq!(v["model_version"], "1");
    assert_eq!(v["id"], "t1");
    assert_eq!(v["parameters"]["seed"], 42);
    assert_eq!(v["parameters"]["n_samples"], 6);
    let outs = v["outputs"].as_array().unwrap();
    assert_eq!(outs.len(), 2);
    assert_eq!(outs[0]["name"], "mean");
    assert_eq!(outs[1]["name"], "std");
    assert_eq!(outs[0]["shape"], json!([2, 1, S, S]));
    assert_eq!(outs[0]["datatype"], "FP32");
    // The path `pno predict` takes.
    let device = Device::flex();
    let t = pno_run::load_trained(&dir.path().join("repo/pno/1"), &device).unwrap();
    let p = t.predict(&predict_req(&x, 2, 6, 42), &device).unwrap();
    assert_eq!(floats(&outs[0]["data"]), p.mean);
    assert_eq!(floats(&outs[1]["data"]), p.std);
    assert!(p.std.iter().all(|s| *s > 0.0));
    // Same seed again (nested data, versioned path): identical; other seed: different.
    let nested: Vec<Value> = (0..2)
        .map(|b| {
            json!([(0..S)
                .map(|i| x[b * S * S + i * S..b * S * S + (i + 1) * S].to_vec())
                .collect::<Vec<_>>()])
        })
        .collect();
    let mut body2 = body.clone();
    body2["inputs"][0]["data"] = Value::Array(nested);
    let (s, v2) = call(&st, post_json("/v2/models/pno/versions/1/infer", &body2)).await;
    assert_eq!(s, StatusCode::OK, "{v2}");
    assert_eq!(v2["outputs"], v["outputs"]);
    let body3 = infer_body(&x, 2, json!({"n_samples": 6, "seed": 43}));
    let (_, v3) = call(&st, post_json("/v2/models/pno/infer", &body3)).await;
    assert_ne!(v3["outputs"], v["outputs"]);
}

#[tokio::test]
async fn quantiles_samples_and_output_selection() {
    let (dir, st) = setup();
    let x = input(1);
    let body = json!({
        "parameters": {"n_samples": 5, "seed": 7, "quantile_levels": [0.1, 0.5, 0.9]},
        "inputs": [{"name": "x", "shape": [1, 1, S, S], "datatype": "FP32", "data": x}],
        "outputs": [{"name": "quantiles"}, {"name": "samples"}, {"name": "std"}]
    });
    let (s, v) = call(&st, post_json("/v2/models/pno/infer", &body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let outs = v["outputs"].as_array().unwrap();
    let names: Vec<&str> = outs.iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["quantiles", "samples", "std"]);
    assert_eq!(outs[0]["shape"], json!([3, 1, 1, S, S]));
    assert_eq!(outs[1]["shape"], json!([5, 1, 1, S, S]));
    assert_eq!(v["parameters"]["quantile_levels"], "0.1,0.5,0.9");
    let device = Device::flex();
    let t = pno_run::load_trained(&dir.path().join("repo/pno/1"), &device).unwrap();
    let p = t.predict(&predict_req(&x, 1, 5, 7), &device).unwrap();
    assert_eq!(floats(&outs[0]["data"]), p.quantiles(&[0.1, 0.5, 0.9]));
    assert_eq!(floats(&outs[1]["data"]), p.samples);
    // Levels as a comma-separated string (tritonclient parameters are scalars); default
    // outputs then include the quantiles.
    let body = infer_body(
        &input(1),
        1,
        json!({"n_samples": 3, "seed": 1, "quantile_levels": "0.25, 0.75"}),
    );
    let (s, v) = call(&st, post_json("/v2/models/pno/infer", &body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["outputs"][2]["name"], "quantiles");
    assert_eq!(v["outputs"][2]["shape"], json!([2, 1, 1, S, S]));
}

#[tokio::test]
async fn server_picks_and_echoes_a_seed_when_none_is_given() {
    let (_d, st) = setup();
    let body = infer_body(&input(1), 1, json!({"n_samples": 2}));
    let (s, v) = call(&st, post_json("/v2/models/pno/infer", &body)).await;
    assert_eq!(s, StatusCode::OK);
    let seed = v["parameters"]["seed"].as_u64().unwrap();
    let again = infer_body(&input(1), 1, json!({"n_samples": 2, "seed": seed}));
    let (_, v2) = call(&st, post_json("/v2/models/pno/infer", &again)).await;
    assert_eq!(v2["outputs"], v["outputs"]);
    // Default n_samples.
    let (s, v) = call(
        &st,
        post_json("/v2/models/pno/infer", &infer_body(&input(1), 1, json!({}))),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["parameters"]["n_samples"], 32);
}

fn binary_request(path: &str, header: &Value, tensors: &[u8]) -> Request<Body> {
    let h = header.to_string();
    let mut body = h.as_bytes().to_vec();
    body.extend_from_slice(tensors);
    Request::post(path)
        .header("inference-header-content-length", h.len())
        .body(Body::from(body))
        .unwrap()
}

fn le_bytes(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[tokio::test]
async fn binary_tensor_data_in_and_out() {
    let (_d, st) = setup();
    let x = input(1);
    let header = json!({
        "parameters": {"n_samples": 4, "seed": 9, "binary_data_output": true},
        "inputs": [{"name": "x", "shape": [1, 1, S, S], "datatype": "FP32",
                    "parameters": {"binary_data_size": S * S * 4}}],
        "outputs": [{"name": "mean"}, {"name": "std", "parameters": {"binary_data": false}}]
    });
    let r = send(
        &st,
        binary_request("/v2/models/pno/infer", &header, &le_bytes(&x)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let hl: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let b = body_bytes(r).await;
    let head: Value = serde_json::from_slice(&b[..hl]).unwrap();
    assert_eq!(
        head["outputs"][0]["parameters"]["binary_data_size"],
        S * S * 4
    );
    assert!(head["outputs"][0].get("data").is_none());
    let mean: Vec<f32> = b[hl..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(mean.len(), S * S);
    // The same request in JSON gives the same numbers.
    let (_, v) = call(
        &st,
        post_json(
            "/v2/models/pno/infer",
            &infer_body(&x, 1, json!({"n_samples": 4, "seed": 9})),
        ),
    )
    .await;
    assert_eq!(floats(&v["outputs"][0]["data"]), mean);
    assert_eq!(head["outputs"][1]["data"], v["outputs"][1]["data"]);
}

#[tokio::test]
async fn binary_framing_errors_are_400() {
    let (_d, st) = setup();
    let x = le_bytes(&input(1));
    let header = |size: usize| {
        json!({"inputs": [{"name": "x", "shape": [1, 1, S, S], "datatype": "FP32",
                          "parameters": {"binary_data_size": size}}]})
    };
    // Size that does not match the shape; body shorter than announced; trailing bytes;
    // header length past the body; non-integer header length; NaN in binary data.
    let mut nan = x.clone();
    nan[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
    let cases: Vec<Request<Body>> = vec![
        binary_request("/v2/models/pno/infer", &header(12), &x),
        binary_request("/v2/models/pno/infer", &header(S * S * 4), &x[..100]),
        binary_request(
            "/v2/models/pno/infer",
            &header(S * S * 4),
            &[x.clone(), vec![0; 4]].concat(),
        ),
        binary_request("/v2/models/pno/infer", &header(S * S * 4), &nan),
        Request::post("/v2/models/pno/infer")
            .header("inference-header-content-length", "999999")
            .body(Body::from("{}"))
            .unwrap(),
        Request::post("/v2/models/pno/infer")
            .header("inference-header-content-length", "ten")
            .body(Body::from("{}"))
            .unwrap(),
    ];
    for (i, req) in cases.into_iter().enumerate() {
        let (s, v) = call(&st, req).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "case {i}: {v}");
    }
}

#[tokio::test]
async fn invalid_inputs_are_400_with_a_json_error() {
    let (_d, st) = setup();
    let x: Vec<Value> = input(1).into_iter().map(|v| json!(v)).collect();
    let req = |data: Value, shape: Value, dtype: &str, params: Value| {
        json!({"parameters": params,
               "inputs": [{"name": "x", "shape": shape, "datatype": dtype, "data": data}]})
    };
    let good_shape = json!([1, 1, S, S]);
    let mut big = x.clone();
    big[3] = json!(1e39);
    let mut string = x.clone();
    string[3] = json!("1.0");
    let mut boolean = x.clone();
    boolean[3] = json!(true);
    let rows: Vec<Vec<f32>> = (0..S)
        .map(|i| vec![0.0; if i + 1 == S { S - 1 } else { S }])
        .collect();
    let ragged = json!([[rows]]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad JSON", b"{not json".to_vec()),
        ("not an object", b"[1,2]".to_vec()),
        ("missing inputs", json!({"parameters": {}}).to_string().into_bytes()),
        ("wrong shape", req(json!(x), json!([1, 1, 8, 32]), "FP32", json!({})).to_string().into_bytes()),
        ("wrong rank", req(json!(x), json!([1, S * S]), "FP32", json!({})).to_string().into_bytes()),
        ("wrong channels", req(json!(x), json!([1, 2, S, S]), "FP32", json!({})).to_string().into_bytes()),
        ("batch 0", req(json!([]), json!([0, 1, S, S]), "FP32", json!({})).to_string().into_bytes()),
        ("batch too large", req(json!(x), json!([1000, 1, S, S]), "FP32", json!({})).to_string().into_bytes()),
        ("huge dims", req(json!(x), json!([u64::MAX, u64::MAX, S, S]), "FP32", json!({})).to_string().into_bytes()),
        ("negative dim", req(json!(x), json!([-1, 1, S, S]), "FP32", json!({})).to_string().into_bytes()),
        ("wrong datatype", req(json!(x), good_shape.clone(), "FP64", json!({})).to_string().into_bytes()),
        ("wrong count", req(json!(x[1..]), good_shape.clone(), "FP32", json!({})).to_string().into_bytes()),
        ("out of FP32 range", req(json!(big), good_shape.clone(), "FP32", json!({})).to_string().into_bytes()),
        ("string element", req(json!(string), good_shape.clone(), "FP32", json!({})).to_string().into_bytes()),
        ("bool element", req(json!(boolean), good_shape.clone(), "FP32", json!({})).to_string().into_bytes()),
        ("ragged nested", req(ragged, good_shape.clone(), "FP32", json!({})).to_string().into_bytes()),
        ("NaN literal", req(json!(x), good_shape.clone(), "FP32", json!({})).to_string().replacen("]", ",NaN]", 1).into_bytes()),
        ("n_samples 0", req(json!(x), good_shape.clone(), "FP32", json!({"n_samples": 0})).to_string().into_bytes()),
        ("n_samples huge", req(json!(x), good_shape.clone(), "FP32", json!({"n_samples": 1_000_000})).to_string().into_bytes()),
        ("n_samples 2.5", req(json!(x), good_shape.clone(), "FP32", json!({"n_samples": 2.5})).to_string().into_bytes()),
        ("n_samples string", req(json!(x), good_shape.clone(), "FP32", json!({"n_samples": "32"})).to_string().into_bytes()),
        ("seed negative", req(json!(x), good_shape.clone(), "FP32", json!({"seed": -1})).to_string().into_bytes()),
        ("level 1.5", req(json!(x), good_shape.clone(), "FP32", json!({"quantile_levels": [1.5]})).to_string().into_bytes()),
        ("levels garbage", req(json!(x), good_shape.clone(), "FP32", json!({"quantile_levels": "a,b"})).to_string().into_bytes()),
        ("unknown output", json!({"inputs": [{"name": "x", "shape": good_shape, "datatype": "FP32", "data": x}], "outputs": [{"name": "var"}]}).to_string().into_bytes()),
        ("duplicate output", json!({"inputs": [{"name": "x", "shape": good_shape, "datatype": "FP32", "data": x}], "outputs": [{"name": "std"}, {"name": "std"}]}).to_string().into_bytes()),
        ("unknown input", json!({"inputs": [{"name": "a", "shape": good_shape, "datatype": "FP32", "data": x}]}).to_string().into_bytes()),
        ("two inputs", json!({"inputs": [{"name": "x", "shape": good_shape, "datatype": "FP32", "data": x}, {"name": "x", "shape": good_shape, "datatype": "FP32", "data": x}]}).to_string().into_bytes()),
        ("id not a string", json!({"id": 5, "inputs": [{"name": "x", "shape": good_shape, "datatype": "FP32", "data": x}]}).to_string().into_bytes()),
        ("deep JSON", format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200)).into_bytes()),
        ("too much work", req(json!(x), good_shape.clone(), "FP32", json!({"n_samples": 256})).to_string().into_bytes()),
    ];
    let mut cfg = config(&st.config().repository);
    cfg.limits.max_sample_values = 100 * S * S;
    let st = state(cfg);
    for (name, body) in cases {
        let r = Request::post("/v2/models/pno/infer")
            .body(Body::from(body))
            .unwrap();
        let (s, v) = call(&st, r).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{name}: {v}");
    }
}

#[tokio::test]
async fn resolution_bounds_when_configured() {
    let (dir, _st) = setup();
    let mut cfg = config(&dir.path().join("repo"));
    cfg.limits.min_resolution = 8;
    cfg.limits.max_resolution = 32;
    let st = state(cfg);
    let (_, meta) = call(&st, get("/v2/models/pno")).await;
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, 1, -1, -1]));
    let ok: Vec<f32> = (0..24 * 24).map(|i| (i as f32 * 0.01).cos()).collect();
    let body = json!({"parameters": {"n_samples": 2},
        "inputs": [{"name": "x", "shape": [1, 1, 24, 24], "datatype": "FP32", "data": ok}]});
    let (s, v) = call(&st, post_json("/v2/models/pno/infer", &body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["outputs"][0]["shape"], json!([1, 1, 24, 24]));
    for side in [4usize, 64] {
        let x = vec![0.0f32; side * side];
        let body = json!({"inputs": [{"name": "x", "shape": [1, 1, side, side], "datatype": "FP32", "data": x}]});
        let (s, v) = call(&st, post_json("/v2/models/pno/infer", &body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{side}: {v}");
    }
}

/// Mutated and random bodies on every route: never a panic, never a 5xx.
#[tokio::test]
async fn no_input_causes_a_5xx() {
    let (_d, st) = setup();
    let base = infer_body(&input(1), 1, json!({"n_samples": 2, "seed": 1}))
        .to_string()
        .into_bytes();
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let routes = [
        "/v2/models/pno/infer",
        "/v2/models/pno/versions/1/infer",
        "/v2/repository/index",
        "/v2/admin/keys",
    ];
    for i in 0..150 {
        let mut body = base.clone();
        match i % 4 {
            0 => {
                let at = (next() as usize) % body.len();
                body[at] = next() as u8;
            }
            1 => body.truncate((next() as usize) % body.len()),
            2 => {
                body = (0..(next() % 300)).map(|_| next() as u8).collect();
            }
            _ => {
                let at = (next() as usize) % body.len();
                let junk = [
                    b"[".as_slice(),
                    b"{",
                    b"\"",
                    b"1e999",
                    b"-",
                    b"\\u0000",
                    b"null",
                ];
                let j = junk[(next() as usize) % junk.len()];
                body.splice(at..at, j.iter().copied());
            }
        }
        let route = routes[(next() as usize) % routes.len()];
        let mut req = Request::post(route).body(Body::from(body)).unwrap();
        if next() % 3 == 0 {
            req.headers_mut().insert(
                "inference-header-content-length",
                ((next() % 2000).to_string()).parse().unwrap(),
            );
        }
        let r = send(&st, req).await;
        assert!(
            r.status().is_success() || r.status().is_client_error(),
            "case {i} on {route}: {}",
            r.status()
        );
    }
}

/// The request `pno predict` makes for `n` inputs of the fixture grid.
fn predict_req(x: &[f32], n: usize, n_samples: usize, seed: u64) -> pno_run::PredictRequest<'_> {
    pno_run::PredictRequest {
        x,
        n,
        grid: &[S, S],
        n_samples,
        seed,
        batch: 16,
        cancel: None,
    }
}
