//! Sharpness and the spread–skill ratio.

use crate::error::Result;
use crate::view::{Prediction, Real};

/// Sharpness (uncertainty-toolbox `sharpness`): the root mean predictive variance.
///
/// Formula: `sqrt((1/(n·d)) Σ_{j,i} σ_ji²)`, σ the Gaussian std or the unbiased (ddof = 1)
/// sample std. Lower is sharper; only meaningful next to a calibration metric.
pub fn sharpness<T: Real>(pred: &Prediction<'_, T>) -> f64 {
    let (_, sd) = pred.mean_std();
    sharpness_of(&sd)
}

/// [`sharpness`] from the predictive standard deviations.
pub(crate) fn sharpness_of(sd: &[f64]) -> f64 {
    (sd.iter().map(|s| s * s).sum::<f64>() / sd.len() as f64).sqrt()
}

/// Spread–skill ratio: ensemble spread over the RMSE of the predictive mean; ≈ 1 when the
/// uncertainty is calibrated, < 1 over-confident, > 1 under-confident.
///
/// Formula: `spread / skill` with `skill = sqrt((1/(n·d)) Σ (μ_ji − y_ji)²)` and
/// `spread = sqrt(c · (1/(n·d)) Σ σ_ji²)`, where `c = 1` for a Gaussian and `c = (m + 1)/m` for
/// `m` draws (Fortin et al. 2014 finite-ensemble correction, with the unbiased sample variance:
/// the error of an `m`-member mean has variance `σ²(1 + 1/m)`). `+∞` when the mean is exact.
pub fn spread_skill<T: Real, Y: Real>(pred: &Prediction<'_, T>, target: &[Y]) -> Result<f64> {
    let shape = pred.shape();
    shape.check_target("target", target)?;
    let (mu, sd) = pred.mean_std();
    Ok(spread_skill_of(pred, &mu, &sd, target))
}

/// [`spread_skill`] from the predictive mean and standard deviation `[n, d]` (target checked).
pub(crate) fn spread_skill_of<T: Real, Y: Real>(
    pred: &Prediction<'_, T>,
    mu: &[f64],
    sd: &[f64],
    target: &[Y],
) -> f64 {
    let c = match pred {
        Prediction::Gaussian(_) => 1.0,
        Prediction::Samples(s) => (s.m() as f64 + 1.0) / s.m() as f64,
    };
    let total = mu.len() as f64;
    let var = sd.iter().map(|s| s * s).sum::<f64>() / total;
    let mse = mu
        .iter()
        .zip(target)
        .map(|(&m, &y)| {
            let e = m - y.into();
            e * e
        })
        .sum::<f64>()
        / total;
    (c * var).sqrt() / mse.sqrt()
}
