//! Model metadata, readiness (which a version's open circuit breaker turns false) and the
//! statistics extension, plain and per version (OIP v2).

use std::time::Instant;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::{AuditNote, ModelPath, Params, json_response, ok_json};
use crate::error::ApiError;
use crate::repository::LoadedVersion;
use crate::resilience::breaker::State as BreakerState;
use crate::state::AppState;

/// `GET /v2/models/{name}[/versions/{version}]`.
pub(crate) async fn metadata(
    State(st): State<AppState>,
    Extension(note): Extension<AuditNote>,
    Params(at): Params<ModelPath>,
) -> Result<Response, ApiError> {
    let m = st.repository().get(&at.name, at.version.as_deref())?;
    note.version(m.version_str());
    Ok(ok_json(describe(&st, &m)))
}

/// `GET /v2/models/{name}[/versions/{version}]/ready`: 200 when served and its circuit breaker
/// lets calls through (for the model: any of its versions), else 503 (breaker open) or 404.
pub(crate) async fn ready(
    State(st): State<AppState>,
    Params(at): Params<ModelPath>,
) -> Result<Response, ApiError> {
    let m = st.repository().get(&at.name, at.version.as_deref())?;
    let versions = match at.version {
        Some(_) => vec![m.version],
        None => st.repository().loaded_versions(&m.name),
    };
    let now = Instant::now();
    let open = versions
        .iter()
        .all(|&v| st.guards().get(&m.name, v).breaker.snapshot(now).state == BreakerState::Open);
    if open {
        let mut r = json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "name": at.name, "ready": false, "error": "circuit breaker open", "class": "transient", "breaker": "open" }),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Ok(r);
    }
    Ok(ok_json(json!({ "name": at.name, "ready": true })))
}

/// `GET /v2/models/{name}[/versions/{version}]/stats` (an extension): for each served version
/// (or the one asked for), its circuit breaker, its bulkhead and its latency average.
pub(crate) async fn stats(
    State(st): State<AppState>,
    Params(at): Params<ModelPath>,
) -> Result<Response, ApiError> {
    let m = st.repository().get(&at.name, at.version.as_deref())?;
    let versions = match at.version {
        Some(_) => vec![m.version],
        None => st.repository().loaded_versions(&m.name),
    };
    let gate = st.bulkheads().model(&m.name);
    let size = st.bulkheads().size(&m.name);
    let now = Instant::now();
    let rows: Vec<Value> = versions
        .iter()
        .map(|&v| {
            let g = st.guards().get(&m.name, v);
            let b = g.breaker.snapshot(now);
            json!({
                "name": m.name,
                "version": v.to_string(),
                "breaker": {
                    "state": b.state.as_str(),
                    "calls": b.calls,
                    "failure_rate": b.failure_rate,
                    "slow_call_rate": b.slow_call_rate,
                    "consecutive_failures": b.consecutive_failures,
                    "open_for_ms": b.open_for.as_millis() as u64,
                    "opened": b.opened,
                },
                "latency_ewma_ms": g.latency.get(),
            })
        })
        .collect();
    Ok(ok_json(json!({
        "model_stats": rows,
        "bulkhead": {
            "running": gate.running(),
            "waiting": gate.waiting(),
            "max_concurrency": size.concurrency,
            "max_queue": size.queue,
        },
        "fallback": st.config().model_fallback(&m.name).as_str(),
        "routing": st.routing().status().get(&m.name),
    })))
}

/// The OIP v2 model metadata: inputs, outputs (spatial dimensions `-1` when other resolutions
/// are accepted), and the model's parameters.
fn describe(st: &AppState, m: &LoadedVersion) -> Value {
    let f = &m.model.file;
    let l = &st.config().limits;
    let spatial: Vec<i64> = if l.max_resolution > 0 {
        f.grid.iter().map(|_| -1).collect()
    } else {
        f.grid.iter().map(|&g| g as i64).collect()
    };
    let shape = |lead: &[i64], c: usize| {
        let mut s = lead.to_vec();
        s.push(c as i64);
        s.extend(&spatial);
        s
    };
    let kind = serde_json::to_value(f.model.kind).unwrap_or(Value::Null);
    json!({
        "name": m.name,
        "versions": st.repository().loaded_versions(&m.name).iter().map(u64::to_string).collect::<Vec<_>>(),
        "platform": format!("pno_{}", kind.as_str().unwrap_or("model")),
        "inputs": [{"name": "x", "datatype": "FP32", "shape": shape(&[-1], f.in_channels)}],
        "outputs": [
            {"name": "mean", "datatype": "FP32", "shape": shape(&[-1], f.out_channels)},
            {"name": "std", "datatype": "FP32", "shape": shape(&[-1], f.out_channels)},
            {"name": "quantiles", "datatype": "FP32", "shape": shape(&[-1, -1], f.out_channels)},
            {"name": "samples", "datatype": "FP32", "shape": shape(&[-1, -1], f.out_channels)},
        ],
        "parameters": {
            "version": m.version_str(),
            "kind": kind,
            "training_grid": f.grid,
            "spread_scale": f.spread_scale,
            "n_samples_default": l.default_samples,
            "n_samples_max": l.max_samples,
            "max_batch": l.max_batch,
        },
    })
}
