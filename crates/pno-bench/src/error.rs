//! Errors of the benchmark harness.

use std::path::PathBuf;

/// Result alias.
pub type Result<T> = std::result::Result<T, BenchError>;

/// What can go wrong reading a suite, running its cells or writing the report.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A suite key has a bad value.
    #[error("suite {path}: key `{key}`: expected {expected}, got {got}")]
    Suite {
        /// Suite file.
        path: PathBuf,
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
    /// A recorded result file is malformed.
    #[error("{path}: expected {expected}, got {got}")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// Expectation.
        expected: String,
        /// What was found.
        got: String,
    },
    /// A core operation (atomic write…) failed.
    #[error(transparent)]
    Core(#[from] pno_core::Error),
    /// A PDE generator failed.
    #[error(transparent)]
    Solver(#[from] pno_solvers::Error),
    /// The data engine failed.
    #[error(transparent)]
    Data(#[from] pno_data::Error),
    /// Dataset generation failed.
    #[error(transparent)]
    Gen(#[from] pno_gen::GenError),
    /// A run folder could not be read.
    #[error(transparent)]
    Run(#[from] pno_run::RunError),
    /// Training, calibration or evaluation failed.
    #[error(transparent)]
    Train(#[from] pno_train::TrainError),
    /// A metric could not be computed.
    #[error(transparent)]
    Metrics(#[from] pno_metrics::Error),
    /// An option or environment value is out of range.
    #[error("{option}: expected {expected}, got {got}")]
    Option {
        /// The option or variable.
        option: String,
        /// Expectation.
        expected: String,
        /// What was found.
        got: String,
    },
    /// Parts of a suite do not merge.
    #[error("merge: {what}")]
    Merge {
        /// What is wrong (names the parts and cells).
        what: String,
    },
    /// A cell failed; the message names it.
    #[error("cell {cell}: {source}")]
    Cell {
        /// `pde/method/seed`.
        cell: String,
        /// Cause.
        source: Box<BenchError>,
    },
    /// A plot could not be drawn.
    #[error("plot {path}: {what}")]
    Plot {
        /// Output file.
        path: PathBuf,
        /// Cause.
        what: String,
    },
}

pub(crate) fn io_err(
    op: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> BenchError {
    let path = path.to_path_buf();
    move |source| BenchError::Io { op, path, source }
}
