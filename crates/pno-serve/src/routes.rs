//! Route templates, named once, and what each protected route does: its [`Action`] (audit
//! name, refusal wording, metrics class), looked up from the template axum matched. A leaf of
//! the server's modules: the router, admission and handlers all read it.

use axum::extract::MatchedPath;
use axum::http::Method;

pub(crate) const LIVE: &str = "/v2/health/live";
pub(crate) const READY: &str = "/v2/health/ready";
pub(crate) const SERVER: &str = "/v2";
pub(crate) const OPENAPI: &str = "/v2/openapi.json";
pub(crate) const METRICS: &str = "/metrics";
pub(crate) const MODEL: &str = "/v2/models/{name}";
pub(crate) const MODEL_V: &str = "/v2/models/{name}/versions/{version}";
pub(crate) const MODEL_READY: &str = "/v2/models/{name}/ready";
pub(crate) const MODEL_READY_V: &str = "/v2/models/{name}/versions/{version}/ready";
pub(crate) const INFER: &str = "/v2/models/{name}/infer";
pub(crate) const INFER_V: &str = "/v2/models/{name}/versions/{version}/infer";
pub(crate) const REPO_INDEX: &str = "/v2/repository/index";
pub(crate) const REPO_LOAD: &str = "/v2/repository/models/{name}/load";
pub(crate) const REPO_UNLOAD: &str = "/v2/repository/models/{name}/unload";
pub(crate) const REPO_PIN: &str = "/v2/repository/models/{name}/pin";
pub(crate) const KEYS: &str = "/v2/admin/keys";
pub(crate) const KEY: &str = "/v2/admin/keys/{id}";
pub(crate) const KEY_ROTATE: &str = "/v2/admin/keys/{id}/rotate";
pub(crate) const AUDIT_VERIFY: &str = "/v2/admin/audit/verify";
pub(crate) const CONFIG_RELOAD: &str = "/v2/admin/config/reload";
pub(crate) const HEALTH_DETAILS: &str = "/v2/admin/health/details";
pub(crate) const ALERTS: &str = "/v2/admin/alerts";
pub(crate) const SERIES: &str = "/v2/admin/series";
pub(crate) const FEEDBACK: &str = "/v2/models/{name}/feedback";
pub(crate) const CALIBRATION: &str = "/v2/models/{name}/calibration";
pub(crate) const STATS: &str = "/v2/models/{name}/stats";
pub(crate) const STATS_V: &str = "/v2/models/{name}/versions/{version}/stats";
/// Injected faults (test builds with the `fault-injection` feature only).
#[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
pub(crate) const FAULTS: &str = "/v2/debug/faults";

/// What a protected route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Read a model's metadata.
    ModelMetadata,
    /// Read a model's readiness (not audited).
    ModelReady,
    /// Read a model's statistics and health (not audited).
    ModelStats,
    /// Infer.
    Infer,
    /// List the repository.
    RepositoryIndex,
    /// Load a model.
    ModelLoad,
    /// Unload a model.
    ModelUnload,
    /// Pin (or unpin) the version that serves unpinned requests.
    ModelPin,
    /// List the API keys.
    KeysList,
    /// Create an API key.
    KeysCreate,
    /// Revoke an API key.
    KeysRevoke,
    /// Rotate an API key (a new secret, the old one kept for a grace period).
    KeysRotate,
    /// Verify the audit log.
    AuditVerify,
    /// Reload the configuration (audited by the reload itself, with the keys it changed).
    ConfigReload,
    /// Read the dependencies' health (not audited).
    HealthDetails,
    /// Send ground truth for a prediction.
    Feedback,
    /// Read the online calibration (not audited).
    Calibration,
    /// Read the alerts and the detectors (not audited).
    Alerts,
    /// Read the in-memory time series (not audited).
    Series,
}

impl Action {
    /// The `action` of its audit records; `None` when the route is not audited.
    pub(crate) fn audit_name(self) -> Option<&'static str> {
        Some(match self {
            Action::ModelMetadata => "model.metadata",
            Action::ModelReady | Action::ModelStats => return None,
            Action::Infer => "infer",
            Action::Feedback => "feedback",
            Action::Calibration => return None,
            Action::RepositoryIndex => "repository.index",
            Action::ModelLoad => "model.load",
            Action::ModelUnload => "model.unload",
            Action::ModelPin => "model.pin",
            Action::KeysList => "keys.list",
            Action::KeysCreate => "keys.create",
            Action::KeysRevoke => "keys.revoke",
            Action::KeysRotate => "keys.rotate",
            Action::AuditVerify => "audit.verify",
            Action::ConfigReload | Action::HealthDetails | Action::Alerts | Action::Series => {
                return None;
            }
        })
    }

    /// The action's name in audit records (every action has one; refusals of the actions
    /// whose successes are not audited are recorded under it).
    pub(crate) fn name(self) -> &'static str {
        match self.audit_name() {
            Some(n) => n,
            None => match self {
                Action::ModelReady => "model.ready",
                Action::ConfigReload => "config.reload",
                Action::HealthDetails => "health.details",
                Action::Alerts => "alerts.list",
                Action::Calibration => "calibration.read",
                Action::Series => "series.read",
                _ => "model.stats",
            },
        }
    }

    /// What the caller wants to do, as a refusal words it ("… is needed to load models").
    pub(crate) fn what(self) -> &'static str {
        match self {
            Action::ModelMetadata => "read model metadata",
            Action::ModelReady => "read model readiness",
            Action::ModelStats => "read model statistics",
            Action::Infer => "infer",
            Action::Feedback => "send feedback",
            Action::Calibration => "read the online calibration",
            Action::RepositoryIndex => "list the repository",
            Action::ModelLoad => "load models",
            Action::ModelUnload => "unload models",
            Action::ModelPin => "pin model versions",
            Action::KeysList | Action::KeysCreate | Action::KeysRevoke | Action::KeysRotate => {
                "manage keys"
            }
            Action::AuditVerify => "read the audit log",
            Action::ConfigReload => "reload the configuration",
            Action::HealthDetails => "read the health details",
            Action::Alerts => "read the alerts",
            Action::Series => "read the time series",
        }
    }

    /// The route class in `pno_http_requests_total`.
    pub(crate) fn class(self) -> &'static str {
        match self {
            Action::ModelMetadata
            | Action::ModelReady
            | Action::ModelStats
            | Action::Feedback
            | Action::Calibration => "model",
            Action::Infer => "infer",
            Action::RepositoryIndex
            | Action::ModelLoad
            | Action::ModelUnload
            | Action::ModelPin => "repository",
            Action::KeysList
            | Action::KeysCreate
            | Action::KeysRevoke
            | Action::KeysRotate
            | Action::AuditVerify
            | Action::ConfigReload
            | Action::HealthDetails
            | Action::Alerts
            | Action::Series => "admin",
        }
    }

    /// True when the route's `{name}` is a model: checked before anything else (a bad one is a
    /// 400 ahead of the role check) and recorded in the audit log.
    pub(crate) fn names_a_model(self) -> bool {
        matches!(
            self,
            Action::ModelMetadata
                | Action::ModelReady
                | Action::ModelStats
                | Action::Infer
                | Action::Feedback
                | Action::Calibration
                | Action::ModelLoad
                | Action::ModelUnload
                | Action::ModelPin
        )
    }
}

/// The action of a protected route, by the template axum matched; `None` for the public routes
/// and unmatched paths.
pub(crate) fn action(method: &Method, route: &MatchedPath) -> Option<Action> {
    action_of(method, route.as_str())
}

pub(crate) fn action_of(method: &Method, route: &str) -> Option<Action> {
    Some(match route {
        MODEL | MODEL_V => Action::ModelMetadata,
        MODEL_READY | MODEL_READY_V => Action::ModelReady,
        STATS | STATS_V => Action::ModelStats,
        INFER | INFER_V => Action::Infer,
        FEEDBACK => Action::Feedback,
        CALIBRATION => Action::Calibration,
        REPO_INDEX => Action::RepositoryIndex,
        REPO_LOAD => Action::ModelLoad,
        REPO_UNLOAD => Action::ModelUnload,
        REPO_PIN => Action::ModelPin,
        KEYS if method == Method::POST => Action::KeysCreate,
        KEYS => Action::KeysList,
        KEY => Action::KeysRevoke,
        KEY_ROTATE => Action::KeysRotate,
        AUDIT_VERIFY => Action::AuditVerify,
        CONFIG_RELOAD => Action::ConfigReload,
        HEALTH_DETAILS => Action::HealthDetails,
        ALERTS => Action::Alerts,
        SERIES => Action::Series,
        _ => return None,
    })
}

/// The `class` label of `pno_http_requests_total`: `public`, the protected route's class
/// (`model`, `infer`, `repository`, `admin`), or `other` for a path no route matched.
pub(crate) fn class(method: &Method, route: Option<&MatchedPath>) -> &'static str {
    match route {
        None => "other",
        Some(r) => action(method, r).map_or("public", Action::class),
    }
}
