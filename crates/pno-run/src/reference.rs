//! `reference.json`: the reference statistics a run keeps for drift monitoring.
//!
//! Training records, beside the weights, what its inputs and its predictions looked like:
//!
//! - **inputs**: the per-sample drift features ([`pno_data::field_features`]: per channel the
//!   mean, the std and the share of the spectral power in log-spaced bands of `|k|`) of up to
//!   [`MAX_INPUT_ROWS`] training inputs in physical units, plus per-feature summaries (mean, std,
//!   min, max, quantiles at [`QUANTILE_LEVELS`]);
//! - **predictions**: the same features of the predicted mean on up to [`MAX_SPREAD_ROWS`]
//!   validation inputs;
//! - **spread**: for those validation inputs, the predictive spread of each sample ([`sample_spread`]:
//!   the predicted std averaged over channels and points), drawn with [`SPREAD_DRAWS`] draws.
//!
//! The tables hold the per-sample values, not only summaries, so that a server can test the
//! features of recent requests against them ([`ReferenceStats::request_features`] computes them
//! for one request exactly as training did; `pno_metrics::drift::drift_report` compares).
//!
//! **Resolution.** Band edges depend on the grid (`k_max = ⌊min axis / 2⌋`), and a resampled
//! field's std and band shares change with the resolution, so features are only comparable on
//! the grid they were computed at ([`ReferenceStats::grid`]): for a request on another grid
//! [`ReferenceStats::request_features`] answers `None`, and the server leaves that request out
//! of drift monitoring (counting it) instead of comparing incomparable numbers.
//!
//! **Subsamples** are deterministic: [`subsample`] keeps evenly spaced entries of the split's
//! (sorted) sample indices, and the table records which ([`FeatureTable::indices`]).
//!
//! Runs written before this file existed have none: [`ReferenceStats::load`] answers `None`
//! and they serve without drift monitoring.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use pno_data::{DriftFeatures, Tensor, TensorData, field_features};

use crate::error::{Result, RunError};
use crate::files::{read_json, write_json};

/// The file in the run folder.
pub const REFERENCE_FILE: &str = "reference.json";
/// The format tag this version writes and reads (`reference.json` → `format`).
pub const REFERENCE_FORMAT: &str = "pno-reference-1";
/// Quantile levels of every summary (linear interpolation between order statistics, numpy's
/// default, as `pno_metrics::quantile_sorted`).
pub const QUANTILE_LEVELS: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];
/// Most training inputs whose features are kept.
pub const MAX_INPUT_ROWS: usize = 1000;
/// Most validation inputs predicted for the spread and prediction tables.
pub const MAX_SPREAD_ROWS: usize = 128;
/// Predictive draws per validation input (the server's default `limits.default_samples`).
pub const SPREAD_DRAWS: usize = 32;
/// Spectral bands per channel ([`pno_data::DEFAULT_BANDS`], as `pno data drift`).
pub const BANDS: usize = pno_data::DEFAULT_BANDS;
/// Tensor name of the input features (`x[0].mean`, `x[0].k1`, ...).
pub const INPUT_TENSOR: &str = "x";
/// Tensor name of the predicted-mean features (`y[0].mean`, ...).
pub const PREDICTION_TENSOR: &str = "y";

/// Summary of one feature (or of the spread) over its reference samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSummary {
    /// Feature name.
    pub name: String,
    /// Mean.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Quantiles at [`ReferenceStats::quantile_levels`].
    pub quantiles: Vec<f64>,
}

impl FeatureSummary {
    /// Summary of `values` (non-empty, finite) at `levels`.
    pub fn of(name: &str, values: &[f64], levels: &[f64]) -> Self {
        let n = values.len().max(1) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Self {
            name: name.to_string(),
            mean,
            std,
            min: sorted.first().copied().unwrap_or(0.0),
            max: sorted.last().copied().unwrap_or(0.0),
            quantiles: levels.iter().map(|&q| quantile(&sorted, q)).collect(),
        }
    }
}

/// Linearly interpolated `q`-quantile of sorted values (numpy `method="linear"`); 0 when empty.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let Some(&last) = sorted.last() else {
        return 0.0;
    };
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    match sorted.get(lo + 1) {
        Some(&hi) => sorted[lo] + (h - lo as f64) * (hi - sorted[lo]),
        None => last,
    }
}

/// A per-sample feature table of one split, with per-feature summaries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureTable {
    /// The split the rows come from (`train`, `val`; `train` when the run has no validation
    /// samples).
    pub split: String,
    /// Samples in that split.
    pub n_split: usize,
    /// Dataset sample index of each row.
    pub indices: Vec<usize>,
    /// Feature names (columns), as [`pno_data::field_features`] names them.
    pub names: Vec<String>,
    /// Rows.
    pub n_samples: usize,
    /// Row-major values `[n_samples, names.len()]` (the layout `drift_report` takes).
    pub values: Vec<f64>,
    /// Per-feature summaries, in the order of `names`.
    pub summary: Vec<FeatureSummary>,
}

impl FeatureTable {
    /// The table of `features` computed on samples `indices` of `split` (`n_split` samples).
    pub fn new(split: &str, n_split: usize, indices: Vec<usize>, features: DriftFeatures) -> Self {
        let f = features.names.len();
        let summary = (0..f)
            .map(|j| {
                let column: Vec<f64> = features.values.chunks_exact(f).map(|row| row[j]).collect();
                FeatureSummary::of(&features.names[j], &column, &QUANTILE_LEVELS)
            })
            .collect();
        Self {
            split: split.to_string(),
            n_split,
            indices,
            names: features.names,
            n_samples: features.n_samples,
            values: features.values,
            summary,
        }
    }

    /// Column `j` (one feature over the reference samples).
    pub fn column(&self, j: usize) -> Vec<f64> {
        let f = self.names.len().max(1);
        self.values.chunks_exact(f).map(|row| row[j]).collect()
    }
}

/// The validation distribution of the predictive spread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpreadReference {
    /// The split (`val`; `train` when the run has no validation samples).
    pub split: String,
    /// Samples in that split.
    pub n_split: usize,
    /// Dataset sample index of each value.
    pub indices: Vec<usize>,
    /// Predictive draws per sample.
    pub draws: usize,
    /// Seed of the draws.
    pub seed: u64,
    /// The conformal spread scale the model had when the spread was drawn (1 at training; a
    /// later `pno calibrate` multiplies the served spread, see [`SpreadReference::unscale`]).
    pub spread_scale: f64,
    /// Per sample: [`sample_spread`] in physical units (0 for a deterministic model).
    pub values: Vec<f64>,
    /// Summary of `values`.
    pub summary: FeatureSummary,
}

impl SpreadReference {
    /// A spread observed on a model whose spread scale is `spread_scale`, brought to the scale
    /// of this reference (`spread · reference scale / spread_scale`).
    pub fn unscale(&self, spread: f64, spread_scale: f64) -> f64 {
        spread * self.spread_scale / spread_scale
    }
}

/// `reference.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceStats {
    /// Format tag ([`REFERENCE_FORMAT`]); checked on load.
    pub format: String,
    /// Grid the features were computed at; requests on other grids are not compared.
    pub grid: Vec<usize>,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Spectral bands requested per channel (the edges follow from `grid`, see
    /// [`pno_data::field_features`]; the feature names spell them).
    pub bands: usize,
    /// Quantile levels of every summary.
    pub quantile_levels: Vec<f64>,
    /// Features of training inputs (physical units).
    pub inputs: FeatureTable,
    /// Features of the predicted mean on validation inputs (physical units).
    pub predictions: FeatureTable,
    /// Predictive spread on the same validation inputs.
    pub spread: SpreadReference,
}

/// Drift features of `n` input fields `x` `[n, channels, grid…]` (row-major, physical units),
/// named `x[c].mean`, `x[c].std`, `x[c].k…`: [`pno_data::field_features`] with `bands` bands.
/// Non-finite values and shapes that do not match are refused.
pub fn input_features(
    x: &[f32],
    n: usize,
    channels: usize,
    grid: &[usize],
    bands: usize,
) -> Result<DriftFeatures> {
    field_table(x, n, channels, grid, INPUT_TENSOR, bands)
}

/// [`input_features`] for any tensor name (the predictions use [`PREDICTION_TENSOR`]).
pub fn field_table(
    values: &[f32],
    n: usize,
    channels: usize,
    grid: &[usize],
    name: &str,
    bands: usize,
) -> Result<DriftFeatures> {
    let mut shape = vec![n, channels];
    shape.extend_from_slice(grid);
    let t = Tensor::new(shape, TensorData::F32(values.to_vec()))?;
    Ok(field_features(&t, name, bands)?)
}

/// Per-sample predictive spread: the predicted std `[n, channels, points]` averaged over
/// channels and points, one value per sample.
pub fn sample_spread(std: &[f32], n: usize) -> Vec<f64> {
    let d = std.len() / n.max(1);
    std.chunks_exact(d.max(1))
        .take(n)
        .map(|s| s.iter().map(|&v| f64::from(v)).sum::<f64>() / d.max(1) as f64)
        .collect()
}

/// At most `cap` entries of `indices`, evenly spaced (`indices[⌊k·len/cap⌋]`, k = 0..cap), in
/// order; all of them when there are no more than `cap`.
pub fn subsample(indices: &[usize], cap: usize) -> Vec<usize> {
    let len = indices.len();
    if len <= cap {
        return indices.to_vec();
    }
    (0..cap).map(|k| indices[k * len / cap]).collect()
}

fn corrupt(
    path: &Path,
    field: &str,
    expected: impl Into<String>,
    got: impl Into<String>,
) -> RunError {
    RunError::Corrupt {
        path: path.to_path_buf(),
        what: field.to_string(),
        expected: expected.into(),
        got: got.into(),
    }
}

impl ReferenceStats {
    /// `reference.json` of the run folder `run_dir`.
    pub fn path(run_dir: &Path) -> PathBuf {
        run_dir.join(REFERENCE_FILE)
    }

    /// Writes `reference.json` into `run_dir` atomically.
    pub fn save(&self, run_dir: &Path) -> Result<()> {
        write_json(&Self::path(run_dir), self)
    }

    /// Reads `reference.json` of `run_dir`: `None` when the run has none (written before
    /// reference statistics existed); a malformed file is refused naming it and the field.
    pub fn load(run_dir: &Path) -> Result<Option<Self>> {
        let path = Self::path(run_dir);
        if !path.exists() {
            return Ok(None);
        }
        let raw: serde_json::Value = read_json(&path, REFERENCE_FILE)?;
        let format = raw.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format != REFERENCE_FORMAT {
            return Err(corrupt(
                &path,
                "format",
                format!("{REFERENCE_FORMAT:?}"),
                format!("{format:?}"),
            ));
        }
        let stats: Self = serde_json::from_value(raw)
            .map_err(|e| corrupt(&path, REFERENCE_FILE, "the JSON pno writes", e.to_string()))?;
        stats.check(&path)?;
        Ok(Some(stats))
    }

    /// Checks the shapes and values of a parsed file (`path` names it in errors).
    pub fn check(&self, path: &Path) -> Result<()> {
        if self.grid.is_empty() || self.grid.len() > 2 || self.grid.contains(&0) {
            return Err(corrupt(
                path,
                "grid",
                "1 or 2 positive sizes",
                format!("{:?}", self.grid),
            ));
        }
        let levels_ok = self.quantile_levels.windows(2).all(|w| w[0] < w[1])
            && self.quantile_levels.iter().all(|q| (0.0..=1.0).contains(q));
        if !levels_ok {
            return Err(corrupt(
                path,
                "quantile_levels",
                "increasing levels in [0, 1]",
                format!("{:?}", self.quantile_levels),
            ));
        }
        let nq = self.quantile_levels.len();
        let summary = |field: &str, s: &FeatureSummary| -> Result<()> {
            if s.quantiles.len() != nq {
                return Err(corrupt(
                    path,
                    &format!("{field}.quantiles"),
                    format!("{nq} values (one per quantile level)"),
                    s.quantiles.len().to_string(),
                ));
            }
            Ok(())
        };
        for (field, t, channels) in [
            ("inputs", &self.inputs, self.in_channels),
            ("predictions", &self.predictions, self.out_channels),
        ] {
            let f = t.names.len();
            if channels == 0 || f == 0 || f % channels != 0 {
                return Err(corrupt(
                    path,
                    &format!("{field}.names"),
                    format!("the same number of features for each of {channels} channels"),
                    format!("{f} names"),
                ));
            }
            if t.n_samples == 0 || t.indices.len() != t.n_samples {
                return Err(corrupt(
                    path,
                    &format!("{field}.indices"),
                    format!(
                        "one index per row, at least one row (n_samples {})",
                        t.n_samples
                    ),
                    format!("{} indices", t.indices.len()),
                ));
            }
            if t.values.len() != t.n_samples * f {
                return Err(corrupt(
                    path,
                    &format!("{field}.values"),
                    format!("n_samples × names = {} values", t.n_samples * f),
                    t.values.len().to_string(),
                ));
            }
            if t.summary.len() != f {
                return Err(corrupt(
                    path,
                    &format!("{field}.summary"),
                    format!("{f} summaries (one per feature)"),
                    t.summary.len().to_string(),
                ));
            }
            for s in &t.summary {
                summary(&format!("{field}.summary"), s)?;
            }
        }
        let s = &self.spread;
        if s.values.is_empty() || s.values.len() != s.indices.len() {
            return Err(corrupt(
                path,
                "spread.values",
                format!("one value per index ({}), at least one", s.indices.len()),
                format!("{} values", s.values.len()),
            ));
        }
        if let Some(v) = s.values.iter().find(|v| **v < 0.0) {
            return Err(corrupt(path, "spread.values", "spreads ≥ 0", v.to_string()));
        }
        if s.draws == 0 {
            return Err(corrupt(path, "spread.draws", "at least 1", "0"));
        }
        if !(s.spread_scale.is_finite() && s.spread_scale > 0.0) {
            return Err(corrupt(
                path,
                "spread.spread_scale",
                "a positive number",
                s.spread_scale.to_string(),
            ));
        }
        summary("spread.summary", &s.summary)
    }

    /// The input features of one request `x` `[n, channels, grid…]` (physical units), computed
    /// exactly as for [`ReferenceStats::inputs`], so its rows can be tested against that table.
    ///
    /// `Ok(None)` when the request is on another grid than [`ReferenceStats::grid`]: its
    /// features are not comparable, and the request is left out of drift monitoring. Errors for
    /// wrong channel counts, sizes or non-finite values.
    pub fn request_features(
        &self,
        x: &[f32],
        n: usize,
        channels: usize,
        grid: &[usize],
    ) -> Result<Option<DriftFeatures>> {
        if grid != self.grid.as_slice() {
            return Ok(None);
        }
        if channels != self.in_channels {
            return Err(RunError::Model(pno_models::ModelError::Input {
                what: "channels".into(),
                expected: format!("{} input channels", self.in_channels),
                got: channels.to_string(),
            }));
        }
        input_features(x, n, channels, grid, self.bands).map(Some)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// numpy: `np.quantile(np.arange(11.), [0, .05, .25, .5, .99, 1])`.
    #[test]
    fn quantiles_interpolate_linearly_like_numpy() {
        let v: Vec<f64> = (0..=10).map(f64::from).collect();
        let got: Vec<f64> = [0.0, 0.05, 0.25, 0.5, 0.99, 1.0]
            .iter()
            .map(|&q| quantile(&v, q))
            .collect();
        let want = [0.0, 0.5, 2.5, 5.0, 9.9, 10.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
        assert_eq!(quantile(&[3.0], 0.7), 3.0);
        let s = FeatureSummary::of("a", &[1.0, 3.0], &[0.5]);
        assert_eq!((s.mean, s.std, s.min, s.max), (2.0, 1.0, 1.0, 3.0));
        assert_eq!(s.quantiles, [2.0]);
    }

    #[test]
    fn subsample_is_evenly_spaced_and_ordered() {
        let idx: Vec<usize> = (0..10).map(|i| i * 3).collect();
        assert_eq!(subsample(&idx, 20), idx);
        assert_eq!(subsample(&idx, 5), [0, 6, 12, 18, 24]);
        assert_eq!(subsample(&idx, 3), [0, 9, 18]);
        assert!(subsample(&idx, 0).is_empty());
    }

    #[test]
    fn sample_spread_averages_each_sample() {
        assert_eq!(
            sample_spread(&[1.0, 3.0, 0.0, 0.0, 2.0, 2.0], 3),
            [2.0, 0.0, 2.0]
        );
    }
}
