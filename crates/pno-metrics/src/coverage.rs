//! Central prediction intervals: pointwise and whole-function coverage, width, interval score.
//!
//! The central interval at nominal level `p` is `[l, u]` with
//! - Gaussian: `l, u = μ ∓ Φ⁻¹(½ + p/2)·σ`;
//! - samples: `l = Q(½ − p/2)`, `u = Q(½ + p/2)`, empirical quantiles with linear interpolation
//!   ([`quantile_sorted`], as `torch.quantile` in the PNO code).
//!
//! Coverage uses **strict** inequalities `l < y < u` (the PNO convention; a zero-width interval
//! never covers).

use rayon::prelude::*;

use crate::error::Result;
use crate::normal::normal_quantile;
use crate::quantile::quantile_sorted;
use crate::view::{Prediction, Real, check_level, mean_of};

/// The nominal levels reported by [`crate::Report`] as `coverage_50` … `coverage_99`.
pub const COVERAGE_LEVELS: [f64; 5] = [0.5, 0.8, 0.9, 0.95, 0.99];

/// For each function, the interval ends at every level: `lo[l·d + i]`, `hi[l·d + i]`.
pub(crate) fn map_bands<T: Real, R: Send>(
    pred: &Prediction<'_, T>,
    levels: &[f64],
    f: impl Fn(usize, &[f64], &[f64]) -> R + Sync,
) -> Vec<R> {
    let d = pred.shape().d;
    let nl = levels.len();
    match pred {
        Prediction::Gaussian(g) => {
            let z: Vec<f64> = levels
                .iter()
                .map(|p| normal_quantile(0.5 + p / 2.0))
                .collect();
            (0..g.shape().n)
                .into_par_iter()
                .map_init(
                    || (vec![0.0; nl * d], vec![0.0; nl * d]),
                    |(lo, hi), j| {
                        let r = j * d..(j + 1) * d;
                        for (i, (&mu, &sd)) in
                            g.mean()[r.clone()].iter().zip(&g.std()[r]).enumerate()
                        {
                            let (mu, sd): (f64, f64) = (mu.into(), sd.into());
                            for (l, zl) in z.iter().enumerate() {
                                lo[l * d + i] = mu - zl * sd;
                                hi[l * d + i] = mu + zl * sd;
                            }
                        }
                        f(j, lo, hi)
                    },
                )
                .collect()
        }
        Prediction::Samples(s) => {
            // one allocation per function; negligible next to the sort in `map_sorted`
            s.map_sorted(|j, sorted| {
                let mut lo = vec![0.0; nl * d];
                let mut hi = vec![0.0; nl * d];
                for i in 0..d {
                    let x = sorted.point(i);
                    for (l, &p) in levels.iter().enumerate() {
                        lo[l * d + i] = quantile_sorted(x, 0.5 - p / 2.0);
                        hi[l * d + i] = quantile_sorted(x, 0.5 + p / 2.0);
                    }
                }
                f(j, &lo, &hi)
            })
        }
    }
}

fn check_levels(levels: &[f64]) -> Result<()> {
    levels.iter().try_for_each(|&p| check_level("level", p))
}

/// Pointwise coverage at several nominal levels (one pass).
///
/// Formula: `coverage(p) = (1/(n·d)) Σ_{j,i} 1{l_ji(p) < y_ji < u_ji(p)}`; nominal value `p`.
pub fn coverage_levels<T: Real, Y: Real>(
    pred: &Prediction<'_, T>,
    target: &[Y],
    levels: &[f64],
) -> Result<Vec<f64>> {
    check_levels(levels)?;
    let shape = pred.shape();
    shape.check_target("target", target)?;
    let d = shape.d;
    let per = map_bands(pred, levels, |j, lo, hi| {
        let y = &target[j * d..(j + 1) * d];
        (0..levels.len())
            .map(|l| {
                y.iter()
                    .enumerate()
                    .filter(|&(i, &y)| {
                        let y: f64 = y.into();
                        lo[l * d + i] < y && y < hi[l * d + i]
                    })
                    .count()
            })
            .collect::<Vec<usize>>()
    });
    let total = shape.len() as f64;
    Ok((0..levels.len())
        .map(|l| per.iter().map(|c| c[l]).sum::<usize>() as f64 / total)
        .collect())
}

/// Pointwise coverage of the central interval at nominal `level` ∈ (0, 1); see
/// [`coverage_levels`].
pub fn coverage<T: Real, Y: Real>(
    pred: &Prediction<'_, T>,
    target: &[Y],
    level: f64,
) -> Result<f64> {
    Ok(coverage_levels(pred, target, &[level])?[0])
}

/// Whole-function (simultaneous) coverage: the fraction of functions lying entirely inside the
/// pointwise band.
///
/// Formula: `(1/n) Σ_j Π_i 1{l_ji < y_ji < u_ji}` at nominal `level`. Pointwise bands are not
/// simultaneous bands, so this is usually far below `level` for large `d`.
pub fn function_coverage<T: Real, Y: Real>(
    pred: &Prediction<'_, T>,
    target: &[Y],
    level: f64,
) -> Result<f64> {
    check_level("level", level)?;
    let shape = pred.shape();
    shape.check_target("target", target)?;
    let d = shape.d;
    let inside = map_bands(pred, &[level], |j, lo, hi| {
        target[j * d..(j + 1) * d]
            .iter()
            .enumerate()
            .all(|(i, &y)| {
                let y: f64 = y.into();
                lo[i] < y && y < hi[i]
            })
    });
    Ok(inside.iter().filter(|&&b| b).count() as f64 / shape.n as f64)
}

/// Mean width of the central interval at nominal `level` (PNO's `IntervalWidth` at 0.95).
///
/// Formula: `(1/(n·d)) Σ_{j,i} (u_ji − l_ji)`.
pub fn interval_width<T: Real>(pred: &Prediction<'_, T>, level: f64) -> Result<f64> {
    check_level("level", level)?;
    let d = pred.shape().d;
    let per = map_bands(pred, &[level], |_, lo, hi| {
        lo.iter().zip(hi).map(|(l, u)| u - l).sum::<f64>() / d as f64
    });
    Ok(mean_of(&per))
}

/// Interval (Winkler) score of one interval: with `α = 1 − level`,
/// `(u − l) + (2/α)(l − y)·1{y < l} + (2/α)(y − u)·1{y > u}` (Gneiting & Raftery 2007).
pub fn winkler_point(lo: f64, hi: f64, y: f64, level: f64) -> f64 {
    let a = 2.0 / (1.0 - level);
    let mut s = hi - lo;
    if y < lo {
        s += a * (lo - y);
    }
    if y > hi {
        s += a * (y - hi);
    }
    s
}

/// Mean interval (Winkler) scores at several levels (one pass).
///
/// Formula: `IS(p) = (1/(n·d)) Σ_{j,i} winkler(l_ji(p), u_ji(p), y_ji, p)`, see [`winkler_point`].
pub fn interval_score_levels<T: Real, Y: Real>(
    pred: &Prediction<'_, T>,
    target: &[Y],
    levels: &[f64],
) -> Result<Vec<f64>> {
    check_levels(levels)?;
    let shape = pred.shape();
    shape.check_target("target", target)?;
    let d = shape.d;
    let per = map_bands(pred, levels, |j, lo, hi| {
        let y = &target[j * d..(j + 1) * d];
        levels
            .iter()
            .enumerate()
            .map(|(l, &p)| {
                y.iter()
                    .enumerate()
                    .map(|(i, &y)| winkler_point(lo[l * d + i], hi[l * d + i], y.into(), p))
                    .sum::<f64>()
            })
            .collect::<Vec<f64>>()
    });
    let total = shape.len() as f64;
    Ok((0..levels.len())
        .map(|l| per.iter().map(|s| s[l]).sum::<f64>() / total)
        .collect())
}

/// Mean interval (Winkler) score of the central interval at nominal `level`
/// (`interval_score_90` at 0.9); see [`interval_score_levels`].
pub fn interval_score<T: Real, Y: Real>(
    pred: &Prediction<'_, T>,
    target: &[Y],
    level: f64,
) -> Result<f64> {
    Ok(interval_score_levels(pred, target, &[level])?[0])
}

/// uncertainty-toolbox's `interval_score` (scaled): the Winkler score averaged over the 99
/// levels `p = 0.01, 0.02, …, 0.99` (`np.linspace(0.01, 0.99, 99)`).
///
/// Formula: `(1/99) Σ_p IS(p)`, see [`interval_score_levels`].
pub fn mean_interval_score<T: Real, Y: Real>(
    pred: &Prediction<'_, T>,
    target: &[Y],
) -> Result<f64> {
    let step = (0.99 - 0.01) / 98.0;
    let levels: Vec<f64> = (0..99).map(|k| 0.01 + k as f64 * step).collect();
    let v = interval_score_levels(pred, target, &levels)?;
    Ok(v.iter().sum::<f64>() / v.len() as f64)
}
