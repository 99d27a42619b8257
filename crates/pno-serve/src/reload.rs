//! Configuration hot reload with validation and rollback (after Prometheus and nginx): on
//! SIGHUP, on `POST /v2/admin/config/reload`, or when the watched file changes, the new file is
//! read and validated; settings that cannot change without re-binding (the listen address, the
//! repository, the keys and audit files, connection limits, drain timing) are named in the
//! rejection; models whose loading settings changed are loaded anew and answer a smoke
//! inference; TLS files are read again (a renewed certificate is a change, one that does not
//! parse or match its key a rejection); only then is the new configuration swapped in — rate limiters and lockouts keep
//! their state under the new settings, bulkheads are rebuilt only when their sizes changed,
//! breakers start closed when their settings changed. Anything that fails leaves the old
//! configuration serving (models put back as they were). Every attempt is audited with the keys
//! it changed, and `/metrics` has `pno_config_last_reload_successful`, its timestamp and the
//! config hash.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use serde_json::Value;

use crate::audit::AuditEvent;
use crate::config::ServeConfig;
use crate::error::ServeError;
use crate::resilience::Guards;
pub use crate::state::ConfigSource;
use crate::state::{AppState, Live, config_hash, now_s};

/// Keys that need a restart: a reload that changes one is rejected, naming it.
const RESTART_ONLY: [&str; 11] = [
    "replica",
    "listen",
    "repository",
    "keys",
    "audit",
    "limits.header_timeout_ms",
    "limits.max_connections",
    "limits.max_requests_per_connection",
    "shutdown",
    "watch_config",
    "tracing",
];

/// Why a reload was rejected (the old configuration keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The server was started without a config file.
    #[error("no config file to reload (start with --config FILE)")]
    NoSource,
    /// The file is missing, malformed or has a bad value.
    #[error("the new config is invalid: {0}")]
    Invalid(ServeError),
    /// It changes settings that need a restart.
    #[error("the new config changes settings that need a restart: {}", .0.join(", "))]
    RestartOnly(Vec<String>),
    /// A model whose settings changed did not load or failed its smoke inference.
    #[error("model `{model}` under the new config: {reason}")]
    Model {
        /// Model.
        model: String,
        /// Why.
        reason: String,
    },
}

/// What a successful reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Dotted keys whose values changed.
    pub changed: Vec<String>,
    /// The new config hash.
    pub hash: String,
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

/// Dotted keys whose values differ between `a` and `b`.
pub(crate) fn changed_keys(a: &ServeConfig, b: &ServeConfig) -> Vec<String> {
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    flatten("", &serde_json::to_value(a).unwrap_or(Value::Null), &mut fa);
    flatten("", &serde_json::to_value(b).unwrap_or(Value::Null), &mut fb);
    let keys: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    keys.into_iter()
        .filter(|k| fa.get(*k) != fb.get(*k))
        .cloned()
        .collect()
}

fn restart_only(changed: &[String]) -> Vec<String> {
    changed
        .iter()
        .filter(|k| {
            RESTART_ONLY
                .iter()
                .any(|r| *k == r || k.starts_with(&format!("{r}.")))
        })
        .cloned()
        .collect()
}

/// Models whose loading settings changed: named under `models.NAME.version_policy` or
/// `.require_gate`, or every loaded model when `require_gate` or `retry` changed.
fn models_to_reload(st: &AppState, changed: &[String]) -> Vec<String> {
    let mut out: BTreeSet<String> = BTreeSet::new();
    let all = changed
        .iter()
        .any(|k| k == "require_gate" || k.starts_with("retry."));
    if all {
        out.extend(st.repository().loaded().into_iter().map(|(m, _)| m));
    }
    for k in changed {
        if let Some(rest) = k.strip_prefix("models.")
            && let Some((name, field)) = rest.split_once('.')
            && (field.starts_with("version_policy") || field == "require_gate")
        {
            out.insert(name.to_string());
        }
    }
    out.into_iter().collect()
}

fn bulkheads_changed(changed: &[String]) -> bool {
    changed.iter().any(|k| {
        k == "limits.max_concurrency"
            || k == "limits.max_queue"
            || k.starts_with("bulkhead.")
            || (k.starts_with("models.")
                && (k.ends_with(".max_concurrency") || k.ends_with(".max_queue")))
    })
}

/// One smoke inference of `model` version `v`: a finite input of the training grid, two draws.
pub(crate) fn smoke_prediction(
    st: &AppState,
    model: &str,
    v: u64,
    cancel: Option<&std::sync::atomic::AtomicBool>,
) -> Result<pno_models::Predictive, String> {
    let m = st
        .repository()
        .get(model, Some(&v.to_string()))
        .map_err(|e| e.message)?;
    let f = &m.model.file;
    let grid = f.grid.clone();
    let points: usize = grid.iter().product();
    let x = vec![0.5f32; f.in_channels * points];
    let req = pno_run::PredictRequest {
        x: &x,
        n: 1,
        grid: &grid,
        n_samples: 2,
        seed: 0,
        batch: 1,
        cancel,
    };
    m.model
        .predict(&req, st.device())
        .map_err(|e| format!("version {v}: smoke inference failed: {e}"))
}

/// A finite answer, or why not.
pub(crate) fn check_finite(v: u64, p: &pno_models::Predictive) -> Result<(), String> {
    if p.mean.iter().chain(&p.std).all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(format!(
            "version {v}: smoke inference gave non-finite values"
        ))
    }
}

/// One smoke inference of every served version of `model`: a finite answer to a finite input.
fn smoke(st: &AppState, model: &str) -> Result<(), String> {
    for v in st.repository().loaded_versions(model) {
        check_finite(v, &smoke_prediction(st, model, v, None)?)?;
    }
    Ok(())
}

impl AppState {
    /// Where reloads read the configuration from.
    pub fn set_config_source(&self, source: ConfigSource) {
        *self
            .reload_state()
            .source
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(source);
    }

    /// Reload the configuration (see the module docs); `by` is who asked (`sighup`, `watch`, a
    /// key id). The old configuration keeps serving when it fails.
    pub async fn reload(&self, by: &str) -> Result<Reloaded, ReloadError> {
        let rs = self.reload_state();
        let _one = rs.running.lock().await;
        let st = self.clone();
        let result = tokio::task::spawn_blocking(move || st.reload_blocking())
            .await
            .unwrap_or_else(|_| {
                Err(ReloadError::Model {
                    model: "?".into(),
                    reason: "the reload task panicked".into(),
                })
            });
        let (outcome, status, class) = match &result {
            Ok(r) => (
                format!("ok: {} (hash {})", r.changed.join(", "), r.hash),
                200,
                None,
            ),
            Err(e) => (format!("rejected: {e}"), 400, Some("input".to_string())),
        };
        rs.ok.store(result.is_ok(), Ordering::SeqCst);
        if let Ok(r) = &result {
            rs.at_s.store(now_s(), Ordering::SeqCst);
            *rs.hash.lock().unwrap_or_else(|p| p.into_inner()) = r.hash.clone();
            tracing::info!(by, changed = ?r.changed, hash = %r.hash, "config reloaded");
        } else if let Err(e) = &result {
            tracing::error!(by, error = %e, class = "input", "config reload rejected; the previous config keeps serving");
        }
        self.record_async(AuditEvent {
            actor: by.to_string(),
            role: "system".into(),
            client: "local".into(),
            action: "config.reload".into(),
            outcome,
            status,
            class,
            ..AuditEvent::default()
        })
        .await;
        result
    }

    fn reload_blocking(&self) -> Result<Reloaded, ReloadError> {
        let new = {
            let src = self
                .reload_state()
                .source
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let src = src.as_ref().ok_or(ReloadError::NoSource)?;
            src().map_err(ReloadError::Invalid)?
        };
        let old = self.live();
        let mut changed = changed_keys(&old.config, &new);
        let mut fixed = restart_only(&changed);
        if old.config.tls.is_some() != new.tls.is_some() {
            fixed.push("tls (turning TLS on or off)".into());
        }
        if !fixed.is_empty() {
            return Err(ReloadError::RestartOnly(fixed));
        }
        // The certificate, key and client CA are read again every time: a renewed certificate
        // at the same path is a change.
        let tls = crate::state::load_tls(&new).map_err(ReloadError::Invalid)?;
        crate::state::check_receivers(&new).map_err(ReloadError::Invalid)?;
        let digest =
            |t: &Option<std::sync::Arc<crate::tls::TlsSetup>>| t.as_ref().map(|t| t.digest.clone());
        if digest(&tls) != digest(&old.tls) && !changed.iter().any(|k| k == "tls.files") {
            changed.push("tls.files".into());
        }
        drop(old);
        let hash = config_hash(&new);
        if changed.is_empty() {
            return Ok(Reloaded { changed, hash });
        }
        // Models first: load under the new settings and smoke-test; put back on failure.
        let reload = models_to_reload(self, &changed);
        if !reload.is_empty() {
            let snapshots: Vec<_> = reload
                .iter()
                .map(|n| (n.clone(), self.repository().snapshot(n)))
                .collect();
            let before = self
                .repository()
                .set_settings(crate::repository::Settings::of(&new));
            for name in &reload {
                let r = self
                    .repository()
                    .load(name, None)
                    .map_err(|e| e.to_string())
                    .and_then(|_| smoke(self, name));
                if let Err(reason) = r {
                    // Put every model back exactly as it was (the same loaded artifacts).
                    self.repository().set_settings(before);
                    for (n, snap) in snapshots {
                        self.repository().restore(&n, snap);
                    }
                    return Err(ReloadError::Model {
                        model: name.clone(),
                        reason,
                    });
                }
            }
        } else {
            self.repository()
                .set_settings(crate::repository::Settings::of(&new));
        }
        // Then the swap.
        let keep = (!bulkheads_changed(&changed)).then(|| self.bulkheads());
        if changed.iter().any(|k| k.starts_with("breaker.")) {
            self.set_guards(Guards::new(new.breaker));
        }
        self.reconfigure_limits(&new);
        self.set_live(Live::new(new, keep, tls));
        Ok(Reloaded { changed, hash })
    }
}

/// Reload whenever the file at `path` changes (polled every `every`; a change must hold for one
/// more poll before it is read, so half-written files and ConfigMap symlink swaps settle).
pub async fn watch(state: AppState, path: std::path::PathBuf, every: std::time::Duration) {
    let read = |p: &std::path::Path| std::fs::read(p).ok().map(|b| pno_core::sha256_hex(&b));
    let mut seen = read(&path);
    let mut pending: Option<Option<String>> = None;
    loop {
        tokio::time::sleep(every).await;
        let now = read(&path);
        match &pending {
            Some(p) if *p == now => {
                pending = None;
                seen = now;
                let _ = state.reload("watch").await;
            }
            _ if now != seen => pending = Some(now),
            _ => pending = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_dotted_and_restart_only_ones_are_named() {
        let a = ServeConfig::default();
        let mut b = a.clone();
        b.limits.max_queue = 7;
        b.breaker.window = 9;
        b.listen = "127.0.0.1:9".into();
        let c = changed_keys(&a, &b);
        assert_eq!(c, ["breaker.window", "limits.max_queue", "listen"]);
        assert_eq!(restart_only(&c), ["listen"]);
        assert!(bulkheads_changed(&c));
        assert_eq!(config_hash(&a), config_hash(&a.clone()));
        assert_ne!(config_hash(&a), config_hash(&b));
    }
}
