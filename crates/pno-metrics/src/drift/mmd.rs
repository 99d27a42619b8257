//! Maximum mean discrepancy (Gretton et al. 2012, JMLR 13) with a Gaussian kernel and a seeded
//! permutation test: a multivariate two-sample test on small embeddings (alibi-detect's
//! `MMDDrift`).

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::view::{check_finite, check_size};

/// Result of [`mmd_test`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MmdTest {
    /// Unbiased estimate MMD²ᵤ of the observed split ([`mmd2_unbiased`]); may be slightly negative.
    pub mmd2: f64,
    /// Permutation p-value `(1 + #{permutations with MMD²ᵤ >= observed}) / (1 + n_permutations)`.
    pub p_value: f64,
    /// Kernel bandwidth σ ([`median_bandwidth`] of the pooled sample).
    pub bandwidth: f64,
    /// Number of random relabellings.
    pub n_permutations: usize,
    /// Seed of the permutation stream (ChaCha8).
    pub seed: u64,
}

/// Checks `x` holds whole rows of `d` values, at least `min_rows` of them; returns the row count.
fn rows(argument: &'static str, x: &[f64], d: usize, min_rows: usize) -> Result<usize> {
    check_size("d", 1, d)?;
    if !x.len().is_multiple_of(d) {
        return Err(Error::LengthMismatch {
            argument,
            expected: (x.len() / d + 1) * d,
            got: x.len(),
        });
    }
    check_size(argument, min_rows * d, x.len())?;
    check_finite(argument, x)?;
    Ok(x.len() / d)
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(u, v)| (u - v) * (u - v)).sum()
}

/// Median heuristic bandwidth: the median Euclidean distance over all pairs `i < j` of the pooled
/// rows of `x` (`[n, d]`) and `y` (`[m, d]`), numpy's `median` (the mean of the two middle values
/// for an even count). When that median is 0 (more than half the pairs coincide) the mean of the
/// positive distances is used; when every row coincides, 1.
///
/// Pooling keeps σ invariant under relabelling, so the permutation test stays exact.
pub fn median_bandwidth(x: &[f64], y: &[f64], d: usize) -> Result<f64> {
    let n = rows("x", x, d, 1)?;
    let m = rows("y", y, d, 1)?;
    let z: Vec<&[f64]> = x.chunks_exact(d).chain(y.chunks_exact(d)).collect();
    Ok(bandwidth_of(&z, n + m))
}

fn bandwidth_of(z: &[&[f64]], total: usize) -> f64 {
    let mut dist = Vec::with_capacity(total * total.saturating_sub(1) / 2);
    for i in 0..total {
        for j in i + 1..total {
            dist.push(sq_dist(z[i], z[j]).sqrt());
        }
    }
    if dist.is_empty() {
        return 1.0;
    }
    dist.sort_unstable_by(f64::total_cmp);
    let k = dist.len();
    let median = if k % 2 == 1 {
        dist[k / 2]
    } else {
        0.5 * (dist[k / 2 - 1] + dist[k / 2])
    };
    if median > 0.0 {
        return median;
    }
    let positive: Vec<f64> = dist.into_iter().filter(|&v| v > 0.0).collect();
    if positive.is_empty() {
        1.0
    } else {
        positive.iter().sum::<f64>() / positive.len() as f64
    }
}

/// Unbiased squared MMD between the rows of `x` (`[n, d]`, `n >= 2`) and `y` (`[m, d]`, `m >= 2`)
/// with the Gaussian kernel `k(a, b) = exp(−‖a − b‖² / (2σ²))`:
///
/// `MMD²ᵤ = Σ_{i≠j} k(xᵢ,xⱼ)/(n(n−1)) + Σ_{i≠j} k(yᵢ,yⱼ)/(m(m−1)) − 2·Σ_{i,j} k(xᵢ,yⱼ)/(nm)`
/// (Gretton et al. 2012, eq. 3).
pub fn mmd2_unbiased(x: &[f64], y: &[f64], d: usize, bandwidth: f64) -> Result<f64> {
    let n = rows("x", x, d, 2)?;
    let m = rows("y", y, d, 2)?;
    if !(bandwidth.is_finite() && bandwidth > 0.0) {
        return Err(Error::OutOfRange {
            argument: "bandwidth",
            index: 0,
            expected: "(0, inf)",
            got: bandwidth,
        });
    }
    let z: Vec<&[f64]> = x.chunks_exact(d).chain(y.chunks_exact(d)).collect();
    let k = Gram::new(&z, bandwidth);
    let labels: Vec<usize> = (0..n + m).collect();
    Ok(k.mmd2(&labels, n))
}

/// The pooled Gram matrix and its row sums.
struct Gram {
    k: Vec<f64>,
    row_sums: Vec<f64>,
    total: f64,
    size: usize,
}

impl Gram {
    fn new(z: &[&[f64]], bandwidth: f64) -> Self {
        let size = z.len();
        let gamma = 1.0 / (2.0 * bandwidth * bandwidth);
        let mut k = vec![0.0; size * size];
        for i in 0..size {
            k[i * size + i] = 1.0;
            for j in i + 1..size {
                let v = (-gamma * sq_dist(z[i], z[j])).exp();
                k[i * size + j] = v;
                k[j * size + i] = v;
            }
        }
        let row_sums: Vec<f64> = k.chunks_exact(size).map(|r| r.iter().sum()).collect();
        let total = row_sums.iter().sum();
        Self {
            k,
            row_sums,
            total,
            size,
        }
    }

    /// MMD²ᵤ with the first `n` entries of `order` as the `x` sample, the rest as `y`.
    fn mmd2(&self, order: &[usize], n: usize) -> f64 {
        let m = self.size - n;
        let xs = &order[..n];
        let mut s_xx = 0.0;
        let mut s_x = 0.0;
        for &i in xs {
            let row = &self.k[i * self.size..(i + 1) * self.size];
            s_xx += xs.iter().map(|&j| row[j]).sum::<f64>();
            s_x += self.row_sums[i];
        }
        let s_xy = s_x - s_xx;
        let s_yy = self.total - 2.0 * s_xy - s_xx;
        let (nf, mf) = (n as f64, m as f64);
        (s_xx - nf) / (nf * (nf - 1.0)) + (s_yy - mf) / (mf * (mf - 1.0)) - 2.0 * s_xy / (nf * mf)
    }
}

/// MMD permutation test of "the rows of `x` (`[n, d]`) and `y` (`[m, d]`) come from one
/// distribution", `n, m >= 2`.
///
/// Statistic [`mmd2_unbiased`] with σ from [`median_bandwidth`] of the pooled sample; the null
/// distribution from `n_permutations` uniformly random relabellings of the pooled rows (ChaCha8
/// seeded with `seed`); p-value `(1 + #{perm >= observed}) / (1 + n_permutations)`, which is
/// valid (never anti-conservative) for any number of permutations. Cost O((n+m)²·(d +
/// n_permutations)).
///
/// ```
/// use pno_metrics::mmd_test;
/// let x: Vec<f64> = (0..40).map(|i| (i as f64 * 0.37).sin()).collect();
/// let y: Vec<f64> = x.iter().map(|v| v + 3.0).collect();
/// let t = mmd_test(&x, &y, 2, 99, 0)?;
/// assert!(t.p_value <= 0.01);
/// # Ok::<(), pno_metrics::Error>(())
/// ```
pub fn mmd_test(
    x: &[f64],
    y: &[f64],
    d: usize,
    n_permutations: usize,
    seed: u64,
) -> Result<MmdTest> {
    let n = rows("x", x, d, 2)?;
    let m = rows("y", y, d, 2)?;
    check_size("n_permutations", 1, n_permutations)?;
    let z: Vec<&[f64]> = x.chunks_exact(d).chain(y.chunks_exact(d)).collect();
    let bandwidth = bandwidth_of(&z, n + m);
    let gram = Gram::new(&z, bandwidth);
    let mut order: Vec<usize> = (0..n + m).collect();
    let observed = gram.mmd2(&order, n);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut exceed = 0usize;
    for _ in 0..n_permutations {
        order.shuffle(&mut rng);
        if gram.mmd2(&order, n) >= observed {
            exceed += 1;
        }
    }
    Ok(MmdTest {
        mmd2: observed,
        p_value: (1 + exceed) as f64 / (1 + n_permutations) as f64,
        bandwidth,
        n_permutations,
        seed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_rows_have_zero_mmd_and_p_one() {
        let x = [1.0, 2.0, 1.0, 2.0, 1.0, 2.0];
        let t = mmd_test(&x, &x, 2, 19, 3).unwrap();
        assert_eq!(t.bandwidth, 1.0);
        assert!(t.mmd2.abs() < 1e-12);
        assert_eq!(t.p_value, 1.0);
    }

    #[test]
    fn ragged_rows_and_tiny_samples_are_errors() {
        assert!(matches!(
            mmd_test(&[1.0, 2.0, 3.0], &[1.0, 2.0], 2, 9, 0),
            Err(Error::LengthMismatch { argument: "x", .. })
        ));
        assert!(matches!(
            mmd_test(&[1.0, 2.0], &[1.0, 2.0, 3.0, 4.0], 2, 9, 0),
            Err(Error::TooSmall { argument: "x", .. })
        ));
        assert!(matches!(
            mmd_test(&[1.0, 2.0], &[1.0, 2.0], 1, 0, 0),
            Err(Error::TooSmall {
                argument: "n_permutations",
                ..
            })
        ));
    }

    #[test]
    fn same_seed_same_p_value() {
        let x: Vec<f64> = (0..30).map(|i| (i as f64).sin()).collect();
        let y: Vec<f64> = (0..30).map(|i| (i as f64).cos()).collect();
        let a = mmd_test(&x, &y, 3, 50, 7).unwrap();
        let b = mmd_test(&x, &y, 3, 50, 7).unwrap();
        assert_eq!(a, b);
    }
}
