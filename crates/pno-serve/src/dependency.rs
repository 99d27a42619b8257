//! What the scheduled health checks (`checks`) found: each dependency's state, kept in
//! `Dependencies` on the shared state and read by readiness, `/metrics` and
//! `GET /v2/admin/health/details`. A leaf: it imports nothing of the server.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

/// One dependency's state.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Dependency {
    /// Its name: `audit`, `disk:audit`, `disk:repository`, `repository`, `memory`,
    /// `model:NAME/VERSION`.
    pub name: String,
    /// Its kind (what `health.critical` names).
    pub kind: &'static str,
    /// Whether its failure turns readiness false.
    pub critical: bool,
    /// `ok`, `failing`, or `skipped` (a busy model is not probed).
    pub state: &'static str,
    /// Unix seconds of the last check.
    pub checked_at: u64,
    /// Unix seconds of the last passing check.
    pub last_ok: Option<u64>,
    /// The last error.
    pub error: Option<String>,
    /// Failing checks in a row.
    pub consecutive_failures: u32,
    /// How long the last check took (ms).
    pub latency_ms: f64,
}

/// Every dependency by name.
#[derive(Debug, Default)]
pub(crate) struct Dependencies {
    pub(crate) map: Mutex<BTreeMap<String, Dependency>>,
}

impl Dependencies {
    /// All of them, by name.
    pub(crate) fn list(&self) -> Vec<Dependency> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The first failing critical dependency, with its error.
    pub(crate) fn failing_critical(&self) -> Option<String> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|d| d.critical && d.state == "failing")
            .map(|d| {
                format!(
                    "dependency {} failing: {}",
                    d.name,
                    d.error.as_deref().unwrap_or("?")
                )
            })
    }
}
