//! Gaussian random fields on the periodic unit torus: `N(0, σ²(−Δ + τ²I)^{−α})`, mean mode removed.
//!
//! This is the law of neuraloperator's `GaussianRF` (FNO Navier–Stokes and Burgers inputs):
//! Fourier coefficients `√2·σ·(4π²|k|² + τ²)^{−α/2}·ξ_k` with `ξ_k` complex standard normal
//! (real and imaginary parts each `N(0, ½)`), `k` over the full FFT grid, zero at `k = 0`, and
//! the field is the real part of the inverse transform. Exact moments (test oracles):
//! `E|û_k|²/N^{2d} = σ²λ̃_k^{−α}` and `Var u(x) = Σ_{k≠0} σ²λ̃_k^{−α}` with `λ̃_k = 4π²|k|² + τ²`.

use std::f64::consts::PI;

use num_complex::Complex64;
use rand::Rng;
use rand_distr::StandardNormal;
use rustfft::FftPlanner;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fft2::{Fft2, wavenumber};

/// Parameters of a periodic Gaussian random field.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrfPeriodic {
    /// Smoothness exponent `α`.
    pub alpha: f64,
    /// Inverse length scale `τ`.
    pub tau: f64,
    /// Amplitude `σ`; `None` means neuraloperator's default `τ^{(2α−d)/2}`.
    #[serde(default)]
    pub sigma: Option<f64>,
}

impl GrfPeriodic {
    /// A field with the given parameters.
    pub fn new(alpha: f64, tau: f64, sigma: Option<f64>) -> Self {
        Self { alpha, tau, sigma }
    }

    /// Checks `α > d/2` (finite pointwise variance), `τ > 0`, `σ ≥ 0`, all finite.
    ///
    /// Errors name the key as `{prefix}.alpha` etc., or plain `alpha` when `prefix` is empty.
    pub fn validate(&self, prefix: &str, dim: usize) -> Result<()> {
        let key = |name: &str| {
            if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            }
        };
        if !(self.alpha.is_finite() && self.alpha > dim as f64 / 2.0) {
            return Err(Error::config(
                &key("alpha"),
                format!("a finite number > d/2 = {}", dim as f64 / 2.0),
                self.alpha,
            ));
        }
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return Err(Error::config(&key("tau"), "a finite number > 0", self.tau));
        }
        if let Some(s) = self.sigma
            && !(s.is_finite() && s >= 0.0)
        {
            return Err(Error::config(&key("sigma"), "a finite number >= 0", s));
        }
        Ok(())
    }

    /// The amplitude `σ` actually used in dimension `dim`.
    pub fn sigma_for(&self, dim: usize) -> f64 {
        self.sigma
            .unwrap_or_else(|| self.tau.powf(0.5 * (2.0 * self.alpha - dim as f64)))
    }

    /// Spectral variance `σ²(4π²|k|² + τ²)^{−α}` of mode `k` (with `|k|² = ksq`), zero at `k = 0`.
    pub fn mode_variance(&self, ksq: f64, dim: usize) -> f64 {
        if ksq == 0.0 {
            return 0.0;
        }
        let s = self.sigma_for(dim);
        s * s * (4.0 * PI * PI * ksq + self.tau * self.tau).powf(-self.alpha)
    }

    /// Exact pointwise variance `Σ_{k≠0} σ²λ̃_k^{−α}` on an `n^dim` grid.
    pub fn pointwise_variance(&self, n: usize, dim: usize) -> f64 {
        let k: Vec<f64> = (0..n).map(|i| wavenumber(i, n)).collect();
        match dim {
            1 => k.iter().map(|a| self.mode_variance(a * a, 1)).sum(),
            _ => k
                .iter()
                .flat_map(|a| k.iter().map(move |b| a * a + b * b))
                .map(|q| self.mode_variance(q, 2))
                .sum(),
        }
    }

    /// Draws a field on `n` periodic points `x_i = i/n`.
    pub fn sample_1d<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Vec<f64> {
        let mut c = self.coefficients(n, 1, rng);
        FftPlanner::new().plan_fft_inverse(n).process(&mut c);
        c.iter().map(|z| z.re).collect()
    }

    /// Draws a field on the `n × n` periodic grid, row-major `[x, y]`.
    pub fn sample_2d<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Vec<f64> {
        let mut c = self.coefficients(n, 2, rng);
        Fft2::new(n, n).inverse(&mut c);
        c.iter().map(|z| z.re).collect()
    }

    fn coefficients<R: Rng + ?Sized>(&self, n: usize, dim: usize, rng: &mut R) -> Vec<Complex64> {
        let k: Vec<f64> = (0..n).map(|i| wavenumber(i, n)).collect();
        let ksq: Vec<f64> = match dim {
            1 => k.iter().map(|a| a * a).collect(),
            _ => k
                .iter()
                .flat_map(|a| k.iter().map(move |b| a * a + b * b))
                .collect(),
        };
        let half = std::f64::consts::FRAC_1_SQRT_2;
        ksq.iter()
            .map(|&q| {
                let re: f64 = rng.sample(StandardNormal);
                let im: f64 = rng.sample(StandardNormal);
                let amp = (2.0 * self.mode_variance(q, dim)).sqrt();
                Complex64::new(re * half, im * half) * amp
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::sample_rng;

    #[test]
    fn grf_periodic_2d_matches_spectral_and_pointwise_variance() {
        let g = GrfPeriodic::new(2.5, 7.0, None);
        let n = 32;
        let m = 200;
        let plan = Fft2::new(n, n);
        let mut spec = vec![0.0; n * n];
        let mut var = 0.0;
        for s in 0..m {
            let w = g.sample_2d(n, &mut sample_rng(1, s));
            let mean: f64 = w.iter().sum::<f64>() / (n * n) as f64;
            assert!(mean.abs() < 1e-12, "mean mode must be zero, got {mean}");
            var += w.iter().map(|v| v * v).sum::<f64>() / (n * n) as f64;
            let mut c: Vec<Complex64> = w.iter().map(|&v| Complex64::new(v, 0.0)).collect();
            plan.forward(&mut c);
            for (a, z) in spec.iter_mut().zip(&c) {
                *a += z.norm_sqr() / (n as f64).powi(4);
            }
        }
        var /= m as f64;
        let exact = g.pointwise_variance(n, 2);
        // pointwise variance, averaged over the grid and 200 fields
        assert!((var / exact - 1.0).abs() < 0.1, "var {var} vs {exact}");
        // a band of low modes |k|^2 in 1..=8, each averaged over 200 draws
        let (mut got, mut want) = (0.0, 0.0);
        for i in 0..n {
            for j in 0..n {
                let q = wavenumber(i, n).powi(2) + wavenumber(j, n).powi(2);
                if (1.0..=8.0).contains(&q) {
                    got += spec[i * n + j] / m as f64;
                    want += g.mode_variance(q, 2);
                }
            }
        }
        assert!((got / want - 1.0).abs() < 0.08, "band ratio {}", got / want);
    }

    #[test]
    fn grf_periodic_1d_burgers_law_has_analytic_std() {
        // FNO Burgers: N(0, 625(−Δ+25I)^{−2}) → pointwise std 0.5936 at N = 8192.
        let g = GrfPeriodic::new(2.0, 5.0, Some(25.0));
        let exact = g.pointwise_variance(8192, 1).sqrt();
        assert!((exact - 0.5936).abs() < 5e-4, "{exact}");
        let n = 256;
        let m = 400;
        let var: f64 = (0..m)
            .map(|s| {
                let u = g.sample_1d(n, &mut sample_rng(3, s));
                u.iter().map(|v| v * v).sum::<f64>() / n as f64
            })
            .sum::<f64>()
            / m as f64;
        let want = g.pointwise_variance(n, 1);
        assert!((var / want - 1.0).abs() < 0.1, "{var} vs {want}");
    }

    #[test]
    fn grf_ns_default_sigma_is_tau_to_three_halves() {
        let g = GrfPeriodic::new(2.5, 7.0, None);
        assert!((g.sigma_for(2) - 7f64.powf(1.5)).abs() < 1e-12);
        // docs/pde-specs.md §1.2: std(w0) on the 256² NS grid is 0.1852
        assert!((g.pointwise_variance(256, 2).sqrt() - 0.1852).abs() < 2e-4);
    }

    #[test]
    fn grf_validate_rejects_rough_fields() {
        assert!(GrfPeriodic::new(1.0, 3.0, None).validate("grf", 2).is_err());
        assert!(
            GrfPeriodic::new(2.0, -1.0, None)
                .validate("grf", 1)
                .is_err()
        );
    }
}
