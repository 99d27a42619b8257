//! Last-layer Laplace approximation (MacKay 1992; Daxberger et al., "Laplace Redux", NeurIPS
//! 2021, `subset_of_weights='last_layer'`, `hessian_structure='full'`) for a network whose last
//! layer is linear: `f(x)_o = θ_oᵀ φ̃(x)` with features `φ̃ = [φ; 1]`.
//!
//! With a Gaussian likelihood of std `σ` and an isotropic prior `N(0, λ⁻¹ I)` the Hessian is
//! exact (the model is linear in θ): the posterior of every output channel is
//! `N(θ_MAP, (G/σ² + λI)⁻¹)` with `G = Σ φ̃ φ̃ᵀ` over all training functions and grid points.
//! `σ` and `λ` maximise the log marginal likelihood
//! `−(NO/2)log(2πσ²) − RSS/(2σ²) − (λ/2)‖θ‖² + (PO/2)log λ − (O/2)Σ_i log(g_i/σ² + λ)`
//! (`g_i` the eigenvalues of `G`, `N` points per channel, `O` channels, `P` features), and the
//! predictive draws sample θ and add observation noise `σ ε`.

use faer::Mat;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::noise::Noise;

/// A fitted last-layer posterior.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaplacePosterior {
    /// Feature count `P` (including the constant feature of the bias).
    pub features: usize,
    /// Eigenvectors of `G`, `P × P` row-major (column `i` is eigenvector `i`).
    pub eigvecs: Vec<f64>,
    /// Eigenvalues of `G`.
    pub eigvals: Vec<f64>,
    /// Observation noise std (normalised units).
    pub sigma_obs: f64,
    /// Prior precision λ.
    pub prior_precision: f64,
    /// Log marginal likelihood at the optimum.
    pub log_evidence: f64,
}

/// Sufficient statistics for the fit, accumulated over the training set.
#[derive(Debug, Clone, PartialEq)]
pub struct LaplaceStats {
    /// `G = Σ φ̃ φ̃ᵀ`, `P × P` row-major.
    pub gram: Vec<f64>,
    /// Feature count `P`.
    pub features: usize,
    /// Residual sum of squares of the MAP network over all channels and points.
    pub rss: f64,
    /// Points per channel `N` (functions × grid points).
    pub points: f64,
    /// Output channels `O`.
    pub outputs: usize,
    /// `‖θ_MAP‖²` of the last layer (weights and bias).
    pub theta_sq: f64,
}

impl LaplaceStats {
    fn log_evidence(&self, eig: &[f64], log_sigma: f64, log_lambda: f64) -> f64 {
        let (s2, lam) = ((2.0 * log_sigma).exp(), log_lambda.exp());
        let (n, o, p) = (self.points, self.outputs as f64, self.features as f64);
        let logdet: f64 = eig.iter().map(|&g| (g.max(0.0) / s2 + lam).ln()).sum();
        -0.5 * n * o * (2.0 * std::f64::consts::PI * s2).ln()
            - self.rss / (2.0 * s2)
            - 0.5 * lam * self.theta_sq
            + 0.5 * p * o * log_lambda
            - 0.5 * o * logdet
    }

    /// Fit `σ` and `λ` by maximising the log marginal likelihood (grid search over log-space,
    /// refined three times).
    pub fn fit(&self) -> Result<LaplacePosterior> {
        let p = self.features;
        if self.gram.len() != p * p
            || p == 0
            || !self.gram.iter().all(|v| v.is_finite())
            || !self.rss.is_finite()
        {
            return Err(ModelError::Input {
                what: "laplace statistics".into(),
                expected: format!("a finite {p}×{p} Gram matrix and residual"),
                got: format!("{} entries, rss {}", self.gram.len(), self.rss),
            });
        }
        let g = Mat::<f64>::from_fn(p, p, |i, j| {
            0.5 * (self.gram[i * p + j] + self.gram[j * p + i])
        });
        let eig = g
            .self_adjoint_eigen(faer::Side::Lower)
            .map_err(|e| ModelError::Input {
                what: "laplace Gram matrix".into(),
                expected: "a symmetric eigendecomposition".into(),
                got: format!("{e:?}"),
            })?;
        let vals: Vec<f64> = (0..p).map(|i| eig.S()[i]).collect();
        let u = eig.U();
        let vecs: Vec<f64> = (0..p * p).map(|k| u[(k / p, k % p)]).collect();
        let s0 = (self.rss / (self.points * self.outputs as f64))
            .sqrt()
            .max(1e-8);
        let (mut ls, mut ll) = (s0.ln(), 0.0f64);
        let (mut ws, mut wl) = (4.0f64, 12.0f64);
        let mut best = f64::NEG_INFINITY;
        for _ in 0..4 {
            let (c_s, c_l) = (ls, ll);
            for i in 0..=40 {
                for j in 0..=40 {
                    let a = c_s + ws * (i as f64 / 20.0 - 1.0);
                    let b = c_l + wl * (j as f64 / 20.0 - 1.0);
                    let v = self.log_evidence(&vals, a, b);
                    if v > best {
                        best = v;
                        ls = a;
                        ll = b;
                    }
                }
            }
            ws /= 8.0;
            wl /= 8.0;
        }
        Ok(LaplacePosterior {
            features: p,
            eigvecs: vecs,
            eigvals: vals,
            sigma_obs: ls.exp(),
            prior_precision: ll.exp(),
            log_evidence: best,
        })
    }
}

impl LaplacePosterior {
    /// One posterior draw of the last-layer perturbation `Δ[o, P]` (shared by all rows).
    pub fn sample_delta(&self, noise: &mut Noise, outputs: usize) -> Vec<f64> {
        let p = self.features;
        let s2 = self.sigma_obs * self.sigma_obs;
        let scale: Vec<f64> = self
            .eigvals
            .iter()
            .map(|&g| 1.0 / (g.max(0.0) / s2 + self.prior_precision).sqrt())
            .collect();
        let device = burn::tensor::Device::flex();
        let z = noise
            .shared_normal([outputs, p], &device)
            .into_data()
            .convert::<f64>()
            .try_into_vec::<f64>()
            .unwrap_or_default();
        let mut delta = vec![0.0; outputs * p];
        for o in 0..outputs {
            for (r, d) in delta[o * p..(o + 1) * p].iter_mut().enumerate() {
                *d = (0..p)
                    .map(|i| self.eigvecs[r * p + i] * scale[i] * z[o * p + i])
                    .sum();
            }
        }
        delta
    }

    /// `out[b, o, n] = Σ_f (W + Δ)[o, f] φ[b, f, n] + bias[o] + Δ[o, F] + σ ε[b, o, n]`.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        feats: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        delta: &[f64],
        eps: &[f32],
        b: usize,
        f: usize,
        co: usize,
        n: usize,
    ) -> Vec<f32> {
        let p = self.features;
        let mut out = vec![0.0f32; b * co * n];
        out.par_chunks_mut(n)
            .enumerate()
            .for_each(|(row, o_slice)| {
                let (bi, o) = (row / co, row % co);
                let mut acc = vec![
                    bias.map_or(0.0, |bb| f64::from(bb[o]))
                        + if p > f { delta[o * p + f] } else { 0.0 };
                    n
                ];
                for k in 0..f {
                    let wk = f64::from(w[o * f + k]) + delta[o * p + k];
                    let phi = &feats[(bi * f + k) * n..(bi * f + k + 1) * n];
                    for (a, &v) in acc.iter_mut().zip(phi) {
                        *a += wk * f64::from(v);
                    }
                }
                for (j, (dst, a)) in o_slice.iter_mut().zip(acc).enumerate() {
                    *dst = (a + self.sigma_obs * f64::from(eps[row * n + j])) as f32;
                }
            });
        out
    }
}
