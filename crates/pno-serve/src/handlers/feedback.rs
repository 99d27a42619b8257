//! `POST /v2/models/{name}/feedback` (operator role): ground truth for a prediction the server
//! made, by its request id (`X-Request-Id` of the inference answer, or the one the client sent)
//! or by its input sent again (the newest kept prediction from exactly those values);
//! `GET /v2/models/{name}/calibration` (reader role): the rolling online calibration of each of
//! the model's versions that got feedback ([`crate::feedback`]).

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::{AuditNote, ModelPath, Params, ok_json};
use crate::admission::read_body;
use crate::error::ApiError;
use crate::feedback::Refused;
use crate::state::{AppState, now_s};

/// The body: `{"request_id": "…", "truth": {"shape": [n, c, x(, y)], "data": [...]}}`, or
/// `{"input": {"shape": [...], "data": [...]}, "truth": …}` with the inference input again.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackBody {
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    input: Option<Truth>,
    truth: Truth,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Truth {
    shape: Vec<usize>,
    data: Vec<f64>,
}

/// `POST /v2/models/{name}/feedback`.
pub(crate) async fn feedback(
    State(st): State<AppState>,
    Extension(note): Extension<AuditNote>,
    Params(at): Params<ModelPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let cfg = st.config();
    if !cfg.feedback.enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "feedback is off on this server (feedback.enabled = false)",
        ));
    }
    let b = read_body(&cfg.limits, &headers, body).await?;
    if b.len() > cfg.limits.max_json_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "feedback body is {} bytes; limits.max_json_bytes is {}",
                b.len(),
                cfg.limits.max_json_bytes
            ),
        ));
    }
    let f: FeedbackBody = serde_json::from_slice(&b).map_err(|e| {
        ApiError::bad_request(format!(
            "feedback: {e} (expected {{\"request_id\": \"…\", \"truth\": {{\"shape\": [n, c, x, y], \"data\": [...]}}}}, or \"input\" with the inference input instead of \"request_id\")"
        ))
    })?;
    counted("truth", &f.truth)?;
    let truth: Vec<f32> = f.truth.data.iter().map(|&v| v as f32).collect();
    let name = crate::repository::clip(&at.name);
    let request_id = match (f.request_id, &f.input) {
        (Some(id), None) => id,
        (None, Some(input)) => {
            counted("input", input)?;
            let x: Vec<f32> = input.data.iter().map(|&v| v as f32).collect();
            let n = input.shape.first().copied().unwrap_or(0);
            let digest = crate::feedback::input_digest(&x, n);
            st.feedback().request_of_input(&name, &digest).ok_or_else(|| {
                ApiError::not_found(format!(
                    "no prediction of model {name:?} from this input (shape {:?}) is kept: never inferred with exactly these values, made by another model, or evicted (feedback.max_mib)",
                    input.shape
                ))
            })?
        }
        _ => {
            return Err(ApiError::bad_request(
                "feedback: give exactly one of \"request_id\" (the inference answer's X-Request-Id) and \"input\" (the inference input again)",
            ));
        }
    };
    let joined = st.feedback().join(
        &name,
        &request_id,
        &f.truth.shape,
        &truth,
        now_s(),
        &cfg.feedback,
    );
    let (version, functions) = joined.map_err(|r| match r {
        Refused::Unknown => ApiError::not_found(format!(
            "no prediction of model {name:?} with request id {request_id:?} is kept (never made, made by another model, or evicted: feedback.max_mib)"
        )),
        Refused::Expired(age) => ApiError::new(
            StatusCode::GONE,
            format!(
                "the prediction of request {request_id:?} is {age} s old, past feedback.ttl_s = {}",
                cfg.feedback.ttl_s
            ),
        ),
        Refused::Shape(want, got) => ApiError::bad_request(format!(
            "truth: expected shape {want:?} (the prediction's), got {got:?}"
        )),
        Refused::NonFinite(i) => ApiError::bad_request(format!(
            "truth: value {i} is not finite"
        )),
    })?;
    note.version(version.to_string());
    Ok(ok_json(json!({
        "model": name,
        "version": version.to_string(),
        "request_id": request_id,
        "functions": functions,
    })))
}

/// A tensor whose shape holds as many values as its data has; the error names `what`.
fn counted(what: &str, t: &Truth) -> Result<(), ApiError> {
    let count: usize = t.shape.iter().product();
    if count != t.data.len() || t.shape.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{what}: shape {:?} holds {count} values, data has {}",
            t.shape,
            t.data.len()
        )));
    }
    Ok(())
}

/// `GET /v2/models/{name}/calibration`.
pub(crate) async fn calibration(
    State(st): State<AppState>,
    Params(at): Params<ModelPath>,
) -> Result<Response, ApiError> {
    let m = st.repository().get(&at.name, None)?;
    let cfg = st.config();
    let versions: Vec<_> = st
        .feedback()
        .status(&cfg.feedback)
        .into_iter()
        .filter(|c| c.model == m.name)
        .collect();
    Ok(ok_json(json!({
        "model": m.name,
        "levels": cfg.feedback.levels,
        "window": cfg.feedback.window,
        "versions": versions,
    })))
}
