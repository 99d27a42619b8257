//! `/v2/debug/faults` (test builds with the `fault-injection` feature only): set, list and
//! clear injected faults ([`crate::faults`]).

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::{ok_json, small_json};
use crate::error::ApiError;
use crate::faults::Fault;
use crate::state::AppState;

/// `PUT /v2/debug/faults`.
pub(crate) async fn set(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = small_json(&st, &headers, body)
        .await?
        .ok_or_else(|| ApiError::bad_request("a fault is needed"))?;
    if let Some(io) = body.get("io") {
        let n = body.get("count").and_then(Value::as_u64).unwrap_or(1) as u32;
        match io.as_str() {
            Some("repository") => st.repository().fail_next_loads(n),
            Some("audit") => match st.audit() {
                Some(log) => log.fail_next_writes(n),
                None => return Err(ApiError::bad_request("this server keeps no audit log")),
            },
            _ => {
                return Err(ApiError::bad_request(
                    "'io' must be \"repository\" or \"audit\"",
                ));
            }
        }
        return Ok(ok_json(json!({ "io": io, "count": n })));
    }
    let f: Fault = serde_json::from_value(Value::Object(body))
        .map_err(|e| ApiError::bad_request(format!("bad fault: {e}")))?;
    st.faults().set(f.clone());
    tracing::warn!(fault = ?f, "fault injected");
    Ok(ok_json(serde_json::to_value(f).unwrap_or(Value::Null)))
}

/// `GET /v2/debug/faults`.
pub(crate) async fn list(State(st): State<AppState>) -> Response {
    ok_json(serde_json::to_value(st.faults().list()).unwrap_or(Value::Null))
}

/// `DELETE /v2/debug/faults`.
pub(crate) async fn clear(State(st): State<AppState>) -> Response {
    st.faults().clear();
    ok_json(json!({ "cleared": true }))
}
