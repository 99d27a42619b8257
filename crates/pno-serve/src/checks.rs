//! Scheduled health checks with dependency tracking (`[health]`): each round probes the audit
//! log's folder (a real write and delete, and whether appends succeed), the free space of the
//! audit and repository folders, that the repository is readable, resident memory against the
//! memory budget, and every loaded version with a smoke inference under a time budget. Each
//! dependency keeps its state, when it was last checked, when it was last fine and its last
//! error; a change of state is logged and audited. A failing dependency of a critical kind turns
//! readiness false until it recovers (`AppState::readiness`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::audit::AuditEvent;
use crate::config::HealthConfig;
use crate::dependency::Dependency;
use crate::resilience::cancel::{Token, Why};
use crate::state::{AppState, now_s};

/// What one probe found.
struct Probe {
    name: String,
    kind: &'static str,
    outcome: Option<Result<(), String>>, // None: skipped
    latency_ms: f64,
}

fn timed(name: String, kind: &'static str, f: impl FnOnce() -> Result<(), String>) -> Probe {
    let t = Instant::now();
    let outcome = Some(f());
    Probe {
        name,
        kind,
        outcome,
        latency_ms: t.elapsed().as_secs_f64() * 1e3,
    }
}

pub(crate) fn folder_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A real write and delete in `dir`.
pub(crate) fn writable(dir: &Path) -> Result<(), String> {
    let probe = dir.join(format!(".pno-health-{}", std::process::id()));
    std::fs::write(&probe, b"ok")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))
}

/// At least `min_mb` MiB free for unprivileged writers in `dir`.
fn free_space(dir: &Path, min_mb: u64) -> Result<(), String> {
    let s = rustix::fs::statvfs(dir).map_err(|e| format!("statvfs {}: {e}", dir.display()))?;
    let free = s.f_bavail.saturating_mul(s.f_frsize);
    let need = min_mb.saturating_mul(1 << 20);
    if free >= need {
        Ok(())
    } else {
        Err(format!(
            "{:.1} MiB free in {}, below health.min_free_mb = {min_mb}",
            free as f64 / f64::from(1u32 << 20),
            dir.display()
        ))
    }
}

/// The blocking probes (files, disk, memory).
fn probe_system(st: &AppState, h: &HealthConfig) -> Vec<Probe> {
    let cfg = st.config();
    let mut out = Vec::new();
    if let Some(log) = st.audit() {
        let dir = folder_of(log.path());
        let healthy = st.audit_healthy();
        out.push(timed("audit".into(), "audit", || {
            writable(&dir)?;
            if healthy {
                Ok(())
            } else {
                Err("the last audit append failed after retries".into())
            }
        }));
        out.push(timed("disk:audit".into(), "disk", || {
            free_space(&dir, h.min_free_mb)
        }));
    }
    let repo = cfg.repository.clone();
    out.push(timed("repository".into(), "repository", || {
        std::fs::read_dir(&repo)
            .map(|_| ())
            .map_err(|e| format!("cannot read {}: {e}", repo.display()))
    }));
    out.push(timed("disk:repository".into(), "disk", || {
        free_space(&repo, h.min_free_mb)
    }));
    out.push(timed("memory".into(), "memory", || {
        let (rss, _) = crate::metrics::process_stats();
        let Some(b) = crate::resources::budget(&cfg.resources) else {
            return Ok(());
        };
        let frac = rss as f64 / b.bytes as f64;
        if frac <= h.memory_fraction {
            Ok(())
        } else {
            Err(format!(
                "resident {:.0} MiB is {:.1} % of the {} budget of {:.0} MiB, above health.memory_fraction = {}",
                rss as f64 / 1048576.0,
                frac * 100.0,
                b.source,
                b.bytes as f64 / 1048576.0,
                h.memory_fraction
            ))
        }
    }));
    out
}

/// One smoke inference of `model` version `v`, stopping when `token` is cancelled (through the
/// injected faults in test builds, looked at without using them up).
fn smoke(st: &AppState, model: &str, v: u64, token: &Token) -> Result<(), String> {
    #[cfg(feature = "fault-injection")]
    let after = {
        let fault = st.faults().peek(model, v);
        crate::faults::before(fault.as_ref(), token)
            .map_err(|e| format!("version {v}: smoke inference failed: {e:?}"))?
    };
    #[allow(unused_mut)]
    let mut p = crate::reload::smoke_prediction(st, model, v, Some(token.flag()))?;
    #[cfg(feature = "fault-injection")]
    crate::faults::after(after, &mut p);
    crate::reload::check_finite(v, &p)
}

/// Cancels its token when dropped: a smoke past its budget, or a check round aborted at
/// shutdown, stops its computation instead of holding a blocking thread.
struct CancelGuard(Token);

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.0.cancel(Why::Deadline);
    }
}

/// Every loaded version's smoke inference, each under `budget` (a busy model is skipped).
async fn probe_models(st: &AppState, budget: Duration) -> Vec<Probe> {
    let mut out = Vec::new();
    for (model, v) in st.repository().loaded() {
        let name = format!("model:{model}/{v}");
        if st.model_gate(&model).waiting() > 0 {
            out.push(Probe {
                name,
                kind: "models",
                outcome: None,
                latency_ms: 0.0,
            });
            continue;
        }
        let t = Instant::now();
        let s = st.clone();
        let m = model.clone();
        let token = Token::default();
        let _guard = CancelGuard(token.clone());
        let job = tokio::task::spawn_blocking(move || smoke(&s, &m, v, &token));
        let outcome = match tokio::time::timeout(budget, job).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(format!("version {v}: the smoke inference panicked")),
            Err(_) => Err(format!(
                "version {v}: no smoke answer within health.smoke_budget_ms = {}",
                budget.as_millis()
            )),
        };
        out.push(Probe {
            name,
            kind: "models",
            outcome: Some(outcome),
            latency_ms: t.elapsed().as_secs_f64() * 1e3,
        });
    }
    out
}

impl AppState {
    /// Run one round of the health checks now; returns every dependency's state.
    pub async fn check_dependencies(&self) -> Vec<Dependency> {
        let h = self.config().health.clone();
        let st = self.clone();
        let hh = h.clone();
        let mut probes = tokio::task::spawn_blocking(move || probe_system(&st, &hh))
            .await
            .unwrap_or_default();
        probes.extend(probe_models(self, Duration::from_millis(h.smoke_budget_ms)).await);
        let now = now_s();
        let mut changes = Vec::new();
        {
            let mut map = self
                .dependencies()
                .map
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // Versions no longer loaded (and folders no longer configured) drop out.
            map.retain(|name, _| probes.iter().any(|p| &p.name == name));
            for p in probes {
                let critical = h.critical.iter().any(|k| k == p.kind);
                let d = map.entry(p.name.clone()).or_insert_with(|| Dependency {
                    name: p.name.clone(),
                    kind: p.kind,
                    critical,
                    state: "unknown",
                    checked_at: 0,
                    last_ok: None,
                    error: None,
                    consecutive_failures: 0,
                    latency_ms: 0.0,
                });
                d.critical = critical;
                let Some(outcome) = p.outcome else {
                    d.state = "skipped";
                    d.checked_at = now;
                    continue;
                };
                let before = d.state;
                d.checked_at = now;
                d.latency_ms = p.latency_ms;
                match outcome {
                    Ok(()) => {
                        d.state = "ok";
                        d.last_ok = Some(now);
                        d.error = None;
                        d.consecutive_failures = 0;
                    }
                    Err(e) => {
                        d.state = "failing";
                        d.error = Some(e);
                        d.consecutive_failures += 1;
                    }
                }
                if before != d.state && !(before == "unknown" && d.state == "ok") {
                    changes.push(d.clone());
                }
            }
        }
        for d in &changes {
            let outcome = match &d.error {
                Some(e) if d.state == "failing" => format!("failing: {e}"),
                _ => "ok".to_string(),
            };
            if d.state == "failing" {
                tracing::warn!(dependency = %d.name, critical = d.critical, error = ?d.error, class = "transient", "dependency failing");
            } else {
                tracing::info!(dependency = %d.name, "dependency recovered");
            }
            self.record_async(AuditEvent {
                actor: "health".into(),
                role: "system".into(),
                client: "local".into(),
                action: "health.dependency".into(),
                model: Some(d.name.clone()),
                outcome,
                status: if d.state == "failing" { 503 } else { 200 },
                class: (d.state == "failing").then(|| "transient".to_string()),
                ..AuditEvent::default()
            })
            .await;
        }
        self.dependencies().list()
    }
}

/// The schedule: a round at once, then every `health.interval_s` (read anew each round, so a
/// reload changes it).
pub(crate) async fn run(state: AppState) {
    loop {
        if state.config().health.enabled {
            state.check_dependencies().await;
        }
        let every = state.config().health.interval_s.max(1);
        tokio::time::sleep(Duration::from_secs(every)).await;
    }
}
