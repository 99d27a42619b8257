//! Continuous ranked probability score (CRPS): Gaussian closed form and ensemble estimators.
//!
//! `CRPS(F, y) = E|X − y| − ½·E|X − X'|` with `X, X' ~ F` independent; lower is better, 0 only
//! for a point mass at `y`. Metrics average the pointwise CRPS over all functions and points
//! (the PNO paper's grid-averaged CRPS).

use crate::error::Result;
use crate::normal::{normal_cdf, normal_pdf};
use crate::view::{GaussianPred, Real, SamplePred, check_size, mean_of};

/// Which sample estimator of `E|X − X'|` (and of the pairwise term of the energy score) to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Estimator {
    /// V-statistic, pairwise sum over all `(m, m')` divided by `m²` (properscoring
    /// `crps_ensemble`, scoringrules `estimator="nrg"`): the CRPS of the empirical distribution.
    Standard,
    /// U-statistic, divided by `m(m − 1)` (scoringrules `estimator="fair"`): unbiased for the
    /// CRPS of the distribution the draws come from. Needs `m >= 2`.
    Fair,
}

/// CRPS of `N(μ, σ²)` at `y`, closed form (Gneiting et al. 2005):
/// `σ·[z(2Φ(z) − 1) + 2φ(z) − 1/√π]` with `z = (y − μ)/σ`; `|y − μ|` when `σ = 0`.
pub fn crps_gaussian_point(mu: f64, sigma: f64, y: f64) -> f64 {
    if sigma == 0.0 {
        return (y - mu).abs();
    }
    let z = (y - mu) / sigma;
    sigma
        * (z * (2.0 * normal_cdf(z) - 1.0) + 2.0 * normal_pdf(z)
            - 1.0 / std::f64::consts::PI.sqrt())
}

/// Ensemble CRPS at `y` from draws sorted ascending, in O(m).
///
/// Formula: with order statistics `x₍₁₎ ≤ … ≤ x₍ₘ₎`,
/// `Σ_{k,l} |x_k − x_l| = 2 Σ_k (2k − m − 1) x₍ₖ₎`, so
/// `crps = (1/m) Σ_k |x_k − y| − c · Σ_k (2k − m − 1)(x₍ₖ₎ − y)` with `c = 1/m²` (standard) or
/// `1/(m(m − 1))` (fair). Sorting first makes the whole estimator O(m log m) instead of O(m²).
/// A fair estimate with `m = 1` returns `|x − y|` (the pairwise term is empty).
pub fn crps_ensemble_sorted(sorted: &[f64], y: f64, estimator: Estimator) -> f64 {
    let m = sorted.len();
    let mf = m as f64;
    let (mut abs, mut pair) = (0.0, 0.0);
    for (k, &x) in sorted.iter().enumerate() {
        let e = x - y;
        abs += e.abs();
        pair += (2.0 * k as f64 + 1.0 - mf) * e;
    }
    let c = match estimator {
        Estimator::Standard => 1.0 / (mf * mf),
        Estimator::Fair if m > 1 => 1.0 / (mf * (mf - 1.0)),
        Estimator::Fair => 0.0,
    };
    abs / mf - c * pair
}

/// Grid-averaged CRPS of a Gaussian prediction (closed form).
///
/// Formula: `crps = (1/(n·d)) Σ_{j,i} CRPS(N(μ_ji, σ_ji²), y_ji)` with
/// [`crps_gaussian_point`] (properscoring `crps_gaussian`).
pub fn crps_gaussian<T: Real, Y: Real>(pred: &GaussianPred<'_, T>, target: &[Y]) -> Result<f64> {
    let per = pred.map_functions(target, |_, mu, sd, y| {
        let s: f64 = mu
            .iter()
            .zip(sd)
            .zip(y)
            .map(|((&m, &s), &y)| crps_gaussian_point(m.into(), s.into(), y.into()))
            .sum();
        s / mu.len() as f64
    })?;
    Ok(mean_of(&per))
}

/// Grid-averaged ensemble CRPS with the chosen [`Estimator`].
///
/// Estimator: per point, sort the `m` draws and apply [`crps_ensemble_sorted`]; average over all
/// functions and points. O(n·d·m log m), parallel over functions.
pub fn crps_ensemble<T: Real, Y: Real>(
    pred: &SamplePred<'_, T>,
    target: &[Y],
    estimator: Estimator,
) -> Result<f64> {
    if estimator == Estimator::Fair {
        check_size("m", 2, pred.m())?;
    }
    pred.shape().check_target("target", target)?;
    let d = pred.shape().d;
    let per = pred.map_sorted(|j, f| {
        let y = &target[j * d..(j + 1) * d];
        let s: f64 = y
            .iter()
            .enumerate()
            .map(|(i, &y)| crps_ensemble_sorted(f.point(i), y.into(), estimator))
            .sum();
        s / d as f64
    });
    Ok(mean_of(&per))
}

/// Grid-averaged standard ensemble CRPS (`crps` from samples): [`crps_ensemble`] with
/// [`Estimator::Standard`], i.e. `E|X − y| − (1/(2m²)) Σ_{k,l} |x_k − x_l|` per point.
pub fn crps_samples<T: Real, Y: Real>(pred: &SamplePred<'_, T>, target: &[Y]) -> Result<f64> {
    crps_ensemble(pred, target, Estimator::Standard)
}

/// Grid-averaged fair ensemble CRPS (`crps_fair`, the PNO paper's CRPS): [`crps_ensemble`] with
/// [`Estimator::Fair`], i.e. `E|X − y| − (1/(2m(m − 1))) Σ_{k≠l} |x_k − x_l|` per point.
pub fn crps_fair<T: Real, Y: Real>(pred: &SamplePred<'_, T>, target: &[Y]) -> Result<f64> {
    crps_ensemble(pred, target, Estimator::Fair)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pno_core::testing::close;

    fn brute(xs: &[f64], y: f64, fair: bool) -> f64 {
        let m = xs.len() as f64;
        let a: f64 = xs.iter().map(|x| (x - y).abs()).sum::<f64>() / m;
        let p: f64 = xs
            .iter()
            .flat_map(|x| xs.iter().map(move |z| (x - z).abs()))
            .sum();
        a - p / (2.0 * if fair { m * (m - 1.0) } else { m * m })
    }

    #[test]
    fn crps_ensemble_sorted_matches_quadratic_formula() {
        let mut xs = vec![0.3, -1.2, 2.5, 0.0, 0.7, 0.7, -0.4];
        xs.sort_by(f64::total_cmp);
        for y in [-2.0, 0.1, 0.7, 3.0] {
            assert!(close(
                crps_ensemble_sorted(&xs, y, Estimator::Standard),
                brute(&xs, y, false),
                1e-13,
                1e-15
            ));
            assert!(close(
                crps_ensemble_sorted(&xs, y, Estimator::Fair),
                brute(&xs, y, true),
                1e-13,
                1e-15
            ));
        }
    }

    #[test]
    fn crps_gaussian_point_standard_normal_at_zero_matches_closed_form() {
        // (√2 − 1)/√π
        let exact = (2f64.sqrt() - 1.0) / std::f64::consts::PI.sqrt();
        assert!(close(crps_gaussian_point(0.0, 1.0, 0.0), exact, 1e-15, 0.0));
    }
}
