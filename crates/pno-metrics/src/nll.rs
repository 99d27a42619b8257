//! Gaussian negative log-likelihood.

use crate::error::Result;
use crate::view::{GaussianPred, Real, SamplePred, check_size, mean_of};

/// Standard deviations are clamped to `[SIGMA_MIN, SIGMA_MAX]` before the log-density (the PNO
/// convention; a deterministic model then scores about `1e10`, an artefact of the floor).
pub const SIGMA_MIN: f64 = 1e-6;
/// Upper clamp of the standard deviation, see [`SIGMA_MIN`].
pub const SIGMA_MAX: f64 = 1e6;

/// `−log N(y; μ, σ²)` with σ clamped to `[SIGMA_MIN, SIGMA_MAX]`:
/// `½·ln(2π) + ln σ + (y − μ)² / (2σ²)`.
pub fn gaussian_nll_point(mu: f64, sigma: f64, y: f64) -> f64 {
    let s = sigma.clamp(SIGMA_MIN, SIGMA_MAX);
    let z = (y - mu) / s;
    0.5 * (2.0 * std::f64::consts::PI).ln() + s.ln() + 0.5 * z * z
}

fn nll_rows(mu: &[f64], sigma: &[f64], y: &[f64]) -> f64 {
    mu.iter()
        .zip(sigma)
        .zip(y)
        .map(|((&m, &s), &y)| gaussian_nll_point(m, s, y))
        .sum()
}

/// Gaussian NLL of a Gaussian prediction, mean over all functions and points.
///
/// Formula: `nll = (1/(n·d)) Σ_{j,i} [½·ln(2π) + ln σ_ji + (y_ji − μ_ji)²/(2σ_ji²)]`, σ clamped to
/// `[SIGMA_MIN, SIGMA_MAX]` (matches `−scipy.stats.norm.logpdf` for σ inside the clamp).
pub fn nll_gaussian<T: Real, Y: Real>(pred: &GaussianPred<'_, T>, target: &[Y]) -> Result<f64> {
    let per = pred.map_functions(target, |_, mu, sd, y| {
        let f = |v: &[_]| v.iter().map(|&x: &T| x.into()).collect::<Vec<f64>>();
        let yv: Vec<f64> = y.iter().map(|&x| x.into()).collect();
        nll_rows(&f(mu), &f(sd), &yv) / mu.len() as f64
    })?;
    Ok(mean_of(&per))
}

/// Gaussian NLL of a sample prediction (PNO's `Gaussian NLL`).
///
/// Estimator: at each point fit `N(μ̂, σ̂²)` with the sample mean and the unbiased (ddof = 1)
/// sample standard deviation, clamp σ̂ to `[SIGMA_MIN, SIGMA_MAX]`, and average
/// `−log p(y)` over all functions and points. Needs `m >= 2`.
pub fn nll_samples<T: Real, Y: Real>(pred: &SamplePred<'_, T>, target: &[Y]) -> Result<f64> {
    check_size("m", 2, pred.m())?;
    pred.shape().check_target("target", target)?;
    let (mu, sd) = pred.mean_std();
    Ok(nll_of(&mu, &sd, target))
}

/// Mean Gaussian NLL of the targets under `N(mu, sd²)` pointwise (all `[n, d]`, checked):
/// [`nll_samples`] from the sample mean and std.
pub(crate) fn nll_of<Y: Real>(mu: &[f64], sd: &[f64], target: &[Y]) -> f64 {
    let y: Vec<f64> = target.iter().map(|&v| v.into()).collect();
    nll_rows(mu, sd, &y) / y.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use pno_core::testing::close;

    #[test]
    fn gaussian_nll_point_standard_normal_at_mean_is_half_log_two_pi() {
        let v = gaussian_nll_point(0.0, 1.0, 0.0);
        assert!(close(v, 0.918_938_533_204_672_7, 1e-15, 0.0));
    }

    #[test]
    fn gaussian_nll_point_zero_sigma_uses_floor() {
        let v = gaussian_nll_point(0.0, 0.0, 1e-6);
        assert!(close(
            v,
            0.918_938_533_204_672_7 + SIGMA_MIN.ln() + 0.5,
            1e-12,
            0.0
        ));
    }
}
