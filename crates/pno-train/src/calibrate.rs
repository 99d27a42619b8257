//! Split-conformal calibration of the predictive spread.
//!
//! A model's draws are rescaled about their mean, `x̃ = μ + k·(x − μ)`, by one factor `k`
//! (`spread_scale` in `model.json`, applied by `predict`, `eval` and the server). `k` is chosen
//! on calibration samples the model never trained on, from the nonconformity score of each point
//! at the nominal level `1 − α`: with `q_lo`, `q_hi` the `α/2` and `1 − α/2` quantiles of the
//! uncalibrated draws,
//!
//! ```text
//! r = (y − μ)/(q_hi − μ)  if y ≥ μ,     r = (μ − y)/(μ − q_lo)  otherwise,
//! ```
//!
//! so `y` lies in the rescaled central interval iff `r ≤ k`.
//!
//! - `pointwise` (default): `k` is the `⌈(N + 1)(1 − α)⌉`-th smallest of the `N` pooled point
//!   scores. Over exchangeable functions the expected fraction of covered points of a new function
//!   is ≈ `1 − α` (the points of one function are not exchangeable with each other, so the bound
//!   is approximate, with an error of order `1/√n_functions`).
//! - `function` (UQNO-style `(α, δ)`): per calibration function, `s_f` = the `⌈(1 − α)·d⌉`-th
//!   smallest of its `d` point scores; `k` = the `⌈(n + 1)(1 − δ)⌉`-th smallest `s_f`. Exact
//!   finite-sample guarantee: with probability ≥ `1 − δ` a new exchangeable function has at least a
//!   `1 − α` fraction of its points inside the band.

use std::path::Path;

use pno_core::Split;
use pno_metrics::{SamplePred, coverage, quantile_sorted};
use pno_models::burn::tensor::Device;
use pno_run::{CalibrationRecord, ConformalMode, TrainedModel};

use crate::error::Result;
use crate::eval::{Draws, SplitPrediction, option_err, predict_on_split};

/// Options of [`calibrate`].
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrateOptions {
    /// Calibration samples (`None`: every sample of the file).
    pub split: Option<Split>,
    /// Nominal central-interval level `1 − α`.
    pub level: f64,
    /// Quantile rule.
    pub mode: ConformalMode,
    /// Draws per input.
    pub samples: usize,
    /// Seed of the draws.
    pub seed: u64,
    /// Inputs per forward pass.
    pub batch: usize,
}

impl Default for CalibrateOptions {
    fn default() -> Self {
        Self {
            split: Some(Split::Calibration),
            level: 0.9,
            mode: ConformalMode::Pointwise,
            samples: 100,
            seed: 0,
            batch: 16,
        }
    }
}

/// The `⌈(count + 1)·p⌉`-th smallest of `v` (the finite-sample conformal quantile); `+∞` when
/// that rank exceeds `count` (too few samples for the level).
pub fn conformal_quantile(v: &mut [f64], p: f64) -> f64 {
    let n = v.len();
    let rank = ((n as f64 + 1.0) * p).ceil() as usize;
    if rank == 0 {
        return f64::NEG_INFINITY;
    }
    if rank > n {
        return f64::INFINITY;
    }
    let (_, kth, _) = v.select_nth_unstable_by(rank - 1, f64::total_cmp);
    *kth
}

/// Nonconformity scores `[n, d]` of targets `y` under draws `[m, n, d]` rescaled about `mean`
/// `[n, d]` at `level` (see the module docs). A point whose interval side is empty scores 0 if
/// `y` is on the mean, else `+∞`.
pub fn scores(samples: &[f32], m: usize, mean: &[f32], y: &[f32], level: f64) -> Vec<f64> {
    let nd = y.len();
    let alpha = 1.0 - level;
    let mut buf = vec![0.0f64; m];
    (0..nd)
        .map(|j| {
            for (k, b) in buf.iter_mut().enumerate() {
                *b = f64::from(samples[k * nd + j]);
            }
            let mu = f64::from(mean[j]);
            buf.sort_by(f64::total_cmp);
            let (lo, hi) = (
                quantile_sorted(&buf, alpha / 2.0),
                quantile_sorted(&buf, 1.0 - alpha / 2.0),
            );
            let yv = f64::from(y[j]);
            let (num, den) = if yv >= mu {
                (yv - mu, hi - mu)
            } else {
                (mu - yv, mu - lo)
            };
            if num <= 0.0 {
                0.0
            } else if den <= 0.0 {
                f64::INFINITY
            } else {
                num / den
            }
        })
        .collect()
}

/// The spread scale `k` from the nonconformity [`scores`] `r` (`[n, d]`, reordered in place) of
/// `n` calibration functions of `d` points at `level` under `mode` (see the module docs); `+∞`
/// when there are too few calibration functions or points for the level.
pub fn spread_scale(r: &mut [f64], d: usize, level: f64, mode: ConformalMode) -> f64 {
    match mode {
        ConformalMode::Pointwise => conformal_quantile(r, level),
        ConformalMode::Function { delta } => {
            let d = d.max(1);
            let mut per: Vec<f64> = r
                .chunks_mut(d)
                .map(|f| {
                    let rank = ((level * f.len() as f64).ceil() as usize).clamp(1, f.len());
                    let (_, kth, _) = f.select_nth_unstable_by(rank - 1, f64::total_cmp);
                    *kth
                })
                .collect();
            conformal_quantile(&mut per, 1.0 - delta)
        }
    }
}

/// Calibrate the run in `run_dir` on `opts.split` of `data` and store the spread scale and the
/// record in its `model.json` (atomically). Deterministic models have no spread to scale and are
/// refused.
pub fn calibrate(
    run_dir: &Path,
    data: &Path,
    opts: &CalibrateOptions,
    device: &Device,
) -> Result<CalibrationRecord> {
    if !(opts.level > 0.0 && opts.level < 1.0) {
        return Err(option_err("--level", "a level in (0, 1)", opts.level));
    }
    if let ConformalMode::Function { delta } = opts.mode
        && !(delta > 0.0 && delta < 1.0)
    {
        return Err(option_err("--delta", "a probability in (0, 1)", delta));
    }
    if opts.samples < 2 {
        return Err(option_err("--samples", "at least 2", opts.samples));
    }
    let mut trained: TrainedModel = pno_run::load_trained(run_dir, device)?;
    trained.model.spread_scale = 1.0;
    let SplitPrediction {
        prov,
        indices,
        split,
        y,
        pred,
        ..
    } = predict_on_split(
        &trained,
        data,
        opts.split,
        None,
        Draws {
            samples: opts.samples,
            seed: opts.seed,
            batch: opts.batch,
        },
        device,
    )?;
    let n = indices.len();
    if pred.std.iter().all(|&s| s == 0.0) {
        return Err(option_err(
            "--run",
            "a probabilistic model with a predictive spread to scale (mc_dropout, ensemble, laplace, pno_d, pno_r, vi_pno)",
            format!("{} (zero spread)", trained.file.model.kind.name()),
        ));
    }
    let d = y.len() / n;
    let mut r = scores(&pred.samples, opts.samples, &pred.mean, &y, opts.level);
    let k = spread_scale(&mut r, d, opts.level, opts.mode);
    if !(k.is_finite() && k > 0.0) {
        return Err(option_err(
            "--split",
            format!(
                "enough calibration functions for level {} (the conformal rank exceeds the {n} available, or the spread is zero where it is needed)",
                opts.level
            ),
            format!("scale {k}"),
        ));
    }
    let sp = SamplePred::new(&pred.samples, opts.samples, n, d)?;
    let before = coverage(&pno_metrics::Prediction::Samples(sp), &y, opts.level)?;
    let scaled: Vec<f32> = {
        let mut s = pred.samples.clone();
        for (j, v) in s.iter_mut().enumerate() {
            let mu = f64::from(pred.mean[j % (n * d)]);
            *v = (mu + (f64::from(*v) - mu) * k) as f32;
        }
        s
    };
    let sp = SamplePred::new(&scaled, opts.samples, n, d)?;
    let after = coverage(&pno_metrics::Prediction::Samples(sp), &y, opts.level)?;
    let record = CalibrationRecord {
        level: opts.level,
        mode: opts.mode,
        spread_scale: k,
        split,
        n_functions: n,
        n_samples: opts.samples,
        data_sha256: prov.sha256,
        coverage_before: before,
        coverage_after: after,
    };
    trained.run.set_calibration(&record)?;
    Ok(record)
}
