//! The error type of `pno-audit`.

use std::path::PathBuf;

/// Result alias for `pno-audit`.
pub type Result<T, E = AuditError> = std::result::Result<T, E>;

/// What can go wrong writing, verifying or proving an audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A file could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// Operation.
        op: &'static str,
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A record is malformed, out of sequence, or breaks the chain.
    #[error("audit log {path}: record {line}: {what}")]
    Record {
        /// The log file (or segment).
        path: PathBuf,
        /// 1-based line (= record) number in that file.
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// A checkpoint, key or proof does not verify, or is malformed.
    #[error("{what}: expected {expected}, got {got}")]
    Invalid {
        /// What was checked.
        what: String,
        /// Expectation.
        expected: String,
        /// What was found.
        got: String,
    },
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(std::io::Error) -> AuditError + 'a {
    move |source| AuditError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn invalid(
    what: impl Into<String>,
    expected: impl Into<String>,
    got: impl std::fmt::Display,
) -> AuditError {
    AuditError::Invalid {
        what: what.into(),
        expected: expected.into(),
        got: got.to_string(),
    }
}
