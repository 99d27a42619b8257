//! The error type of `pno-run`.

use std::path::PathBuf;

/// Result alias for `pno-run`.
pub type Result<T, E = RunError> = std::result::Result<T, E>;

/// What can go wrong reading, writing or predicting with a run folder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
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
    /// A run file is malformed or corrupted.
    #[error("{path}: {what}: expected {expected}, got {got}")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// What is wrong.
        what: String,
        /// Expectation.
        expected: String,
        /// What was found.
        got: String,
    },
    /// The run was written in a format this version does not read.
    #[error(
        "{path}: run format {got:?} is not supported: this pno reads {expected:?}; use the pno \
         version that wrote the run, or retrain it with this one"
    )]
    Format {
        /// `model.json`.
        path: PathBuf,
        /// The format this version reads.
        expected: &'static str,
        /// The format found.
        got: String,
    },
    /// The model rejected its input or weights.
    #[error(transparent)]
    Model(#[from] pno_models::ModelError),
    /// The data engine failed (normaliser shape mismatch…).
    #[error(transparent)]
    Data(#[from] pno_data::Error),
    /// A core routine failed (atomic writes).
    #[error(transparent)]
    Core(#[from] pno_core::Error),
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(std::io::Error) -> RunError + 'a {
    move |source| RunError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
