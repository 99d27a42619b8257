//! The handlers, one module per resource, and what they share: the [`Action`] of a protected
//! route, the [`audited`] layer that writes its audit record, the [`Params`] extractor, and the
//! small JSON helpers.
//!
//! Handlers return `Result<_, ApiError>` and know nothing of roles or auditing. A protected route
//! is [`audited`]: the layer looks up the route's [`Action`] and puts it on the request (the
//! role check words its refusals with it), together with an [`AuditNote`] that a handler fills
//! with what only it learns (the version served, the digest of the input); when the answer is
//! ready the layer writes one audit record with the outcome.

pub(crate) mod admin;
pub(crate) mod alerting;
#[cfg(feature = "fault-injection")]
pub(crate) mod faults;
pub(crate) mod feedback;
pub(crate) mod health;
pub(crate) mod infer;
pub(crate) mod model;
pub(crate) mod repository;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::admission::{Ctx, read_body};
use crate::audit::AuditEvent;
use crate::config::AuditFailure;
use crate::error::ApiError;
use crate::failure::FailureClass;
use crate::protocol;
use crate::repository::clip;
use crate::state::{AppState, Audited};

#[derive(Debug, Default)]
pub(crate) struct Noted {
    version: Option<String>,
    input_sha256: Option<String>,
}

/// What a handler adds to its audit record; a request extension shared with [`audited`].
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditNote(Arc<Mutex<Noted>>);

impl AuditNote {
    /// The model version served.
    pub(crate) fn version(&self, version: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).version = Some(version);
    }
    /// The SHA-256 (hex) of the request body.
    pub(crate) fn input_sha256(&self, digest: String) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .input_sha256 = Some(digest);
    }
    fn take(&self) -> Noted {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Route layer of the protected routes: the route's [`Action`] (from the template axum matched)
/// and an [`AuditNote`] ride on the request; a model name that is not valid UTF-8 is a 400 before
/// anything else; a key scoped to other models is a 403 (class `security`); once answered, an audited action gets one record (actor, action, model,
/// version, input digest, outcome, status).
pub(crate) async fn audited(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    params: Result<Path<HashMap<String, String>>, PathRejection>,
    mut req: Request,
    next: Next,
) -> Response {
    let route = req.extensions().get::<MatchedPath>();
    let Some(action) = route.and_then(|r| crate::routes::action(req.method(), r)) else {
        return next.run(req).await;
    };
    let name = if action.names_a_model() {
        match params {
            Ok(Path(mut p)) => p.remove("name"),
            Err(e) => {
                let resp = path_err(e).into_response();
                return write_record(&st, &ctx, action.name(), None, Noted::default(), resp).await;
            }
        }
    } else {
        None
    };
    let model = name.as_deref().map(clip);
    let note = AuditNote::default();
    req.extensions_mut().insert(action);
    req.extensions_mut().insert(note.clone());
    let out_of_scope = match (&name, &ctx.principal) {
        (Some(n), Some(p)) if !p.may_use(n) => Some(p),
        _ => None,
    };
    let resp = match out_of_scope {
        Some(p) => ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "key {} may not use model '{}'; it is scoped to {}",
                p.id,
                clip(name.as_deref().unwrap_or_default()),
                p.models.join(", ")
            ),
        )
        .into_response(),
        None => next.run(req).await,
    };
    // Successes of audited actions, and every refusal.
    if action.audit_name().is_some() || resp.status().as_u16() >= 400 {
        return write_record(&st, &ctx, action.name(), model, note.take(), resp).await;
    }
    resp
}

/// Write the record of `resp` (with its failure class) and mark it [`Audited`]; with
/// `audit.on_failure = "closed"`, a record that cannot be written withholds the answer (503).
async fn write_record(
    st: &AppState,
    ctx: &Ctx,
    action: &str,
    model: Option<String>,
    noted: Noted,
    resp: Response,
) -> Response {
    let status = resp.status();
    let class = (status.as_u16() >= 400).then(|| {
        resp.extensions()
            .get::<FailureClass>()
            .copied()
            .unwrap_or_else(|| FailureClass::of_status(status.as_u16()))
            .as_str()
            .to_string()
    });
    let ok = st
        .record_async(AuditEvent {
            model,
            version: noted.version,
            input_sha256: noted.input_sha256,
            class,
            ..ctx.audit_event(action, status)
        })
        .await;
    let mut resp = if !ok && st.config().audit.on_failure == AuditFailure::Closed {
        ApiError::unavailable(
            "the audit log could not be written, and this server refuses what it cannot audit (audit.on_failure = \"closed\"); the request's effect, if any, is not confirmed",
            1,
        )
        .into_response()
    } else {
        resp
    };
    resp.extensions_mut().insert(Audited);
    resp
}

/// Path parameters, refused as a JSON 400.
#[derive(Debug)]
pub(crate) struct Params<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for Params<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(t)) => Ok(Params(t)),
            Err(e) => Err(path_err(e)),
        }
    }
}

fn path_err(e: PathRejection) -> ApiError {
    ApiError::bad_request(format!("bad path: {}", e.body_text()))
}

/// `{name}` and, on the `/versions/{version}` routes, `{version}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ModelPath {
    /// Model name.
    pub(crate) name: String,
    /// Version; `None`: the newest served.
    pub(crate) version: Option<String>,
}

/// A JSON answer.
pub(crate) fn json_response(status: StatusCode, v: &Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A JSON answer with 200.
pub(crate) fn ok_json(v: Value) -> Response {
    json_response(StatusCode::OK, &v)
}

/// A small optional JSON object body (repository and admin requests): `None` when empty.
pub(crate) async fn small_json(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Option<serde_json::Map<String, Value>>, ApiError> {
    let b = read_body(&st.config().limits, headers, body).await?;
    if b.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if b.len() > 65_536 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body larger than 64 KiB",
        ));
    }
    if protocol::json_depth(&b, 8) > 8 {
        return Err(ApiError::bad_request("JSON nesting deeper than 8 levels"));
    }
    match serde_json::from_slice::<Value>(&b) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("invalid JSON: {e}"))),
    }
}
