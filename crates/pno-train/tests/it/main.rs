//! Training runs on real files: contract, fault tolerance, resume, corruption.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod evaluation;
mod faults;
mod fixtures;
mod gate;
mod reference;
mod runs;

use std::path::{Path, PathBuf};

use pno_train::RunConfig;
use pno_train::testing::{synthetic_npz, tiny_config};

/// A learnable synthetic operator on 16×16 as `dir/data.npz` ([`synthetic_npz`]).
pub(crate) fn synthetic(dir: &Path, n: usize) -> PathBuf {
    synthetic_npz(dir, n).unwrap()
}

/// The small test configuration of `kind` ([`tiny_config`]).
pub(crate) fn config(kind: &str, epochs: usize) -> RunConfig {
    tiny_config(kind, epochs).unwrap()
}
