//! [`AppState`]: what every layer and handler shares — the configuration, the model repository,
//! the keys, the audit log, the metrics, the admission state (concurrency gate, rate limiters,
//! lockout, drain flag) and the compute device.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use pno_models::burn::tensor::Device;

use crate::audit::{AuditEvent, AuditLog};
use crate::auth::KeyStore;
use crate::config::ServeConfig;
use crate::error::{Result, ServeError};
use crate::failure::FailureClass;
use crate::limits::{Lockout, RateLimiter};
use crate::metrics::{Metrics, model_labels};
use crate::protocol::InputSpec;
use crate::repository::{LoadedVersion, Repository};
use crate::resilience::Guards;
use crate::resilience::breaker::Transition;
use crate::resilience::bulkhead::{Bulkheads, Gate, Size};

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
    bulkheads: Bulkheads,
    guards: Guards,
    key_limiter: RateLimiter,
    ip_limiter: RateLimiter,
    lockout: Lockout,
    draining: AtomicBool,
    device: Device,
    #[cfg(feature = "fault-injection")]
    faults: crate::faults::Faults,
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
        // Changes by `pno keys` (or another server) take effect within a second.
        keys.watch(crate::auth::WATCH_INTERVAL);
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
        let gates = config
            .models
            .iter()
            .filter_map(|(k, v)| v.require_gate.map(|g| (k.clone(), g)))
            .collect();
        let repo = Repository::new(&config.repository, policies, device.clone())
            .require_gates(config.require_gate, gates)
            .retrying(config.retry);
        let r = &config.rate_limit;
        let random: u64 = rand::random();
        Ok(Self {
            inner: Arc::new(Inner {
                bulkheads: bulkheads(&config),
                guards: Guards::new(config.breaker),
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
                #[cfg(feature = "fault-injection")]
                faults: crate::faults::Faults::default(),
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
    /// The global concurrency gate (the ceiling over every model's bulkhead).
    pub fn gate(&self) -> &Gate {
        self.inner.bulkheads.global()
    }
    /// The concurrency gate of one model (its bulkhead).
    pub fn model_gate(&self, model: &str) -> Arc<Gate> {
        self.inner.bulkheads.model(model)
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
        } else if self.gate().saturated() {
            Err("overloaded")
        } else {
            Ok(())
        }
    }

    /// The injected faults (test builds only).
    #[cfg(feature = "fault-injection")]
    pub(crate) fn faults(&self) -> &crate::faults::Faults {
        &self.inner.faults
    }

    /// The per-model bulkheads.
    pub(crate) fn bulkheads(&self) -> &Bulkheads {
        &self.inner.bulkheads
    }
    /// The health of each version (breakers, latency).
    pub(crate) fn guards(&self) -> &Guards {
        &self.inner.guards
    }

    /// A breaker changed state: log it, audit it, count it.
    pub(crate) fn breaker_moved(&self, model: &str, version: u64, t: &Transition) {
        let (from, to) = (t.from.as_str(), t.to.as_str());
        if t.to == crate::resilience::breaker::State::Open {
            tracing::warn!(model, version, from, to, reason = %t.reason, class = "transient", "circuit breaker opened");
        } else {
            tracing::info!(model, version, from, to, reason = %t.reason, "circuit breaker moved");
        }
        self.metrics().inc(
            "pno_breaker_transitions_total",
            format!("{},to=\"{to}\"", model_labels(model, &version.to_string())),
            1.0,
        );
        self.record(AuditEvent {
            actor: "server".into(),
            role: "system".into(),
            client: "local".into(),
            action: format!("breaker.{to}"),
            model: Some(model.to_string()),
            version: Some(version.to_string()),
            outcome: t.reason.clone(),
            status: 0,
            request_id: String::new(),
            input_sha256: None,
            class: None,
        });
    }

    /// Count a failure by class, model and version (empty labels when not known).
    pub(crate) fn count_failure(&self, class: FailureClass, model: &str, version: &str) {
        self.metrics().inc(
            "pno_failures_total",
            format!("class=\"{class}\",{}", model_labels(model, version)),
            1.0,
        );
    }

    /// The audit log, when the server keeps one.
    pub(crate) fn audit(&self) -> Option<&AuditLog> {
        self.inner.audit.as_ref()
    }
    /// The metrics.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
    /// Token buckets per API key.
    pub(crate) fn key_limiter(&self) -> &RateLimiter {
        &self.inner.key_limiter
    }
    /// Token buckets per client address.
    pub(crate) fn ip_limiter(&self) -> &RateLimiter {
        &self.inner.ip_limiter
    }
    /// Lockout after failed authentication.
    pub(crate) fn lockout(&self) -> &Lockout {
        &self.inner.lockout
    }
    /// The compute device.
    pub(crate) fn device(&self) -> &Device {
        &self.inner.device
    }

    /// A fresh request id (16 hex digits).
    pub(crate) fn next_id(&self) -> String {
        let v = self.inner.ids.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}", v.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// A fresh seed for a request that names none.
    pub(crate) fn next_seed(&self) -> u64 {
        let v = self.inner.seeds.fetch_add(1, Ordering::Relaxed);
        (v.wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 1
    }

    /// What an inference request for `m` may contain.
    pub(crate) fn input_spec(&self, m: &LoadedVersion) -> InputSpec {
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

    /// Append to the audit log, when there is one; a failed append is logged, never an error.
    pub(crate) fn record(&self, event: AuditEvent) {
        let Some(log) = &self.inner.audit else {
            return;
        };
        if let Err(e) = log.append(event) {
            tracing::error!(error = %e, class = "transient", "audit log append failed");
            self.count_failure(FailureClass::Transient, "", "");
            self.metrics()
                .inc("pno_audit_append_failures_total", String::new(), 1.0);
        }
    }
}

/// The bulkheads the configuration asks for.
fn bulkheads(config: &ServeConfig) -> Bulkheads {
    let l = &config.limits;
    let (c, q) = config.model_bulkhead("");
    let sizes = config
        .models
        .keys()
        .map(|name| {
            let (concurrency, queue) = config.model_bulkhead(name);
            (name.clone(), Size { concurrency, queue })
        })
        .collect();
    Bulkheads::new(
        Size {
            concurrency: l.max_concurrency,
            queue: l.max_queue,
        },
        Size {
            concurrency: c,
            queue: q,
        },
        sizes,
    )
}
