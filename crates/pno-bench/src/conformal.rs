//! The conformally calibrated variant every probabilistic method gets in each cell, and the
//! coverage-against-level curve of both variants.
//!
//! Split-conformal calibration ([`mod@pno_train::calibrate`]) rescales every draw about the
//! predictive mean, `x̃ = μ + k·(x − μ)`, by one factor `k` fitted on the PDE's calibration
//! split. A cell therefore needs no second prediction: it fits `k` on the calibration draws and
//! rescales the test draws it already has, which gives exactly what `predict` returns for the
//! calibrated run with the same seed (up to the rounding of the mean to `f32`).
//!
//! What calibration changes and what it does not:
//! - **unchanged** ([`INVARIANT`]): the point prediction and its errors — rel-L2, L2 (abs),
//!   RMSE, MSE, H1 — and the training time. (For `pno_r`, whose mean is its analytic head mean,
//!   the draws' sample mean moves by `(k − 1)` × its Monte-Carlo error; the results files
//!   record that value, the tables show the raw one.)
//! - **scaled by `k`**: interval widths, sharpness (RMS std), the spread–skill ratio;
//! - **changed**: coverage at every level, whole-function coverage, the interval (Winkler)
//!   score, calibration error and miscalibration area, CRPS (standard and fair), the energy
//!   score and the Gaussian NLL.
//! - **not computed** for the calibrated variant: rollouts (a calibrated rollout propagates the
//!   rescaled draws and needs its own run: a method with its own `conformal` table has one) and
//!   the aleatoric/epistemic decomposition.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use pno_core::Split;
use pno_metrics::{CalibrationCurve, Domain, Prediction, Report, SamplePred, coverage_levels};
use pno_models::burn::tensor::Device;
use pno_run::{ConformalMode, TrainedModel};
use pno_train::calibrate::{scores, spread_scale};
use pno_train::eval::{Draws, predict_on_split};

use crate::error::Result;
use crate::suite::Conformal;

/// Nominal levels of the coverage curve: 0.1, 0.2, …, 0.9, 0.95, 0.99. The curve at 0.5, 0.8,
/// 0.9, 0.95 and 0.99 equals the `coverage_*` metrics (same open central intervals).
pub const CURVE_LEVELS: [f64; 11] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99];

/// Metrics (and timings) that calibration leaves unchanged: the tables show them once, on the
/// raw row.
pub const INVARIANT: &[&str] = &[
    "rel_l2", "l2_abs", "rmse", "mse", "h1_rel", "train_s", "eval_s",
];

/// Whether calibration leaves metric `key` unchanged.
pub fn invariant(key: &str) -> bool {
    INVARIANT.contains(&key)
}

/// The calibrated variant of a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conformalized {
    /// Nominal level the scale was fitted at.
    pub level: f64,
    /// Quantile rule.
    pub mode: ConformalMode,
    /// The fitted spread scale `k`.
    pub spread_scale: f64,
    /// Calibration functions it was fitted on.
    pub n_functions: usize,
    /// Every `pno eval` metric of the rescaled test draws.
    pub metrics: Map<String, Value>,
    /// Coverage at [`CURVE_LEVELS`] of the rescaled test draws.
    pub coverage_curve: CalibrationCurve,
}

/// Coverage of the central intervals of `pred` against `target` at [`CURVE_LEVELS`].
pub fn coverage_curve(pred: &SamplePred<'_, f32>, target: &[f32]) -> Result<CalibrationCurve> {
    let observed = coverage_levels(&Prediction::Samples(*pred), target, &CURVE_LEVELS)?;
    Ok(CalibrationCurve {
        expected: CURVE_LEVELS.to_vec(),
        observed,
    })
}

/// Rescale draws `[m, n·d]` about `mean` `[n·d]` by `k`, in place.
pub fn rescale(samples: &mut [f32], mean: &[f32], k: f64) {
    let nd = mean.len().max(1);
    for (j, v) in samples.iter_mut().enumerate() {
        let mu = f64::from(mean[j % nd]);
        *v = (mu + (f64::from(*v) - mu) * k) as f32;
    }
}

/// The test prediction of a cell, whose draws [`conformalize`] rescales in place.
pub struct TestDraws<'a> {
    /// Targets `[n, d]`.
    pub y: &'a [f32],
    /// Draws `[m, n, d]`.
    pub samples: &'a mut [f32],
    /// Predictive mean `[n, d]`.
    pub mean: &'a [f32],
    /// Predictive std `[n, d]` (all zero: a deterministic model).
    pub std: &'a [f32],
    /// Model grid.
    pub grid: &'a [usize],
    /// Output channels.
    pub channels: usize,
}

/// Fit the conformal scale of `trained` on its calibration split of `data` (draws `draws`) and
/// evaluate the rescaled test draws. `Ok(Err(why))` when the cell has no calibrated variant:
/// a deterministic model, no calibration split, or too few calibration functions for the level.
pub fn conformalize(
    trained: &TrainedModel,
    data: &std::path::Path,
    conf: Conformal,
    test: TestDraws<'_>,
    draws: Draws,
    device: &Device,
) -> Result<std::result::Result<Conformalized, String>> {
    if test.std.iter().all(|&s| s == 0.0) {
        return Ok(Err(
            "deterministic (zero predictive spread): nothing to calibrate".into(),
        ));
    }
    let spec = &trained.file.data;
    if spec.n_calibration == 0 {
        return Ok(Err(
            "no calibration split (data.n_calibration = 0): reported raw only".into(),
        ));
    }
    let cal = predict_on_split(trained, data, Some(Split::Calibration), None, draws, device)?;
    let n_cal = cal.indices.len();
    let d_cal = cal.y.len() / n_cal.max(1);
    let mut r = scores(
        &cal.pred.samples,
        draws.samples,
        &cal.pred.mean,
        &cal.y,
        conf.level,
    );
    drop(cal);
    let k = spread_scale(&mut r, d_cal, conf.level, conf.mode);
    if !(k.is_finite() && k > 0.0) {
        return Ok(Err(format!(
            "no conformal scale at level {} from {n_cal} calibration functions (scale {k}): \
             too few functions for the level, or zero spread where it is needed",
            conf.level
        )));
    }
    rescale(test.samples, test.mean, k);
    let d = per_function(&test);
    let n = test.y.len() / d;
    let sp = SamplePred::new(&*test.samples, draws.samples, n, d)?;
    let domain = Domain::new(
        test.grid,
        &vec![spec.domain_length; test.grid.len()],
        test.channels,
        spec.periodic,
    )?;
    let report = Report::from_samples(&sp, test.y, &domain)?;
    let metrics = match serde_json::to_value(&report) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    Ok(Ok(Conformalized {
        level: conf.level,
        mode: conf.mode,
        spread_scale: k,
        n_functions: n_cal,
        metrics,
        coverage_curve: coverage_curve(&sp, test.y)?,
    }))
}

fn per_function(t: &TestDraws<'_>) -> usize {
    (t.channels * t.grid.iter().product::<usize>()).max(1)
}
