//! Spectral convolution (Li et al., "Fourier Neural Operator for Parametric PDEs", ICLR 2021)
//! as truncated DFTs written as matrix products.
//!
//! [`SpectralConv::forward`] takes `x[batch, in, points]`, a field on a 1-D or 2-D grid passed
//! separately as `grid = [n]` or `[h, w]` (points stored row-major, so `points = n` or `h·w`), and
//! returns `y[batch, out, points]` on the same grid:
//! `y = irfftn( W[k] · rfftn(x)[k] for the kept modes k ) + bias` over the 1 or 2 grid axes,
//! with neuraloperator's mode convention, one `n_modes` entry per axis: `n_modes = [m1, m2]`
//! keeps the `m1` frequencies `-⌊m1/2⌋ … ⌈m1/2⌉-1` along the first axis and `⌊m2/2⌋+1`
//! non-negative frequencies along the last (real-FFT) axis (`[m]` in 1-D: `⌊m/2⌋+1` frequencies);
//! modes a coarse grid cannot represent are skipped. The transforms are real cosine/sine basis
//! matrices built for the resolution of the input (once per resolution, kept modes and device,
//! then shared by every forward), so the layer runs at any grid size (85, 421, …)
//! and at grid sizes other than the training one (zero-shot super-resolution); the forward
//! transform carries the `1/N` factor (numpy's `norm="forward"`), so the Fourier weights mean the
//! same thing at every resolution. The transforms, the per-mode complex channel mixing, Fourier
//! dropout and the bias run as one fused op, [`crate::fused::spectral2d`] (a 1-D grid is a
//! `[1, n]` grid), with a hand-written adjoint backward under autodiff.
//!
//! Optional extras used by the probabilistic models: Fourier-coefficient dropout (PNO_D; Bülte,
//! Scholl & Kutyniok 2025) and a mean-field Gaussian posterior on the weights (variational PNO).

use std::f64::consts::PI;

use burn::module::{Module, Param};
use burn::tensor::activation::softplus;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::factorized::{Factorization, FactorizedWeights};
use crate::init::Init;
use crate::layers::Pointwise;
use crate::noise::{MaskStreams, Noise};

/// Which frequencies one axis keeps at a given resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxisModes {
    /// Signed frequencies, in weight order.
    pub freqs: Vec<i64>,
    /// Positions (in the configured mode list) of the frequencies that fit the resolution.
    pub kept: Vec<usize>,
}

/// The configured frequencies of a full (complex) axis with `m` modes: `-⌊m/2⌋ … ⌈m/2⌉-1`,
/// in weight order `0, 1, …, ⌈m/2⌉-1, -⌊m/2⌋, …, -1` (the order of FFT bins).
pub fn full_axis_freqs(m: usize) -> Vec<i64> {
    let pos = m.div_ceil(2) as i64;
    let neg = (m / 2) as i64;
    (0..pos).chain(-neg..0).collect()
}

/// The configured frequencies of the last (real) axis with `m` modes: `0 … ⌊m/2⌋`.
pub fn real_axis_freqs(m: usize) -> Vec<i64> {
    (0..=(m / 2) as i64).collect()
}

fn axis_modes(freqs: Vec<i64>, n: usize, real: bool) -> AxisModes {
    let n = n as i64;
    // A real axis holds frequencies 0..=n/2; a full axis holds -n/2 ..= (n-1)/2 without aliasing.
    let fits = |k: i64| {
        if real {
            2 * k <= n
        } else {
            -(n / 2) <= k && k <= (n - 1) / 2
        }
    };
    let kept = freqs
        .iter()
        .enumerate()
        .filter(|&(_, &k)| fits(k))
        .map(|(i, _)| i)
        .collect();
    AxisModes { freqs, kept }
}

/// Spectral convolution over 1 or 2 spatial axes.
#[derive(Module, Debug)]
pub struct SpectralConv {
    /// Real part of the dense per-mode weights `[modes, in, out]` (posterior mean for the
    /// variational layer); `None` when the weights are factorised.
    pub weight_re: Option<Param<Tensor<3>>>,
    /// Imaginary part of the dense per-mode weights `[modes, in, out]`.
    pub weight_im: Option<Param<Tensor<3>>>,
    /// Tucker or CP factorised weights (TFNO) in place of the dense ones.
    pub factorized: Option<FactorizedWeights>,
    /// Softplus-parameterised posterior std of `weight_re` (variational layer only).
    pub rho_re: Option<Param<Tensor<3>>>,
    /// Softplus-parameterised posterior std of `weight_im` (variational layer only).
    pub rho_im: Option<Param<Tensor<3>>>,
    /// Bias `[out]` added after the inverse transform.
    pub bias: Param<Tensor<1>>,
    /// Configured modes per axis (neuraloperator convention).
    #[module(skip)]
    pub n_modes: Vec<usize>,
}

/// Randomness a spectral layer may use in one forward pass.
pub struct SpectralNoise<'a> {
    /// Fourier-coefficient dropout probability (0 = off).
    pub dropout: f64,
    /// Whether to sample the variational weights (false: use the posterior mean).
    pub sample_weights: bool,
    /// The random streams.
    pub noise: &'a mut Noise,
}

impl SpectralConv {
    /// A layer mapping `d_in` to `d_out` channels keeping `n_modes` (one entry per spatial axis).
    /// `variational` adds posterior-std parameters initialised to `init_sigma`.
    pub fn new(
        init: &mut Init,
        d_in: usize,
        d_out: usize,
        n_modes: &[usize],
        variational: Option<f64>,
        device: &Device,
    ) -> Self {
        Self::with_factorization(init, d_in, d_out, n_modes, None, variational, device)
    }

    /// [`SpectralConv::new`] with the weights stored dense (`None`) or factorised. A factorised
    /// variational layer puts its Gaussian posterior on the core (Tucker) or the component
    /// weights (CP); the factor matrices stay point estimates.
    pub fn with_factorization(
        init: &mut Init,
        d_in: usize,
        d_out: usize,
        n_modes: &[usize],
        factorization: Option<Factorization>,
        variational: Option<f64>,
        device: &Device,
    ) -> Self {
        let modes = mode_count(n_modes);
        // neuraloperator's scale: std = sqrt(2 / (in + out)); uniform with that std.
        let std = init_std(d_in, d_out);
        let bound = std * 3f64.sqrt();
        if let Some(kind) = factorization {
            let mut shape = weight_axes(n_modes);
            shape.extend([d_in, d_out]);
            let factorized = FactorizedWeights::new(init, kind, &shape, std, variational, device);
            let bias = init.uniform([d_out], std, device);
            return Self {
                weight_re: None,
                weight_im: None,
                factorized: Some(factorized),
                rho_re: None,
                rho_im: None,
                bias,
                n_modes: n_modes.to_vec(),
            };
        }
        let weight_re = init.uniform([modes, d_in, d_out], bound, device);
        let weight_im = init.uniform([modes, d_in, d_out], bound, device);
        let (rho_re, rho_im) = match variational {
            Some(sigma) => {
                let rho = (sigma.exp_m1()).ln();
                (
                    Some(init.constant([modes, d_in, d_out], rho, device)),
                    Some(init.constant([modes, d_in, d_out], rho, device)),
                )
            }
            None => (None, None),
        };
        let bias = init.uniform([d_out], std, device);
        Self {
            weight_re: Some(weight_re),
            weight_im: Some(weight_im),
            factorized: None,
            rho_re,
            rho_im,
            bias,
            n_modes: n_modes.to_vec(),
        }
    }

    /// Output channels.
    pub fn d_out(&self) -> usize {
        self.bias.dims()[0]
    }

    /// Input channels.
    pub fn d_in(&self) -> usize {
        match (&self.weight_re, &self.factorized) {
            (Some(w), _) => w.dims()[1],
            (None, Some(f)) => f.shape[f.shape.len() - 2],
            (None, None) => 0,
        }
    }

    /// The effective dense weights `(re, im)` `[modes, in, out]` without any sampling (the
    /// posterior mean of a variational layer; reconstructed from the factors when factorised).
    pub fn dense_weights(&self) -> (Tensor<3>, Tensor<3>) {
        self.weights(None)
    }

    /// The kept modes of each axis at spatial size `grid`.
    pub fn axes(&self, grid: &[usize]) -> Vec<AxisModes> {
        let last = self.n_modes.len() - 1;
        self.n_modes
            .iter()
            .zip(grid)
            .enumerate()
            .map(|(a, (&m, &n))| {
                if a == last {
                    axis_modes(real_axis_freqs(m), n, true)
                } else {
                    axis_modes(full_axis_freqs(m), n, false)
                }
            })
            .collect()
    }

    /// The effective complex weights `(re, im)`, `[modes, in, out]`, sampled when asked.
    fn weights(&self, noise: Option<&mut SpectralNoise<'_>>) -> (Tensor<3>, Tensor<3>) {
        let (re, im) = match (&self.weight_re, &self.weight_im, &self.factorized) {
            (Some(re), Some(im), _) => (re.val(), im.val()),
            (_, _, Some(f)) => {
                let sample = noise.and_then(|n| n.sample_weights.then_some(&mut *n.noise));
                return f.dense(sample);
            }
            // Both constructors set either the dense pair or the factors.
            _ => panic!("spectral convolution without weights"),
        };
        match (noise, &self.rho_re, &self.rho_im) {
            (Some(n), Some(rr), Some(ri)) if n.sample_weights => {
                let dims = re.dims();
                let device = re.device();
                let er = n.noise.shared_normal(dims, &device);
                let ei = n.noise.shared_normal(dims, &device);
                (
                    re + softplus(rr.val(), 1.0) * er,
                    im + softplus(ri.val(), 1.0) * ei,
                )
            }
            _ => (re, im),
        }
    }

    /// KL divergence of the weight posterior from the prior `N(0, prior_std²)`, summed over all
    /// weights (zero for a non-variational layer).
    pub fn kl(&self, prior_std: f64) -> Option<Tensor<1>> {
        if let Some(f) = &self.factorized {
            return f.kl(prior_std, init_std(self.d_in(), self.d_out()));
        }
        let (rr, ri) = (self.rho_re.as_ref()?, self.rho_im.as_ref()?);
        let (mu_re, mu_im) = (self.weight_re.as_ref()?, self.weight_im.as_ref()?);
        let term = |mu: Tensor<3>, rho: Tensor<3>| {
            let sigma = softplus(rho, 1.0);
            let var = sigma.clone().powi_scalar(2);
            (sigma.log().neg()
                + (var + mu.powi_scalar(2)) / (2.0 * prior_std * prior_std)
                + (prior_std.ln() - 0.5))
                .sum()
        };
        Some(term(mu_re.val(), rr.val()) + term(mu_im.val(), ri.val()))
    }

    /// `x[batch, in, points]` on a grid of spatial size `grid` (1 or 2 axes, row-major) →
    /// `[batch, out, points]`.
    pub fn forward(
        &self,
        x: Tensor<3>,
        grid: &[usize],
        noise: Option<SpectralNoise<'_>>,
    ) -> Tensor<3> {
        let op = self.operands(&x.device(), grid, noise);
        crate::fused::spectral2d(x, op.wr, op.wi, self.bias.val(), op.bases, op.h, op.masks)
    }

    /// An FNO block around this convolution as one fused op: `gelu(conv(x) + skip(x))` when
    /// `activate`, else the sum (see [`crate::fused::spectral_block`]).
    pub fn forward_block(
        &self,
        x: Tensor<3>,
        grid: &[usize],
        noise: Option<SpectralNoise<'_>>,
        skip: &Pointwise,
        activate: bool,
    ) -> Tensor<3> {
        let op = self.operands(&x.device(), grid, noise);
        crate::fused::spectral_block(
            x,
            op.wr,
            op.wi,
            self.bias.val(),
            skip.weight.val(),
            skip.bias.as_ref().map(|b| b.val()),
            op.bases,
            op.h,
            op.masks,
            activate,
        )
    }

    /// The fused op's operands at this grid: the (sampled) weights of the modes that fit, the
    /// DFT bases, the grid rows and the Fourier dropout's mask streams.
    fn operands(
        &self,
        device: &Device,
        grid: &[usize],
        mut noise: Option<SpectralNoise<'_>>,
    ) -> OpOperands {
        let axes = self.axes(grid);
        let (mut wr, mut wi) = self.weights(noise.as_mut());
        // Select the weights of the modes that fit this resolution.
        let full: Vec<usize> = self.n_modes_full_count(&axes);
        let kept_index = kept_mode_index(&axes);
        if kept_index.len() != full.iter().product::<usize>() {
            let idx = Tensor::<1, Int>::from_data(
                TensorData::new(
                    kept_index.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                    [kept_index.len()],
                ),
                device,
            );
            wr = wr.select(0, idx.clone());
            wi = wi.select(0, idx);
        }
        // A 1-D grid of `n` points is a `[1, n]` grid whose first axis keeps only its zero
        // frequency (identity bases).
        let h = match *grid {
            [_] => 1,
            [h, _] => h,
            _ => unreachable_dims(grid.len()),
        };
        let bases = cached_bases(&axes, grid, device);
        let masks = match noise {
            Some(n) if n.dropout > 0.0 => Some(
                n.noise
                    .mask_streams(n.dropout, self.d_out() * kept_index.len()),
            ),
            _ => None,
        };
        OpOperands {
            wr,
            wi,
            bases,
            h,
            masks,
        }
    }

    /// The DFT bases of a 2-D convolution on an `[h, w]` grid, as [`crate::fused::spectral2d`]
    /// takes them: `[fw [w, 2·k2], mh [2·k1, 2·h], gh [2·h, 2·k1], gw [2·k2, w]]` over the
    /// modes kept at that size.
    pub fn bases_2d(&self, grid: [usize; 2], device: &Device) -> [Tensor<2>; 4] {
        bases_2d(&self.axes(&grid), grid, device)
    }

    fn n_modes_full_count(&self, axes: &[AxisModes]) -> Vec<usize> {
        axes.iter().map(|a| a.freqs.len()).collect()
    }
}

/// What [`SpectralConv::operands`] prepares for the fused op.
struct OpOperands {
    wr: Tensor<3>,
    wi: Tensor<3>,
    bases: [Tensor<2>; 4],
    h: usize,
    masks: Option<MaskStreams>,
}

fn unreachable_dims(d: usize) -> ! {
    // Configs are validated to 1 or 2 spatial axes before a layer is built.
    panic!("spectral convolution supports 1 or 2 spatial axes, got {d}")
}

/// Weight modes per axis for `n_modes` (neuraloperator convention: the last, real axis keeps
/// `⌊m/2⌋ + 1` non-negative frequencies).
pub fn weight_axes(n_modes: &[usize]) -> Vec<usize> {
    let last = n_modes.len() - 1;
    n_modes
        .iter()
        .enumerate()
        .map(|(a, &m)| if a == last { m / 2 + 1 } else { m })
        .collect()
}

/// Number of weight modes for `n_modes` (neuraloperator convention).
pub fn mode_count(n_modes: &[usize]) -> usize {
    weight_axes(n_modes).iter().product()
}

/// neuraloperator's initial weight scale `sqrt(2 / (in + out))`.
fn init_std(d_in: usize, d_out: usize) -> f64 {
    (2.0 / (d_in + d_out) as f64).sqrt()
}

/// Flat weight indices (row-major over axes) of the modes kept at this resolution.
fn kept_mode_index(axes: &[AxisModes]) -> Vec<usize> {
    match axes {
        [a] => a.kept.clone(),
        [a, b] => {
            let n2 = b.freqs.len();
            a.kept
                .iter()
                .flat_map(|&i| b.kept.iter().map(move |&j| i * n2 + j))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// How many `(modes, grid, device)` sets of DFT bases the spectral convolutions keep built (a
/// server answering at a few resolutions needs a handful; the oldest is dropped beyond this).
pub const BASIS_CACHE_CAPACITY: usize = 32;

/// A basis set built for the kept modes `axes` of a grid on one device (autodiff or not).
struct BasisEntry {
    axes: Vec<AxisModes>,
    grid: Vec<usize>,
    device: Device,
    autodiff: bool,
    bases: [Tensor<2>; 4],
}

/// Basis sets already built, newest last.
static BASES: std::sync::Mutex<Vec<BasisEntry>> = std::sync::Mutex::new(Vec::new());

/// The DFT bases of a 1-D (`[n]`) or 2-D (`[h, w]`) grid for the kept modes `axes`, built once
/// per `(axes, grid, device)` and shared by every later forward (they are constants, never
/// tracked by autodiff), so a forward pays no trigonometry; at most [`BASIS_CACHE_CAPACITY`]
/// sets are kept.
fn cached_bases(axes: &[AxisModes], grid: &[usize], device: &Device) -> [Tensor<2>; 4] {
    let autodiff = device.is_autodiff();
    let hit = |e: &BasisEntry| {
        e.axes == axes && e.grid == grid && e.device == *device && e.autodiff == autodiff
    };
    // A poisoned lock only means another thread panicked while holding it; the entries are
    // whole values either way.
    let mut cache = BASES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = cache.iter().find(|e| hit(e)) {
        return e.bases.clone();
    }
    let bases = match *grid {
        [n] => bases_1d(&axes[0], n, device),
        [h, w] => bases_2d(axes, [h, w], device),
        _ => unreachable_dims(grid.len()),
    };
    if cache.len() >= BASIS_CACHE_CAPACITY {
        cache.remove(0);
    }
    cache.push(BasisEntry {
        axes: axes.to_vec(),
        grid: grid.to_vec(),
        device: device.clone(),
        autodiff,
        bases: bases.clone(),
    });
    bases
}

/// The number of sets of DFT bases kept built now (tests).
#[doc(hidden)]
pub fn cached_basis_sets() -> usize {
    BASES.lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// The bases of a 1-D convolution on `n` points in the layout of [`bases_2d`] for a `[1, n]`
/// grid: the first axis has one point and keeps its zero frequency, so its forward and inverse
/// are the identity on `[re; im]`.
fn bases_1d(axis: &AxisModes, n: usize, device: &Device) -> [Tensor<2>; 4] {
    let eye = || tensor2(vec![1.0, 0.0, 0.0, 1.0], 2, 2, device);
    [
        real_forward_basis(axis, n, n, device),
        eye(),
        eye(),
        real_inverse_basis(axis, n, device),
    ]
}

/// See [`SpectralConv::bases_2d`].
fn bases_2d(axes: &[AxisModes], [h, w]: [usize; 2], device: &Device) -> [Tensor<2>; 4] {
    let fw = real_forward_basis(&axes[1], w, h * w, device);
    let (mh, gh) = full_bases(&axes[0], h, device);
    let gw = real_inverse_basis(&axes[1], w, device);
    [fw, mh, gh, gw]
}

fn tensor2(v: Vec<f64>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    let v: Vec<f32> = v.into_iter().map(|x| x as f32).collect();
    Tensor::from_data(TensorData::new(v, [rows, cols]), device)
}

/// Forward real DFT along the last axis restricted to the kept modes: `[n, 2k]`, columns
/// `cos(θ)/total | -sin(θ)/total` with `θ = 2π x k / n` (`total` = all grid points).
fn real_forward_basis(axis: &AxisModes, n: usize, total: usize, device: &Device) -> Tensor<2> {
    let k = axis.kept.len();
    let mut v = vec![0.0; n * 2 * k];
    for x in 0..n {
        for (j, &i) in axis.kept.iter().enumerate() {
            let t = 2.0 * PI * (x as f64) * (axis.freqs[i] as f64) / n as f64;
            v[x * 2 * k + j] = t.cos() / total as f64;
            v[x * 2 * k + k + j] = -t.sin() / total as f64;
        }
    }
    tensor2(v, n, 2 * k, device)
}

/// Inverse real DFT along the last axis from the kept modes: `[2k, n]`, rows
/// `c_k cos(φ) ; -c_k sin(φ)` with Hermitian weight `c_k = 2` except `c_0 = c_{n/2} = 1`.
fn real_inverse_basis(axis: &AxisModes, n: usize, device: &Device) -> Tensor<2> {
    let k = axis.kept.len();
    let mut v = vec![0.0; 2 * k * n];
    for (j, &i) in axis.kept.iter().enumerate() {
        let f = axis.freqs[i];
        let ck = if f == 0 || 2 * f == n as i64 {
            1.0
        } else {
            2.0
        };
        for x in 0..n {
            let t = 2.0 * PI * (x as f64) * (f as f64) / n as f64;
            v[j * n + x] = ck * t.cos();
            v[(k + j) * n + x] = -ck * t.sin();
        }
    }
    tensor2(v, 2 * k, n, device)
}

/// Complex DFT along a full axis restricted to the kept modes, acting on stacked
/// `[re; im]` rows: forward `[[C, S], [-S, C]]` (`[2k, 2n]`) and inverse
/// `[[Cᵀ, -Sᵀ], [Sᵀ, Cᵀ]]` (`[2n, 2k]`), with `C = cos(2π k h / n)`, `S = sin(2π k h / n)`.
fn full_bases(axis: &AxisModes, n: usize, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let k = axis.kept.len();
    let mut fwd = vec![0.0; 2 * k * 2 * n];
    let mut inv = vec![0.0; 2 * n * 2 * k];
    for (j, &i) in axis.kept.iter().enumerate() {
        let f = axis.freqs[i] as f64;
        for h in 0..n {
            let t = 2.0 * PI * f * (h as f64) / n as f64;
            let (c, s) = (t.cos(), t.sin());
            fwd[j * 2 * n + h] = c;
            fwd[j * 2 * n + n + h] = s;
            fwd[(k + j) * 2 * n + h] = -s;
            fwd[(k + j) * 2 * n + n + h] = c;
            inv[h * 2 * k + j] = c;
            inv[h * 2 * k + k + j] = -s;
            inv[(n + h) * 2 * k + j] = s;
            inv[(n + h) * 2 * k + k + j] = c;
        }
    }
    (
        tensor2(fwd, 2 * k, 2 * n, device),
        tensor2(inv, 2 * n, 2 * k, device),
    )
}
