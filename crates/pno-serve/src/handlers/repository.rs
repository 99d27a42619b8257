//! The model repository extension: index, load (by version policy or one version) and unload.

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::{AuditNote, Params, ok_json, small_json};
use crate::error::{ApiError, ServeError};
use crate::failure::FailureClass;
use crate::repository::clip;
use crate::state::AppState;

/// `POST /v2/repository/index`: every model and version on disk with its state.
pub(crate) async fn index(State(st): State<AppState>) -> Result<Response, ApiError> {
    let idx = st
        .repository()
        .index()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(ok_json(serde_json::to_value(idx).unwrap_or(Value::Null)))
}

/// `POST /v2/repository/models/{name}/load`, optionally `{"parameters": {"version": N}}`. A
/// refused load names the reason and the versions still served.
pub(crate) async fn load(
    State(st): State<AppState>,
    Extension(note): Extension<AuditNote>,
    Params(name): Params<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    pno_run::check_model_name(&name).map_err(ApiError::bad_request)?;
    let body = small_json(&st, &headers, body).await?;
    let version = match body
        .as_ref()
        .and_then(|b| b.get("parameters"))
        .and_then(|p| p.get("version"))
    {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "parameter 'version' must be an integer, got {:?}",
                clip(s)
            ))
        })?),
        Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(|| {
            ApiError::bad_request("parameter 'version' must be a positive integer")
        })?),
        Some(_) => {
            return Err(ApiError::bad_request(
                "parameter 'version' must be an integer",
            ));
        }
    };
    if let Some(v) = version {
        note.version(v.to_string());
    }
    let st2 = st.clone();
    let n2 = name.clone();
    let res = tokio::task::spawn_blocking(move || st2.repository().load(&n2, version))
        .await
        .map_err(|_| ApiError::internal("model loading task failed"))?;
    let serving = |st: &AppState| {
        st.repository()
            .loaded_versions(&name)
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
    };
    match res {
        Ok(v) => {
            tracing::info!(model = %name, versions = ?v, "model loaded");
            // An operator's load brings rolled-back versions back.
            st.routing().loaded_again(&name);
            // A version read anew from disk is a new artifact: its breaker starts closed.
            for &version in &v {
                let g = st.guards().get(&name, version);
                if let Some(t) = g.breaker.reset("version reloaded from the repository") {
                    st.breaker_moved(&name, version, &t);
                }
            }
            Ok(ok_json(json!({
                "name": name,
                "loaded": v.iter().map(u64::to_string).collect::<Vec<_>>(),
                "serving": serving(&st),
            })))
        }
        Err(e) => {
            let msg = format!(
                "load refused: {e}; still serving versions {:?}",
                serving(&st)
            );
            tracing::warn!(model = %name, error = %e, "model load refused");
            match e {
                ServeError::Repository { .. } => Err(ApiError::not_found(msg)),
                ServeError::Load {
                    class: FailureClass::Transient,
                    ..
                } => Err(ApiError::unavailable(msg, 1)),
                ServeError::Load { class, .. } => Err(ApiError::bad_request(msg).class(class)),
                // Over the memory budget: it fails again until someone acts (a larger budget,
                // another version unloaded).
                ServeError::Memory { .. } => Err(ApiError::new(
                    axum::http::StatusCode::INSUFFICIENT_STORAGE,
                    msg,
                )
                .class(FailureClass::Persistent)),
                _ => Err(ApiError::bad_request(msg)),
            }
        }
    }
}

/// `POST /v2/repository/models/{name}/pin` with `{"version": "2"}` (or a number): unpinned
/// requests go to that loaded version until `{"version": null}` unpins.
pub(crate) async fn pin(
    State(st): State<AppState>,
    Extension(note): Extension<AuditNote>,
    Params(name): Params<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    pno_run::check_model_name(&name).map_err(ApiError::bad_request)?;
    let body = small_json(&st, &headers, body).await?;
    let bad = || {
        ApiError::bad_request("expected {\"version\": N} to pin or {\"version\": null} to unpin")
    };
    let version = match body.as_ref().and_then(|b| b.get("version")) {
        Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.parse::<u64>().map_err(|_| bad())?),
        Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    let loaded = st.repository().loaded_versions(&name);
    if loaded.is_empty() {
        return Err(ApiError::not_found(format!(
            "model {:?} is not loaded",
            clip(&name)
        )));
    }
    if let Some(v) = version {
        if !loaded.contains(&v) {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                format!(
                    "version {v} of {:?} is not loaded (loaded: {loaded:?})",
                    clip(&name)
                ),
            ));
        }
        note.version(v.to_string());
    }
    st.routing().pin(&name, version);
    tracing::info!(model = %name, pinned = ?version, "pin changed");
    Ok(ok_json(json!({
        "name": name,
        "pinned": version.map(|v| v.to_string()),
        "serving": loaded.iter().map(u64::to_string).collect::<Vec<_>>(),
    })))
}

/// `POST /v2/repository/models/{name}/unload`: every version; 404 when none was loaded.
pub(crate) async fn unload(
    State(st): State<AppState>,
    Params(name): Params<String>,
) -> Result<Response, ApiError> {
    if st.repository().unload(&name) {
        tracing::info!(model = %name, "model unloaded");
        Ok(ok_json(json!({ "name": name, "unloaded": true })))
    } else {
        Err(ApiError::not_found(format!(
            "model '{}' is not loaded",
            clip(&name)
        )))
    }
}
