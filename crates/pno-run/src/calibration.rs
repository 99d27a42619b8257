//! The calibration record a run carries once `pno calibrate` has scaled its spread.

use serde::{Deserialize, Serialize};

use pno_core::Split;

/// How the conformal quantile is taken.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum ConformalMode {
    /// Pooled point scores: expected pointwise coverage ≈ level.
    Pointwise,
    /// Per-function scores: P(a function has ≥ level of its points covered) ≥ 1 − δ.
    Function {
        /// Allowed fraction of functions below the level.
        delta: f64,
    },
}

/// What `pno calibrate` recorded (`model.json` → `calibration`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationRecord {
    /// Nominal level.
    pub level: f64,
    /// Quantile rule.
    #[serde(flatten)]
    pub mode: ConformalMode,
    /// Spread scale `k` (applied to the uncalibrated draws).
    pub spread_scale: f64,
    /// Split used (`None`, written `"all"`: every sample of the file).
    #[serde(with = "pno_core::split_or_all")]
    pub split: Option<Split>,
    /// Calibration functions.
    pub n_functions: usize,
    /// Draws per function.
    pub n_samples: usize,
    /// SHA-256 of the calibration data.
    pub data_sha256: String,
    /// Pointwise coverage at `level` on the calibration samples before scaling.
    pub coverage_before: f64,
    /// … and after.
    pub coverage_after: f64,
}
