//! Continuous ranked probability score (CRPS): Gaussian closed form and ensemble estimators.
//!
//! `CRPS(F, y) = E|X − y| − ½·E|X − X'|` with `X, X' ~ F` independent; lower is better, 0 only
//! for a point mass at `y`. Metrics average the pointwise CRPS over all functions and points
//! (the PNO paper's grid-averaged CRPS).

use crate::error::Result;
use crate::normal::{normal_cdf, normal_pdf};
use crate::view::{
    GaussianPred, Real, SamplePred, SortedTile, TILE, check_size, mean_of, target_tile,
};

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
        pair += rank_weight(k, mf) * e;
    }
    abs / mf - pair_coefficient(m, estimator) * pair
}

/// The weight `2k + 1 − m` of order statistic `k` (0-based) in `Σ_{k,l} |x_k − x_l|`.
#[inline(always)]
fn rank_weight(k: usize, mf: f64) -> f64 {
    2.0 * k as f64 + 1.0 - mf
}

/// The factor `c` of the pairwise sum: `1/m²` (standard), `1/(m(m − 1))` (fair; 0 if `m = 1`).
fn pair_coefficient(m: usize, estimator: Estimator) -> f64 {
    let mf = m as f64;
    match estimator {
        Estimator::Standard => 1.0 / (mf * mf),
        Estimator::Fair if m > 1 => 1.0 / (mf * (mf - 1.0)),
        Estimator::Fair => 0.0,
    }
}

/// [`crps_ensemble_sorted`] at every point `c < tile.width()` of a tile, both estimators at once
/// (they share the two sums): same operations in the same order per point, vectorised across
/// points.
#[inline(always)]
pub(crate) fn crps_tile(
    tile: &SortedTile<'_>,
    y: &[f64; TILE],
    standard: &mut [f64; TILE],
    fair: &mut [f64; TILE],
) {
    let m = tile.m();
    let mf = m as f64;
    let mut abs = [0.0; TILE];
    let mut pair = [0.0; TILE];
    for (k, row) in tile.rows().iter().enumerate() {
        let wk = rank_weight(k, mf);
        for (((a, p), &x), &y) in abs.iter_mut().zip(pair.iter_mut()).zip(row).zip(y) {
            let e = x - y;
            *a += e.abs();
            *p += wk * e;
        }
    }
    let (cs, cf) = (
        pair_coefficient(m, Estimator::Standard),
        pair_coefficient(m, Estimator::Fair),
    );
    for c in 0..TILE {
        standard[c] = abs[c] / mf - cs * pair[c];
        fair[c] = abs[c] / mf - cf * pair[c];
    }
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
/// functions and points. O(n·d·m log² m) (comparator network), parallel over functions.
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
    let per = pred.fold_sorted(
        || 0.0,
        #[inline(always)]
        |sum, j, i0, tile| {
            let y = target_tile(target, j * d + i0, tile.width());
            let (mut standard, mut fair) = ([0.0; TILE], [0.0; TILE]);
            crps_tile(tile, &y, &mut standard, &mut fair);
            let crps = match estimator {
                Estimator::Standard => &standard,
                Estimator::Fair => &fair,
            };
            crps[..tile.width()].iter().for_each(|v| *sum += v);
        },
    );
    let per: Vec<f64> = per.into_iter().map(|s| s / d as f64).collect();
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
