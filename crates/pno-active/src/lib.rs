//! Uncertainty-driven active learning for neural operators, closed with our own solvers.
//!
//! Start from a small labelled set, train, score a pool of candidate inputs drawn from the
//! PDE's input distribution by the model's predictive uncertainty
//! ([`acquisition`]: `variance`, `energy`, `bald`, or `random` as the baseline), label the
//! chosen batch by running the seeded generator for exactly those sample indices, retrain
//! (optionally from the previous round's weights), and repeat up to the budget; every round is
//! evaluated on a fixed test set, and the learning curves of several seeds are compared with
//! random acquisition ([`report`]). State is written atomically after every round and training
//! resumes from its checkpoints, so a killed run continues and gives the uninterrupted result.
//!
//! Sits above training (`pno-train`) and the generators (`pno-solvers`, `pno-gen`), below the
//! CLI (`pno active`). Module order: `acquisition` → `pool` → `plan` → `runner` → `report`.

pub mod acquisition;
pub mod error;
pub mod plan;
pub mod pool;
pub mod report;
pub mod runner;

pub use acquisition::{Acquisition, BatchRule};
pub use error::{ActiveError, Result};
pub use plan::{Plan, Setup};
pub use report::{Curves, curves};
pub use runner::{ActiveOptions, ActiveProgress, ArmState, RoundRecord, load_arms, run};
