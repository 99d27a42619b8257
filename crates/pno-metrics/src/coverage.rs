//! Central prediction intervals: pointwise and whole-function coverage, width, interval score.
//!
//! The central interval at nominal level `p` is `[l, u]` with
//! - Gaussian: `l, u = μ ∓ Φ⁻¹(½ + p/2)·σ`;
//! - samples: `l = Q(½ − p/2)`, `u = Q(½ + p/2)`, empirical quantiles with linear interpolation
//!   ([`crate::quantile_sorted`], as `torch.quantile` in the PNO code).
//!
//! Coverage uses **strict** inequalities `l < y < u` (the PNO convention; a zero-width interval
//! never covers).

use rayon::prelude::*;

use crate::error::Result;
use crate::normal::normal_quantile;
use crate::quantile::QuantileIndex;
use crate::view::{Prediction, Real, TILE, check_level, mean_of, target_tile};

/// The nominal levels reported by [`crate::Report`] as `coverage_50` … `coverage_99`.
pub const COVERAGE_LEVELS: [f64; 5] = [0.5, 0.8, 0.9, 0.95, 0.99];

/// The interval ends of one tile of points (`width` points from `i0` of function `j`) at every
/// level: `lo[l][c]`, `hi[l][c]` for level `l`, point `i0 + c`, `c < width`.
pub(crate) struct Bands<'b> {
    pub(crate) j: usize,
    pub(crate) i0: usize,
    pub(crate) width: usize,
    pub(crate) lo: &'b [[f64; TILE]],
    pub(crate) hi: &'b [[f64; TILE]],
}

/// Folds every function's interval ends, tile by tile in point order: `visit(acc, bands)` from
/// `init()` per function, in parallel over functions; results in function order.
pub(crate) fn fold_bands<T: Real, A: Send>(
    pred: &Prediction<'_, T>,
    levels: &[f64],
    init: impl Fn() -> A + Sync,
    visit: impl Fn(&mut A, &Bands<'_>) + Sync,
) -> Vec<A> {
    let d = pred.shape().d;
    let nl = levels.len();
    let buffers = || (vec![[0.0; TILE]; nl], vec![[0.0; TILE]; nl]);
    match pred {
        Prediction::Gaussian(g) => {
            let z: Vec<f64> = levels
                .iter()
                .map(|p| normal_quantile(0.5 + p / 2.0))
                .collect();
            (0..g.shape().n)
                .into_par_iter()
                .map_init(buffers, |(lo, hi), j| {
                    let mut acc = init();
                    for i0 in (0..d).step_by(TILE) {
                        let width = TILE.min(d - i0);
                        let r = j * d + i0..j * d + i0 + width;
                        for (c, (&mu, &sd)) in
                            g.mean()[r.clone()].iter().zip(&g.std()[r]).enumerate()
                        {
                            let (mu, sd): (f64, f64) = (mu.into(), sd.into());
                            for (l, zl) in z.iter().enumerate() {
                                lo[l][c] = mu - zl * sd;
                                hi[l][c] = mu + zl * sd;
                            }
                        }
                        let (lo, hi) = (&lo[..], &hi[..]);
                        visit(
                            &mut acc,
                            &Bands {
                                j,
                                i0,
                                width,
                                lo,
                                hi,
                            },
                        );
                    }
                    acc
                })
                .collect()
        }
        Prediction::Samples(s) => {
            let at = |p: f64| QuantileIndex::new(s.m(), p);
            let ends: Vec<_> = levels
                .iter()
                .map(|p| (at(0.5 - p / 2.0), at(0.5 + p / 2.0)))
                .collect();
            let per = s.fold_sorted(
                || (init(), buffers()),
                #[inline(always)]
                |(acc, (lo, hi)), j, i0, tile| {
                    for (l, (ql, qh)) in ends.iter().enumerate() {
                        ql.eval_tile(tile, &mut lo[l]);
                        qh.eval_tile(tile, &mut hi[l]);
                    }
                    let width = tile.width();
                    let (lo, hi) = (&lo[..], &hi[..]);
                    visit(
                        acc,
                        &Bands {
                            j,
                            i0,
                            width,
                            lo,
                            hi,
                        },
                    );
                },
            );
            per.into_iter().map(|(acc, _)| acc).collect()
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
    let per = fold_bands(
        pred,
        levels,
        || vec![0usize; levels.len()],
        #[inline(always)]
        |counts, b| {
            let y = target_tile(target, b.j * d + b.i0, b.width);
            for (count, (lo, hi)) in counts.iter_mut().zip(b.lo.iter().zip(b.hi)) {
                for c in 0..b.width {
                    *count += usize::from(lo[c] < y[c] && y[c] < hi[c]);
                }
            }
        },
    );
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
    let inside = fold_bands(
        pred,
        &[level],
        || true,
        #[inline(always)]
        |inside, b| {
            let y = target_tile(target, b.j * d + b.i0, b.width);
            let (lo, hi) = (&b.lo[0], &b.hi[0]);
            *inside &= (0..b.width).all(|c| lo[c] < y[c] && y[c] < hi[c]);
        },
    );
    Ok(inside.iter().filter(|&&b| b).count() as f64 / shape.n as f64)
}

/// Mean width of the central interval at nominal `level` (PNO's `IntervalWidth` at 0.95).
///
/// Formula: `(1/(n·d)) Σ_{j,i} (u_ji − l_ji)`.
pub fn interval_width<T: Real>(pred: &Prediction<'_, T>, level: f64) -> Result<f64> {
    check_level("level", level)?;
    let d = pred.shape().d;
    let per = fold_bands(
        pred,
        &[level],
        || 0.0,
        #[inline(always)]
        |sum, b| {
            let (lo, hi) = (&b.lo[0], &b.hi[0]);
            for c in 0..b.width {
                *sum += hi[c] - lo[c];
            }
        },
    );
    let per: Vec<f64> = per.into_iter().map(|s| s / d as f64).collect();
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
    let per = fold_bands(
        pred,
        levels,
        || vec![0.0; levels.len()],
        #[inline(always)]
        |sums, b| {
            let y = target_tile(target, b.j * d + b.i0, b.width);
            for (l, (sum, &p)) in sums.iter_mut().zip(levels).enumerate() {
                let (lo, hi) = (&b.lo[l], &b.hi[l]);
                for c in 0..b.width {
                    *sum += winkler_point(lo[c], hi[c], y[c], p);
                }
            }
        },
    );
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
