//! Admission: what a request passes on its way to a handler, one concern per layer. The layers
//! are `from_fn_with_state` middleware that [`crate::router`] composes with `ServiceBuilder`:
//!
//! | layer | where | what |
//! |---|---|---|
//! | [`envelope`] | every request, outermost | request id and span, in-flight gauge; on the way out JSON for every error, `WWW-Authenticate` on 401, `X-Request-Id`, the request counter, the access log |
//! | [`refuse_while_draining`] | all but the health probes | 503 once draining |
//! | [`lockout`] | protected routes | 429 for an address locked out after failed authentication |
//! | [`limit_address`] | protected routes | the token bucket per client address |
//! | [`authenticate`] | protected routes | the API key (and its token bucket) or the anonymous role; 401 for a bad key |
//! | [`deadline`] | every request, innermost | the whole-request deadline (504) |
//! | [`require`] | per role group, as a `route_layer` | the role the group needs (401/403) |
//!
//! One admission depends on what the handler has learned, so handlers call it: [`read_body`]
//! (encoding, size limit, body deadline; only once the model is known). The compute slot (the
//! model's bulkhead and the global ceiling) is taken by the inference handler, under the
//! request's own deadline (`crate::resilience`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tracing::Instrument;

use crate::audit::AuditEvent;
use crate::auth::{AuthOutcome, Principal, Role};
use crate::config::{ClientAuth, Limits};
use crate::error::ApiError;
use crate::failure::{FailureClass, ServedBy};
use crate::metrics::Metrics;
use crate::repository::clip;
use crate::routes::Action;
use crate::state::{AppState, Audited};
use crate::tls::PeerCert;

/// Per-request context: set by [`envelope`], completed by [`authenticate`], read by handlers.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// Request id (echoed in `X-Request-Id`).
    pub(crate) request_id: String,
    /// Client address.
    pub(crate) client: String,
    /// Who (None: anonymous without a role).
    pub(crate) principal: Option<Principal>,
    /// When the request arrived.
    pub(crate) started: Instant,
    /// The admin role needs a client certificate (`tls.client_auth = "admin_required"`) and
    /// this connection has none.
    pub(crate) admin_needs_cert: bool,
}

impl Ctx {
    /// The audit event of this request for `action`, answered with `status` (no model yet).
    pub(crate) fn audit_event(&self, action: &str, status: StatusCode) -> AuditEvent {
        let (actor, role) = match &self.principal {
            Some(p) => (p.id.clone(), p.role.as_str().to_string()),
            None => ("anonymous".into(), "none".into()),
        };
        AuditEvent {
            actor,
            role,
            client: self.client.clone(),
            action: action.into(),
            model: None,
            version: None,
            outcome: if status.is_success() { "ok" } else { "error" }.into(),
            status: status.as_u16(),
            request_id: self.request_id.clone(),
            input_sha256: None,
            class: (status.as_u16() >= 400).then(|| {
                FailureClass::of_status(status.as_u16())
                    .as_str()
                    .to_string()
            }),
        }
    }
}

/// A refusal at the door: logged, then answered.
fn refuse(e: ApiError) -> Response {
    tracing::warn!(status = e.status.as_u16(), error = %e.message, "refused");
    e.into_response()
}

fn valid_request_id(h: &HeaderValue) -> Option<String> {
    let s = h.to_str().ok()?;
    (!s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then(|| s.to_string())
}

struct InFlight<'a>(&'a Metrics);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The client address: the peer's, or, from a trusted proxy, the one its headers name.
fn client_of(st: &AppState, req: &Request) -> String {
    let live = st.live();
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| {
            crate::proxy::client(
                c.0.ip(),
                &live.proxies,
                header("x-forwarded-for"),
                header("forwarded"),
            )
            .to_string()
        })
        .unwrap_or_else(|| "local".into())
}

/// Every request: the request id (a valid `X-Request-Id` or a fresh one), the client address,
/// the [`Ctx`] and the `request` span; on the way out every error becomes JSON (keeping
/// `Retry-After`), a 401 gets `WWW-Authenticate: Bearer`, and the request is counted by route
/// class and status and logged.
pub(crate) async fn envelope(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(valid_request_id)
        .unwrap_or_else(|| st.next_id());
    let client = client_of(&st, &req);
    let class = crate::routes::class(req.method(), req.extensions().get::<MatchedPath>());
    let action = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|r| crate::routes::action(req.method(), r));
    let probe = req
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|r| matches!(r.as_str(), crate::routes::LIVE | crate::routes::READY));
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        %method,
        path = %clip(req.uri().path()),
        %client,
        trace_id = tracing::field::Empty,
        "otel.kind" = "server",
        "otel.name" = %format!("{method} {}", req.extensions().get::<MatchedPath>().map_or("unmatched", |r| r.as_str())),
        "http.response.status_code" = tracing::field::Empty,
        "otel.status_code" = tracing::field::Empty,
    );
    // W3C trace context: the caller's (when valid) is the parent of this request's spans.
    let caller = crate::trace::incoming(req.headers());
    if let Some((tp, state)) = &caller {
        crate::trace::adopt(&span, tp, state.as_deref());
    }
    let own = crate::trace::of_span(&span);
    let traceparent = own.or(caller.as_ref().map(|c| c.0));
    if let Some(tp) = &traceparent {
        span.record("trace_id", crate::trace::trace_id_hex(tp));
    }
    let ctx = Ctx {
        request_id: request_id.clone(),
        client,
        principal: None,
        started,
        admin_needs_cert: false,
    };
    req.extensions_mut().insert(ctx.clone());
    async move {
        st.metrics().in_flight.fetch_add(1, Ordering::SeqCst);
        let _guard = InFlight(st.metrics());
        let mut resp = next.run(req).await;
        let status = resp.status();
        let current = tracing::Span::current();
        current.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            current.record("otel.status_code", "ERROR");
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        // Every error is JSON, whatever produced it.
        if status.as_u16() >= 400 {
            let is_json = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            if !is_json {
                let retry = resp.headers().get(header::RETRY_AFTER).cloned();
                resp = ApiError::new(
                    status,
                    status.canonical_reason().unwrap_or("error").to_string(),
                )
                .into_response();
                if let Some(r) = retry {
                    resp.headers_mut().insert(header::RETRY_AFTER, r);
                }
            }
        }
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        if let Some(tp) = &traceparent
            && let Ok(v) = HeaderValue::from_str(&tp.header())
        {
            resp.headers_mut().insert("traceparent", v);
            if let Some(state) = caller.as_ref().and_then(|c| c.1.as_deref())
                && let Ok(v) = HeaderValue::from_str(state)
            {
                resp.headers_mut().insert("tracestate", v);
            }
        }
        // Every refusal has one audit record: the inner layers wrote theirs (marked
        // `Audited`); a refusal at the door (drain, lockout, rate limits, unknown routes, size
        // limits) gets it here. Health probes are not refusals.
        if status.as_u16() >= 400 && resp.extensions().get::<Audited>().is_none() && !probe {
            let mut c = ctx.clone();
            c.principal = resp.extensions().get::<Principal>().cloned();
            let class = resp
                .extensions()
                .get::<FailureClass>()
                .copied()
                .unwrap_or_else(|| FailureClass::of_status(status.as_u16()));
            // A wrong method has no action of its own.
            let name = if status == StatusCode::METHOD_NOT_ALLOWED {
                "request"
            } else {
                action.map_or("request", Action::name)
            };
            st.record_async(AuditEvent {
                class: Some(class.as_str().to_string()),
                ..c.audit_event(name, status)
            })
            .await;
        }
        let failure = (status.as_u16() >= 400).then(|| {
            let class = resp
                .extensions()
                .get::<FailureClass>()
                .copied()
                .unwrap_or_else(|| FailureClass::of_status(status.as_u16()));
            let (model, version) = resp
                .extensions()
                .get::<ServedBy>()
                .map(|s| (s.model.as_str(), s.version.as_str()))
                .unwrap_or(("", ""));
            st.count_failure(class, model, version);
            class
        });
        st.metrics().inc(
            "pno_http_requests_total",
            format!("class=\"{class}\",status=\"{}\"", status.as_u16()),
            1.0,
        );
        tracing::info!(
            status = status.as_u16(),
            class = failure.map_or("", FailureClass::as_str),
            latency_ms = started.elapsed().as_secs_f64() * 1e3,
            "request"
        );
        resp
    }
    .instrument(span)
    .await
}

/// 503 with `Retry-After` once the server is draining.
pub(crate) async fn refuse_while_draining(
    State(st): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if st.is_draining() {
        return refuse(ApiError::unavailable("server is shutting down", 5));
    }
    next.run(req).await
}

/// 429 while the client address is locked out after repeated failed authentication.
pub(crate) async fn lockout(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(s) = st.lockout().locked(&ctx.client) {
        return refuse(ApiError::too_many(
            "too many failed authentications from this address; locked out",
            s,
        ));
    }
    next.run(req).await
}

/// 429 when the client address has used up its token bucket.
pub(crate) async fn limit_address(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    req: Request,
    next: Next,
) -> Response {
    if let Err(s) = st.ip_limiter().check(&ctx.client) {
        return refuse(ApiError::too_many(
            "rate limit exceeded for this address",
            s,
        ));
    }
    next.run(req).await
}

/// Who is asking: a valid key (then its token bucket), no key (the anonymous role, if any), an
/// expired key (401 naming it and its expiry, audited, not counted towards the lockout), or a
/// bad key (401, audited, counted towards the address's lockout).
pub(crate) async fn authenticate(
    State(st): State<AppState>,
    Extension(mut ctx): Extension<Ctx>,
    mut req: Request,
    next: Next,
) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|h| h.to_str().unwrap_or("\u{0}"));
    let checked = tracing::debug_span!("admission").in_scope(|| st.keys().check_header(header));
    ctx.principal = match checked {
        AuthOutcome::Key(p) => {
            st.lockout().succeed(&ctx.client);
            if let Err(s) = st.key_limiter().check(&p.id) {
                return refuse(ApiError::too_many(
                    "rate limit exceeded for this API key",
                    s,
                ));
            }
            Some(p)
        }
        AuthOutcome::Missing => match cert_admin(&st, &req) {
            // A client certificate verified against `tls.client_ca`: the admin role.
            Some(id) => Some(Principal {
                id,
                role: Role::Admin,
                models: Vec::new(),
            }),
            None => st.config().anonymous_role().map(|role| Principal {
                id: "anonymous".into(),
                role,
                models: Vec::new(),
            }),
        },
        AuthOutcome::Expired { id, at } => {
            // The right secret: not a guess, so not counted towards the lockout.
            st.record_async(AuditEvent {
                actor: id.clone(),
                ..ctx.audit_event("auth", StatusCode::UNAUTHORIZED)
            })
            .await;
            let mut r = refuse(ApiError::new(
                StatusCode::UNAUTHORIZED,
                format!(
                    "API key {id} expired at {} ({at} s since the Unix epoch)",
                    crate::auth::utc(at)
                ),
            ));
            r.extensions_mut().insert(Audited);
            return r;
        }
        AuthOutcome::Invalid => {
            let locked = st.lockout().fail(&ctx.client);
            let action = if locked.is_some() {
                "auth.lockout"
            } else {
                "auth"
            };
            st.record_async(ctx.audit_event(action, StatusCode::UNAUTHORIZED))
                .await;
            let mut r = refuse(ApiError::new(StatusCode::UNAUTHORIZED, "invalid API key"));
            r.extensions_mut().insert(Audited);
            return r;
        }
    };
    ctx.admin_needs_cert = req.extensions().get::<PeerCert>().is_none()
        && st.live().tls.as_ref().map(|t| t.client_auth) == Some(ClientAuth::AdminRequired);
    let principal = ctx.principal.clone();
    req.extensions_mut().insert(ctx);
    let mut resp = next.run(req).await;
    if let Some(p) = principal {
        resp.extensions_mut().insert(p);
    }
    resp
}

/// The admin identity of a request's verified client certificate (`cert:sha256:…`), when
/// `tls.client_auth` lets certificates authenticate.
fn cert_admin(st: &AppState, req: &Request) -> Option<String> {
    let cert = req.extensions().get::<PeerCert>()?;
    let live = st.live();
    let auth = live.tls.as_ref()?.client_auth;
    (auth != ClientAuth::Off).then(|| format!("cert:{}", cert.0))
}

/// 504 when the request has not finished within `limits.request_timeout_ms`.
pub(crate) async fn deadline(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let limit = Duration::from_millis(st.config().limits.request_timeout_ms);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("request did not finish within {} ms", limit.as_millis()),
        )
        .into_response(),
    }
}

/// The role a group of routes needs (its state): 401 without a key (or as an anonymous caller
/// short of it), 403 for a key with a lower role. The refusal says what the route's
/// [`Action`] needed it for.
pub(crate) async fn require(
    State(role): State<Role>,
    Extension(ctx): Extension<Ctx>,
    req: Request,
    next: Next,
) -> Response {
    let what = req
        .extensions()
        .get::<Action>()
        .map_or("use this route", |a| a.what());
    match &ctx.principal {
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing API key: send Authorization: Bearer <key>",
        )
        .into_response(),
        Some(p) if p.role < role && p.id == "anonymous" => ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!(
                "an API key with role '{}' is needed to {what}",
                role.as_str()
            ),
        )
        .into_response(),
        Some(p) if p.role < role => ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "key role '{}' may not {what}; it needs '{}'",
                p.role.as_str(),
                role.as_str()
            ),
        )
        .into_response(),
        Some(_)
            if role == Role::Admin && ctx.admin_needs_cert =>
        {
            ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "the admin role needs a client certificate (tls.client_auth = \"admin_required\"): connect with a certificate issued by tls.client_ca to {what}"
                ),
            )
            .into_response()
        }
        Some(_) => next.run(req).await,
    }
}

/// Read a body within `limits.max_body_bytes` (413) and `limits.body_timeout_ms` (408); a
/// compressed body is refused (415) rather than inflated unbounded.
pub(crate) async fn read_body(
    limits: &Limits,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, ApiError> {
    let too_large = |n: String| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body is {n} bytes; the limit is {}",
                limits.max_body_bytes
            ),
        )
    };
    if let Some(enc) = headers.get(header::CONTENT_ENCODING)
        && enc.as_bytes() != b"identity"
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "compressed request bodies are not supported; send identity encoding",
        ));
    }
    if let Some(len) = headers.get(header::CONTENT_LENGTH) {
        let n: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ApiError::bad_request("malformed Content-Length"))?;
        if n > limits.max_body_bytes as u64 {
            return Err(too_large(n.to_string()));
        }
    }
    let limited = http_body_util::Limited::new(body, limits.max_body_bytes);
    let deadline = Duration::from_millis(limits.body_timeout_ms);
    match tokio::time::timeout(deadline, limited.collect()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body not received within {} ms",
                deadline.as_millis()
            ),
        )),
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(too_large(format!("more than {}", limits.max_body_bytes)))
            } else {
                Err(ApiError::bad_request(format!(
                    "could not read the request body: {e}"
                )))
            }
        }
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// 504 for an inference past its deadline of `ms` milliseconds.
pub(crate) fn deadline_err(ms: u128) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        format!("inference did not finish within its deadline ({ms} ms)"),
    )
}
