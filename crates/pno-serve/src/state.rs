//! [`AppState`]: what every layer and handler shares — the configuration, the model repository,
//! the keys, the audit log, the metrics, the admission state (concurrency gate, rate limiters,
//! lockout, drain flag) and the compute device.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
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

/// Marks a response whose audit record is written, so the envelope does not write another.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Audited;

/// The configuration and what is built from it alone; a config reload replaces it whole (a
/// request reads the one in force at each step).
#[derive(Debug)]
pub(crate) struct Live {
    /// The configuration.
    pub(crate) config: Arc<ServeConfig>,
    /// Per-model bulkheads and the global ceiling.
    pub(crate) bulkheads: Arc<Bulkheads>,
    /// Trusted proxies.
    pub(crate) proxies: Vec<crate::proxy::Cidr>,
    /// TLS (read from `[tls]`'s files when this was built).
    pub(crate) tls: Option<Arc<crate::tls::TlsSetup>>,
}

impl Live {
    /// Build from `config`, keeping `bulkheads` when their sizes did not change, with `tls`
    /// loaded from `config.tls` by the caller (see [`load_tls`]).
    pub(crate) fn new(
        config: ServeConfig,
        bulkheads: Option<Arc<Bulkheads>>,
        tls: Option<Arc<crate::tls::TlsSetup>>,
    ) -> Self {
        Self {
            tls,
            bulkheads: bulkheads.unwrap_or_else(|| Arc::new(make_bulkheads(&config))),
            proxies: config
                .trusted_proxies
                .iter()
                .filter_map(|p| crate::proxy::Cidr::parse(p).ok())
                .collect(),
            config: Arc::new(config),
        }
    }
}

/// Read `config.tls`'s files (none without `[tls]`); warns when the certificate has expired.
pub(crate) fn load_tls(config: &ServeConfig) -> Result<Option<Arc<crate::tls::TlsSetup>>> {
    let Some(t) = &config.tls else {
        return Ok(None);
    };
    let setup = crate::tls::load(t)?;
    if let Some(at) = setup.not_after
        && at < now_s()
    {
        tracing::warn!(
            cert = %t.cert.display(),
            expired = %crate::auth::utc(at),
            "the TLS certificate has expired: clients will refuse it"
        );
    }
    Ok(Some(Arc::new(setup)))
}

/// Read the alert receivers' CA files (their delivery tasks start with the monitor's clock, so
/// a bad file is refused here, at start and on reload, naming the key).
pub(crate) fn check_receivers(config: &ServeConfig) -> Result<()> {
    for (i, r) in config.alerting.receivers.iter().enumerate() {
        crate::webhook::Webhook::new(
            &r.url,
            r.ca.as_deref(),
            &format!("alerting.receivers[{i}].url"),
            &format!("alerting.receivers[{i}].ca"),
        )?;
    }
    Ok(())
}

/// A checkpoint note just written.
#[derive(Debug, Clone)]
pub struct Checkpointed {
    /// Its file.
    pub file: std::path::PathBuf,
    /// The signed note.
    pub note: String,
}

/// An [`AppState`] that does not keep it alive.
#[derive(Clone, Debug)]
pub(crate) struct WeakState(std::sync::Weak<Inner>);

impl WeakState {
    /// The state, while it lives.
    pub(crate) fn upgrade(&self) -> Option<AppState> {
        self.0.upgrade().map(|inner| AppState { inner })
    }
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// This server's replica id (fixed for the process: `replica` is restart-only).
    replica: String,
    /// What a config reload swaps: the configuration and what is built from it alone.
    live: RwLock<Arc<Live>>,
    repo: Repository,
    keys: KeyStore,
    audit: Option<AuditLog>,
    signer: Option<pno_audit::checkpoint::SignerKey>,
    webhook: Option<crate::webhook::Webhook>,
    dependencies: crate::dependency::Dependencies,
    monitor: crate::alerting::Monitor,
    drift: crate::drift::Drift,
    batcher: crate::batching::Batcher,
    feedback: crate::feedback::Feedback,
    routing: crate::routing::Routing,
    checkpointed: AtomicU64,
    metrics: Metrics,
    guards: RwLock<Arc<Guards>>,
    reload: ReloadState,
    key_limiter: RateLimiter,
    ip_limiter: RateLimiter,
    lockout: Lockout,
    draining: AtomicBool,
    audit_healthy: AtomicBool,
    /// The failed pre-flight checks at start (`name: detail; ...`); `None`: passed or not run.
    preflight: Mutex<Option<String>>,
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
        let replica = crate::replica::resolve(config.replica.as_deref())?;
        let keys = match &config.keys {
            Some(p) => KeyStore::open(p)?,
            None => KeyStore::empty(),
        };
        // Changes by `pno keys` (or another server) take effect within a second.
        keys.watch(crate::auth::WATCH_INTERVAL);
        let audit = match &config.audit.path {
            Some(p) => Some(
                AuditLog::open(p, config.audit.fsync, config.audit.fsync_every)?
                    .with_replica(&replica)?,
            ),
            None => None,
        };
        let signer = match &config.audit.checkpoint_key {
            None => None,
            Some(k) => {
                let text = std::fs::read_to_string(k).map_err(|e| ServeError::Config {
                    key: "audit.checkpoint_key".into(),
                    expected: "a signer key file written by `pno audit keygen`".into(),
                    got: format!("{}: {e}", k.display()),
                })?;
                Some(pno_audit::checkpoint::SignerKey::parse(&text).map_err(|e| {
                    ServeError::Config {
                        key: "audit.checkpoint_key".into(),
                        expected: "a signer key file written by `pno audit keygen`".into(),
                        got: format!("{}: {e}", k.display()),
                    }
                })?)
            }
        };
        if !config.repository.is_dir() {
            return Err(ServeError::Repository {
                path: config.repository,
                what: "not a folder (expected <repository>/<model>/<version>/ run folders)".into(),
            });
        }
        let webhook = match &config.audit.checkpoint_webhook {
            None => None,
            Some(url) => Some(crate::webhook::Webhook::new(
                url,
                config.audit.checkpoint_webhook_ca.as_deref(),
                "audit.checkpoint_webhook",
                "audit.checkpoint_webhook_ca",
            )?),
        };
        let tls = load_tls(&config)?;
        check_receivers(&config)?;
        let repo = Repository::new(
            &config.repository,
            crate::repository::Settings::of(&config),
            device.clone(),
        );
        let r = &config.rate_limit;
        let random: u64 = rand::random();
        Ok(Self {
            inner: Arc::new(Inner {
                replica,
                guards: RwLock::new(Arc::new(Guards::new(config.breaker))),
                reload: ReloadState::new(&config),
                key_limiter: RateLimiter::new(r.per_key_rps, r.per_key_burst),
                ip_limiter: RateLimiter::new(r.per_ip_rps, r.per_ip_burst),
                lockout: Lockout::new(
                    r.max_auth_failures,
                    Duration::from_secs(r.auth_failure_window_s),
                    Duration::from_secs(r.lockout_s),
                    r.lockout_escalation,
                    Duration::from_secs(r.max_lockout_s),
                ),
                repo,
                keys,
                audit,
                signer,
                webhook,
                dependencies: Default::default(),
                monitor: Default::default(),
                drift: Default::default(),
                batcher: Default::default(),
                feedback: Default::default(),
                routing: Default::default(),
                checkpointed: AtomicU64::new(u64::MAX),
                metrics: Metrics::default(),
                draining: AtomicBool::new(false),
                audit_healthy: AtomicBool::new(true),
                preflight: Mutex::new(None),
                device,
                #[cfg(feature = "fault-injection")]
                faults: crate::faults::Faults::default(),
                ids: AtomicU64::new(random),
                seeds: AtomicU64::new(random.rotate_left(17) >> 1),
                live: RwLock::new(Arc::new(Live::new(config, None, tls))),
            }),
        })
    }

    /// This server's replica id ([`crate::replica::resolve`]): in every audit record, checkpoint
    /// origin and metric series it writes.
    pub fn replica(&self) -> &str {
        &self.inner.replica
    }
    /// The configuration in force.
    pub fn config(&self) -> Arc<ServeConfig> {
        self.live().config.clone()
    }
    /// The configuration and what is built from it, in force now.
    pub(crate) fn live(&self) -> Arc<Live> {
        self.inner
            .live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    /// Swap in a new live configuration (a reload).
    pub(crate) fn set_live(&self, live: Live) {
        *self.inner.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
    }
    /// Reload bookkeeping.
    pub(crate) fn reload_state(&self) -> &ReloadState {
        &self.inner.reload
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
    pub fn gate(&self) -> Arc<Gate> {
        self.live().bulkheads.global()
    }
    /// The concurrency gate of one model (its bulkhead).
    pub fn model_gate(&self, model: &str) -> Arc<Gate> {
        self.live().bulkheads.model(model)
    }
    /// Start draining: readiness turns false and new requests are refused with 503.
    pub fn start_drain(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }
    /// True while draining.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }
    /// Record the outcome of the pre-flight checks run at start (`preflight::at_start`):
    /// `Some(failures)` keeps readiness false, naming them, until the server restarts.
    pub fn set_preflight(&self, failures: Option<String>) {
        *self
            .inner
            .preflight
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = failures;
    }

    /// Ready: a model is loaded, not draining, no pre-flight check failed, not overloaded, no
    /// critical dependency failing.
    pub fn readiness(&self) -> std::result::Result<(), String> {
        let preflight = self
            .inner
            .preflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if self.is_draining() {
            Err("draining".into())
        } else if let Some(why) = preflight {
            Err(format!("pre-flight check failed: {why}"))
        } else if !self.inner.repo.any_loaded() {
            Err("no model loaded".into())
        } else if self.gate().saturated() {
            Err("overloaded".into())
        } else if let Some(why) = self.inner.dependencies.failing_critical() {
            Err(why)
        } else {
            Ok(())
        }
    }

    /// The in-process monitor (series, detectors, alerts, receivers).
    pub(crate) fn monitor(&self) -> &crate::alerting::Monitor {
        &self.inner.monitor
    }

    /// Online input drift per version.
    pub(crate) fn drift(&self) -> &crate::drift::Drift {
        &self.inner.drift
    }

    /// The open dynamic batches.
    pub(crate) fn batcher(&self) -> &crate::batching::Batcher {
        &self.inner.batcher
    }

    /// Kept predictions and online calibration.
    pub(crate) fn feedback(&self) -> &crate::feedback::Feedback {
        &self.inner.feedback
    }

    /// Which version serves unpinned requests (pins, rollbacks).
    pub(crate) fn routing(&self) -> &crate::routing::Routing {
        &self.inner.routing
    }

    /// A handle that does not keep the state alive (for callbacks the state itself holds).
    pub(crate) fn downgrade(&self) -> WeakState {
        WeakState(Arc::downgrade(&self.inner))
    }

    /// The dependencies the scheduled health checks track.
    pub(crate) fn dependencies(&self) -> &crate::dependency::Dependencies {
        &self.inner.dependencies
    }

    /// The injected faults (test builds only).
    #[cfg(feature = "fault-injection")]
    pub(crate) fn faults(&self) -> &crate::faults::Faults {
        &self.inner.faults
    }

    /// The per-model bulkheads.
    pub(crate) fn bulkheads(&self) -> Arc<Bulkheads> {
        self.live().bulkheads.clone()
    }
    /// The health of each version (breakers, latency).
    pub(crate) fn guards(&self) -> Arc<Guards> {
        self.inner
            .guards
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    /// New breaker settings: every version starts closed under them.
    pub(crate) fn set_guards(&self, guards: Guards) {
        *self.inner.guards.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(guards);
    }
    /// The rate limiters and the lockout take the settings of `config`.
    pub(crate) fn reconfigure_limits(&self, config: &ServeConfig) {
        let r = &config.rate_limit;
        self.inner
            .key_limiter
            .reconfigure(r.per_key_rps, r.per_key_burst);
        self.inner
            .ip_limiter
            .reconfigure(r.per_ip_rps, r.per_ip_burst);
        self.inner.lockout.reconfigure(
            r.max_auth_failures,
            Duration::from_secs(r.auth_failure_window_s),
            Duration::from_secs(r.lockout_s),
            r.lockout_escalation,
            Duration::from_secs(r.max_lockout_s),
        );
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
        self.record(system_event(
            &format!("breaker.{to}"),
            model,
            &version.to_string(),
            t.reason.clone(),
        ));
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
        let config = self.config();
        let l = &config.limits;
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

    /// Append to the audit log, when there is one; false when the append failed (after its
    /// retries): logged with class `transient`, counted, and `pno_audit_healthy` turns 0 until an
    /// append succeeds. Blocking (the log may fsync and back off): from async code use
    /// [`AppState::record_async`].
    pub(crate) fn record(&self, event: AuditEvent) -> bool {
        let Some(log) = &self.inner.audit else {
            return true;
        };
        match log.append(event) {
            Ok(_) => {
                self.inner.audit_healthy.store(true, Ordering::SeqCst);
                true
            }
            Err(e) => {
                self.inner.audit_healthy.store(false, Ordering::SeqCst);
                tracing::error!(error = %e, class = "transient", "audit log append failed");
                self.count_failure(FailureClass::Transient, "", "");
                self.metrics()
                    .inc("pno_audit_append_failures_total", String::new(), 1.0);
                false
            }
        }
    }

    /// [`AppState::record`] on the blocking pool, so a retry's backoff never stalls a runtime
    /// worker.
    pub(crate) async fn record_async(&self, event: AuditEvent) -> bool {
        if self.inner.audit.is_none() {
            return true;
        }
        let st = self.clone();
        tokio::task::spawn_blocking(move || st.record(event))
            .await
            .unwrap_or(false)
    }

    /// Write a signed checkpoint of the audit log when records were added since the last one:
    /// `<dir>/checkpoint-<size>.txt` and `<dir>/latest.txt`. `Ok(None)` when there is nothing to
    /// do (no log, no key, nothing new). Blocking.
    pub fn write_checkpoint(&self) -> Result<Option<Checkpointed>> {
        let (Some(log), Some(signer)) = (&self.inner.audit, &self.inner.signer) else {
            return Ok(None);
        };
        if log.len() == self.inner.checkpointed.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let (cp, note) = pno_audit::checkpoint::of_log(log, signer)?;
        let config = self.config();
        let dir = config.audit.checkpoint_dir.clone().unwrap_or_else(|| {
            let mut p = log.path().as_os_str().to_owned();
            p.push(".checkpoints");
            std::path::PathBuf::from(p)
        });
        std::fs::create_dir_all(&dir).map_err(crate::error::io_err("create", &dir))?;
        let file = dir.join(format!("checkpoint-{:012}.txt", cp.size));
        pno_core::atomic_write(&file, note.as_bytes()).map_err(|e| {
            crate::error::io_err("write", &file)(std::io::Error::other(e.to_string()))
        })?;
        let latest = dir.join("latest.txt");
        pno_core::atomic_write(&latest, note.as_bytes()).map_err(|e| {
            crate::error::io_err("write", &latest)(std::io::Error::other(e.to_string()))
        })?;
        self.inner.checkpointed.store(cp.size, Ordering::SeqCst);
        tracing::info!(size = cp.size, file = %file.display(), "audit checkpoint written");
        Ok(Some(Checkpointed { file, note }))
    }

    /// Send a checkpoint note to `audit.checkpoint_webhook` (when set), with retries; a
    /// failure is logged and counted.
    pub(crate) async fn deliver_checkpoint(&self, note: &str) {
        let Some(hook) = &self.inner.webhook else {
            return;
        };
        match hook.deliver(note, "text/plain; charset=utf-8").await {
            Ok(status) => {
                self.metrics().inc(
                    "pno_audit_checkpoint_webhook_deliveries_total",
                    String::new(),
                    1.0,
                );
                tracing::debug!(status, "checkpoint delivered to the webhook");
            }
            Err(e) => {
                self.metrics().inc(
                    "pno_audit_checkpoint_webhook_failures_total",
                    String::new(),
                    1.0,
                );
                tracing::error!(error = %e, class = "transient", "checkpoint webhook delivery failed");
            }
        }
    }

    /// Records covered by the last checkpoint written (none: `None`).
    pub(crate) fn checkpointed(&self) -> Option<u64> {
        let v = self.inner.checkpointed.load(Ordering::SeqCst);
        (v != u64::MAX).then_some(v)
    }

    /// False after an audit append failed, until one succeeds.
    pub(crate) fn audit_healthy(&self) -> bool {
        self.inner.audit_healthy.load(Ordering::SeqCst)
    }
}

/// An audit record of something the server decided itself (a breaker moved, an alert fired, a
/// version was rolled back): actor `server`, role `system`, no request.
pub(crate) fn system_event(
    action: &str,
    model: &str,
    version: &str,
    outcome: String,
) -> AuditEvent {
    AuditEvent {
        actor: "server".into(),
        role: "system".into(),
        client: "local".into(),
        action: action.into(),
        model: Some(model.to_string()),
        version: Some(version.to_string()),
        outcome,
        status: 0,
        request_id: String::new(),
        input_sha256: None,
        class: None,
    }
}

/// The bulkheads the configuration asks for.
pub(crate) fn make_bulkheads(config: &ServeConfig) -> Bulkheads {
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

/// Where a reload reads the configuration from (the file plus the command line's overrides).
pub type ConfigSource = Box<dyn Fn() -> crate::Result<ServeConfig> + Send + Sync>;

/// Reload bookkeeping: the source, the last outcome, a lock so reloads never overlap.
pub(crate) struct ReloadState {
    pub(crate) source: Mutex<Option<ConfigSource>>,
    pub(crate) running: tokio::sync::Mutex<()>,
    pub(crate) ok: AtomicBool,
    pub(crate) at_s: AtomicU64,
    pub(crate) hash: Mutex<String>,
}

impl std::fmt::Debug for ReloadState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadState")
            .field("ok", &self.ok)
            .field("at_s", &self.at_s)
            .finish()
    }
}

pub(crate) fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The hash of a configuration (its canonical JSON).
pub(crate) fn config_hash(c: &ServeConfig) -> String {
    let v = serde_json::to_vec(c).unwrap_or_default();
    pno_core::sha256_hex(&v)[..16].to_string()
}

impl ReloadState {
    /// No source yet; the configuration `config` is in force.
    pub(crate) fn new(config: &ServeConfig) -> Self {
        Self {
            source: Mutex::new(None),
            running: tokio::sync::Mutex::new(()),
            ok: AtomicBool::new(true),
            at_s: AtomicU64::new(now_s()),
            hash: Mutex::new(config_hash(config)),
        }
    }
    /// 1 when the last reload succeeded (or none was tried).
    pub(crate) fn last_ok(&self) -> bool {
        self.ok.load(Ordering::SeqCst)
    }
    /// Unix time of the last successful reload (or the start).
    pub(crate) fn last_success_s(&self) -> u64 {
        self.at_s.load(Ordering::SeqCst)
    }
    /// The hash of the configuration in force.
    pub(crate) fn hash(&self) -> String {
        self.hash.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
