//! Probability integral transform (PIT) values and their histogram.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::normal::normal_cdf;
use crate::quantile::ranks_tile;
use crate::view::{Prediction, Real, TILE, check_size, target_tile};

/// PIT value `F(y)` at every point, `[n, d]` in the target's layout; uniform on [0, 1] for a
/// calibrated forecast.
///
/// Estimator: Gaussian `Φ((y − μ)/σ)` (σ = 0: 0, ½ or 1 as `y` is below, at or above μ);
/// samples: the mid-rank `(#{x_k < y} + #{x_k ≤ y}) / (2m)` (ties count half).
pub fn pit_values<T: Real, Y: Real>(pred: &Prediction<'_, T>, target: &[Y]) -> Result<Vec<f64>> {
    let shape = pred.shape();
    shape.check_target("target", target)?;
    let d = shape.d;
    let rows: Vec<Vec<f64>> = match pred {
        Prediction::Gaussian(g) => g.map_functions(target, |_, mu, sd, y| {
            mu.iter()
                .zip(sd)
                .zip(y)
                .map(|((&mu, &sd), &y)| {
                    let (mu, sd, y): (f64, f64, f64) = (mu.into(), sd.into(), y.into());
                    if sd == 0.0 {
                        if y < mu {
                            0.0
                        } else if y > mu {
                            1.0
                        } else {
                            0.5
                        }
                    } else {
                        normal_cdf((y - mu) / sd)
                    }
                })
                .collect()
        })?,
        Prediction::Samples(s) => s.fold_sorted(
            || Vec::with_capacity(d),
            #[inline(always)]
            |row, j, i0, tile| {
                let y = target_tile(target, j * d + i0, tile.width());
                let (mut below, mut at_or_below) = ([0; TILE], [0; TILE]);
                ranks_tile(tile, &y, &mut below, &mut at_or_below);
                let twice_m = (2 * tile.m()) as f64;
                row.extend(
                    (0..tile.width()).map(|c| f64::from(below[c] + at_or_below[c]) / twice_m),
                );
            },
        ),
    };
    Ok(rows.concat())
}

/// A histogram of PIT values on `[0, 1]` with equal-width bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PitHistogram {
    /// Bin edges `k/B`, `k = 0..=B`.
    pub edges: Vec<f64>,
    /// Number of values per bin.
    pub counts: Vec<u64>,
    /// Density per bin, `counts_k · B / total` (1 everywhere for a flat histogram).
    pub density: Vec<f64>,
}

/// Histogram of PIT values with `bins` equal bins on [0, 1].
///
/// Formula: value `u` goes to bin `min(⌊u·B⌋, B − 1)` (so 1.0 falls in the last bin). Values
/// must lie in [0, 1]; `bins >= 1`, at least one value.
pub fn pit_histogram(pit: &[f64], bins: usize) -> Result<PitHistogram> {
    check_size("bins", 1, bins)?;
    check_size("pit", 1, pit.len())?;
    if let Some(index) = pit.iter().position(|u| !(0.0..=1.0).contains(u)) {
        return Err(Error::OutOfRange {
            argument: "pit",
            index,
            expected: "[0, 1]",
            got: pit[index],
        });
    }
    let mut counts = vec![0u64; bins];
    for &u in pit {
        let k = ((u * bins as f64) as usize).min(bins - 1);
        counts[k] += 1;
    }
    let total = pit.len() as f64;
    Ok(PitHistogram {
        edges: (0..=bins).map(|k| k as f64 / bins as f64).collect(),
        density: counts
            .iter()
            .map(|&c| c as f64 * bins as f64 / total)
            .collect(),
        counts,
    })
}
