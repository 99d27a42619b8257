//! The server's answer to its own faults, one mechanism each, reused by every request path:
//! [`bulkhead`] (a gate and bounded queue per model under a global ceiling), [`breaker`] (a
//! circuit breaker per model version), [`degrade`] (fewer draws under pressure), [`cancel`]
//! (stop computing when the deadline passes or the client leaves), and [`Guards`], the health
//! of each loaded version (its breaker and latency average) that version choice and fallback
//! read.

pub(crate) mod breaker;
pub(crate) mod bulkhead;
pub(crate) mod cancel;
pub(crate) mod degrade;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::config::BreakerConfig;

/// The health of one model version: its breaker and its compute-latency average.
#[derive(Debug)]
pub(crate) struct Guard {
    /// The circuit breaker.
    pub(crate) breaker: breaker::Breaker,
    /// Compute latency EWMA (ms).
    pub(crate) latency: degrade::Ewma,
}

/// Every version's [`Guard`], made on first use.
#[derive(Debug)]
pub(crate) struct Guards {
    cfg: BreakerConfig,
    map: Mutex<BTreeMap<(String, u64), Arc<Guard>>>,
}

impl Guards {
    /// Guards whose breakers use `cfg`.
    pub(crate) fn new(cfg: BreakerConfig) -> Self {
        Self {
            cfg,
            map: Mutex::new(BTreeMap::new()),
        }
    }

    /// The guard of `model` `version`.
    pub(crate) fn get(&self, model: &str, version: u64) -> Arc<Guard> {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((model.to_string(), version))
            .or_insert_with(|| {
                Arc::new(Guard {
                    breaker: breaker::Breaker::new(self.cfg),
                    latency: degrade::Ewma::default(),
                })
            })
            .clone()
    }
}
