//! Gaussian random field with Neumann (cosine) modes, FNO's `GRF.m` (`docs/pde-specs.md` §1.3).
//!
//! On `s × s` points `x_m = (m + ½)/s`:
//! `U = τ^{α−1} Σ_{(k1,k2)≠(0,0), 0≤k<s} ξ_k (π²(k1² + k2²) + τ²)^{−α/2} c_{k1} c_{k2} cos(πk1 x) cos(πk2 y)`
//! with `c_0 = 1`, `c_k = √2`, `ξ_k ~ N(0, 1)`: the orthonormal 2-D DCT-III (MATLAB `idct2`) of
//! `s·τ^{α−1}·λ̃^{−α/2}·ξ`. Exact moments (test oracles): the orthonormal DCT-II coefficients
//! `Û_k` of a sample are independent `N(0, s²·τ^{2α−2}(π²|k|² + τ²)^{−α})`, `Û_0 = 0`, so the
//! sample mean is exactly zero. The Darcy recipe treats the `s × s` values as node values.

use std::sync::Arc;

use rand::Rng;
use rand_distr::StandardNormal;
use rustdct::{DctPlanner, TransformType2And3};

/// A planned Neumann GRF sampler on an `s × s` grid.
#[derive(Clone)]
pub struct GrfNeumann {
    alpha: f64,
    tau: f64,
    s: usize,
    /// Premultiplier of `ξ_k` before the unnormalised DCT-III (`coef·c'_{k1}·c'_{k2}`).
    scale: Vec<f64>,
    dct: Arc<dyn TransformType2And3<f64>>,
}

impl std::fmt::Debug for GrfNeumann {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GrfNeumann(alpha={}, tau={}, s={})",
            self.alpha, self.tau, self.s
        )
    }
}

impl GrfNeumann {
    /// Plans a sampler with smoothness `alpha`, inverse length `tau` on `s × s` points.
    pub fn new(alpha: f64, tau: f64, s: usize) -> Self {
        let dct = DctPlanner::new().plan_dct3(s);
        // rustdct's DCT-III computes X_0/2 + Σ_{k≥1} X_k cos(πk(2m+1)/(2s)); to obtain
        // c_0 = 1, c_k = √2 the inputs are scaled by c'_0 = 2, c'_k = √2 along each axis.
        let c = |k: usize| {
            if k == 0 {
                2.0
            } else {
                std::f64::consts::SQRT_2
            }
        };
        let mut scale = vec![0.0; s * s];
        for k1 in 0..s {
            for k2 in 0..s {
                if k1 == 0 && k2 == 0 {
                    continue;
                }
                scale[k1 * s + k2] = Self::amplitude(alpha, tau, k1, k2) * c(k1) * c(k2);
            }
        }
        Self {
            alpha,
            tau,
            s,
            scale,
            dct,
        }
    }

    /// Grid side `s`.
    pub fn size(&self) -> usize {
        self.s
    }

    /// `τ^{α−1}(π²(k1² + k2²) + τ²)^{−α/2}`, the amplitude of cosine mode `(k1, k2)` (zero at 0).
    pub fn amplitude(alpha: f64, tau: f64, k1: usize, k2: usize) -> f64 {
        if k1 == 0 && k2 == 0 {
            return 0.0;
        }
        let q = (k1 * k1 + k2 * k2) as f64;
        tau.powf(alpha - 1.0) * (std::f64::consts::PI.powi(2) * q + tau * tau).powf(-alpha / 2.0)
    }

    /// Variance `s²·amplitude²` of the orthonormal DCT-II coefficient `(k1, k2)` of a sample.
    pub fn dct_coefficient_variance(&self, k1: usize, k2: usize) -> f64 {
        let a = Self::amplitude(self.alpha, self.tau, k1, k2) * self.s as f64;
        a * a
    }

    /// Draws `s²` standard normals (row-major `(k1, k2)`, the `(0,0)` draw is discarded) and
    /// synthesises the field, row-major `[x, y]`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<f64> {
        let xi: Vec<f64> = (0..self.s * self.s)
            .map(|_| rng.sample(StandardNormal))
            .collect();
        self.synthesize(xi)
    }

    /// The field for given mode weights `ξ` (row-major `(k1, k2)`, length `s²`).
    pub fn synthesize(&self, mut xi: Vec<f64>) -> Vec<f64> {
        let s = self.s;
        for (x, c) in xi.iter_mut().zip(&self.scale) {
            *x *= c;
        }
        let mut scratch = vec![0.0; self.dct.get_scratch_len()];
        // along k2 (contiguous rows)
        for row in xi.chunks_exact_mut(s) {
            self.dct.process_dct3_with_scratch(row, &mut scratch);
        }
        // along k1 through a transpose
        let mut t = vec![0.0; s * s];
        transpose(&xi, &mut t, s);
        for row in t.chunks_exact_mut(s) {
            self.dct.process_dct3_with_scratch(row, &mut scratch);
        }
        transpose(&t, &mut xi, s);
        xi
    }
}

fn transpose(a: &[f64], b: &mut [f64], s: usize) {
    for i in 0..s {
        for j in 0..s {
            b[j * s + i] = a[i * s + j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::sample_rng;
    use std::f64::consts::PI;

    #[test]
    fn grf_neumann_synthesis_matches_naive_cosine_sum() {
        let (s, alpha, tau) = (7, 2.0, 3.0);
        let g = GrfNeumann::new(alpha, tau, s);
        let xi: Vec<f64> = (0..s * s).map(|p| (p as f64 * 0.91).sin()).collect();
        let got = g.synthesize(xi.clone());
        let c = |k: usize| if k == 0 { 1.0 } else { 2f64.sqrt() };
        let mut want = vec![0.0; s * s];
        for m1 in 0..s {
            for m2 in 0..s {
                let (x, y) = ((m1 as f64 + 0.5) / s as f64, (m2 as f64 + 0.5) / s as f64);
                for k1 in 0..s {
                    for k2 in 0..s {
                        want[m1 * s + m2] += xi[k1 * s + k2]
                            * GrfNeumann::amplitude(alpha, tau, k1, k2)
                            * c(k1)
                            * c(k2)
                            * (PI * k1 as f64 * x).cos()
                            * (PI * k2 as f64 * y).cos();
                    }
                }
            }
        }
        pno_core::testing::assert_close(&got, &want, 1e-12, 1e-13);
    }

    #[test]
    fn grf_neumann_samples_have_zero_mean_and_dct_eigenvalue_covariance() {
        let (s, m) = (16, 300);
        let g = GrfNeumann::new(2.0, 3.0, s);
        let dct2 = DctPlanner::new().plan_dct2(s);
        let mut spec = vec![0.0; s * s];
        for i in 0..m {
            let mut u = g.sample(&mut sample_rng(11, i));
            let mean = u.iter().sum::<f64>() / (s * s) as f64;
            assert!(mean.abs() < 1e-12, "mean {mean}");
            // orthonormal DCT-II: unnormalised dct2 times sqrt(2/s), k=0 times 1/sqrt(2)
            for row in u.chunks_exact_mut(s) {
                dct2.process_dct2(row);
            }
            let mut t = vec![0.0; s * s];
            transpose(&u, &mut t, s);
            for row in t.chunks_exact_mut(s) {
                dct2.process_dct2(row);
            }
            let w = |k: usize| {
                (2.0 / s as f64).sqrt()
                    * if k == 0 {
                        std::f64::consts::FRAC_1_SQRT_2
                    } else {
                        1.0
                    }
            };
            for k1 in 0..s {
                for k2 in 0..s {
                    let c = t[k2 * s + k1] * w(k1) * w(k2);
                    spec[k1 * s + k2] += c * c / m as f64;
                }
            }
        }
        assert!(spec[0] < 1e-20);
        // band of low modes 1 <= |k|^2 <= 13 (about 20 modes x 300 draws)
        // each normalised squared coefficient is chi-square(1): mean 1, variance 2
        let (mut ratio, mut count) = (0.0, 0);
        for k1 in 0..s {
            for k2 in 0..s {
                let q = k1 * k1 + k2 * k2;
                if (1..=13).contains(&q) {
                    ratio += spec[k1 * s + k2] / g.dct_coefficient_variance(k1, k2);
                    count += 1;
                }
            }
        }
        ratio /= count as f64;
        let tol = 4.0 * (2.0 / (m as usize * count) as f64).sqrt();
        eprintln!("grf_neumann band mean ratio {ratio} (tol {tol}, {count} modes x {m} draws)");
        assert!((ratio - 1.0).abs() < tol, "band ratio {ratio}");
    }
}
