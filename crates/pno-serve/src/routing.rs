//! Which version answers a model's unpinned requests, and the automated rollback that changes it.
//!
//! By default the newest loaded version serves. An operator can **pin** a loaded version (`POST
//! /v2/repository/models/{name}/pin`), and unpinned requests go there until unpinned. The
//! **rollback** policy (`[rollback]`) takes a version out when it is unhealthy for `windows`
//! consecutive windows — coverage collapsed (the binomial test on feedback), the server-side
//! error rate or the p99 latency over its threshold, or (when `on_drift`) its inputs drifted —
//! and routes its unpinned traffic to the newest older loaded version with a passing gate record
//! (`gate.json`); without one the model is marked degraded and the version keeps serving. A
//! rolled-back version stays out until an operator loads the model again (or a new version is
//! promoted and loaded); one rollback per model per `cooldown_s` at most, so it never flaps.
//! Requests that name a version are never rerouted. The request path is the breaker's: a
//! rolled-back version is skipped exactly where an open breaker's fallback happens.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// `[rollback]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RollbackConfig {
    /// Roll back unhealthy versions.
    pub enabled: bool,
    /// Consecutive unhealthy windows (of `alerting.window_s`) before a rollback.
    pub windows: u32,
    /// At most one rollback per model in this many seconds.
    pub cooldown_s: u64,
    /// A collapsed coverage (online calibration) is unhealthy.
    pub on_coverage_collapse: bool,
    /// Drifted inputs are unhealthy (off by default: drift says the inputs moved, not that the
    /// model is wrong on them).
    pub on_drift: bool,
    /// A server-side error rate above this is unhealthy (0: off).
    pub error_rate: f64,
    /// A p99 latency above this (ms) is unhealthy (0: off).
    pub p99_ms: f64,
    /// Windows with fewer requests do not count (error rate, latency).
    pub min_requests: u64,
    /// Roll back only to versions with a passing gate record (`pno promote`); false: to the
    /// newest older loaded version.
    pub require_gate: bool,
}

impl Default for RollbackConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            windows: 3,
            cooldown_s: 600,
            on_coverage_collapse: true,
            on_drift: false,
            error_rate: 0.5,
            p99_ms: 0.0,
            min_requests: 10,
            require_gate: true,
        }
    }
}

impl RollbackConfig {
    /// Check ranges; `Err` names the key.
    pub fn validate(&self) -> Result<(), (String, &'static str, String)> {
        let bad = |k: &str, e: &'static str, g: String| Err((format!("rollback.{k}"), e, g));
        if self.windows == 0 || self.windows > 1000 {
            return bad("windows", "1 to 1000", self.windows.to_string());
        }
        if !(self.error_rate.is_finite() && (0.0..=1.0).contains(&self.error_rate)) {
            return bad(
                "error_rate",
                "a fraction in [0, 1] (0: off)",
                self.error_rate.to_string(),
            );
        }
        if !(self.p99_ms.is_finite() && self.p99_ms >= 0.0) {
            return bad(
                "p99_ms",
                "milliseconds, at least 0 (0: off)",
                self.p99_ms.to_string(),
            );
        }
        if self.enabled
            && !self.on_coverage_collapse
            && !self.on_drift
            && self.error_rate == 0.0
            && self.p99_ms == 0.0
        {
            return bad(
                "enabled",
                "some condition to roll back on (on_coverage_collapse, on_drift, error_rate or p99_ms)",
                "every condition off".into(),
            );
        }
        Ok(())
    }
}

/// A version taken out by the rollback.
#[derive(Debug, Clone, Serialize)]
pub struct RolledBack {
    /// When (unix s).
    pub at_s: u64,
    /// Where its traffic went (`None`: nowhere to go, the model is degraded).
    pub to: Option<u64>,
    /// The evidence.
    pub reason: String,
}

/// One model's routing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Route {
    /// The version an operator pinned.
    pub pinned: Option<u64>,
    /// Versions rolled back, with why.
    pub rolled_back: BTreeMap<u64, RolledBack>,
    /// The last rollback (unix s), for the cool-down.
    pub last_rollback_s: Option<u64>,
    /// Unhealthy windows in a row, per version.
    #[serde(skip)]
    streak: BTreeMap<u64, u32>,
}

/// Where unpinned requests of a model go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The newest loaded version (nothing special).
    Newest,
    /// This version, pinned by an operator.
    Version(u64),
    /// This version, where a rollback moved the newest one's traffic.
    Rolled(u64),
    /// The newest, though it was rolled back: nothing else can serve (answer marked degraded).
    Degraded,
}

/// Every model's routing.
#[derive(Debug, Default)]
pub struct Routing {
    models: Mutex<BTreeMap<String, Route>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Routing {
    /// Where an unpinned request of `model` goes, given its loaded versions.
    pub fn target(&self, model: &str, loaded: &[u64]) -> Target {
        let ms = lock(&self.models);
        let Some(r) = ms.get(model) else {
            return Target::Newest;
        };
        if let Some(p) = r.pinned
            && loaded.contains(&p)
        {
            return Target::Version(p);
        }
        let Some(&newest) = loaded.iter().max() else {
            return Target::Newest;
        };
        match r.rolled_back.get(&newest) {
            None => Target::Newest,
            Some(rb) => match rb.to {
                Some(v) if loaded.contains(&v) => Target::Rolled(v),
                _ => Target::Degraded,
            },
        }
    }

    /// Pin `version` (or unpin with `None`).
    pub fn pin(&self, model: &str, version: Option<u64>) {
        lock(&self.models)
            .entry(model.to_string())
            .or_default()
            .pinned = version;
    }

    /// An operator loaded the model again: its rolled-back versions may serve again.
    pub fn loaded_again(&self, model: &str) {
        if let Some(r) = lock(&self.models).get_mut(model) {
            r.rolled_back.clear();
            r.streak.clear();
        }
    }

    /// One window's health of `model`/`version`; `Some(reason)` is unhealthy. Returns true when
    /// this makes `windows` in a row and the version should be rolled back (not already out, not
    /// in the model's cool-down).
    pub fn observe(
        &self,
        model: &str,
        version: u64,
        unhealthy: Option<&str>,
        now: u64,
        cfg: &RollbackConfig,
    ) -> bool {
        let mut ms = lock(&self.models);
        let r = ms.entry(model.to_string()).or_default();
        let s = r.streak.entry(version).or_default();
        if unhealthy.is_none() {
            *s = 0;
            return false;
        }
        *s += 1;
        *s >= cfg.windows
            && !r.rolled_back.contains_key(&version)
            && r.last_rollback_s.is_none_or(|t| now >= t + cfg.cooldown_s)
    }

    /// Take `version` out, sending its traffic to `to`.
    pub fn roll_back(&self, model: &str, version: u64, to: Option<u64>, reason: String, now: u64) {
        let mut ms = lock(&self.models);
        let r = ms.entry(model.to_string()).or_default();
        r.rolled_back.insert(
            version,
            RolledBack {
                at_s: now,
                to,
                reason,
            },
        );
        r.last_rollback_s = Some(now);
        r.streak.remove(&version);
    }

    /// Every model's routing.
    pub fn status(&self) -> BTreeMap<String, Route> {
        lock(&self.models).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_unhealthy_for_the_windows_is_rolled_back_once_and_stays_out() {
        let cfg = RollbackConfig {
            windows: 3,
            cooldown_s: 100,
            ..Default::default()
        };
        let r = Routing::default();
        let loaded = [1, 2];
        assert_eq!(r.target("m", &loaded), Target::Newest);
        // Two bad windows, a good one: the count restarts.
        assert!(!r.observe("m", 2, Some("coverage"), 10, &cfg));
        assert!(!r.observe("m", 2, Some("coverage"), 20, &cfg));
        assert!(!r.observe("m", 2, None, 30, &cfg));
        assert!(!r.observe("m", 2, Some("coverage"), 40, &cfg));
        assert!(!r.observe("m", 2, Some("coverage"), 50, &cfg));
        assert!(r.observe("m", 2, Some("coverage"), 60, &cfg));
        r.roll_back("m", 2, Some(1), "coverage".into(), 60);
        assert_eq!(r.target("m", &loaded), Target::Rolled(1));
        // Out stays out: no second rollback of it, and v1 failing inside the cool-down waits.
        for t in 0..5 {
            assert!(!r.observe("m", 2, Some("coverage"), 70 + t, &cfg));
        }
        for t in 0..5 {
            assert!(!r.observe("m", 1, Some("errors"), 70 + t, &cfg));
        }
        assert!(
            r.observe("m", 1, Some("errors"), 160, &cfg),
            "after the cool-down"
        );
        // A pin wins over the rollback; unpinning returns to it.
        r.pin("m", Some(2));
        assert_eq!(r.target("m", &loaded), Target::Version(2));
        r.pin("m", None);
        assert_eq!(r.target("m", &loaded), Target::Rolled(1));
        // Loading the model again brings the version back.
        r.loaded_again("m");
        assert_eq!(r.target("m", &loaded), Target::Newest);
        // Nowhere to go: degraded.
        r.roll_back("m", 2, None, "coverage".into(), 400);
        assert_eq!(r.target("m", &loaded), Target::Degraded);
        // A pinned version that is not loaded is ignored.
        r.pin("m", Some(9));
        assert_eq!(r.target("m", &loaded), Target::Degraded);
        assert!(
            RollbackConfig {
                on_coverage_collapse: false,
                error_rate: 0.0,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }
}
