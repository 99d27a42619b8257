//! Empirical quantiles of sorted draws and the central-interval level that reaches a value.

use crate::view::{SortedTile, TILE};

/// Empirical `q`-quantile of draws sorted ascending, linear interpolation between order
/// statistics (numpy's default `method="linear"`, `torch.quantile`):
/// `h = (m − 1)·q`, `Q(q) = x₍⌊h⌋₎ + (h − ⌊h⌋)(x₍⌊h⌋+1₎ − x₍⌊h⌋₎)` (0-based order statistics).
/// `sorted` must be non-empty; `q` is clamped to [0, 1].
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let at = QuantileIndex::new(sorted.len(), q);
    at.eval(sorted[at.lo], sorted[at.hi])
}

/// Where the linearly interpolated `q`-quantile of `m` sorted draws lies:
/// `Q(q) = x₍lo₎ + frac·(x₍hi₎ − x₍lo₎)` ([`quantile_sorted`]); depends on `m` and `q` only,
/// so a tile of points shares it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QuantileIndex {
    pub(crate) lo: usize,
    pub(crate) hi: usize,
    frac: f64,
}

impl QuantileIndex {
    /// The interpolation points of the `q`-quantile (`q` clamped to [0, 1]) of `m >= 1` draws.
    pub(crate) fn new(m: usize, q: f64) -> Self {
        if m == 1 {
            return Self {
                lo: 0,
                hi: 0,
                frac: 0.0,
            };
        }
        let h = (m - 1) as f64 * q.clamp(0.0, 1.0);
        let lo = (h.floor() as usize).min(m - 1);
        Self {
            lo,
            hi: (lo + 1).min(m - 1),
            frac: h - lo as f64,
        }
    }

    /// The quantile from the two order statistics `x₍lo₎`, `x₍hi₎`.
    #[inline(always)]
    pub(crate) fn eval(&self, x_lo: f64, x_hi: f64) -> f64 {
        x_lo + self.frac * (x_hi - x_lo)
    }

    /// The quantile at every point of a tile: `out[c]` for `c < tile.width()`.
    #[inline(always)]
    pub(crate) fn eval_tile(&self, tile: &SortedTile<'_>, out: &mut [f64; TILE]) {
        let (lo, hi) = (tile.row(self.lo), tile.row(self.hi));
        for ((o, &a), &b) in out.iter_mut().zip(lo).zip(hi).take(tile.width()) {
            *o = self.eval(a, b);
        }
    }
}

/// Ranks of the targets `y[c]` among each point's draws: `below[c] = #{x_k < y[c]}`,
/// `at_or_below[c] = #{x_k ≤ y[c]}` for `c < tile.width()` (counted over the rows, vectorised
/// across points).
#[inline(always)]
pub(crate) fn ranks_tile(
    tile: &SortedTile<'_>,
    y: &[f64; TILE],
    below: &mut [u32; TILE],
    at_or_below: &mut [u32; TILE],
) {
    below.fill(0);
    at_or_below.fill(0);
    for row in tile.rows() {
        for (((a, b), &x), &y) in below.iter_mut().zip(at_or_below.iter_mut()).zip(row).zip(y) {
            *a += u32::from(x < y);
            *b += u32::from(x <= y);
        }
    }
}

/// Smallest nominal level `p` whose central empirical interval
/// `[Q(½ − p/2), Q(½ + p/2)]` (see [`quantile_sorted`]) contains `y`, or `+∞` when `y` lies
/// outside `[x₍₁₎, x₍ₘ₎]`. Then `y` is inside the level-`p` interval (inclusive ends) iff
/// `central_level_sorted(sorted, y) <= p`.
///
/// Formula: with `q = Q⁻¹(y)` (inverse of the piecewise-linear quantile function; for ties the
/// `q` in the flat stretch closest to ½), the level is `|2q − 1|`.
pub fn central_level_sorted(sorted: &[f64], y: f64) -> f64 {
    let a = sorted.partition_point(|&x| x < y);
    let b = sorted.partition_point(|&x| x <= y);
    central_level_ranked(sorted.len(), a, b, y, |k| sorted[k])
}

/// [`central_level_sorted`] from the ranks `a = #{x_k < y}`, `b = #{x_k ≤ y}` of `y` among `m`
/// sorted draws; `x(k)` is order statistic `k` (0-based; only `a − 1` and `a` are read).
#[inline(always)]
pub(crate) fn central_level_ranked(
    m: usize,
    a: usize,
    b: usize,
    y: f64,
    x: impl Fn(usize) -> f64,
) -> f64 {
    if m == 1 {
        return if b > a { 0.0 } else { f64::INFINITY };
    }
    let mf = (m - 1) as f64;
    if b > a {
        let (ql, qh) = (a as f64 / mf, (b - 1) as f64 / mf);
        if ql <= 0.5 && 0.5 <= qh {
            0.0
        } else {
            (2.0 * ql - 1.0).abs().min((2.0 * qh - 1.0).abs())
        }
    } else if a == 0 || a == m {
        f64::INFINITY
    } else {
        let (x0, x1) = (x(a - 1), x(a));
        let q = ((a - 1) as f64 + (y - x0) / (x1 - x0)) / mf;
        (2.0 * q - 1.0).abs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pno_core::testing::close;

    #[test]
    fn quantile_sorted_matches_numpy_linear() {
        let x = [1.0, 2.0, 4.0, 8.0];
        // numpy.quantile([1,2,4,8], [0.1, 0.5, 0.975]) = [1.3, 3.0, 7.7]
        assert!(close(quantile_sorted(&x, 0.1), 1.3, 1e-14, 0.0));
        assert!(close(quantile_sorted(&x, 0.5), 3.0, 1e-14, 0.0));
        assert!(close(quantile_sorted(&x, 0.975), 7.7, 1e-14, 0.0));
        assert_eq!(quantile_sorted(&x, 1.0), 8.0);
    }

    #[test]
    fn central_level_sorted_inverts_interval_endpoints() {
        let x = [0.0, 1.0, 3.0, 4.0, 10.0];
        for p in [0.1, 0.35, 0.6, 0.9] {
            let hi = quantile_sorted(&x, 0.5 + p / 2.0);
            let lo = quantile_sorted(&x, 0.5 - p / 2.0);
            assert!(close(central_level_sorted(&x, hi), p, 1e-12, 1e-14));
            assert!(close(central_level_sorted(&x, lo), p, 1e-12, 1e-14));
        }
        assert_eq!(central_level_sorted(&x, 3.0), 0.0);
        assert_eq!(central_level_sorted(&x, 11.0), f64::INFINITY);
    }
}
