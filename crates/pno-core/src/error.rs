//! The error type of `pno-core`.

use std::path::PathBuf;

/// Errors raised by `pno-core`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on `path` failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done (`create`, `write`, `rename`, ...).
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A value did not parse or was out of range.
    #[error("invalid {field}: expected {expected}, got {got:?}")]
    Invalid {
        /// The field or argument name.
        field: &'static str,
        /// What a valid value looks like.
        expected: String,
        /// What was found.
        got: String,
    },
}

/// Result alias for `pno-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
