//! Errors: [`ServeError`] for setup (config, repository, keys, audit log) and [`ApiError`], the
//! HTTP answer of a failed request (always a JSON body `{"error": ..., "class": ...}`).

use std::path::PathBuf;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::failure::FailureClass;

/// Result alias.
pub type Result<T> = std::result::Result<T, ServeError>;

/// What can go wrong setting up or running the server outside a single request.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A configuration key has a bad value.
    #[error("config key `{key}`: expected {expected}, got {got}")]
    Config {
        /// Dotted key.
        key: String,
        /// Expectation.
        expected: String,
        /// What was found.
        got: String,
    },
    /// A file could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// Operation.
        op: &'static str,
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A model version could not be loaded.
    #[error("model `{model}` version {version} ({path}): {reason}")]
    Load {
        /// Model name.
        model: String,
        /// Version.
        version: String,
        /// Run folder.
        path: PathBuf,
        /// Why (checksum mismatch, bad config, corrupt weights…).
        reason: String,
        /// Persistent (a bad artifact) or transient (I/O that failed through its retries).
        class: FailureClass,
    },
    /// A model version would take the loaded versions past the memory budget's share
    /// (`resources.load_fraction`).
    #[error("model `{model}` version {version} ({path}): {reason}")]
    Memory {
        /// Model name.
        model: String,
        /// Version.
        version: String,
        /// Run folder.
        path: PathBuf,
        /// Its estimate, what is used, the budget.
        reason: String,
    },
    /// The model repository has no usable model or version.
    #[error("model repository {path}: {what}")]
    Repository {
        /// Repository (or model) folder.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A keys file is malformed.
    #[error("keys file {path}: {what}")]
    Keys {
        /// File.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The audit log could not be written, or its hash chain is broken.
    #[error(transparent)]
    Audit(#[from] pno_audit::AuditError),
}

/// `map_err` helper for I/O errors.
pub(crate) fn io_err(
    op: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> ServeError {
    let path = path.to_path_buf();
    move |source| ServeError::Io { op, path, source }
}

/// A failed request: an HTTP status, a message, its [`FailureClass`] and optionally a
/// `Retry-After` (seconds). The body is `{"error": message, "class": class}`, plus
/// `"breaker": "open"` when an open circuit breaker refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Status.
    pub status: StatusCode,
    /// Message, sent as `{"error": message}`.
    pub message: String,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
    /// The failure class (from the status unless set).
    pub class: FailureClass,
    /// True when an open circuit breaker refused the request.
    pub breaker_open: bool,
}

impl ApiError {
    /// An error with a status and message, classed by its status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            class: FailureClass::of_status(status.as_u16()),
            breaker_open: false,
        }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 503 with `Retry-After`.
    pub fn unavailable(message: impl Into<String>, retry_after: u64) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message).retry(retry_after)
    }
    /// 429 with `Retry-After`.
    pub fn too_many(message: impl Into<String>, retry_after: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, message).retry(retry_after)
    }
    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    /// Add a `Retry-After`.
    pub fn retry(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }
    /// Set the class.
    pub fn class(mut self, class: FailureClass) -> Self {
        self.class = class;
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message, "class": self.class.as_str() });
        if self.breaker_open {
            body["breaker"] = "open".into();
        }
        let mut r = (self.status, body.to_string()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r.extensions_mut().insert(self.class);
        r
    }
}
