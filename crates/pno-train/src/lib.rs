//! Training, evaluation and calibration of neural operators on top of the run artifact
//! (`pno-run`): data loading with provenance, splits and normalisation; a seeded,
//! fault-tolerant training loop (NaN/Inf guards with rollback, global gradient clipping, atomic
//! checksummed checkpoints, exact resume) that writes run folders; evaluation of a run with
//! every metric and calibration curve; split-conformal calibration of its spread.
//!
//! Module order (no cycles): `config` → `data` → {`checkpoint`, `optim`} → `trainer`;
//! `data` → `eval` → {`calibrate`, `gate` → `promote`}. Everything reads and writes runs through `pno-run`.

pub mod calibrate;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod gate;
pub mod optim;
pub mod promote;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod trainer;
pub mod watch;

pub use calibrate::{CalibrateOptions, calibrate};
pub use config::RunConfig;
pub use error::{Result, TrainError};
pub use eval::{EvalOptions, Evaluation, evaluate};
pub use gate::{Evidence, Gate};
pub use promote::{PromoteOptions, Promotion, promote};
pub use trainer::{Progress, Quiet, Summary, TrainOptions, train, train_from};
