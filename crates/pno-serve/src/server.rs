//! The HTTP application: shared state, the router ([`app`]), the admission middleware (drain,
//! lockout, rate limits, authentication, deadline), the handlers, and [`serve`] with graceful
//! drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use pno_models::burn::tensor::Device;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::audit::{AuditEvent, AuditLog};
use crate::auth::{AuthOutcome, KeyStore, Principal, Role};
use crate::config::ServeConfig;
use crate::error::{ApiError, Result, ServeError};
use crate::limits::{Gate, Lockout, RateLimiter, Shed};
use crate::metrics::{Metrics, model_labels};
use crate::protocol::{self, InputSpec, OutputTensor};
use crate::repository::{LoadedVersion, Repository, clip};

/// Everything the handlers share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ServeConfig,
    repo: Repository,
    keys: KeyStore,
    audit: Option<AuditLog>,
    metrics: Metrics,
    gate: Gate,
    key_limiter: RateLimiter,
    ip_limiter: RateLimiter,
    lockout: Lockout,
    draining: AtomicBool,
    device: Device,
    ids: AtomicU64,
    seeds: AtomicU64,
}

impl AppState {
    /// Build the state: open the keys file and the audit log (verifying its chain), prepare the
    /// repository. Nothing is loaded yet: call `repository().load_all()`.
    pub fn new(config: ServeConfig, device: Device) -> Result<Self> {
        config.validate()?;
        let keys = match &config.keys {
            Some(p) => KeyStore::open(p)?,
            None => KeyStore::empty(),
        };
        let audit = match &config.audit.path {
            Some(p) => Some(AuditLog::open(
                p,
                config.audit.fsync,
                config.audit.fsync_every,
            )?),
            None => None,
        };
        if !config.repository.is_dir() {
            return Err(ServeError::Repository {
                path: config.repository,
                what: "not a folder (expected <repository>/<model>/<version>/ run folders)".into(),
            });
        }
        let policies = config
            .models
            .iter()
            .map(|(k, v)| (k.clone(), v.version_policy.clone()))
            .collect();
        let repo = Repository::new(&config.repository, policies, device.clone());
        let l = &config.limits;
        let r = &config.rate_limit;
        let random: u64 = rand::random();
        Ok(Self {
            inner: Arc::new(Inner {
                gate: Gate::new(l.max_concurrency, l.max_queue),
                key_limiter: RateLimiter::new(r.per_key_rps, r.per_key_burst),
                ip_limiter: RateLimiter::new(r.per_ip_rps, r.per_ip_burst),
                lockout: Lockout::new(
                    r.max_auth_failures,
                    Duration::from_secs(r.auth_failure_window_s),
                    Duration::from_secs(r.lockout_s),
                ),
                repo,
                keys,
                audit,
                metrics: Metrics::default(),
                draining: AtomicBool::new(false),
                device,
                ids: AtomicU64::new(random),
                seeds: AtomicU64::new(random.rotate_left(17) >> 1),
                config,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ServeConfig {
        &self.inner.config
    }
    /// The model repository.
    pub fn repository(&self) -> &Repository {
        &self.inner.repo
    }
    /// The API keys.
    pub fn keys(&self) -> &KeyStore {
        &self.inner.keys
    }
    /// The audit log.
    pub fn audit(&self) -> Option<&AuditLog> {
        self.inner.audit.as_ref()
    }
    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
    /// The concurrency gate.
    pub fn gate(&self) -> &Gate {
        &self.inner.gate
    }
    /// Start draining: readiness turns false and new requests are refused with 503.
    pub fn start_drain(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }
    /// True while draining.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }
    /// Ready: a model is loaded, not draining, not overloaded.
    pub fn readiness(&self) -> std::result::Result<(), &'static str> {
        if self.is_draining() {
            Err("draining")
        } else if !self.inner.repo.any_loaded() {
            Err("no model loaded")
        } else if self.inner.gate.saturated() {
            Err("overloaded")
        } else {
            Ok(())
        }
    }

    fn next_id(&self) -> String {
        let v = self.inner.ids.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}", v.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn next_seed(&self) -> u64 {
        let v = self.inner.seeds.fetch_add(1, Ordering::Relaxed);
        (v.wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 1
    }

    fn input_spec(&self, m: &LoadedVersion) -> InputSpec {
        let l = &self.inner.config.limits;
        InputSpec {
            name: "x".into(),
            channels: m.model.file.in_channels,
            grid: m.model.file.grid.clone(),
            resolution: (l.max_resolution > 0).then_some((l.min_resolution, l.max_resolution)),
            max_batch: l.max_batch,
            default_samples: l.default_samples,
            max_samples: l.max_samples,
            max_sample_values: l.max_sample_values,
            max_json_bytes: l.max_json_bytes,
            max_json_depth: l.max_json_depth,
        }
    }

    fn record(&self, ctx: &Ctx, info: &AuditInfo, status: StatusCode) {
        let Some(log) = &self.inner.audit else {
            return;
        };
        let (actor, role) = match &ctx.principal {
            Some(p) => (p.id.clone(), p.role.as_str().to_string()),
            None => ("anonymous".into(), "none".into()),
        };
        let ev = AuditEvent {
            actor,
            role,
            client: ctx.client.clone(),
            action: info.action.into(),
            model: info.model.clone(),
            version: info.version.clone(),
            outcome: if status.is_success() { "ok" } else { "error" }.into(),
            status: status.as_u16(),
            request_id: ctx.request_id.clone(),
            input_sha256: info.input_sha256.clone(),
        };
        if let Err(e) = log.append(ev) {
            tracing::error!(error = %e, "audit log append failed");
        }
    }
}

/// Per-request context set by the admission middleware.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Request id (echoed in `X-Request-Id`).
    pub request_id: String,
    /// Client address.
    pub client: String,
    /// Who (None: anonymous without a role).
    pub principal: Option<Principal>,
    /// When the request arrived.
    pub started: Instant,
}

impl Ctx {
    fn require(&self, role: Role, what: &str) -> std::result::Result<(), ApiError> {
        match &self.principal {
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing API key: send Authorization: Bearer <key>",
            )),
            Some(p) if p.role < role && p.id == "anonymous" => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                format!(
                    "an API key with role '{}' is needed to {what}",
                    role.as_str()
                ),
            )),
            Some(p) if p.role < role => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "key role '{}' may not {what}; it needs '{}'",
                    p.role.as_str(),
                    role.as_str()
                ),
            )),
            Some(_) => Ok(()),
        }
    }
}

/// What the audit log records about a request (a response extension the middleware reads).
#[derive(Debug, Clone, Default)]
struct AuditInfo {
    action: &'static str,
    model: Option<String>,
    version: Option<String>,
    input_sha256: Option<String>,
}

fn audited(info: AuditInfo, r: std::result::Result<Response, ApiError>) -> Response {
    let mut resp = r.unwrap_or_else(IntoResponse::into_response);
    resp.extensions_mut().insert(info);
    resp
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn ok_json(v: Value) -> Response {
    json_response(StatusCode::OK, &v)
}

/// Routes that need no key and are never rate limited.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/v2/health/live" | "/v2/health/ready" | "/metrics" | "/v2/openapi.json" | "/v2"
    )
}

/// The application: every route, behind the admission middleware.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
        .route("/v2/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/v2/models/{name}", get(model_metadata))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(model_metadata_v),
        )
        .route("/v2/models/{name}/ready", get(model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_ready_v),
        )
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}/infer", post(infer_v))
        .route("/v2/repository/index", post(repo_index))
        .route("/v2/repository/models/{name}/load", post(repo_load))
        .route("/v2/repository/models/{name}/unload", post(repo_unload))
        .route("/v2/admin/keys", get(keys_list).post(keys_create))
        .route("/v2/admin/keys/{id}", axum::routing::delete(keys_revoke))
        .route("/v2/admin/audit/verify", get(audit_verify))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admission,
        ))
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {}",
        req.method(),
        clip(req.uri().path())
    ))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {} not allowed on {}",
            req.method(),
            clip(req.uri().path())
        ),
    )
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

/// Admission: request id and span, drain, lockout, per-address and per-key rate limits,
/// authentication, the whole-request deadline, JSON for every error, audit and metrics.
async fn admission(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(valid_request_id)
        .unwrap_or_else(|| st.next_id());
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "local".into());
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let span = tracing::info_span!("request", request_id = %request_id, %method, path = %clip(&path), %client);
    async move {
        st.inner.metrics.in_flight.fetch_add(1, Ordering::SeqCst);
        let _guard = InFlight(&st.inner.metrics);
        let mut ctx = Ctx {
            request_id: request_id.clone(),
            client: client.clone(),
            principal: None,
            started,
        };
        let public = is_public(&path);
        let admitted: std::result::Result<(), ApiError> = (|| {
            if st.is_draining() && path != "/v2/health/live" && path != "/v2/health/ready" {
                return Err(ApiError::unavailable("server is shutting down", 5));
            }
            if public {
                return Ok(());
            }
            if let Some(s) = st.inner.lockout.locked(&client) {
                return Err(ApiError::too_many(
                    "too many failed authentications from this address; locked out",
                    s,
                ));
            }
            st.inner
                .ip_limiter
                .check(&client)
                .map_err(|s| ApiError::too_many("rate limit exceeded for this address", s))?;
            let header = req
                .headers()
                .get(header::AUTHORIZATION)
                .map(|h| h.to_str().unwrap_or("\u{0}"));
            match st.inner.keys.check_header(header) {
                AuthOutcome::Key(p) => {
                    st.inner.lockout.succeed(&client);
                    st.inner.key_limiter.check(&p.id).map_err(|s| {
                        ApiError::too_many("rate limit exceeded for this API key", s)
                    })?;
                    ctx.principal = Some(p);
                    Ok(())
                }
                AuthOutcome::Missing => {
                    ctx.principal = st.inner.config.anonymous_role().map(|role| Principal {
                        id: "anonymous".into(),
                        role,
                    });
                    Ok(())
                }
                AuthOutcome::Invalid => {
                    let locked = st.inner.lockout.fail(&client);
                    st.record(
                        &ctx,
                        &AuditInfo {
                            action: if locked.is_some() {
                                "auth.lockout"
                            } else {
                                "auth"
                            },
                            ..AuditInfo::default()
                        },
                        StatusCode::UNAUTHORIZED,
                    );
                    Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid API key"))
                }
            }
        })();
        let mut resp = match admitted {
            Err(e) => {
                tracing::warn!(status = e.status.as_u16(), error = %e.message, "refused");
                e.into_response()
            }
            Ok(()) => {
                req.extensions_mut().insert(ctx.clone());
                let limit = Duration::from_millis(st.inner.config.limits.request_timeout_ms);
                match tokio::time::timeout(limit, next.run(req)).await {
                    Ok(r) => r,
                    Err(_) => ApiError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!("request did not finish within {} ms", limit.as_millis()),
                    )
                    .into_response(),
                }
            }
        };
        let status = resp.status();
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
                let ext = resp.extensions_mut().remove::<AuditInfo>();
                resp = ApiError::new(
                    status,
                    status.canonical_reason().unwrap_or("error").to_string(),
                )
                .into_response();
                if let Some(r) = retry {
                    resp.headers_mut().insert(header::RETRY_AFTER, r);
                }
                if let Some(e) = ext {
                    resp.extensions_mut().insert(e);
                }
            }
        }
        if let Some(info) = resp.extensions().get::<AuditInfo>() {
            st.record(&ctx, info, status);
        }
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        let class = if path.starts_with("/v2/models/") {
            if path.ends_with("/infer") {
                "infer"
            } else {
                "model"
            }
        } else if path.starts_with("/v2/repository") {
            "repository"
        } else if path.starts_with("/v2/admin") {
            "admin"
        } else if public {
            "public"
        } else {
            "other"
        };
        st.inner.metrics.inc(
            "pno_http_requests_total",
            format!("class=\"{class}\",status=\"{}\"", status.as_u16()),
            1.0,
        );
        tracing::info!(
            status = status.as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1e3,
            "request"
        );
        resp
    }
    .instrument(span)
    .await
}

// ---------------------------------------------------------------- health and metadata

async fn live() -> Response {
    ok_json(json!({ "live": true }))
}

async fn ready(State(st): State<AppState>) -> Response {
    match st.readiness() {
        Ok(()) => ok_json(json!({ "ready": true })),
        Err(why) => {
            let mut r = json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "ready": false, "error": format!("not ready: {why}") }),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
    }
}

async fn server_metadata() -> Response {
    ok_json(json!({
        "name": "pno-serve",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data", "model_repository", "parameters"],
    }))
}

async fn openapi() -> Response {
    ok_json(crate::openapi::document())
}

async fn metrics(State(st): State<AppState>) -> Response {
    let i = &st.inner;
    let mut gauges: Vec<(&str, &str, String, f64)> = vec![
        (
            "pno_inference_pending_request_count",
            "Inference requests waiting for a compute slot.",
            String::new(),
            i.gate.waiting() as f64,
        ),
        (
            "pno_inference_running_count",
            "Inference requests computing.",
            String::new(),
            i.gate.running() as f64,
        ),
        (
            "pno_ready",
            "1 when the server is ready.",
            String::new(),
            f64::from(u8::from(st.readiness().is_ok())),
        ),
        (
            "pno_draining",
            "1 while draining.",
            String::new(),
            f64::from(u8::from(st.is_draining())),
        ),
    ];
    for (m, v) in i.repo.loaded() {
        gauges.push((
            "pno_model_loaded",
            "1 for each loaded model version.",
            model_labels(&m, &v.to_string()),
            1.0,
        ));
    }
    let mut r = (StatusCode::OK, i.metrics.render(&gauges)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

fn path_err(e: PathRejection) -> ApiError {
    ApiError::bad_request(format!("bad path: {}", e.body_text()))
}

fn model_meta(st: &AppState, m: &LoadedVersion) -> Value {
    let f = &m.model.file;
    let spatial: Vec<i64> = if st.inner.config.limits.max_resolution > 0 {
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
    let l = &st.inner.config.limits;
    json!({
        "name": m.name,
        "versions": st.inner.repo.loaded_versions(&m.name).iter().map(u64::to_string).collect::<Vec<_>>(),
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

async fn metadata_impl(st: AppState, ctx: Ctx, name: String, version: Option<String>) -> Response {
    let mut info = AuditInfo {
        action: "model.metadata",
        model: Some(clip(&name)),
        ..AuditInfo::default()
    };
    let r = (|| {
        ctx.require(Role::Reader, "read model metadata")?;
        let m = st.inner.repo.get(&name, version.as_deref())?;
        info.version = Some(m.version_str());
        Ok(ok_json(model_meta(&st, &m)))
    })();
    audited(info, r)
}

async fn model_metadata(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    p: std::result::Result<Path<String>, PathRejection>,
) -> Response {
    match p {
        Ok(Path(name)) => metadata_impl(st, ctx, name, None).await,
        Err(e) => path_err(e).into_response(),
    }
}

async fn model_metadata_v(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    p: std::result::Result<Path<(String, String)>, PathRejection>,
) -> Response {
    match p {
        Ok(Path((name, v))) => metadata_impl(st, ctx, name, Some(v)).await,
        Err(e) => path_err(e).into_response(),
    }
}

fn ready_impl(st: &AppState, ctx: &Ctx, name: &str, version: Option<&str>) -> Response {
    let r = (|| -> std::result::Result<Response, ApiError> {
        ctx.require(Role::Reader, "read model readiness")?;
        let _m = st.inner.repo.get(name, version)?;
        Ok(ok_json(json!({ "name": name, "ready": true })))
    })();
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn model_ready(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    p: std::result::Result<Path<String>, PathRejection>,
) -> Response {
    match p {
        Ok(Path(name)) => ready_impl(&st, &ctx, &name, None),
        Err(e) => path_err(e).into_response(),
    }
}

async fn model_ready_v(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    p: std::result::Result<Path<(String, String)>, PathRejection>,
) -> Response {
    match p {
        Ok(Path((name, v))) => ready_impl(&st, &ctx, &name, Some(&v)),
        Err(e) => path_err(e).into_response(),
    }
}

// ---------------------------------------------------------------- inference

/// Read a body within the size limit and the body deadline.
async fn read_body(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> std::result::Result<axum::body::Bytes, ApiError> {
    let l = &st.inner.config.limits;
    let too_large = |n: String| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body is {n} bytes; the limit is {}",
                l.max_body_bytes
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
        if n > l.max_body_bytes as u64 {
            return Err(too_large(n.to_string()));
        }
    }
    let limited = http_body_util::Limited::new(body, l.max_body_bytes);
    let deadline = Duration::from_millis(l.body_timeout_ms);
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
                Err(too_large(format!("more than {}", l.max_body_bytes)))
            } else {
                Err(ApiError::bad_request(format!(
                    "could not read the request body: {e}"
                )))
            }
        }
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

fn deadline_err(ms: u128) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        format!("inference did not finish within its deadline ({ms} ms)"),
    )
}

async fn infer_impl(
    st: AppState,
    ctx: Ctx,
    name: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut info = AuditInfo {
        action: "infer",
        model: Some(clip(&name)),
        ..AuditInfo::default()
    };
    let mut labels = None;
    let r = infer_inner(
        &st,
        &ctx,
        &name,
        version.as_deref(),
        &headers,
        body,
        &mut info,
        &mut labels,
    )
    .await;
    if let Some(l) = labels {
        match &r {
            Ok(_) => st
                .inner
                .metrics
                .inc("pno_inference_request_success_total", l.clone(), 1.0),
            Err(e) => st.inner.metrics.inc(
                "pno_inference_request_failure_total",
                format!("{l},status=\"{}\"", e.status.as_u16()),
                1.0,
            ),
        }
        st.inner.metrics.observe(
            "pno_inference_request_duration_seconds",
            l,
            ctx.started.elapsed().as_secs_f64(),
        );
    }
    if let Err(e) = &r {
        tracing::info!(status = e.status.as_u16(), error = %e.message, "inference refused");
    }
    audited(info, r)
}

#[allow(clippy::too_many_arguments)]
async fn infer_inner(
    st: &AppState,
    ctx: &Ctx,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Body,
    info: &mut AuditInfo,
    labels: &mut Option<String>,
) -> std::result::Result<Response, ApiError> {
    ctx.require(Role::Reader, "infer")?;
    let m = st.inner.repo.get(name, version)?;
    let vs = m.version_str();
    info.version = Some(vs.clone());
    let l = model_labels(&m.name, &vs);
    *labels = Some(l.clone());
    let body = read_body(st, headers, body)
        .instrument(tracing::info_span!("receive"))
        .await?;
    info.input_sha256 = Some(hex::encode(Sha256::digest(&body)));
    let hl = match headers.get(protocol::HEADER_LENGTH) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::bad_request("Inference-Header-Content-Length must be an integer")
        })?),
    };
    let spec = st.input_spec(&m);
    let req = tracing::info_span!("parse").in_scope(|| {
        let (json, bin) = protocol::split_body(&body, hl)?;
        protocol::parse(&spec, json, bin)
    })?;
    drop(body);
    let limit = Duration::from_millis(st.inner.config.limits.request_timeout_ms);
    let limit = match req.timeout_us {
        Some(us) if us > 0 => limit.min(Duration::from_micros(us)),
        _ => limit,
    };
    let deadline = tokio::time::Instant::from_std(ctx.started) + limit;

    // Queue.
    let q0 = Instant::now();
    let slot = match tokio::time::timeout_at(deadline, st.inner.gate.acquire())
        .instrument(tracing::info_span!("queue"))
        .await
    {
        Err(_) => return Err(deadline_err(limit.as_millis())),
        Ok(Err(Shed::QueueFull)) => {
            return Err(ApiError::unavailable(
                "server overloaded: inference queue is full",
                1,
            ));
        }
        Ok(Err(Shed::Closed)) => return Err(ApiError::unavailable("server is shutting down", 5)),
        Ok(Ok(s)) => s,
    };
    st.inner.metrics.observe(
        "pno_inference_queue_duration_seconds",
        l.clone(),
        q0.elapsed().as_secs_f64(),
    );

    // Compute (blocking, on the blocking pool; the slot is held until it ends even if the
    // client or the deadline gives up).
    let seed = req.seed.unwrap_or_else(|| st.next_seed());
    let device = st.inner.device.clone();
    let batch = st.inner.config.limits.batch;
    let model = m.clone();
    let (n, grid, n_samples) = (req.n, req.grid.clone(), req.n_samples);
    let x = req.x;
    let compute_span = tracing::info_span!("compute", n, n_samples, seed);
    let job = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let _e = compute_span.enter();
        let t = Instant::now();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let req = pno_run::PredictRequest {
                x: &x,
                n,
                grid: &grid,
                n_samples,
                seed,
                batch,
            };
            model.model.predict(&req, &device)
        }));
        (r, t.elapsed())
    });
    let (pred, dt) = match tokio::time::timeout_at(deadline, job).await {
        Err(_) => return Err(deadline_err(limit.as_millis())),
        Ok(Err(_)) => return Err(ApiError::internal("inference task failed")),
        Ok(Ok((Err(_), _))) => return Err(ApiError::internal("the model failed on this input")),
        Ok(Ok((Ok(Err(e)), _))) => {
            return Err(ApiError::bad_request(format!(
                "the model refused the input: {e}"
            )));
        }
        Ok(Ok((Ok(Ok(p)), dt))) => (p, dt),
    };
    st.inner.metrics.observe(
        "pno_inference_compute_duration_seconds",
        l.clone(),
        dt.as_secs_f64(),
    );
    st.inner
        .metrics
        .inc("pno_inference_count_total", l.clone(), n as f64);
    st.inner
        .metrics
        .inc("pno_inference_exec_count_total", l, 1.0);

    // Encode.
    let _e = tracing::info_span!("encode").entered();
    let c = pred.channels;
    let mut field = vec![n, c];
    field.extend(&req.grid);
    let wants_q = req.outputs.iter().any(|o| o.name == "quantiles");
    let q = if wants_q {
        pred.quantiles(&req.levels)
    } else {
        Vec::new()
    };
    let mut outs = Vec::with_capacity(req.outputs.len());
    for o in &req.outputs {
        let (data, lead): (&[f32], Vec<usize>) = match o.name.as_str() {
            "mean" => (&pred.mean, vec![]),
            "std" => (&pred.std, vec![]),
            "quantiles" => (&q, vec![req.levels.len()]),
            _ => (&pred.samples, vec![n_samples]),
        };
        if data.iter().any(|v| !v.is_finite()) {
            return Err(ApiError::bad_request(format!(
                "output '{}' is not finite for this input (values outside the model's range?)",
                o.name
            )));
        }
        let mut shape = lead;
        shape.extend(&field);
        outs.push(OutputTensor {
            name: o.name.as_str(),
            shape,
            data,
            binary: o.binary,
        });
    }
    let mut params = json!({ "n_samples": n_samples, "seed": seed });
    if wants_q {
        params["quantile_levels"] = Value::String(
            req.levels
                .iter()
                .map(f64::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    let (bytes, header_len) = protocol::encode(&m.name, &vs, req.id.as_deref(), &params, &outs);
    let mut resp = (StatusCode::OK, bytes).into_response();
    let h = resp.headers_mut();
    match header_len {
        Some(n) => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(protocol::HEADER_LENGTH, HeaderValue::from(n));
        }
        None => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    Ok(resp)
}

async fn infer(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    p: std::result::Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match p {
        Ok(Path(name)) => infer_impl(st, ctx, name, None, headers, body).await,
        Err(e) => path_err(e).into_response(),
    }
}

async fn infer_v(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    p: std::result::Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match p {
        Ok(Path((name, v))) => infer_impl(st, ctx, name, Some(v), headers, body).await,
        Err(e) => path_err(e).into_response(),
    }
}

// ---------------------------------------------------------------- repository

async fn small_json(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> std::result::Result<Option<serde_json::Map<String, Value>>, ApiError> {
    let b = read_body(st, headers, body).await?;
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

async fn repo_index(State(st): State<AppState>, Extension(ctx): Extension<Ctx>) -> Response {
    let info = AuditInfo {
        action: "repository.index",
        ..AuditInfo::default()
    };
    let r = (|| {
        ctx.require(Role::Operator, "list the repository")?;
        let idx = st
            .inner
            .repo
            .index()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(ok_json(serde_json::to_value(idx).unwrap_or(Value::Null)))
    })();
    audited(info, r)
}

async fn repo_load(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    p: std::result::Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let name = match p {
        Ok(Path(n)) => n,
        Err(e) => return path_err(e).into_response(),
    };
    let mut info = AuditInfo {
        action: "model.load",
        model: Some(clip(&name)),
        ..AuditInfo::default()
    };
    let r = async {
        ctx.require(Role::Operator, "load models")?;
        crate::repository::check_name(&name).map_err(ApiError::bad_request)?;
        let body = small_json(&st, &headers, body).await?;
        let version = match body
            .as_ref()
            .and_then(|b| b.get("parameters"))
            .and_then(|p| p.get("version"))
        {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("parameter 'version' must be an integer, got {:?}", clip(s)))
            })?),
            Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(|| {
                ApiError::bad_request("parameter 'version' must be a positive integer")
            })?),
            Some(_) => return Err(ApiError::bad_request("parameter 'version' must be an integer")),
        };
        info.version = version.map(|v| v.to_string());
        let st2 = st.clone();
        let n2 = name.clone();
        let res = tokio::task::spawn_blocking(move || st2.inner.repo.load(&n2, version))
            .await
            .map_err(|_| ApiError::internal("model loading task failed"))?;
        match res {
            Ok(v) => {
                tracing::info!(model = %name, versions = ?v, "model loaded");
                Ok(ok_json(json!({
                    "name": name,
                    "loaded": v.iter().map(u64::to_string).collect::<Vec<_>>(),
                    "serving": st.inner.repo.loaded_versions(&name).iter().map(u64::to_string).collect::<Vec<_>>(),
                })))
            }
            Err(e) => {
                let serving = st.inner.repo.loaded_versions(&name);
                let msg = format!(
                    "load refused: {e}; still serving versions {:?}",
                    serving.iter().map(u64::to_string).collect::<Vec<_>>()
                );
                tracing::warn!(model = %name, error = %e, "model load refused");
                match e {
                    ServeError::Repository { .. } => Err(ApiError::not_found(msg)),
                    _ => Err(ApiError::bad_request(msg)),
                }
            }
        }
    }
    .await;
    audited(info, r)
}

async fn repo_unload(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    p: std::result::Result<Path<String>, PathRejection>,
) -> Response {
    let name = match p {
        Ok(Path(n)) => n,
        Err(e) => return path_err(e).into_response(),
    };
    let info = AuditInfo {
        action: "model.unload",
        model: Some(clip(&name)),
        ..AuditInfo::default()
    };
    let r = (|| {
        ctx.require(Role::Operator, "unload models")?;
        if st.inner.repo.unload(&name) {
            tracing::info!(model = %name, "model unloaded");
            Ok(ok_json(json!({ "name": name, "unloaded": true })))
        } else {
            Err(ApiError::not_found(format!(
                "model '{}' is not loaded",
                clip(&name)
            )))
        }
    })();
    audited(info, r)
}

// ---------------------------------------------------------------- admin

async fn keys_list(State(st): State<AppState>, Extension(ctx): Extension<Ctx>) -> Response {
    let info = AuditInfo {
        action: "keys.list",
        ..AuditInfo::default()
    };
    let r = (|| {
        ctx.require(Role::Admin, "manage keys")?;
        let keys: Vec<Value> = st
            .inner
            .keys
            .list()
            .iter()
            .map(|k| json!({"id": k.id, "role": k.role, "created": k.created}))
            .collect();
        Ok(ok_json(json!({ "keys": keys })))
    })();
    audited(info, r)
}

async fn keys_create(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let info = AuditInfo {
        action: "keys.create",
        ..AuditInfo::default()
    };
    let r = async {
        ctx.require(Role::Admin, "manage keys")?;
        let body = small_json(&st, &headers, body).await?;
        let role = body
            .as_ref()
            .and_then(|b| b.get("role"))
            .and_then(Value::as_str)
            .and_then(Role::parse)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "body must be {\"role\": \"reader\" | \"operator\" | \"admin\"}",
                )
            })?;
        if st.inner.config.keys.is_none() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "the server runs without a keys file; keys cannot be created",
            ));
        }
        let (key, rec) = st
            .inner
            .keys
            .create(role)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(json_response(
            StatusCode::CREATED,
            &json!({"id": rec.id, "role": rec.role, "key": key}),
        ))
    }
    .await;
    audited(info, r)
}

async fn keys_revoke(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    p: std::result::Result<Path<String>, PathRejection>,
) -> Response {
    let info = AuditInfo {
        action: "keys.revoke",
        ..AuditInfo::default()
    };
    let r = (|| {
        ctx.require(Role::Admin, "manage keys")?;
        let Path(id) = p.map_err(path_err)?;
        match st.inner.keys.revoke(&id) {
            Ok(true) => Ok(ok_json(json!({ "id": id, "revoked": true }))),
            Ok(false) => Err(ApiError::not_found(format!("no key '{}'", clip(&id)))),
            Err(e) => Err(ApiError::internal(e.to_string())),
        }
    })();
    audited(info, r)
}

async fn audit_verify(State(st): State<AppState>, Extension(ctx): Extension<Ctx>) -> Response {
    let info = AuditInfo {
        action: "audit.verify",
        ..AuditInfo::default()
    };
    let r = (|| {
        ctx.require(Role::Admin, "read the audit log")?;
        let Some(log) = &st.inner.audit else {
            return Err(ApiError::not_found("the server runs without an audit log"));
        };
        log.flush().map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(match crate::audit::verify(log.path()) {
            Ok(v) => ok_json(json!({"ok": true, "records": v.records, "head": v.head})),
            Err(e) => ok_json(json!({"ok": false, "problem": e.to_string()})),
        })
    })();
    audited(info, r)
}

// ---------------------------------------------------------------- serving

/// Serve `state` on `listener` until `shutdown` resolves, then drain: readiness turns false and
/// new requests get 503 at once; after `drain_grace_s` the listener closes; in-flight requests
/// finish (at most `drain_timeout_s`); the audit log is flushed. HTTP/1.1 with keep-alive; a
/// client that does not send its request headers within `limits.header_timeout_ms` is dropped
/// (slow-header attacks), and `limits.body_timeout_ms` bounds the body.
pub async fn serve<F>(listener: tokio::net::TcpListener, state: AppState, shutdown: F) -> Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let addr = listener.local_addr().ok();
    let sd = state.inner.config.shutdown.clone();
    let header_timeout = Duration::from_millis(state.inner.config.limits.header_timeout_ms);
    let router = app(state.clone());
    let graceful = GracefulShutdown::new();
    let spawn_conn = |stream: tokio::net::TcpStream, peer: SocketAddr| {
        let svc = tower::ServiceExt::map_request(
            router.clone(),
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            },
        );
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    };
    tracing::info!(addr = ?addr, "serving");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => spawn_conn(stream, peer),
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    tracing::info!("shutdown requested: draining");
    state.start_drain();
    // Readiness is false and new requests get 503; keep accepting for the grace period so that
    // load balancers see it, then close the listener.
    let grace = tokio::time::sleep(Duration::from_secs(sd.drain_grace_s));
    tokio::pin!(grace);
    loop {
        tokio::select! {
            () = &mut grace => break,
            accepted = listener.accept() => {
                if let Ok((stream, peer)) = accepted {
                    spawn_conn(stream, peer);
                }
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(sd.drain_timeout_s), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout: closing with requests still in flight");
    }
    if let Some(log) = &state.inner.audit {
        log.flush()?;
    }
    tracing::info!("stopped");
    Ok(())
}
