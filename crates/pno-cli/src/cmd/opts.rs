//! Options shared by the commands that draw from a trained run, and the fixed-choice values.

use anyhow::Result;
use clap::{Args, ValueEnum};

use pno_core::Split;
use pno_models::burn::tensor::Device;

/// Draws, seed, batching and backend (`eval`, `calibrate`, `predict`).
#[derive(Args, Debug, Clone)]
pub(crate) struct DrawOpts {
    /// Predictive draws per input.
    #[arg(long, short, default_value_t = 100)]
    pub(crate) samples: usize,
    /// Seed of the draws.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Inputs per forward pass.
    #[arg(long, default_value_t = 16)]
    pub(crate) batch: usize,
    /// Backend: cpu, or cuda / cuda:N in a CUDA build.
    #[arg(long, default_value = "cpu")]
    pub(crate) device: String,
}

impl DrawOpts {
    /// The selected backend.
    pub(crate) fn device(&self) -> Result<Device> {
        crate::device::select_device(&self.device)
    }
}

/// Which samples of a dataset (`--split`).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SplitArg {
    /// The recorded held-out test samples (every sample of another file).
    Test,
    /// The recorded validation samples.
    #[value(alias = "validation")]
    Val,
    /// The recorded training samples.
    Train,
    /// The recorded conformal-calibration samples (`data.n_calibration`).
    Calibration,
    /// Every sample of the file.
    All,
}

impl SplitArg {
    /// The split (`None`: every sample).
    pub(crate) fn split(self) -> Option<Split> {
        match self {
            SplitArg::Test => Some(Split::Test),
            SplitArg::Val => Some(Split::Validation),
            SplitArg::Train => Some(Split::Train),
            SplitArg::Calibration => Some(Split::Calibration),
            SplitArg::All => None,
        }
    }
}

/// A split's name in output (`all` for every sample).
pub(crate) fn split_name(split: Option<Split>) -> &'static str {
    split.map_or("all", |s| s.name())
}

/// How the conformal quantile is taken (`--mode`).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModeArg {
    /// Pooled point scores: the expected fraction of covered points is the level.
    Pointwise,
    /// Per-function scores: with probability ≥ 1 − delta a new function is covered at the level.
    Function,
}
