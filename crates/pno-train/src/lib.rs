//! Training and inference runs for neural operators: data loading with provenance, splits and
//! normalisation; a seeded, fault-tolerant training loop (NaN/Inf guards with rollback, global
//! gradient clipping, atomic checksummed checkpoints, exact resume); self-contained run folders;
//! prediction in physical units.

pub mod calibrate;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod optim;
pub mod predict;
pub mod run;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod trainer;

pub use calibrate::{CalibrateOptions, CalibrationRecord, ConformalMode, calibrate};
pub use config::RunConfig;
pub use error::{Result, TrainError};
pub use eval::{EvalOptions, Evaluation, Split, evaluate};
pub use predict::Prediction;
pub use run::{TrainedModel, load_trained};
pub use trainer::{Progress, Quiet, Summary, TrainOptions, train};
