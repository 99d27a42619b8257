//! Errors of the training crate.

use std::path::PathBuf;

/// Result alias.
pub type Result<T> = std::result::Result<T, TrainError>;

/// What can go wrong preparing, running, checkpointing or loading a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
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
    /// The model rejected its configuration or input.
    #[error(transparent)]
    Model(#[from] pno_models::ModelError),
    /// A run folder could not be read or written.
    #[error(transparent)]
    Run(#[from] pno_run::RunError),
    /// The data engine failed (unreadable file, failed quality check…).
    #[error(transparent)]
    Data(#[from] pno_data::Error),
    /// A metric rejected its input.
    #[error(transparent)]
    Metrics(#[from] pno_metrics::Error),
    /// An evaluation or calibration option does not fit the run or the data.
    #[error("{option}: expected {expected}, got {got}")]
    Option {
        /// The option (`--split`, `--rollout`…).
        option: String,
        /// Expectation.
        expected: String,
        /// What was found.
        got: String,
    },
    /// A gate file has an unknown key or a bad value.
    #[error("gate file {path}: key `{key}`: expected {expected}, got {got}")]
    Gate {
        /// The gate file.
        path: PathBuf,
        /// Dotted key.
        key: String,
        /// Expectation.
        expected: String,
        /// What was found.
        got: String,
    },
    /// The data does not fit the task.
    #[error("data {path}: `{field}`: expected {expected}, got {got}")]
    DataShape {
        /// Dataset path.
        path: PathBuf,
        /// Tensor or field.
        field: String,
        /// Expectation.
        expected: String,
        /// What was found.
        got: String,
    },
    /// The dataset failed its quality gate.
    #[error(
        "data {path} failed its quality check ({failures}); run `pno data check {path}` for the report"
    )]
    DataCheck {
        /// Dataset path.
        path: PathBuf,
        /// Names of the failed checks.
        failures: String,
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
    /// A run-folder or checkpoint file is malformed or corrupted.
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
    /// Training kept producing non-finite losses or gradients.
    #[error(
        "training diverged: {failures} consecutive steps had a non-finite loss or gradient (epoch {epoch}, \
         learning rate reduced to {lr:e}); the last good checkpoint is kept in {run}. Lower `train.lr` \
         or set `train.grad_clip`"
    )]
    Diverged {
        /// Consecutive failures.
        failures: usize,
        /// Epoch.
        epoch: usize,
        /// Last learning rate tried.
        lr: f64,
        /// Run folder.
        run: PathBuf,
    },
}

impl From<pno_core::Error> for TrainError {
    fn from(e: pno_core::Error) -> Self {
        match e {
            pno_core::Error::Io { op, path, source } => TrainError::Io { op, path, source },
            pno_core::Error::Invalid {
                field,
                expected,
                got,
            } => TrainError::Config {
                key: field.to_string(),
                expected,
                got,
            },
            other => TrainError::Config {
                key: "core".into(),
                expected: "success".into(),
                got: other.to_string(),
            },
        }
    }
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(std::io::Error) -> TrainError + 'a {
    move |source| TrainError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn config_err(
    key: &str,
    expected: impl Into<String>,
    got: impl std::fmt::Display,
) -> TrainError {
    TrainError::Config {
        key: key.to_string(),
        expected: expected.into(),
        got: got.to_string(),
    }
}
