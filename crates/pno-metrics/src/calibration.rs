//! Calibration curves (reliability-diagram data), mean absolute calibration error and
//! miscalibration area, following uncertainty-toolbox (`prop_type="interval"`).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::normal::normal_quantile;
use crate::quantile::{central_level_ranked, ranks_tile};
use crate::view::{Prediction, Real, TILE, check_size, target_tile};

/// Number of levels uncertainty-toolbox uses by default (`num_bins=100`).
pub const DEFAULT_CALIBRATION_LEVELS: usize = 100;

/// Expected versus observed proportions of targets inside central prediction intervals: the data
/// of a reliability diagram (plot `observed` against `expected`; the diagonal is perfect).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationCurve {
    /// Nominal levels `p_k = k/(K − 1)`, `k = 0..K` (`np.linspace(0, 1, K)`).
    pub expected: Vec<f64>,
    /// Fraction of all points whose target lies in the closed central interval at `p_k`.
    pub observed: Vec<f64>,
}

impl CalibrationCurve {
    /// Mean absolute calibration error (uncertainty-toolbox `mean_absolute_calibration_error`,
    /// identical to its ECE): `(1/K) Σ_k |observed_k − expected_k|`.
    pub fn mean_absolute_error(&self) -> f64 {
        let s: f64 = self
            .expected
            .iter()
            .zip(&self.observed)
            .map(|(e, o)| (o - e).abs())
            .sum();
        s / self.expected.len() as f64
    }

    /// Root mean squared calibration error: `sqrt((1/K) Σ_k (observed_k − expected_k)²)`.
    pub fn root_mean_squared_error(&self) -> f64 {
        let s: f64 = self
            .expected
            .iter()
            .zip(&self.observed)
            .map(|(e, o)| (o - e) * (o - e))
            .sum();
        (s / self.expected.len() as f64).sqrt()
    }

    /// Miscalibration area (uncertainty-toolbox `miscalibration_area`): the area between the
    /// piecewise-linear calibration curve and the diagonal, `∫₀¹ |observed(p) − p| dp`.
    ///
    /// Formula: per segment of width `w` with signed gaps `a, b` at its ends, `w·|a + b|/2` when
    /// they do not change sign, else the two triangles `w·(a² + b²)/(2(|a| + |b|))`.
    pub fn miscalibration_area(&self) -> f64 {
        let gap: Vec<f64> = self
            .expected
            .iter()
            .zip(&self.observed)
            .map(|(e, o)| o - e)
            .collect();
        let mut area = 0.0;
        for k in 0..gap.len().saturating_sub(1) {
            let w = self.expected[k + 1] - self.expected[k];
            let (a, b) = (gap[k], gap[k + 1]);
            area += if a * b < 0.0 {
                w * (a * a + b * b) / (2.0 * (a.abs() + b.abs()))
            } else {
                w * (a + b).abs() / 2.0
            };
        }
        area
    }
}

/// Calibration curve at `levels` nominal levels `p_k = k·(1/(K − 1))`, `K = levels >= 2`.
///
/// Estimator: per point a score `s` and per level a threshold `t_k`, inside iff `s <= t_k`:
/// - Gaussian: `s = |y − μ|/σ` (0 if `y = μ`, `+∞` if `σ = 0` otherwise),
///   `t_k = Φ⁻¹(½ + p_k/2)` — exactly uncertainty-toolbox's `get_proportion_lists`;
/// - samples: `s` = smallest level whose empirical central interval contains `y`
///   ([`crate::central_level_sorted`]), `t_k = p_k`, i.e. the interval
///   `[Q(½ − p_k/2), Q(½ + p_k/2)]` of linearly interpolated sample quantiles.
///
/// Points are bucketed by binary search, so the cost is O(n·d·log K) after the per-point work.
pub fn calibration_curve<T: Real, Y: Real>(
    pred: &Prediction<'_, T>,
    target: &[Y],
    levels: usize,
) -> Result<CalibrationCurve> {
    check_size("levels", 2, levels)?;
    let shape = pred.shape();
    shape.check_target("target", target)?;
    let d = shape.d;
    let step = 1.0 / (levels - 1) as f64;
    let expected: Vec<f64> = (0..levels).map(|k| k as f64 * step).collect();
    let bucket = |t: &[f64], s: f64, counts: &mut [usize]| {
        let k = t.partition_point(|&tk| tk < s);
        if k < counts.len() {
            counts[k] += 1;
        }
    };
    let per: Vec<Vec<usize>> = match pred {
        Prediction::Gaussian(g) => {
            let t: Vec<f64> = expected
                .iter()
                .map(|p| normal_quantile(0.5 + p / 2.0))
                .collect();
            g.map_functions(target, |_, mu, sd, y| {
                let mut counts = vec![0usize; levels];
                for ((&mu, &sd), &y) in mu.iter().zip(sd).zip(y) {
                    let (r, sd): (f64, f64) = ((y.into() - mu.into()).abs(), sd.into());
                    let s = if r == 0.0 {
                        0.0
                    } else if sd == 0.0 {
                        f64::INFINITY
                    } else {
                        r / sd
                    };
                    bucket(&t, s, &mut counts);
                }
                counts
            })?
        }
        Prediction::Samples(smp) => smp.fold_sorted(
            || vec![0usize; levels],
            #[inline(always)]
            |counts, j, i0, tile| {
                let y = target_tile(target, j * d + i0, tile.width());
                let (mut a, mut b) = ([0; TILE], [0; TILE]);
                ranks_tile(tile, &y, &mut a, &mut b);
                for c in 0..tile.width() {
                    let (a, b) = (a[c] as usize, b[c] as usize);
                    let s = central_level_ranked(tile.m(), a, b, y[c], |k| tile.row(k)[c]);
                    bucket(&expected, s, counts);
                }
            },
        ),
    };
    let total = shape.len() as f64;
    let mut cum = 0usize;
    let observed = (0..levels)
        .map(|k| {
            cum += per.iter().map(|c| c[k]).sum::<usize>();
            cum as f64 / total
        })
        .collect();
    Ok(CalibrationCurve { expected, observed })
}

/// Mean absolute calibration error over [`DEFAULT_CALIBRATION_LEVELS`] levels
/// (`calibration_error`); see [`calibration_curve`] and
/// [`CalibrationCurve::mean_absolute_error`].
pub fn calibration_error<T: Real, Y: Real>(pred: &Prediction<'_, T>, target: &[Y]) -> Result<f64> {
    Ok(calibration_curve(pred, target, DEFAULT_CALIBRATION_LEVELS)?.mean_absolute_error())
}

/// Miscalibration area over [`DEFAULT_CALIBRATION_LEVELS`] levels; see [`calibration_curve`]
/// and [`CalibrationCurve::miscalibration_area`].
pub fn miscalibration_area<T: Real, Y: Real>(
    pred: &Prediction<'_, T>,
    target: &[Y],
) -> Result<f64> {
    Ok(calibration_curve(pred, target, DEFAULT_CALIBRATION_LEVELS)?.miscalibration_area())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pno_core::testing::close;

    #[test]
    fn miscalibration_area_crossing_segment_is_two_triangles() {
        let c = CalibrationCurve {
            expected: vec![0.0, 1.0],
            observed: vec![0.2, 0.8],
        };
        // gaps +0.2 and −0.2 cross at ½: two triangles of area 0.05 each
        assert!(close(c.miscalibration_area(), 0.1, 1e-15, 0.0));
        assert!(close(c.mean_absolute_error(), 0.2, 1e-15, 0.0));
    }
}
