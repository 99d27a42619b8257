//! Server configuration: a TOML file (unknown keys refused) → [`ServeConfig::validate`], which
//! names the offending dotted key.
//!
//! ```
//! let cfg = pno_serve::ServeConfig::from_toml_str(r#"
//! repository = "models"
//! listen = "127.0.0.1:8000"
//! [limits]
//! max_concurrency = 2
//! "#).unwrap();
//! assert_eq!(cfg.limits.max_concurrency, 2);
//! assert!(pno_serve::ServeConfig::from_toml_str("listen = 1").is_err());
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::auth::Role;
use crate::error::{Result, ServeError};

/// The whole server configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// This server's replica id: 1–63 characters of `[A-Za-z0-9._-]`, in every audit record,
    /// checkpoint origin and metric it writes. Absent: `PNO_REPLICA`, else `HOSTNAME`, else the
    /// host name, else `pno-0` ([`crate::replica::resolve`]). Restart to change.
    pub replica: Option<String>,
    /// Listen address `ADDR:PORT`.
    pub listen: String,
    /// Model repository: `<repository>/<model>/<version>/` run folders.
    pub repository: PathBuf,
    /// API keys file (`pno keys create`); none: only anonymous access.
    pub keys: Option<PathBuf>,
    /// Role of requests without a key: `none` (401), `reader`; defaults to `reader` without a
    /// keys file and `none` with one.
    pub anonymous: Option<AnonymousRole>,
    /// Request limits.
    pub limits: Limits,
    /// Dynamic batching of concurrent requests (off by default).
    pub batching: BatchingConfig,
    /// Rate limits and lockout.
    pub rate_limit: RateLimits,
    /// Audit log.
    pub audit: AuditConfig,
    /// Shutdown.
    pub shutdown: Shutdown,
    /// Per-model settings by name (models not listed use the defaults).
    pub models: BTreeMap<String, ModelConfig>,
    /// Load only versions whose gate record (`gate.json`, written by `pno promote`) passed;
    /// `[models.NAME] require_gate` overrides it per model.
    pub require_gate: bool,
    /// Default per-model bulkhead (`[models.NAME]` overrides it).
    pub bulkhead: BulkheadConfig,
    /// Circuit breaker per model version.
    pub breaker: BreakerConfig,
    /// Which version serves a request that did not pin one when the newest one's breaker is
    /// open (`[models.NAME] fallback` overrides it).
    pub fallback: Fallback,
    /// Graceful degradation under pressure.
    pub degrade: DegradeConfig,
    /// Retries of transient I/O (loading versions from the repository).
    pub retry: RetryConfig,
    /// Peers (CIDR blocks, e.g. `10.0.0.0/8`) whose `X-Forwarded-For`/`Forwarded` headers name
    /// the client address used for rate limits, lockout and audit; from any other peer they are
    /// ignored.
    pub trusted_proxies: Vec<String>,
    /// Reload the configuration when its file changes (polled each second), besides SIGHUP and
    /// `POST /v2/admin/config/reload`.
    pub watch_config: bool,
    /// Native TLS; absent: plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Scheduled dependency checks.
    pub health: HealthConfig,
    /// OpenTelemetry tracing (restart to change).
    pub tracing: TracingConfig,
    /// The memory budget: refused loads and shedding.
    pub resources: ResourcesConfig,
    /// In-process time series, anomaly detection and alert routing.
    pub alerting: crate::alerting::AlertingConfig,
    /// Online input drift against each version's reference statistics.
    pub drift: crate::drift::DriftConfig,
    /// Ground-truth feedback and online calibration.
    pub feedback: crate::feedback::FeedbackConfig,
    /// Automated rollback of unhealthy versions.
    pub rollback: crate::routing::RollbackConfig,
}

/// The memory budget and what enforces it (all live: a reload takes new values at once).
///
/// - **Refused loads**: every loaded version has an estimated footprint
///   (`pno_run::TrainedModel::footprint`: parameters, the activations of its widest forward
///   pass and the answer's buffers, or the peak of loading when larger) for the configured
///   worst case: `limits.max_batch` inputs, `limits.max_samples` draws (fewer when
///   `limits.max_sample_values` caps them), `limits.batch` inputs per forward pass, on the
///   model's training grid — or `limits.max_resolution` per axis when other resolutions are
///   allowed. A version whose footprint, with those of the versions already loaded (less the
///   ones it replaces), would exceed `load_fraction` of the budget is refused, naming its
///   estimate, what is used and the budget; the versions loaded keep serving. A reload that
///   lowers the budget unloads nothing: it applies to later loads. Shown per version as
///   `pno_model_footprint_bytes{model,version}`.
/// - **Shedding**: while resident memory is above `shed_fraction` of the budget, inference
///   requests are answered 503 with `Retry-After` (class `transient`), counted in
///   `pno_shed_total{reason="memory"}`. The `memory` health check uses the same budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourcesConfig {
    /// The budget in MiB; 0: the tightest cgroup v2 `memory.max`, else cgroup v1
    /// `memory.limit_in_bytes` (≥ 2^62 means unlimited), else `/proc/meminfo`'s `MemTotal`.
    pub memory_budget_mb: u64,
    /// The loaded versions' estimated footprints may take at most this fraction of the
    /// budget, in (0, 1].
    pub load_fraction: f64,
    /// Resident memory above this fraction of the budget sheds inference requests; in (0, 1]
    /// and at least `load_fraction` (below it, loads the budget admits would shed every
    /// request).
    pub shed_fraction: f64,
}

/// The largest `resources.memory_budget_mb` (2^40 MiB = 1 EiB; more would overflow bytes).
pub const MAX_MEMORY_BUDGET_MB: u64 = 1 << 40;

impl Default for ResourcesConfig {
    fn default() -> Self {
        Self {
            memory_budget_mb: 0,
            load_fraction: 0.8,
            shed_fraction: 0.9,
        }
    }
}

/// OTLP protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// Protobuf over HTTP (port 4318, path `/v1/traces`).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// gRPC (port 4317).
    #[serde(rename = "grpc")]
    Grpc,
}

/// OpenTelemetry tracing: spans of every request (receive, admission, parse, queue, compute,
/// encode) exported over OTLP. Off unless an endpoint is set here or through the standard
/// `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variables (with
/// `OTEL_EXPORTER_OTLP_PROTOCOL`); the config wins over the environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// Collector base URL, e.g. `http://127.0.0.1:4318` (http/protobuf; `/v1/traces` is added
    /// when the URL has no path) or `http://127.0.0.1:4317` (grpc).
    pub otlp_endpoint: Option<String>,
    /// `http/protobuf` or `grpc` (default: `OTEL_EXPORTER_OTLP_PROTOCOL`, else `http/protobuf`).
    pub otlp_protocol: Option<OtlpProtocol>,
    /// Fraction of new traces recorded (a caller's sampled flag is followed).
    pub sample_ratio: f64,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            otlp_protocol: None,
            sample_ratio: 1.0,
            service_name: "pno-serve".into(),
        }
    }
}

/// The dependencies the scheduled health checks probe.
pub const DEPENDENCY_KINDS: [&str; 5] = ["audit", "disk", "repository", "memory", "models"];

/// Scheduled health checks with dependency tracking: every `interval_s` the server checks that
/// the audit log's folder is writable (and appends succeed), that the audit and repository
/// folders have `min_free_mb` free, that the repository is readable, that resident memory is
/// under `memory_fraction` of the memory budget, and that every loaded version answers a smoke
/// inference within `smoke_budget_ms`. A failing dependency of a `critical` kind turns
/// readiness false until it recovers; `GET /v2/admin/health/details` shows them all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Run the checks.
    pub enabled: bool,
    /// Seconds between rounds.
    pub interval_s: u64,
    /// Free space (MiB) the audit and repository folders need.
    pub min_free_mb: u64,
    /// Resident memory above this fraction of the budget fails `memory`.
    pub memory_fraction: f64,
    /// A smoke inference slower than this fails its version.
    pub smoke_budget_ms: u64,
    /// Kinds whose failure turns readiness false: `audit`, `disk`, `repository`, `memory`,
    /// `models`.
    pub critical: Vec<String>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_s: 15,
            min_free_mb: 256,
            memory_fraction: 0.95,
            smoke_budget_ms: 10_000,
            critical: vec!["audit".into(), "disk".into(), "repository".into()],
        }
    }
}

/// Native TLS with rustls (ring provider; TLS 1.3, and 1.2 with forward-secret AEAD suites
/// only). Turning TLS on or off needs a restart; the certificate, key and client CA files are
/// read again on every reload, so a renewed certificate is picked up by SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf certificate (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
    /// PEM CA certificates that client certificates must chain to (needed by `client_auth`).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// What a verified client certificate does.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Lowest protocol version.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// A connection must finish its handshake within this (slow or silent clients are closed).
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
}

fn default_handshake_timeout_ms() -> u64 {
    10_000
}

/// Client-certificate authentication for the admin role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// No client certificates are asked for.
    #[default]
    Off,
    /// Clients may present a certificate; one that chains to `client_ca` authenticates the
    /// request as the admin role (actor `cert:sha256:…`). Keys work as before.
    Admin,
    /// As `admin`, and the admin role needs such a certificate: an admin key on a connection
    /// without one is refused on admin routes (403).
    AdminRequired,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    #[serde(rename = "1.2")]
    V1_2,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    V1_3,
}

/// A model's own concurrency gate and queue. Unset: 1 and 16, capped at the global
/// `limits.max_concurrency` and `limits.max_queue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BulkheadConfig {
    /// Inferences of one model computed at once (at most `limits.max_concurrency`).
    pub max_concurrency: Option<usize>,
    /// Inferences of one model waiting; more are shed with 503 (at most `limits.max_queue`).
    pub max_queue: Option<usize>,
}

/// Dynamic batching: concurrent requests for the same model version, grid and number of draws
/// are computed in one pass, each with its own seed's draws (the same numbers as alone and as
/// `pno predict`). A batch opens with its first request and closes after `max_wait_ms` or when
/// its inputs reach `max_rows`; it then queues for the model's bulkhead slot as one inference.
/// Last-layer Laplace and VI-PNO, whose passes share a posterior draw across rows, are never
/// batched. Live: a reload applies to the next batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingConfig {
    /// Longest a batch waits for more requests (ms); 0 turns batching off.
    pub max_wait_ms: u64,
    /// Most inputs (rows of the batch dimension) in one batch; a request with more is computed
    /// alone.
    pub max_rows: usize,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        Self {
            max_wait_ms: 0,
            max_rows: 64,
        }
    }
}

/// Circuit breaker settings (defaults after resilience4j and Envoy, with a shorter window).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// false: never open.
    pub enabled: bool,
    /// Outcomes in the sliding window.
    pub window: usize,
    /// Outcomes needed before the rates can open it.
    pub min_calls: usize,
    /// Failure rate in (0, 1] that opens it.
    pub failure_rate: f64,
    /// A call slower than this (compute, ms) is slow.
    pub slow_call_ms: u64,
    /// Slow-call rate in (0, 1] that opens it.
    pub slow_call_rate: f64,
    /// Persistent/internal failures in a row that open it.
    pub consecutive_failures: u32,
    /// How long it stays open (ms) before probing.
    pub open_ms: u64,
    /// Probe calls in half-open; that many successes close it.
    pub half_open_calls: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window: 50,
            min_calls: 10,
            failure_rate: 0.5,
            slow_call_ms: 30_000,
            slow_call_rate: 1.0,
            consecutive_failures: 5,
            open_ms: 30_000,
            half_open_calls: 3,
        }
    }
}

/// Fallback across versions when the newest version's breaker is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Refuse with 503.
    Off,
    /// The next older loaded version, if its breaker is closed.
    #[default]
    Previous,
    /// The newest loaded version whose breaker is closed.
    AnyHealthy,
}

impl Fallback {
    /// `off`, `previous` or `any_healthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::Off => "off",
            Fallback::Previous => "previous",
            Fallback::AnyHealthy => "any_healthy",
        }
    }
}

/// Graceful degradation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DegradeConfig {
    /// false: never degrade (pressure queues, then sheds).
    pub enabled: bool,
    /// Degrade once the model's queue is this full, in [0, 1].
    pub queue_fraction: f64,
    /// Degrade once the model's compute latency EWMA reaches this (ms); 0: off.
    pub latency_ewma_ms: u64,
    /// Degrade a request asking for more sampled values than this (batch × draws × channels
    /// × points); 0: off.
    pub max_work: usize,
    /// The fewest draws a degraded answer has.
    pub min_samples: usize,
    /// Serve only the mean (one pass) for models whose mean is deterministic.
    pub mean_only: bool,
}

impl Default for DegradeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            queue_fraction: 0.5,
            latency_ewma_ms: 0,
            max_work: 0,
            min_samples: 8,
            mean_only: false,
        }
    }
}

/// Retries of transient I/O: exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Tries in all (1: no retry).
    pub attempts: u32,
    /// First backoff cap (ms).
    pub base_ms: u64,
    /// Largest backoff cap (ms).
    pub max_ms: u64,
    /// Give up after this long in all (ms).
    pub max_elapsed_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 3,
            base_ms: 25,
            max_ms: 250,
            max_elapsed_ms: 2_000,
        }
    }
}

/// Role of a request without an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnonymousRole {
    /// Refused with 401.
    None,
    /// Infer and metadata.
    Reader,
}

impl AnonymousRole {
    /// The role it grants.
    pub fn role(self) -> Option<Role> {
        match self {
            AnonymousRole::None => None,
            AnonymousRole::Reader => Some(Role::Reader),
        }
    }
}

/// Input, work and time limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body (413 above).
    pub max_body_bytes: usize,
    /// Largest JSON part of a request (413 above).
    pub max_json_bytes: usize,
    /// Deepest JSON nesting (400 above).
    pub max_json_depth: usize,
    /// Most inputs in one request (the batch dimension).
    pub max_batch: usize,
    /// Smallest grid size per spatial dimension; 0 = the model's training grid only.
    pub min_resolution: usize,
    /// Largest grid size per spatial dimension; 0 = the model's training grid only.
    pub max_resolution: usize,
    /// Draws per request when `n_samples` is not given.
    pub default_samples: usize,
    /// Most draws per request.
    pub max_samples: usize,
    /// Most values one request may produce (batch × draws × channels × points).
    pub max_sample_values: usize,
    /// Inputs per forward pass.
    pub batch: usize,
    /// Inferences computed at once, all models together (the ceiling over the per-model
    /// bulkheads).
    pub max_concurrency: usize,
    /// Inferences waiting for a global slot; more are shed with 503.
    pub max_queue: usize,
    /// Whole-request deadline (ms); a request's `timeout` parameter (µs) can only shorten it.
    pub request_timeout_ms: u64,
    /// Deadline for receiving the body (ms), against slow clients.
    pub body_timeout_ms: u64,
    /// Deadline for receiving the request headers (ms), against slow-header clients.
    pub header_timeout_ms: u64,
    /// Open connections at most; more are answered 503 and closed.
    pub max_connections: usize,
    /// Requests on one keep-alive connection before the server closes it.
    pub max_requests_per_connection: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 << 20,
            max_json_bytes: 16 << 20,
            max_json_depth: 16,
            max_batch: 64,
            min_resolution: 0,
            max_resolution: 0,
            default_samples: 32,
            max_samples: 256,
            max_sample_values: 1 << 26,
            batch: 16,
            max_concurrency: 4,
            max_queue: 64,
            request_timeout_ms: 60_000,
            body_timeout_ms: 10_000,
            header_timeout_ms: 10_000,
            max_connections: 1024,
            max_requests_per_connection: 1000,
        }
    }
}

/// Token buckets per API key and per client address; lockout after failed authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Sustained requests per second per API key.
    pub per_key_rps: f64,
    /// Burst per API key.
    pub per_key_burst: u32,
    /// Sustained requests per second per client address.
    pub per_ip_rps: f64,
    /// Burst per client address.
    pub per_ip_burst: u32,
    /// Failed authentications from one address before it is locked out.
    pub max_auth_failures: u32,
    /// Window in which those failures count (s).
    pub auth_failure_window_s: u64,
    /// Lockout length (s).
    pub lockout_s: u64,
    /// Each further lockout of the same address within a day lasts this many times longer (≥ 1).
    pub lockout_escalation: f64,
    /// The longest lockout (s).
    pub max_lockout_s: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            per_key_rps: 100.0,
            per_key_burst: 200,
            per_ip_rps: 200.0,
            per_ip_burst: 400,
            max_auth_failures: 10,
            auth_failure_window_s: 60,
            lockout_s: 300,
            lockout_escalation: 2.0,
            max_lockout_s: 86_400,
        }
    }
}

pub use pno_audit::FsyncPolicy;

/// Audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Log file (appended; created when missing). None: no audit log.
    pub path: Option<PathBuf>,
    /// fsync policy.
    pub fsync: FsyncPolicy,
    /// Records between fsyncs with `fsync = "batch"`.
    pub fsync_every: usize,
    /// When a record cannot be written (after retries): `open` answers anyway (counted in
    /// `pno_audit_append_failures_total`, `pno_audit_healthy` 0); `closed` withholds the answer
    /// of an audited request and returns 503.
    pub on_failure: AuditFailure,
    /// Ed25519 signer key (`pno audit keygen`): the server then writes a signed checkpoint of
    /// the log's Merkle tree every `checkpoint_every_s` and at shutdown.
    pub checkpoint_key: Option<PathBuf>,
    /// Seconds between checkpoints (only when records were added).
    pub checkpoint_every_s: u64,
    /// Folder of the checkpoint notes (`checkpoint-<size>.txt` and `latest.txt`); default
    /// `<log>.checkpoints`.
    pub checkpoint_dir: Option<PathBuf>,
    /// `http://` or `https://` URL each new checkpoint note is POSTed to (`text/plain`), with
    /// retries; a failed delivery is logged and counted, never blocks serving.
    pub checkpoint_webhook: Option<String>,
    /// PEM CA certificates trusted for an `https://` webhook (default: the Mozilla roots).
    pub checkpoint_webhook_ca: Option<PathBuf>,
}

/// What to do with a request whose audit record cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuditFailure {
    /// Answer anyway (counted and logged).
    #[default]
    Open,
    /// Withhold the answer: 503 class transient.
    Closed,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: None,
            fsync: FsyncPolicy::Always,
            fsync_every: 64,
            on_failure: AuditFailure::Open,
            checkpoint_key: None,
            checkpoint_every_s: 300,
            checkpoint_dir: None,
            checkpoint_webhook: None,
            checkpoint_webhook_ca: None,
        }
    }
}

/// Graceful shutdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shutdown {
    /// Longest wait for in-flight requests after SIGTERM/SIGINT (s).
    pub drain_timeout_s: u64,
    /// Time between readiness turning false and the listener closing (s), so that load
    /// balancers notice.
    pub drain_grace_s: u64,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            drain_timeout_s: 30,
            drain_grace_s: 0,
        }
    }
}

/// Which versions of a model are served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum VersionPolicy {
    /// The newest version that loads.
    #[default]
    Latest,
    /// Every version.
    All,
    /// These versions.
    Specific(Vec<u64>),
}

/// Per-model settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Version policy.
    pub version_policy: VersionPolicy,
    /// Override of the server-wide `require_gate` for this model.
    pub require_gate: Option<bool>,
    /// Override of `[bulkhead] max_concurrency` for this model.
    pub max_concurrency: Option<usize>,
    /// Override of `[bulkhead] max_queue` for this model.
    pub max_queue: Option<usize>,
    /// Override of the server-wide `fallback` for this model.
    pub fallback: Option<Fallback>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            replica: None,
            listen: "127.0.0.1:8000".into(),
            repository: PathBuf::from("models"),
            keys: None,
            anonymous: None,
            limits: Limits::default(),
            batching: BatchingConfig::default(),
            rate_limit: RateLimits::default(),
            audit: AuditConfig::default(),
            shutdown: Shutdown::default(),
            models: BTreeMap::new(),
            require_gate: false,
            bulkhead: BulkheadConfig::default(),
            breaker: BreakerConfig::default(),
            fallback: Fallback::default(),
            degrade: DegradeConfig::default(),
            retry: RetryConfig::default(),
            trusted_proxies: Vec::new(),
            watch_config: false,
            tls: None,
            health: HealthConfig::default(),
            tracing: TracingConfig::default(),
            resources: ResourcesConfig::default(),
            alerting: crate::alerting::AlertingConfig::default(),
            drift: crate::drift::DriftConfig::default(),
            feedback: crate::feedback::FeedbackConfig::default(),
            rollback: crate::routing::RollbackConfig::default(),
        }
    }
}

fn bad(key: &str, expected: &str, got: impl std::fmt::Display) -> ServeError {
    ServeError::Config {
        key: key.into(),
        expected: expected.into(),
        got: got.to_string(),
    }
}

impl ServeConfig {
    /// Parse TOML (unknown keys and wrong types name the dotted key) and validate.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let de = toml::Deserializer::new(text);
        let cfg: ServeConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let msg = e.inner().message().to_string();
            bad(
                if key == "." { "(top level)" } else { &key },
                "a valid config",
                msg,
            )
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Read a TOML file and validate it.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(crate::error::io_err("read", path))?;
        Self::from_toml_str(&text)
    }

    /// The role of requests without a key.
    pub fn anonymous_role(&self) -> Option<Role> {
        match self.anonymous {
            Some(a) => a.role(),
            None if self.keys.is_none() => Some(Role::Reader),
            None => None,
        }
    }

    /// The bulkhead of `model`: (concurrency, queue).
    pub fn model_bulkhead(&self, model: &str) -> (usize, usize) {
        let l = &self.limits;
        let m = self.models.get(model);
        let c = m
            .and_then(|m| m.max_concurrency)
            .or(self.bulkhead.max_concurrency)
            .unwrap_or(1)
            .min(l.max_concurrency);
        let q = m
            .and_then(|m| m.max_queue)
            .or(self.bulkhead.max_queue)
            .unwrap_or(16)
            .min(l.max_queue);
        (c, q)
    }

    /// The fallback policy of `model`.
    pub fn model_fallback(&self, model: &str) -> Fallback {
        self.models
            .get(model)
            .and_then(|m| m.fallback)
            .unwrap_or(self.fallback)
    }

    /// The listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        self.listen
            .parse()
            .map_err(|_| bad("listen", "ADDR:PORT, e.g. 127.0.0.1:8000", &self.listen))
    }

    fn validate_resilience(&self) -> Result<()> {
        let l = &self.limits;
        let bh = &self.bulkhead;
        if bh.max_concurrency == Some(0) {
            return Err(bad("bulkhead.max_concurrency", "a positive integer", 0));
        }
        if let Some(c) = bh.max_concurrency
            && c > l.max_concurrency
        {
            return Err(bad(
                "bulkhead.max_concurrency",
                &format!("at most limits.max_concurrency = {}", l.max_concurrency),
                c,
            ));
        }
        if let Some(q) = bh.max_queue
            && q > l.max_queue
        {
            return Err(bad(
                "bulkhead.max_queue",
                &format!("at most limits.max_queue = {}", l.max_queue),
                q,
            ));
        }
        let b = &self.breaker;
        if b.window == 0 {
            return Err(bad("breaker.window", "a positive integer", 0));
        }
        if b.min_calls == 0 || b.min_calls > b.window {
            return Err(bad(
                "breaker.min_calls",
                &format!("between 1 and breaker.window = {}", b.window),
                b.min_calls,
            ));
        }
        for (key, v) in [
            ("breaker.failure_rate", b.failure_rate),
            ("breaker.slow_call_rate", b.slow_call_rate),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 1.0) {
                return Err(bad(key, "a fraction in (0, 1]", v));
            }
        }
        if b.slow_call_ms == 0 {
            return Err(bad("breaker.slow_call_ms", "a positive integer", 0));
        }
        if b.consecutive_failures == 0 {
            return Err(bad("breaker.consecutive_failures", "a positive integer", 0));
        }
        if b.open_ms == 0 {
            return Err(bad("breaker.open_ms", "a positive integer", 0));
        }
        if b.half_open_calls == 0 {
            return Err(bad("breaker.half_open_calls", "a positive integer", 0));
        }
        let d = &self.degrade;
        if !(d.queue_fraction.is_finite() && (0.0..=1.0).contains(&d.queue_fraction)) {
            return Err(bad(
                "degrade.queue_fraction",
                "a fraction in [0, 1]",
                d.queue_fraction,
            ));
        }
        if d.min_samples == 0 {
            return Err(bad("degrade.min_samples", "a positive integer", 0));
        }
        if d.min_samples > l.max_samples {
            return Err(bad(
                "degrade.min_samples",
                &format!(
                    "at most limits.max_samples = {} (the floor cannot be above the ceiling)",
                    l.max_samples
                ),
                d.min_samples,
            ));
        }
        let r = &self.retry;
        if r.attempts == 0 || r.attempts > 10 {
            return Err(bad("retry.attempts", "between 1 and 10", r.attempts));
        }
        if r.base_ms == 0 || r.base_ms > r.max_ms {
            return Err(bad(
                "retry.base_ms",
                &format!("between 1 and retry.max_ms = {}", r.max_ms),
                r.base_ms,
            ));
        }
        if r.max_elapsed_ms == 0 {
            return Err(bad("retry.max_elapsed_ms", "a positive integer", 0));
        }
        Ok(())
    }

    fn validate_resources(&self) -> Result<()> {
        let r = &self.resources;
        if r.memory_budget_mb > MAX_MEMORY_BUDGET_MB {
            return Err(bad(
                "resources.memory_budget_mb",
                &format!("at most {MAX_MEMORY_BUDGET_MB} (0: detect)"),
                r.memory_budget_mb,
            ));
        }
        for (key, v) in [
            ("resources.load_fraction", r.load_fraction),
            ("resources.shed_fraction", r.shed_fraction),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 1.0) {
                return Err(bad(key, "a fraction in (0, 1]", v));
            }
        }
        if r.shed_fraction < r.load_fraction {
            return Err(bad(
                "resources.shed_fraction",
                &format!(
                    "at least resources.load_fraction = {} (the loaded versions may use that much; shedding below it would refuse every request)",
                    r.load_fraction
                ),
                r.shed_fraction,
            ));
        }
        Ok(())
    }

    /// Check every value; the error names the first bad key.
    pub fn validate(&self) -> Result<()> {
        if let Some(r) = &self.replica {
            pno_audit::check_replica(r)
                .map_err(|got| bad("replica", crate::replica::EXPECTED, got))?;
        }
        self.listen_addr()?;
        if self.repository.as_os_str().is_empty() {
            return Err(bad("repository", "a folder", "an empty path"));
        }
        let l = &self.limits;
        let pos = |key: &str, v: usize| -> Result<()> {
            if v == 0 {
                Err(bad(key, "a positive integer", v))
            } else {
                Ok(())
            }
        };
        pos("limits.max_body_bytes", l.max_body_bytes)?;
        pos("limits.max_json_bytes", l.max_json_bytes)?;
        pos("limits.max_json_depth", l.max_json_depth)?;
        pos("limits.max_batch", l.max_batch)?;
        pos("limits.default_samples", l.default_samples)?;
        pos("limits.max_samples", l.max_samples)?;
        pos("limits.max_sample_values", l.max_sample_values)?;
        pos("limits.batch", l.batch)?;
        pos("limits.max_concurrency", l.max_concurrency)?;
        pos("batching.max_rows", self.batching.max_rows)?;
        if self.batching.max_wait_ms > 1000 {
            return Err(bad(
                "batching.max_wait_ms",
                "at most 1000 (0 turns batching off)",
                self.batching.max_wait_ms,
            ));
        }
        if self.batching.max_rows > 4096 {
            return Err(bad(
                "batching.max_rows",
                "at most 4096",
                self.batching.max_rows,
            ));
        }
        if l.max_json_depth > 128 {
            return Err(bad(
                "limits.max_json_depth",
                "at most 128",
                l.max_json_depth,
            ));
        }
        if l.max_samples > 100_000 {
            return Err(bad("limits.max_samples", "at most 100000", l.max_samples));
        }
        if l.default_samples > l.max_samples {
            return Err(bad(
                "limits.default_samples",
                &format!("at most limits.max_samples = {}", l.max_samples),
                l.default_samples,
            ));
        }
        if (l.min_resolution == 0) != (l.max_resolution == 0) {
            return Err(bad(
                "limits.max_resolution",
                "both min_resolution and max_resolution set, or both 0 (training grid only)",
                format!("min {} max {}", l.min_resolution, l.max_resolution),
            ));
        }
        if l.min_resolution > l.max_resolution {
            return Err(bad(
                "limits.min_resolution",
                &format!("at most limits.max_resolution = {}", l.max_resolution),
                l.min_resolution,
            ));
        }
        if l.request_timeout_ms == 0 {
            return Err(bad("limits.request_timeout_ms", "a positive integer", 0));
        }
        if l.body_timeout_ms == 0 {
            return Err(bad("limits.body_timeout_ms", "a positive integer", 0));
        }
        if l.header_timeout_ms == 0 {
            return Err(bad("limits.header_timeout_ms", "a positive integer", 0));
        }
        for (i, p) in self.trusted_proxies.iter().enumerate() {
            crate::proxy::Cidr::parse(p)
                .map_err(|why| bad(&format!("trusted_proxies[{i}]"), "a CIDR block", why))?;
        }
        pos("limits.max_connections", l.max_connections)?;
        pos(
            "limits.max_requests_per_connection",
            l.max_requests_per_connection,
        )?;
        self.validate_resilience()?;
        let r = &self.rate_limit;
        for (key, v) in [
            ("rate_limit.per_key_rps", r.per_key_rps),
            ("rate_limit.per_ip_rps", r.per_ip_rps),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(bad(key, "a positive number", v));
            }
        }
        if r.per_key_burst == 0 {
            return Err(bad("rate_limit.per_key_burst", "a positive integer", 0));
        }
        if r.per_ip_burst == 0 {
            return Err(bad("rate_limit.per_ip_burst", "a positive integer", 0));
        }
        if !(r.lockout_escalation.is_finite() && r.lockout_escalation >= 1.0) {
            return Err(bad(
                "rate_limit.lockout_escalation",
                "a number ≥ 1",
                r.lockout_escalation,
            ));
        }
        if r.max_lockout_s < r.lockout_s {
            return Err(bad(
                "rate_limit.max_lockout_s",
                &format!("at least rate_limit.lockout_s = {}", r.lockout_s),
                r.max_lockout_s,
            ));
        }
        if r.max_auth_failures == 0 {
            return Err(bad("rate_limit.max_auth_failures", "a positive integer", 0));
        }
        if self.audit.checkpoint_key.is_some() && self.audit.path.is_none() {
            return Err(bad(
                "audit.checkpoint_key",
                "an audit log to checkpoint (audit.path)",
                "no audit.path",
            ));
        }
        if let Some(url) = &self.audit.checkpoint_webhook {
            if self.audit.checkpoint_key.is_none() {
                return Err(bad(
                    "audit.checkpoint_webhook",
                    "checkpoints to send (audit.checkpoint_key)",
                    "no audit.checkpoint_key",
                ));
            }
            crate::webhook::Target::parse(url).map_err(|why| {
                bad(
                    "audit.checkpoint_webhook",
                    "an http:// or https:// URL",
                    why,
                )
            })?;
        }
        if self.audit.checkpoint_webhook_ca.is_some() && self.audit.checkpoint_webhook.is_none() {
            return Err(bad(
                "audit.checkpoint_webhook_ca",
                "a webhook to trust it for (audit.checkpoint_webhook)",
                "no audit.checkpoint_webhook",
            ));
        }
        self.alerting
            .validate()
            .and_then(|()| self.drift.validate())
            .and_then(|()| self.feedback.validate())
            .and_then(|()| self.rollback.validate())
            .map_err(|(key, expected, got)| ServeError::Config {
                key,
                expected: expected.into(),
                got,
            })?;
        // A rollback condition whose evidence is switched off can never hold.
        let r = &self.rollback;
        if r.enabled && r.on_drift && !self.drift.enabled {
            return Err(bad(
                "rollback.on_drift",
                "drift.enabled = true (drift is the evidence it rolls back on)",
                "drift.enabled = false",
            ));
        }
        if r.enabled
            && r.on_coverage_collapse
            && !self.feedback.enabled
            && !r.on_drift
            && r.error_rate == 0.0
            && r.p99_ms == 0.0
        {
            return Err(bad(
                "rollback.on_coverage_collapse",
                "feedback.enabled = true (ground truth is the evidence of a collapse), or another condition",
                "feedback.enabled = false and no other condition",
            ));
        }
        let t = &self.tracing;
        if let Some(url) = &t.otlp_endpoint {
            crate::webhook::Target::parse(url)
                .map_err(|why| bad("tracing.otlp_endpoint", "an http:// or https:// URL", why))?;
        }
        if !(t.sample_ratio.is_finite() && (0.0..=1.0).contains(&t.sample_ratio)) {
            return Err(bad(
                "tracing.sample_ratio",
                "a fraction in [0, 1]",
                t.sample_ratio,
            ));
        }
        if t.service_name.trim().is_empty() {
            return Err(bad("tracing.service_name", "a name", "an empty string"));
        }
        let h = &self.health;
        if h.interval_s == 0 || h.interval_s > 3600 {
            return Err(bad("health.interval_s", "between 1 and 3600", h.interval_s));
        }
        if !(h.memory_fraction.is_finite() && h.memory_fraction > 0.0 && h.memory_fraction <= 1.0) {
            return Err(bad(
                "health.memory_fraction",
                "a fraction in (0, 1]",
                h.memory_fraction,
            ));
        }
        if h.smoke_budget_ms == 0 {
            return Err(bad("health.smoke_budget_ms", "a positive integer", 0));
        }
        self.validate_resources()?;
        for (i, k) in h.critical.iter().enumerate() {
            if !DEPENDENCY_KINDS.contains(&k.as_str()) {
                return Err(bad(
                    &format!("health.critical[{i}]"),
                    &format!("one of {}", DEPENDENCY_KINDS.join(", ")),
                    format!("{k:?}"),
                ));
            }
        }
        if let Some(t) = &self.tls {
            for (key, p) in [("tls.cert", &t.cert), ("tls.key", &t.key)] {
                if p.as_os_str().is_empty() {
                    return Err(bad(key, "a PEM file", "an empty path"));
                }
            }
            match (t.client_auth, &t.client_ca) {
                (ClientAuth::Off, Some(_)) => {
                    return Err(bad(
                        "tls.client_auth",
                        "\"admin\" or \"admin_required\" when tls.client_ca is set",
                        "\"off\"",
                    ));
                }
                (ClientAuth::Admin | ClientAuth::AdminRequired, None) => {
                    return Err(bad(
                        "tls.client_ca",
                        "a PEM file of CA certificates when tls.client_auth is not \"off\"",
                        "none",
                    ));
                }
                _ => {}
            }
            if t.handshake_timeout_ms == 0 || t.handshake_timeout_ms > 60_000 {
                return Err(bad(
                    "tls.handshake_timeout_ms",
                    "between 1 and 60000",
                    t.handshake_timeout_ms,
                ));
            }
        }
        if self.audit.checkpoint_every_s == 0 {
            return Err(bad("audit.checkpoint_every_s", "a positive integer", 0));
        }
        if self.audit.fsync == FsyncPolicy::Batch && self.audit.fsync_every == 0 {
            return Err(bad("audit.fsync_every", "a positive integer", 0));
        }
        for (name, m) in &self.models {
            pno_run::check_model_name(name)
                .map_err(|why| bad(&format!("models.{name}"), "a valid model name", why))?;
            let over = |key: &str, v: Option<usize>, ceiling: usize, of: &str| -> Result<()> {
                match v {
                    Some(0) => Err(bad(
                        &format!("models.{name}.{key}"),
                        "a positive integer",
                        0,
                    )),
                    Some(v) if v > ceiling => Err(bad(
                        &format!("models.{name}.{key}"),
                        &format!("at most {of} = {ceiling}"),
                        v,
                    )),
                    _ => Ok(()),
                }
            };
            over(
                "max_concurrency",
                m.max_concurrency,
                l.max_concurrency,
                "limits.max_concurrency",
            )?;
            over("max_queue", m.max_queue, l.max_queue, "limits.max_queue")?;
            if let VersionPolicy::Specific(v) = &m.version_policy
                && v.is_empty()
            {
                return Err(bad(
                    &format!("models.{name}.version_policy.specific"),
                    "at least one version",
                    "[]",
                ));
            }
        }
        Ok(())
    }
}
