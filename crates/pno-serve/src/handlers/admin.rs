//! Administration: API keys (list, create, revoke, rotate), the audit log's verification and
//! config reload.
//!
//! Key changes are read-modify-writes of the keys file under its lock (see [`crate::auth`]);
//! they run on the blocking pool, never on the async workers.

use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::{Params, json_response, ok_json, small_json};
use crate::admission::Ctx;
use crate::auth::{KeyRecord, KeySpec, KeyStore, Role};
use crate::error::ApiError;
use crate::failure::FailureClass;
use crate::repository::clip;
use crate::state::AppState;

/// `GET /v2/admin/keys`: ids, roles, creation, expiry and last-use times, model scopes.
pub(crate) async fn list_keys(State(st): State<AppState>) -> Result<Response, ApiError> {
    let keys: Vec<Value> = st
        .keys()
        .list()
        .iter()
        .map(KeyRecord::public_json)
        .collect();
    Ok(ok_json(json!({ "keys": keys })))
}

/// Run a key change on the blocking pool; a failure (an unreadable or hand-broken keys file)
/// is a 500 of class `persistent` naming the file.
async fn change<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&KeyStore) -> crate::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    if st.config().keys.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the server runs without a keys file; keys cannot be changed",
        ));
    }
    let keys = st.keys().clone();
    match tokio::task::spawn_blocking(move || f(&keys)).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(ApiError::internal(e.to_string()).class(FailureClass::Persistent)),
        Err(e) => Err(ApiError::internal(format!("key change failed: {e}"))),
    }
}

/// An optional non-negative whole number of seconds in `body[field]`.
fn seconds(body: Option<&Map<String, Value>>, field: &str) -> Result<Option<u64>, ApiError> {
    match body.and_then(|b| b.get(field)) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`{field}`: expected a whole number of seconds >= 0, got {}",
                clip(&v.to_string())
            ))
        }),
    }
}

/// `POST /v2/admin/keys` with `{"role": …, "expires_in_s": N, "models": [...]}` (the last two
/// optional): 201 with the key, shown this once; 409 without a keys file.
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
    let expires_in = match seconds(body.as_ref(), "expires_in_s")? {
        Some(0) => {
            return Err(ApiError::bad_request(
                "`expires_in_s`: expected a whole number of seconds >= 1, got 0",
            ));
        }
        s => s.map(Duration::from_secs),
    };
    let models = match body.as_ref().and_then(|b| b.get("models")) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|m| match m.as_str() {
                Some(s) if !s.is_empty() && s.len() <= 256 => Ok(s.to_string()),
                _ => Err(ApiError::bad_request(format!(
                    "`models`: expected model names (non-empty strings), got {}",
                    clip(&m.to_string())
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "`models`: expected an array of model names, got {}",
                clip(&v.to_string())
            )));
        }
    };
    let spec = KeySpec { expires_in, models };
    let (key, rec) = change(&st, move |keys| keys.create_with(role, &spec)).await?;
    let mut v = rec.public_json();
    v["key"] = key.into();
    Ok(json_response(StatusCode::CREATED, &v))
}

/// `DELETE /v2/admin/keys/{id}`.
pub(crate) async fn revoke_key(
    State(st): State<AppState>,
    Params(id): Params<String>,
) -> Result<Response, ApiError> {
    let which = id.clone();
    if change(&st, move |keys| keys.revoke(&which)).await? {
        Ok(ok_json(json!({ "id": id, "revoked": true })))
    } else {
        Err(ApiError::not_found(format!("no key '{}'", clip(&id))))
    }
}

/// `POST /v2/admin/keys/{id}/rotate` with `{"grace_s": N}` (optional, default 0): a new secret
/// for the key, shown this once; the old one keeps working for N seconds.
pub(crate) async fn rotate_key(
    State(st): State<AppState>,
    Params(id): Params<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = small_json(&st, &headers, body).await?;
    let grace = Duration::from_secs(seconds(body.as_ref(), "grace_s")?.unwrap_or(0));
    let which = id.clone();
    match change(&st, move |keys| keys.rotate(&which, grace)).await? {
        Some((key, rec)) => {
            let mut v = rec.public_json();
            v["key"] = key.into();
            Ok(ok_json(v))
        }
        None => Err(ApiError::not_found(format!("no key '{}'", clip(&id)))),
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
