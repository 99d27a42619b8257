//! Model metadata and readiness, plain and per version (OIP v2).

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};

use super::{AuditNote, ModelPath, Params, ok_json};
use crate::error::ApiError;
use crate::repository::LoadedVersion;
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

/// `GET /v2/models/{name}[/versions/{version}]/ready`: 200 when served, else 404.
pub(crate) async fn ready(
    State(st): State<AppState>,
    Params(at): Params<ModelPath>,
) -> Result<Response, ApiError> {
    st.repository().get(&at.name, at.version.as_deref())?;
    Ok(ok_json(json!({ "name": at.name, "ready": true })))
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
