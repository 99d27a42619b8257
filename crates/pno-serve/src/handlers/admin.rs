//! Administration: API keys (list, create, revoke), the audit log's verification and config
//! reload.

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::{Params, json_response, ok_json, small_json};
use crate::admission::Ctx;
use crate::auth::Role;
use crate::error::ApiError;
use crate::repository::clip;
use crate::state::AppState;

/// `GET /v2/admin/keys`: ids, roles and creation times (never the keys or their hashes).
pub(crate) async fn list_keys(State(st): State<AppState>) -> Result<Response, ApiError> {
    let keys: Vec<Value> = st
        .keys()
        .list()
        .iter()
        .map(|k| json!({"id": k.id, "role": k.role, "created": k.created}))
        .collect();
    Ok(ok_json(json!({ "keys": keys })))
}

/// `POST /v2/admin/keys` with `{"role": …}`: 201 with the key, shown this once; 409 without a
/// keys file.
pub(crate) async fn create_key(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = small_json(&st, &headers, body).await?;
    let role = body
        .as_ref()
        .and_then(|b| b.get("role"))
        .and_then(Value::as_str)
        .and_then(Role::parse)
        .ok_or_else(|| {
            ApiError::bad_request("body must be {\"role\": \"reader\" | \"operator\" | \"admin\"}")
        })?;
    if st.config().keys.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the server runs without a keys file; keys cannot be created",
        ));
    }
    let (key, rec) = st
        .keys()
        .create(role)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"id": rec.id, "role": rec.role, "key": key}),
    ))
}

/// `DELETE /v2/admin/keys/{id}`.
pub(crate) async fn revoke_key(
    State(st): State<AppState>,
    Params(id): Params<String>,
) -> Result<Response, ApiError> {
    match st.keys().revoke(&id) {
        Ok(true) => Ok(ok_json(json!({ "id": id, "revoked": true }))),
        Ok(false) => Err(ApiError::not_found(format!("no key '{}'", clip(&id)))),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

/// `GET /v2/admin/audit/verify`: flush, then check the whole chain.
pub(crate) async fn verify_audit(State(st): State<AppState>) -> Result<Response, ApiError> {
    let Some(log) = st.audit() else {
        return Err(ApiError::not_found("the server runs without an audit log"));
    };
    log.flush().map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(match crate::audit::verify(log.path()) {
        Ok(v) => ok_json(json!({"ok": true, "records": v.records, "head": v.head})),
        Err(e) => ok_json(json!({"ok": false, "problem": e.to_string()})),
    })
}

/// `POST /v2/admin/config/reload`: reload the config file; 200 with the changed keys and the new
/// hash, or 400 (409 without a config file) naming why — the previous config keeps serving.
pub(crate) async fn reload_config(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Response, ApiError> {
    let by = ctx
        .principal
        .as_ref()
        .map_or_else(|| "anonymous".to_string(), |p| p.id.clone());
    match st.reload(&by).await {
        Ok(r) => Ok(ok_json(
            json!({"reloaded": true, "changed": r.changed, "hash": r.hash}),
        )),
        Err(crate::reload::ReloadError::NoSource) => Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "no config file to reload (the server was started without --config)",
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "{e}; the previous config keeps serving"
        ))),
    }
}
