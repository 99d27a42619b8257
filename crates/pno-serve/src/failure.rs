//! The failure taxonomy: every failure on the request path and in background work has one
//! [`FailureClass`]. It is in the JSON error body, the log line, the audit record and
//! `pno_failures_total{class,model,version}`, and it decides recovery: input and security
//! failures never count against a model's health; transient ones may succeed again (retried for
//! I/O, answered with `Retry-After`); persistent and internal ones count towards a version's
//! circuit breaker.

use std::fmt;

/// What kind of failure this is, and so whose fault and what recovery fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureClass {
    /// The caller's fault: a malformed, oversized or out-of-range request, an unknown model.
    Input,
    /// Authentication, authorisation, lockout, rate limits.
    Security,
    /// May succeed again: timeouts, overload, an open breaker, I/O that can be retried.
    Transient,
    /// Will fail again until someone acts: a corrupt artifact, a model that fails every call
    /// (a non-finite output from a finite, in-range input).
    Persistent,
    /// A bug: a caught panic, a broken invariant.
    Internal,
}

impl FailureClass {
    /// Every class, in label order.
    pub const ALL: [FailureClass; 5] = [
        FailureClass::Input,
        FailureClass::Security,
        FailureClass::Transient,
        FailureClass::Persistent,
        FailureClass::Internal,
    ];

    /// The label (`input`, `security`, `transient`, `persistent`, `internal`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Input => "input",
            FailureClass::Security => "security",
            FailureClass::Transient => "transient",
            FailureClass::Persistent => "persistent",
            FailureClass::Internal => "internal",
        }
    }

    /// The class an HTTP status implies when nothing more specific is known: 401, 403 and 429
    /// are security; other 4xx input; 503 and 504 transient; other 5xx internal.
    pub fn of_status(status: u16) -> Self {
        match status {
            401 | 403 | 429 => FailureClass::Security,
            400..=499 => FailureClass::Input,
            503 | 504 => FailureClass::Transient,
            _ => FailureClass::Internal,
        }
    }

    /// True for the classes that are the model's fault (persistent, internal).
    pub fn is_model_fault(self) -> bool {
        matches!(self, FailureClass::Persistent | FailureClass::Internal)
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The model and version that served (or refused) a request: a response extension that the
/// envelope reads for `pno_failures_total{class,model,version}`.
#[derive(Debug, Clone)]
pub(crate) struct ServedBy {
    /// Model.
    pub(crate) model: String,
    /// Version.
    pub(crate) version: String,
}

/// Why the compute job failed.
#[derive(Debug)]
pub(crate) enum JobError {
    /// The model refused or failed.
    Model(pno_run::RunError),
    /// The prediction stopped on its cancellation token.
    Cancelled,
    /// A non-finite output; `in_range` when the input was finite and within the model's range.
    NonFinite { in_range: bool },
    /// The model panicked.
    Panicked,
    /// An injected fault (test builds only).
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    Injected(FailureClass, String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_classes() {
        assert_eq!(FailureClass::of_status(400), FailureClass::Input);
        assert_eq!(FailureClass::of_status(404), FailureClass::Input);
        assert_eq!(FailureClass::of_status(413), FailureClass::Input);
        assert_eq!(FailureClass::of_status(401), FailureClass::Security);
        assert_eq!(FailureClass::of_status(429), FailureClass::Security);
        assert_eq!(FailureClass::of_status(503), FailureClass::Transient);
        assert_eq!(FailureClass::of_status(504), FailureClass::Transient);
        assert_eq!(FailureClass::of_status(500), FailureClass::Internal);
        assert!(!FailureClass::Input.is_model_fault());
        assert!(!FailureClass::Security.is_model_fault());
        assert!(!FailureClass::Transient.is_model_fault());
        assert!(FailureClass::Persistent.is_model_fault());
    }
}
