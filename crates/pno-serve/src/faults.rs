//! Fault injection for tests: compiled only with the `fault-injection` cargo feature, which a
//! release build refuses (`compile_error!` in `lib.rs`), so no normal binary has it.
//!
//! `PUT /v2/debug/faults` (operator role) with one fault:
//!
//! - `{"model": "m", "version": "1", "mode": M, "ms": 200, "p": 0.3, "count": 5}` makes calls
//!   to that version (any version when `version` is absent) `fail` (a persistent model failure),
//!   `panic`, `hang` (until cancelled, at most 300 s), be `slow` (`ms` more, cancellable),
//!   return `nan`, or be `flaky` (a transient failure with probability `p`); `off` removes it.
//!   `count` limits it to that many calls.
//! - `{"io": "repository" | "audit", "count": N}` makes the next N reads of a version from the
//!   repository, or appends to the audit log, fail with a transient I/O error (retries absorb
//!   them).
//!
//! `GET` lists the model faults, `DELETE` clears them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Deserialize;

use crate::failure::{FailureClass, JobError};
use crate::resilience::cancel::Token;

/// What a faulty version does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mode {
    /// A persistent model failure.
    Fail,
    /// A panic inside the compute.
    Panic,
    /// Never returns until cancelled.
    Hang,
    /// `ms` slower.
    Slow,
    /// A non-finite output.
    Nan,
    /// A transient failure with probability `p`.
    Flaky,
    /// No fault.
    Off,
}

/// One model fault.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Fault {
    /// Model.
    pub(crate) model: String,
    /// Version (None: every version).
    #[serde(default)]
    pub(crate) version: Option<String>,
    /// Mode.
    pub(crate) mode: Mode,
    /// Extra time for `slow` (ms).
    #[serde(default)]
    pub(crate) ms: u64,
    /// Probability for `flaky`.
    #[serde(default)]
    pub(crate) p: f64,
    /// Calls left (None: until removed).
    #[serde(default)]
    pub(crate) count: Option<u64>,
}

/// The injected faults.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    map: Mutex<BTreeMap<(String, Option<String>), Fault>>,
}

impl Faults {
    /// Set (or with `off`, remove) a fault.
    pub(crate) fn set(&self, f: Fault) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let key = (f.model.clone(), f.version.clone());
        if f.mode == Mode::Off {
            m.remove(&key);
        } else {
            m.insert(key, f);
        }
    }
    /// Remove every fault.
    pub(crate) fn clear(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
    /// Every fault.
    pub(crate) fn list(&self) -> Vec<Fault> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
    /// The fault a call to `model` `version` would get, without using up its count (the
    /// scheduled health checks look; only requests consume).
    pub(crate) fn peek(&self, model: &str, version: u64) -> Option<Fault> {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let v = version.to_string();
        [(model.to_string(), Some(v)), (model.to_string(), None)]
            .into_iter()
            .find_map(|k| m.get(&k).cloned())
    }

    /// The fault for a call to `model` `version` (one use of its count).
    pub(crate) fn take(&self, model: &str, version: u64) -> Option<Fault> {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let v = version.to_string();
        let key = [(model.to_string(), Some(v)), (model.to_string(), None)]
            .into_iter()
            .find(|k| m.contains_key(k))?;
        let f = m.get_mut(&key)?;
        let out = f.clone();
        if let Some(c) = &mut f.count {
            *c = c.saturating_sub(1);
            if *c == 0 {
                m.remove(&key);
            }
        }
        Some(out)
    }
}

/// What to do after the prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// Nothing.
    Nothing,
    /// Make the mean non-finite.
    Nan,
}

/// Sleep up to `d`, in small steps, returning early (false) when `token` is cancelled.
fn sleep_unless_cancelled(d: Duration, token: &Token) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if token.why().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5).min(end - Instant::now()));
    }
    true
}

/// Apply a fault before the prediction.
pub(crate) fn before(f: Option<&Fault>, token: &Token) -> Result<After, JobError> {
    let Some(f) = f else {
        return Ok(After::Nothing);
    };
    match f.mode {
        Mode::Off => Ok(After::Nothing),
        Mode::Fail => Err(JobError::Injected(
            FailureClass::Persistent,
            "injected failure: this version fails every call".into(),
        )),
        Mode::Panic => std::panic::panic_any("injected panic"),
        Mode::Hang => {
            sleep_unless_cancelled(Duration::from_secs(300), token);
            Err(JobError::Cancelled)
        }
        Mode::Slow => {
            if sleep_unless_cancelled(Duration::from_millis(f.ms), token) {
                Ok(After::Nothing)
            } else {
                Err(JobError::Cancelled)
            }
        }
        Mode::Nan => Ok(After::Nan),
        Mode::Flaky => {
            if rand::rng().random::<f64>() < f.p {
                Err(JobError::Injected(
                    FailureClass::Transient,
                    "injected transient fault".into(),
                ))
            } else {
                Ok(After::Nothing)
            }
        }
    }
}

/// Apply a fault after the prediction.
pub(crate) fn after(a: After, pred: &mut pno_models::Predictive) {
    if a == After::Nan
        && let Some(v) = pred.mean.first_mut()
    {
        *v = f32::NAN;
    }
}
