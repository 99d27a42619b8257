//! Factorised spectral weights: the complex weight tensor of a spectral convolution, shape
//! `[modes…, in, out]`, stored as a Tucker decomposition (Kossaifi et al., "Multi-grid tensorized
//! Fourier neural operator", TMLR 2024 — neuraloperator's TFNO) or a CP decomposition, and
//! reconstructed in every forward pass so autodiff trains the core and factors.
//!
//! The ranks follow neuraloperator/TensorLy for a `rank` given as a fraction of the dense
//! parameter count: Tucker solves `Πn·x^d + Σn²·x = rank·Πn` for `x` and keeps
//! `round(n_k·x)` per axis (so a `[32, 32, 16, 9]` tensor at `rank = 0.42` has ranks
//! `[26, 26, 13, 7]`, as TFNO's); CP keeps `round(rank·Πn / Σn)` components.
//!
//! Initialisation is neuraloperator's: core (or CP weights) and factors are drawn with one common
//! scale chosen so the reconstructed complex weights have the standard deviation
//! `sqrt(2/(in+out))` in modulus (TensorLy-Torch's rule for complex entries; the dense layer has
//! it per real component; `docs/recipes.md`).

use burn::module::{Module, Param};
use burn::tensor::activation::softplus;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::init::Init;
use crate::noise::Noise;

/// How a spectral layer stores its weights (neuraloperator's `factorization` and `rank`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Factorization {
    /// Tucker core with one factor matrix per axis; `rank` is the fraction of dense parameters.
    Tucker {
        /// Parameter fraction in (0, 1].
        rank: f64,
    },
    /// Sum of rank-one terms; `rank` is the fraction of dense parameters.
    Cp {
        /// Parameter fraction in (0, 1].
        rank: f64,
    },
}

impl Factorization {
    /// Ranks for a tensor of `shape`: one per axis (Tucker) or the component count (CP).
    pub fn ranks(&self, shape: &[usize]) -> Vec<usize> {
        match *self {
            Factorization::Tucker { rank } => tucker_ranks(shape, rank),
            Factorization::Cp { rank } => vec![cp_rank(shape, rank)],
        }
    }
}

/// TensorLy's `validate_tucker_rank` for a fractional rank: the `x` with
/// `Πn·x^d + Σn²·x = rank·Πn` (bisection), then `max(1, round(n_k·x))`.
pub fn tucker_ranks(shape: &[usize], rank: f64) -> Vec<usize> {
    let total: f64 = shape.iter().map(|&n| n as f64).product();
    let squares: f64 = shape.iter().map(|&n| (n * n) as f64).sum();
    let d = shape.len() as i32;
    let f = |x: f64| total * x.powi(d) + squares * x - rank * total;
    let (mut lo, mut hi) = (0.0f64, rank.max(1.0));
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if f(mid) > 0.0 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let x = 0.5 * (lo + hi);
    shape
        .iter()
        .map(|&n| ((n as f64 * x).round() as usize).max(1))
        .collect()
}

/// TensorLy's `validate_cp_rank` for a fractional rank: `max(1, round(rank·Πn / Σn))`.
pub fn cp_rank(shape: &[usize], rank: f64) -> usize {
    let total: f64 = shape.iter().map(|&n| n as f64).product();
    let sum: f64 = shape.iter().map(|&n| n as f64).sum();
    ((rank * total / sum).round() as usize).max(1)
}

/// Complex factorised weights (real and imaginary parts as separate parameters).
#[derive(Module, Debug)]
pub struct FactorizedWeights {
    /// Real part of the Tucker core (flattened `[r_0, …, r_{d-1}]`) or of the CP weights `[r]`.
    pub core_re: Param<Tensor<1>>,
    /// Imaginary part of the core.
    pub core_im: Param<Tensor<1>>,
    /// Softplus-parameterised posterior std of `core_re` (variational layer only).
    pub core_rho_re: Option<Param<Tensor<1>>>,
    /// Softplus-parameterised posterior std of `core_im` (variational layer only).
    pub core_rho_im: Option<Param<Tensor<1>>>,
    /// Real parts of the factor matrices `[n_k, r_k]` (CP: `[n_k, r]`), axes `modes…, in, out`.
    pub factors_re: Vec<Param<Tensor<2>>>,
    /// Imaginary parts of the factor matrices.
    pub factors_im: Vec<Param<Tensor<2>>>,
    /// The factorisation.
    #[module(skip)]
    pub kind: Factorization,
    /// Dense shape `[modes…, in, out]`.
    #[module(skip)]
    pub shape: Vec<usize>,
    /// Ranks (Tucker: per axis; CP: one entry).
    #[module(skip)]
    pub ranks: Vec<usize>,
    /// Standard deviation of each real core/factor entry at initialisation.
    #[module(skip)]
    pub scale: f64,
}

/// The per-entry scale `s` that gives reconstructed complex entries the modulus std `std`:
/// `E|W|² = terms·(2s²)^order = std²`, as neuraloperator's factorised weights start (TensorLy-Torch
/// draws the core and every factor complex normal so that the reconstruction has `E|W|² = std²`,
/// i.e. per-component std `std/√2`). The dense layer keeps per-component std `std`
/// (docs/recipes.md): with this scale the factorised TFNO recipe went from rel-L2 0.0964 ± 0.014
/// to 0.0890 ± 0.0036 on neuraloperator's Darcy files (BENCHMARKS.md), the dense FNO recipe
/// already meets its target.
fn entry_scale(std: f64, terms: f64, order: usize) -> f64 {
    ((std * std / terms).powf(1.0 / order as f64) / 2.0).sqrt()
}

impl FactorizedWeights {
    /// Factorised weights of dense shape `shape`, initialised so each reconstructed complex entry
    /// has modulus standard deviation `std` (each real component `std/√2`); `variational` adds core posterior-std parameters whose
    /// initial value is `variational · scale / std` (the dense layer's `init_sigma`, rescaled).
    pub fn new(
        init: &mut Init,
        kind: Factorization,
        shape: &[usize],
        std: f64,
        variational: Option<f64>,
        device: &Device,
    ) -> Self {
        let ranks = kind.ranks(shape);
        let (core_len, terms, order, factor_cols): (usize, f64, usize, Vec<usize>) = match kind {
            Factorization::Tucker { .. } => (
                ranks.iter().product(),
                ranks.iter().product::<usize>() as f64,
                shape.len() + 1,
                ranks.clone(),
            ),
            Factorization::Cp { .. } => (
                ranks[0],
                ranks[0] as f64,
                shape.len() + 1,
                vec![ranks[0]; shape.len()],
            ),
        };
        let scale = entry_scale(std, terms, order);
        let bound = scale * 3f64.sqrt();
        let core_re = init.uniform([core_len], bound, device);
        let core_im = init.uniform([core_len], bound, device);
        let (core_rho_re, core_rho_im) = match variational {
            Some(sigma) => {
                let rho = (sigma * scale / std).exp_m1().ln();
                (
                    Some(init.constant([core_len], rho, device)),
                    Some(init.constant([core_len], rho, device)),
                )
            }
            None => (None, None),
        };
        let mut factors_re = Vec::with_capacity(shape.len());
        let mut factors_im = Vec::with_capacity(shape.len());
        for (&n, &r) in shape.iter().zip(&factor_cols) {
            factors_re.push(init.uniform([n, r], bound, device));
            factors_im.push(init.uniform([n, r], bound, device));
        }
        Self {
            core_re,
            core_im,
            core_rho_re,
            core_rho_im,
            factors_re,
            factors_im,
            kind,
            shape: shape.to_vec(),
            ranks,
            scale,
        }
    }

    /// The dense complex weights `(re, im)`, flattened to `[Π shape[..d-2], in, out]`; the core
    /// is sampled from its posterior when `noise` is given and the layer is variational.
    pub fn dense(&self, noise: Option<&mut Noise>) -> (Tensor<3>, Tensor<3>) {
        let (mut cr, mut ci) = (self.core_re.val(), self.core_im.val());
        if let (Some(n), Some(rr), Some(ri)) = (noise, &self.core_rho_re, &self.core_rho_im) {
            let dims = cr.dims();
            let device = cr.device();
            let er = n.shared_normal(dims, &device);
            let ei = n.shared_normal(dims, &device);
            cr = cr + softplus(rr.val(), 1.0) * er;
            ci = ci + softplus(ri.val(), 1.0) * ei;
        }
        let d = self.shape.len();
        let (wr, wi) = match self.kind {
            Factorization::Tucker { .. } => self.tucker(cr, ci),
            Factorization::Cp { .. } => self.cp(cr, ci),
        };
        let modes: usize = self.shape[..d - 2].iter().product();
        let (ci_, co) = (self.shape[d - 2], self.shape[d - 1]);
        (wr.reshape([modes, ci_, co]), wi.reshape([modes, ci_, co]))
    }

    /// Tucker reconstruction: one complex mode product per axis, as four real matmuls. Returns
    /// flat `[Π shape]` parts.
    fn tucker(&self, cr: Tensor<1>, ci: Tensor<1>) -> (Tensor<1>, Tensor<1>) {
        let d = self.shape.len();
        let mut dims: Vec<usize> = self.ranks.clone();
        let (mut xr, mut xi) = (cr, ci);
        for k in 0..d {
            let left: usize = dims[..k].iter().product();
            let r = dims[k];
            let right: usize = dims[k + 1..].iter().product();
            let n = self.shape[k];
            // [L, r, R] → [L·R, r] for each part.
            let flat = |t: Tensor<1>| {
                t.reshape([left, r, right])
                    .swap_dims(1, 2)
                    .reshape([left * right, r])
            };
            let (x_r, x_i) = (flat(xr), flat(xi));
            let ur = self.factors_re[k].val().transpose(); // [r, n]
            let ui = self.factors_im[k].val().transpose();
            // (Xr + iXi)(Ur + iUi) = (XrUr − XiUi) + i(XrUi + XiUr), as four real matmuls:
            // no slices of a stacked product, whose backward would write each slice's gradient
            // into a zeroed tensor of the whole product.
            let back = |t: Tensor<2>| t.reshape([left, right, n]).swap_dims(1, 2); // [L, n, R]
            let yr = back(x_r.clone().matmul(ur.clone()) - x_i.clone().matmul(ui.clone()));
            let yi = back(x_r.matmul(ui) + x_i.matmul(ur));
            dims[k] = n;
            let len = left * n * right;
            xr = yr.reshape([len]);
            xi = yi.reshape([len]);
        }
        (xr, xi)
    }

    /// CP reconstruction: Khatri–Rao products of the mode factors `A[modes, r]` and of the
    /// channel factors `B[in·out, r]`, then `W = (A ⊙ λ) Bᵀ` as one real block matmul.
    fn cp(&self, lr: Tensor<1>, li: Tensor<1>) -> (Tensor<1>, Tensor<1>) {
        let d = self.shape.len();
        let r = self.ranks[0];
        let kr = |axes: std::ops::Range<usize>| -> (Tensor<2>, Tensor<2>) {
            let mut it = axes.into_iter();
            let first = it.next().unwrap_or(0);
            let (mut pr, mut pi) = (self.factors_re[first].val(), self.factors_im[first].val());
            for k in it {
                let (ur, ui) = (self.factors_re[k].val(), self.factors_im[k].val());
                let [m, _] = pr.dims();
                let n = self.shape[k];
                let (a_r, a_i) = (pr.unsqueeze_dim::<3>(1), pi.unsqueeze_dim::<3>(1));
                let (b_r, b_i) = (ur.unsqueeze_dim::<3>(0), ui.unsqueeze_dim::<3>(0));
                let re = a_r.clone() * b_r.clone() - a_i.clone() * b_i.clone();
                let im = a_r * b_i + a_i * b_r;
                pr = re.reshape([m * n, r]);
                pi = im.reshape([m * n, r]);
            }
            (pr, pi)
        };
        let (ar, ai) = kr(0..d - 2);
        let (br, bi) = kr(d - 2..d);
        // A ⊙ λ (complex, per column).
        let (lr, li) = (lr.unsqueeze_dim::<2>(0), li.unsqueeze_dim::<2>(0));
        let (sr, si) = (
            ar.clone() * lr.clone() - ai.clone() * li.clone(),
            ar * li + ai * lr,
        );
        // [Sr | Si] · [[Brᵀ, Biᵀ], [−Biᵀ, Brᵀ]] = [Re W | Im W]
        let left = Tensor::cat(vec![sr, si], 1); // [m, 2r]
        let (brt, bit) = (br.transpose(), bi.transpose()); // [r, io]
        let top = Tensor::cat(vec![brt.clone(), bit.clone()], 1);
        let bottom = Tensor::cat(vec![bit.neg(), brt], 1);
        let w = left.matmul(Tensor::cat(vec![top, bottom], 0)); // [m, 2·io]
        let [m, two_io] = w.dims();
        let io = two_io / 2;
        (
            w.clone().narrow(1, 0, io).reshape([m * io]),
            w.narrow(1, io, io).reshape([m * io]),
        )
    }

    /// KL of the core posterior from `N(0, (prior_std · scale / std)²)` (the dense prior
    /// rescaled to the core's entries), or `None` for a non-variational layer.
    pub fn kl(&self, prior_std: f64, std: f64) -> Option<Tensor<1>> {
        let (rr, ri) = (self.core_rho_re.as_ref()?, self.core_rho_im.as_ref()?);
        let p = prior_std * self.scale / std;
        let term = |mu: Tensor<1>, rho: Tensor<1>| {
            let sigma = softplus(rho, 1.0);
            let var = sigma.clone().powi_scalar(2);
            (sigma.log().neg() + (var + mu.powi_scalar(2)) / (2.0 * p * p) + (p.ln() - 0.5)).sum()
        };
        Some(term(self.core_re.val(), rr.val()) + term(self.core_im.val(), ri.val()))
    }
}
