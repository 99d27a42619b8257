//! The error type of `pno-active`.

use std::path::PathBuf;

/// What can go wrong in an active-learning run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActiveError {
    /// A setting (command-line flag) has a bad value.
    #[error("{flag}: expected {expected}, got {got}")]
    Option {
        /// The flag, e.g. `--budget`.
        flag: String,
        /// What was expected.
        expected: String,
        /// What was given.
        got: String,
    },
    /// A key of the run or generator config does not fit active learning.
    #[error("config key `{key}`: expected {expected}, got {got}")]
    Config {
        /// The key, e.g. `data.n_test`.
        key: String,
        /// What was expected.
        expected: String,
        /// What was found.
        got: String,
    },
    /// Re-running in an existing output folder with different settings.
    #[error(
        "{flag}: expected {recorded} as recorded in {} (a re-run continues the recorded run; use a new --out to change settings), got {given}",
        path.display()
    )]
    Mismatch {
        /// The flag whose value differs.
        flag: String,
        /// The recorded value.
        recorded: String,
        /// The value given now.
        given: String,
        /// The state file.
        path: PathBuf,
    },
    /// An acquisition score was not finite (a model producing NaN/Inf), or negative under the
    /// power batch rule.
    #[error(
        "acquisition {acquisition}: score of pool sample {index} is {score} (expected a finite number; non-negative for the power batch rule)"
    )]
    Score {
        /// Acquisition name.
        acquisition: &'static str,
        /// Generator sample index.
        index: u64,
        /// The score.
        score: f64,
    },
    /// A file of the output folder is not what this version writes.
    #[error("{}: expected {expected}, got {got}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was expected.
        expected: String,
        /// What was found.
        got: String,
    },
    /// A filesystem operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// Operation.
        op: &'static str,
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The solver refused its parameters or failed on a sample.
    #[error(transparent)]
    Solver(#[from] pno_solvers::Error),
    /// The test set could not be generated.
    #[error(transparent)]
    Gen(#[from] pno_gen::GenError),
    /// A dataset could not be written or read.
    #[error(transparent)]
    Data(#[from] pno_data::Error),
    /// A run folder could not be read or predicted with.
    #[error(transparent)]
    Run(#[from] pno_run::RunError),
    /// Training or evaluation failed.
    #[error(transparent)]
    Train(#[from] pno_train::TrainError),
}

/// Result alias for `pno-active`.
pub type Result<T, E = ActiveError> = std::result::Result<T, E>;

pub(crate) fn option_err(
    flag: &str,
    expected: impl Into<String>,
    got: impl std::fmt::Display,
) -> ActiveError {
    ActiveError::Option {
        flag: flag.to_string(),
        expected: expected.into(),
        got: got.to_string(),
    }
}

pub(crate) fn config_err(
    key: &str,
    expected: impl Into<String>,
    got: impl std::fmt::Display,
) -> ActiveError {
    ActiveError::Config {
        key: key.to_string(),
        expected: expected.into(),
        got: got.to_string(),
    }
}

pub(crate) fn io_err(
    op: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> ActiveError {
    let path = path.to_path_buf();
    move |source| ActiveError::Io { op, path, source }
}
