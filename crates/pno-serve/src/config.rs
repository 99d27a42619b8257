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
    /// Inferences computed at once.
    pub max_concurrency: usize,
    /// Inferences waiting for a slot; more are shed with 503.
    pub max_queue: usize,
    /// Whole-request deadline (ms); a request's `timeout` parameter (µs) can only shorten it.
    pub request_timeout_ms: u64,
    /// Deadline for receiving the body (ms), against slow clients.
    pub body_timeout_ms: u64,
    /// Deadline for receiving the request headers (ms), against slow-header clients.
    pub header_timeout_ms: u64,
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
            max_concurrency: 1,
            max_queue: 64,
            request_timeout_ms: 60_000,
            body_timeout_ms: 10_000,
            header_timeout_ms: 10_000,
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
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: None,
            fsync: FsyncPolicy::Always,
            fsync_every: 64,
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
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8000".into(),
            repository: PathBuf::from("models"),
            keys: None,
            anonymous: None,
            limits: Limits::default(),
            rate_limit: RateLimits::default(),
            audit: AuditConfig::default(),
            shutdown: Shutdown::default(),
            models: BTreeMap::new(),
            require_gate: false,
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

    /// The listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        self.listen
            .parse()
            .map_err(|_| bad("listen", "ADDR:PORT, e.g. 127.0.0.1:8000", &self.listen))
    }

    /// Check every value; the error names the first bad key.
    pub fn validate(&self) -> Result<()> {
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
        if r.max_auth_failures == 0 {
            return Err(bad("rate_limit.max_auth_failures", "a positive integer", 0));
        }
        if self.audit.fsync == FsyncPolicy::Batch && self.audit.fsync_every == 0 {
            return Err(bad("audit.fsync_every", "a positive integer", 0));
        }
        for (name, m) in &self.models {
            pno_run::check_model_name(name)
                .map_err(|why| bad(&format!("models.{name}"), "a valid model name", why))?;
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
