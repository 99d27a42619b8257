//! Differentiable training losses on burn tensors. Each one has a plain-array twin in
//! `pno-metrics` (its test oracle) and the same formula:
//!
//! | loss | formula (per function, then the mean over the batch) | `pno-metrics` twin |
//! |---|---|---|
//! | [`l2_abs`] | `(∏h)^{1/2} ‖p − y‖₂` | `l2_abs` |
//! | [`l2_rel`] | `‖p − y‖₂ / ‖y‖₂` | `rel_l2` |
//! | [`h1_rel`] | `√(‖e‖² + Σ_k‖∂_k e‖²) / √(‖y‖² + Σ_k‖∂_k y‖²)`, central differences | `h1_rel` |
//! | [`gaussian_nll`] | mean over points of `½log(2πσ²) + (y−μ)²/(2σ²)` | `nll_gaussian` |
//! | [`crps_gaussian`] | mean over points of `σ[z(2Φ(z)−1) + 2φ(z) − 1/√π]` | `crps_gaussian` |
//! | [`crps_fair`] | mean over points of `(1/M)Σ|x_m−y| − 1/(2M(M−1))Σ_{m≠m'}|x_m−x_m'|` | `crps_fair` |
//! | [`energy_score`] | `(1/M)Σ‖x_m−y‖ − 1/(2M(M−1))Σ_{m≠m'}‖x_m−x_m'‖`, discretised L² | `energy_score` (fair) |
//! | [`elbo`] | `data + β · KL / n_train` | — |
//!
//! Shapes: predictions and targets `[batch, channels, points]`; sample sets
//! `[samples, batch, channels, points]`.

use std::f64::consts::PI;

use burn::tensor::{Device, Tensor, TensorData};

/// The grid a loss integrates over: spatial sizes, domain lengths and boundary type.
#[derive(Debug, Clone, PartialEq)]
pub struct LossGrid {
    /// Points per axis.
    pub dims: Vec<usize>,
    /// Domain length per axis.
    pub lengths: Vec<f64>,
    /// Periodic axes (central differences wrap) or bounded ones (one-sided at the ends).
    pub periodic: bool,
}

impl LossGrid {
    /// Unit-length, non-periodic axes.
    pub fn unit(dims: &[usize]) -> Self {
        Self {
            dims: dims.to_vec(),
            lengths: vec![1.0; dims.len()],
            periodic: false,
        }
    }

    /// Cell volume `∏ L_k / N_k`.
    pub fn cell_volume(&self) -> f64 {
        self.dims
            .iter()
            .zip(&self.lengths)
            .map(|(&n, &l)| l / n as f64)
            .product()
    }
}

/// Per-function squared norm: `[batch, c, points]` → `[batch]`.
fn sq_norm(x: Tensor<3>) -> Tensor<1> {
    let [b, _, _] = x.dims();
    x.powi_scalar(2)
        .reshape([b as i32, -1])
        .sum_dim(1)
        .reshape([b])
}

/// Absolute discretised L² error, mean over the batch (PNO-paper convention).
pub fn l2_abs(pred: Tensor<3>, target: Tensor<3>, grid: &LossGrid) -> Tensor<1> {
    (sq_norm(pred - target) * grid.cell_volume()).sqrt().mean()
}

/// Relative L² error, mean over the batch (FNO convention).
pub fn l2_rel(pred: Tensor<3>, target: Tensor<3>) -> Tensor<1> {
    (sq_norm(pred - target.clone()) / sq_norm(target).clamp_min(1e-30))
        .sqrt()
        .mean()
}

/// Central-difference matrix `[n, n]` of one axis (row i gives ∂f at point i).
fn diff_matrix(n: usize, length: f64, periodic: bool, device: &Device) -> Tensor<2> {
    let h = length / n as f64;
    let mut m = vec![0.0f32; n * n];
    let mut set = |i: usize, j: usize, v: f64| m[i * n + j] += v as f32;
    if n >= 2 {
        for i in 0..n {
            if i == 0 && !periodic {
                set(0, 1, 1.0 / h);
                set(0, 0, -1.0 / h);
            } else if i == n - 1 && !periodic {
                set(i, i, 1.0 / h);
                set(i, i - 1, -1.0 / h);
            } else {
                set(i, (i + 1) % n, 0.5 / h);
                set(i, (i + n - 1) % n, -0.5 / h);
            }
        }
    }
    Tensor::from_data(TensorData::new(m, [n, n]), device)
}

/// Derivatives along every axis of `[batch, c, points]` on `grid`.
fn gradients(x: Tensor<3>, grid: &LossGrid) -> Vec<Tensor<3>> {
    let [b, c, p] = x.dims();
    let device = x.device();
    match grid.dims.as_slice() {
        [n] => vec![
            x.matmul(
                diff_matrix(*n, grid.lengths[0], grid.periodic, &device)
                    .transpose()
                    .unsqueeze_dim(0),
            ),
        ],
        [h, w] => {
            let dw = diff_matrix(*w, grid.lengths[1], grid.periodic, &device).transpose();
            let gx_w = x
                .clone()
                .reshape([b * c * h, *w])
                .matmul(dw)
                .reshape([b, c, p]);
            let dh = diff_matrix(*h, grid.lengths[0], grid.periodic, &device);
            let gx_h = dh
                .unsqueeze_dim::<3>(0)
                .matmul(x.reshape([b * c, *h, *w]))
                .reshape([b, c, p]);
            vec![gx_h, gx_w]
        }
        _ => Vec::new(),
    }
}

/// Relative H¹ error with central differences, mean over the batch.
pub fn h1_rel(pred: Tensor<3>, target: Tensor<3>, grid: &LossGrid) -> Tensor<1> {
    let err = pred - target.clone();
    let mut num = sq_norm(err.clone());
    for g in gradients(err, grid) {
        num = num + sq_norm(g);
    }
    let mut den = sq_norm(target.clone());
    for g in gradients(target, grid) {
        den = den + sq_norm(g);
    }
    (num / den.clamp_min(1e-30)).sqrt().mean()
}

/// Gaussian negative log-likelihood, mean over all points and the batch.
pub fn gaussian_nll(mean: Tensor<3>, std: Tensor<3>, target: Tensor<3>) -> Tensor<1> {
    let var = std.powi_scalar(2);
    let nll = var.clone().log() * 0.5
        + (target - mean).powi_scalar(2) / (var * 2.0)
        + 0.5 * (2.0 * PI).ln();
    nll.mean()
}

/// Closed-form CRPS of a Gaussian, mean over all points and the batch.
pub fn crps_gaussian(mean: Tensor<3>, std: Tensor<3>, target: Tensor<3>) -> Tensor<1> {
    let z = (target - mean) / std.clone();
    let cdf = ((z.clone() / std::f64::consts::SQRT_2).erf() + 1.0) * 0.5;
    let pdf = (z.clone().powi_scalar(2) * -0.5).exp() / (2.0 * PI).sqrt();
    let crps = std * (z * (cdf * 2.0 - 1.0) + pdf * 2.0 - 1.0 / PI.sqrt());
    crps.mean()
}

/// Fair (unbiased) sample CRPS, mean over all points and the batch. Needs `M ≥ 2`.
pub fn crps_fair(samples: Tensor<4>, target: Tensor<3>) -> Tensor<1> {
    let m = samples.dims()[0];
    let skill = (samples.clone() - target.unsqueeze_dim::<4>(0))
        .abs()
        .mean_dim(0);
    let mut spread: Option<Tensor<3>> = None;
    for i in 0..m {
        for j in (i + 1)..m {
            let d = (samples.clone().narrow(0, i, 1) - samples.clone().narrow(0, j, 1))
                .abs()
                .squeeze_dim::<3>(0);
            spread = Some(match spread {
                Some(s) => s + d,
                None => d,
            });
        }
    }
    let skill = skill.squeeze_dim::<3>(0);
    match spread {
        // Σ_{m≠m'} = 2 Σ_{m<m'}, so the pair term is Σ_{m<m'} / (M(M−1)).
        Some(s) => (skill - s / (m * (m - 1)) as f64).mean(),
        None => skill.mean(),
    }
}

/// Fair energy score with the discretised L² norm, mean over the batch. Needs `M ≥ 2`.
///
/// A tiny `1e-12` inside the square roots keeps the gradient finite when two functions
/// coincide exactly.
pub fn energy_score(samples: Tensor<4>, target: Tensor<3>, grid: &LossGrid) -> Tensor<1> {
    let [m, b, _, _] = samples.dims();
    let w = grid.cell_volume();
    let norm = |x: Tensor<3>| (sq_norm(x) * w + 1e-12).sqrt();
    let mut skill: Option<Tensor<1>> = None;
    for i in 0..m {
        let d = norm(samples.clone().narrow(0, i, 1).squeeze_dim::<3>(0) - target.clone());
        skill = Some(match skill {
            Some(s) => s + d,
            None => d,
        });
    }
    let mut spread: Option<Tensor<1>> = None;
    for i in 0..m {
        for j in (i + 1)..m {
            let d = norm(
                samples.clone().narrow(0, i, 1).squeeze_dim::<3>(0)
                    - samples.clone().narrow(0, j, 1).squeeze_dim::<3>(0),
            );
            spread = Some(match spread {
                Some(s) => s + d,
                None => d,
            });
        }
    }
    let skill = skill.unwrap_or_else(|| Tensor::zeros([b], &target.device())) / m as f64;
    let es = match spread {
        Some(s) => skill - s / (m * (m - 1)) as f64,
        None => skill,
    };
    es.mean()
}

/// Evidence lower bound loss: `data + β · KL / n_train` (KL spread over one epoch's examples).
pub fn elbo(data: Tensor<1>, kl: Tensor<1>, beta: f64, n_train: usize) -> Tensor<1> {
    data + kl * (beta / n_train.max(1) as f64)
}
