//! Fused operations as a burn backend extension ([`PnoKernels`]).
//!
//! [`pointwise()`] is a pointwise (1×1) layer, `W · x + bias` over `[batch, in, points]`: GEMMs
//! into buffers of its own (burn's broadcast matmul copies every output once more), split over
//! batch items and point blocks so a row's values never depend on the batch it is in; the
//! backward computes the input, weight and bias gradients the same way ([`pointwise`](mod@pointwise)
//! module).
//!
//! [`channel_mlp()`] is a two-layer channel MLP, `W₂ · gelu((W₁ · x + b₁) · mask) + b₂`, as one
//! op: each (batch item, point block) task runs both layers on a block that stays in cache, so
//! the hidden field is never stored; under autodiff the forward keeps only `W₁ · x` and the
//! hand-written backward recomputes the activation block by block ([`mlp`](mod@mlp) module).
//!
//! [`bias_dropout_gelu`] computes `gelu((x + bias[c]) · mask)` over a `[batch, channels, points]`
//! field in one pass: the epilogue of every hidden pointwise layer (lifting and projection MLPs)
//! and, without bias and mask, the activation between Fourier blocks. Its GELU is the exact one,
//! `z · Φ(z)`, as in burn and PyTorch's default.
//!
//! - **Flex** (the CPU backend): a native kernel — vectorised erf/exp ([`math`]), rayon across
//!   rows, in place when the input buffer is not shared; the backward is one pass that also
//!   reduces the bias gradient.
//! - **Autodiff**: a hand-written backward that saves the input (not the pre-activation) and
//!   recomputes `z` inside the backward kernel, so training keeps one tensor per layer alive,
//!   as the unfused GELU does.
//! - **Every other backend** (CUDA through `Cube`): the trait's default bodies, the unfused
//!   composition of burn primitives (burn-fusion fuses them there).
//!
//! [`dropout()`] is dropout alone, `x · mask` (the block MLPs' output dropout); it is linear, so
//! under autodiff it keeps only the mask's stream positions and its backward is the same op.
//!
//! The dropout mask is never a tensor: the op gets it as [`MaskStreams`], the positions of the
//! row streams of [`crate::noise::Noise`] it comes from, and the Flex kernels make each row's
//! mask entries from them as they go, in the forward and again in the backward (nothing of the
//! mask is written to memory or kept for the backward). The values are those
//! [`Noise::dropout_mask`](crate::noise::Noise::dropout_mask) draws. Other backends get the mask
//! made on the host. The op takes no gradient with respect to it.

pub mod math;
pub mod mlp;
pub mod pointwise;
pub mod spectral;

mod autodiff;
mod flex;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, ExtensionType, TensorMetadata, backend_extension};
use burn::tensor::{Shape, Slice, Tensor, TensorData};

use crate::noise::MaskStreams;

/// An optional tensor operand (bias or mask) across the dispatch boundary (the extension macro
/// takes no `Option` of a tensor as an input).
#[derive(ExtensionType)]
pub enum Operand<B: Backend> {
    /// The tensor.
    Given(FloatTensor<B>),
    /// No such operand.
    Absent,
}

impl<B: Backend> Operand<B> {
    /// `Some(t)` → `Given(t)`.
    pub fn new(t: Option<FloatTensor<B>>) -> Self {
        t.map_or(Self::Absent, Self::Given)
    }

    /// `Given(t)` → `Some(t)`.
    pub fn into_option(self) -> Option<FloatTensor<B>> {
        match self {
            Self::Given(t) => Some(t),
            Self::Absent => None,
        }
    }
}

/// Fused kernels of the neural operators. Shapes: `x`, `mask`, `grad` are `[batch, channels,
/// points]`, `bias` is `[channels]`.
#[backend_extension(Flex, Cube: cfg(feature = "cuda"), Autodiff)]
pub trait PnoKernels: Backend {
    /// `gelu((x + bias[c]) · mask)`, the mask `[batch, channels · points]` from `masks`.
    fn bias_dropout_gelu(
        x: FloatTensor<Self>,
        #[extension_type] bias: Operand<Self>,
        masks: Option<MaskStreams>,
    ) -> FloatTensor<Self> {
        let mask = host_mask::<Self>(&x, masks.as_ref());
        composed_forward::<Self>(x, bias.into_option(), mask)
    }

    /// Gradients of [`PnoKernels::bias_dropout_gelu`] with respect to `x` and (when given)
    /// `bias`, from the forward inputs and the output gradient `grad`.
    fn bias_dropout_gelu_backward(
        x: FloatTensor<Self>,
        #[extension_type] bias: Operand<Self>,
        masks: Option<MaskStreams>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        let mask = host_mask::<Self>(&x, masks.as_ref());
        composed_backward::<Self>(x, bias.into_option(), mask, grad)
    }

    /// Dropout alone, `x · mask`, the mask `[batch, channels · points]` from `masks`. Linear in
    /// `x`, so its backward is the same op on the output gradient.
    fn dropout(x: FloatTensor<Self>, masks: MaskStreams) -> FloatTensor<Self> {
        composed_dropout::<Self>(x, &masks)
    }

    /// A pointwise layer, `w · x[b] + bias` for `x[batch, in, points]`, `w[out, in]`,
    /// `bias[out]`: `[batch, out, points]`.
    fn pointwise(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        #[extension_type] bias: Operand<Self>,
    ) -> FloatTensor<Self> {
        composed_pointwise::<Self>(x, w, bias.into_option())
    }

    /// Gradients of [`PnoKernels::pointwise`] with respect to `x`, `w` and (when `with_bias`)
    /// the bias, from the forward inputs and the output gradient `grad`.
    fn pointwise_backward(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        with_bias: bool,
        grad: FloatTensor<Self>,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        Option<FloatTensor<Self>>,
    ) {
        composed_pointwise_backward::<Self>(x, w, with_bias, grad)
    }

    /// A channel MLP, `w2 · gelu((w1 · x[b] + b1) · mask) + b2` for `x[batch, in, points]`,
    /// `w1[hidden, in]`, `w2[out, hidden]`, the mask `[batch, hidden · points]` from `masks`:
    /// `[batch, out, points]`.
    fn channel_mlp(
        x: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        b1: FloatTensor<Self>,
        w2: FloatTensor<Self>,
        b2: FloatTensor<Self>,
        masks: Option<MaskStreams>,
    ) -> FloatTensor<Self> {
        composed_channel_mlp::<Self>(x, w1, b1, w2, b2, masks).0
    }

    /// [`PnoKernels::channel_mlp`] that also returns the hidden pre-activation `w1 · x`
    /// `[batch, hidden, points]` (without the bias), the input of
    /// [`PnoKernels::channel_mlp_backward`].
    fn channel_mlp_with_hidden(
        x: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        b1: FloatTensor<Self>,
        w2: FloatTensor<Self>,
        b2: FloatTensor<Self>,
        masks: Option<MaskStreams>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        composed_channel_mlp::<Self>(x, w1, b1, w2, b2, masks)
    }

    /// Gradients of [`PnoKernels::channel_mlp`] with respect to `x`, `w1`, `b1`, `w2`, `b2`,
    /// from the input, the weights, the hidden pre-activation `z` and the output gradient.
    #[allow(clippy::type_complexity)]
    fn channel_mlp_backward(
        x: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        b1: FloatTensor<Self>,
        w2: FloatTensor<Self>,
        z: FloatTensor<Self>,
        masks: Option<MaskStreams>,
        grad: FloatTensor<Self>,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        composed_channel_mlp_backward::<Self>(x, w1, b1, w2, z, masks, grad)
    }

    /// A 2-D spectral convolution with its bias, Fourier dropout from `masks` (`[batch,
    /// co · m]`, entry `o·m + q`) and the DFT bases of [`crate::spectral`]: `x[batch, c, h·w]`,
    /// `wr`, `wi` `[m, c, co]` over the kept modes `m = k1·k2`, `fw [w, 2·k2]`,
    /// `mh [2·k1, 2·h]`, `gh [2·h, 2·k1]`, `gw [2·k2, w]`, `bias [co]`: `[batch, co, h·w]`.
    #[allow(clippy::too_many_arguments)]
    fn spectral2d(
        x: FloatTensor<Self>,
        wr: FloatTensor<Self>,
        wi: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        fw: FloatTensor<Self>,
        mh: FloatTensor<Self>,
        gh: FloatTensor<Self>,
        gw: FloatTensor<Self>,
        h: usize,
        masks: Option<MaskStreams>,
    ) -> FloatTensor<Self> {
        composed_spectral2d::<Self>(x, wr, wi, bias, [fw, mh, gh, gw], h, masks).0
    }

    /// [`PnoKernels::spectral2d`] that also returns the input's Fourier coefficients
    /// `[batch, c, 2·k1·k2]` (real rows then imaginary rows of `[2·k1, k2]`), the state of
    /// [`PnoKernels::spectral2d_backward`].
    #[allow(clippy::too_many_arguments)]
    fn spectral2d_with_coefs(
        x: FloatTensor<Self>,
        wr: FloatTensor<Self>,
        wi: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        fw: FloatTensor<Self>,
        mh: FloatTensor<Self>,
        gh: FloatTensor<Self>,
        gw: FloatTensor<Self>,
        h: usize,
        masks: Option<MaskStreams>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        composed_spectral2d::<Self>(x, wr, wi, bias, [fw, mh, gh, gw], h, masks)
    }

    /// An FNO block, `act(spectral2d(x) + skip_w · x[b] + skip_b)` with `skip_w [co, c]`,
    /// `skip_b [co]` and GELU when `activate` (the other operands as
    /// [`PnoKernels::spectral2d`]): `[batch, co, h·w]`. The default body composes the trait's
    /// ops, so under autodiff it has their backwards.
    #[allow(clippy::too_many_arguments)]
    fn spectral2d_block(
        x: FloatTensor<Self>,
        wr: FloatTensor<Self>,
        wi: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        skip_w: FloatTensor<Self>,
        #[extension_type] skip_b: Operand<Self>,
        fw: FloatTensor<Self>,
        mh: FloatTensor<Self>,
        gh: FloatTensor<Self>,
        gw: FloatTensor<Self>,
        h: usize,
        masks: Option<MaskStreams>,
        activate: bool,
    ) -> FloatTensor<Self> {
        composed_spectral_block::<Self>(
            x,
            [wr, wi, bias, skip_w],
            skip_b,
            [fw, mh, gh, gw],
            h,
            masks,
            activate,
        )
    }

    /// Gradients of [`PnoKernels::spectral2d`] with respect to `x`, `wr`, `wi` and the bias,
    /// from the input's coefficients `s` ([`PnoKernels::spectral2d_with_coefs`]), the weights,
    /// the bases and the output gradient `grad [batch, co, h·w]` (the op is linear in `x`: the
    /// field itself is not needed).
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn spectral2d_backward(
        s: FloatTensor<Self>,
        wr: FloatTensor<Self>,
        wi: FloatTensor<Self>,
        fw: FloatTensor<Self>,
        mh: FloatTensor<Self>,
        gh: FloatTensor<Self>,
        gw: FloatTensor<Self>,
        h: usize,
        masks: Option<MaskStreams>,
        grad: FloatTensor<Self>,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        composed_spectral2d_backward::<Self>(s, wr, wi, [fw, mh, gh, gw], h, masks, grad)
    }
}

/// The unfused 2-D spectral convolution from burn primitives: the matmul chain with its
/// transposes, the mixing as one batched matmul with the block weight `[[Wr, Wi], [-Wi, Wr]]`
/// (see [`PnoKernels::spectral2d`] for the shapes); returns the output and the input's
/// coefficients `[batch, c, 2·k1·k2]`.
fn composed_spectral2d<B: Backend>(
    x: FloatTensor<B>,
    wr: FloatTensor<B>,
    wi: FloatTensor<B>,
    bias: FloatTensor<B>,
    [fw, mh, gh, gw]: [FloatTensor<B>; 4],
    h: usize,
    masks: Option<MaskStreams>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let (xs, ws) = (x.shape(), wr.shape());
    let (b, c, hw, co) = (xs[0], xs[1], xs[2], ws[2]);
    let w = hw / h.max(1);
    let (k1, k2) = (mh.shape()[0] / 2, fw.shape()[1] / 2);
    let m = k1 * k2;
    let re = |t: FloatTensor<B>, s: &[usize]| B::float_reshape(t, Shape::from(s.to_vec()));
    // Real DFT along the last axis, then the complex one along the first.
    let y = B::float_matmul(re(x, &[b * c * h, w]), fw);
    let y = B::float_permute(re(y, &[b * c, h, 2, k2]), &[0, 2, 1, 3]);
    let s = B::float_matmul(re(mh, &[1, 2 * k1, 2 * h]), re(y, &[b * c, 2 * h, k2]));
    // Per-mode mixing.
    let y = re(
        B::float_permute(re(s.clone(), &[b, c, 2, m]), &[3, 0, 2, 1]),
        &[m, b, 2 * c],
    );
    let block = mixing_block::<B>(wr, wi);
    let o = B::float_permute(re(B::float_matmul(y, block), &[m, b, 2, co]), &[1, 3, 2, 0]);
    let o = apply_spectral_mask::<B>(o, masks.as_ref(), [b, co, 1, m]);
    // The inverse transforms.
    let y = B::float_matmul(re(gh, &[1, 2 * h, 2 * k1]), re(o, &[b * co, 2 * k1, k2]));
    let y = B::float_permute(re(y, &[b * co, 2, h, k2]), &[0, 2, 1, 3]);
    let y = re(
        B::float_matmul(re(y, &[b * co * h, 2 * k2]), gw),
        &[b, co, hw],
    );
    (
        B::float_add(y, re(bias, &[1, co, 1])),
        re(s, &[b, c, 2 * m]),
    )
}

/// An FNO block from the trait's own ops: the spectral convolution, the pointwise skip, their
/// sum and GELU (see [`PnoKernels::spectral2d_block`]).
fn composed_spectral_block<B: PnoKernels>(
    x: FloatTensor<B>,
    [wr, wi, bias, skip_w]: [FloatTensor<B>; 4],
    skip_b: Operand<B>,
    [fw, mh, gh, gw]: [FloatTensor<B>; 4],
    h: usize,
    masks: Option<MaskStreams>,
    activate: bool,
) -> FloatTensor<B> {
    let y = B::spectral2d(x.clone(), wr, wi, bias, fw, mh, gh, gw, h, masks);
    let z = B::float_add(y, B::pointwise(x, skip_w, skip_b));
    if activate {
        B::bias_dropout_gelu(z, Operand::Absent, None)
    } else {
        z
    }
}

/// The mixing as one real matrix per mode: `[[Wr, Wi], [-Wi, Wr]]`, `[m, 2·c, 2·co]`.
fn mixing_block<B: Backend>(wr: FloatTensor<B>, wi: FloatTensor<B>) -> FloatTensor<B> {
    let top = B::float_cat(vec![wr.clone(), wi.clone()], 2);
    let bottom = B::float_cat(vec![B::float_neg(wi), wr], 2);
    B::float_cat(vec![top, bottom], 1)
}

/// `t` (shape `[b, co, 2, m]`) times the Fourier dropout mask made on the host.
fn apply_spectral_mask<B: Backend>(
    t: FloatTensor<B>,
    masks: Option<&MaskStreams>,
    shape: [usize; 4],
) -> FloatTensor<B> {
    match masks {
        Some(ms) => {
            let mask = B::float_from_data(TensorData::new(ms.to_vec(), shape), &t.device());
            let mask = B::float_cast(mask, t.dtype().into());
            B::float_mul(t, mask)
        }
        None => t,
    }
}

/// The unfused spectral backward from burn primitives: the adjoint of each step of
/// [`composed_spectral2d`] in reverse order.
#[allow(clippy::type_complexity)]
fn composed_spectral2d_backward<B: Backend>(
    s: FloatTensor<B>,
    wr: FloatTensor<B>,
    wi: FloatTensor<B>,
    [fw, mh, gh, gw]: [FloatTensor<B>; 4],
    h: usize,
    masks: Option<MaskStreams>,
    grad: FloatTensor<B>,
) -> (
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
) {
    let (gs, ws) = (grad.shape(), wr.shape());
    let (b, co, hw, c) = (gs[0], gs[1], gs[2], ws[1]);
    let w = hw / h.max(1);
    let (k1, k2) = (mh.shape()[0] / 2, fw.shape()[1] / 2);
    let m = k1 * k2;
    let re = |t: FloatTensor<B>, s: &[usize]| B::float_reshape(t, Shape::from(s.to_vec()));
    let t = |t: FloatTensor<B>| B::float_swap_dims(t, 0, 1);
    let dbias = re(
        B::float_sum_dim(B::float_sum_dim(grad.clone(), 0), 2),
        &[co],
    );
    // The inverse transforms' adjoints: the output coefficients' gradient [b, co, 2, m].
    let p = B::float_matmul(re(grad, &[b * co * h, w]), t(gw));
    let du = re(
        B::float_permute(re(p, &[b * co, h, 2, k2]), &[0, 2, 1, 3]),
        &[b * co, 2 * h, k2],
    );
    let dt = B::float_matmul(re(t(gh), &[1, 2 * k1, 2 * h]), du);
    let dt = apply_spectral_mask::<B>(re(dt, &[b, co, 2, m]), masks.as_ref(), [b, co, 1, m]);
    // The mixing's adjoint.
    let dout = re(B::float_permute(dt, &[3, 0, 2, 1]), &[m, b, 2 * co]);
    let y = re(
        B::float_permute(re(s, &[b, c, 2, m]), &[3, 0, 2, 1]),
        &[m, b, 2 * c],
    );
    let block = mixing_block::<B>(wr, wi);
    let dy = B::float_matmul(dout.clone(), B::float_swap_dims(block, 1, 2)); // [m, b, 2c]
    let dblock = B::float_matmul(B::float_swap_dims(y, 1, 2), dout); // [m, 2c, 2co]
    let part = |rows: usize, cols: usize| {
        let r = Slice::new(rows as isize, Some((rows + c) as isize), 1);
        let k = Slice::new(cols as isize, Some((cols + co) as isize), 1);
        B::float_slice(dblock.clone(), &[Slice::new(0, Some(m as isize), 1), r, k])
    };
    let dwr = B::float_add(part(0, 0), part(c, co));
    let dwi = B::float_sub(part(0, co), part(c, 0));
    // The forward transforms' adjoints.
    let ds = re(
        B::float_permute(re(dy, &[m, b, 2, c]), &[1, 3, 2, 0]),
        &[b * c, 2 * k1, k2],
    );
    let da = B::float_matmul(re(t(mh), &[1, 2 * h, 2 * k1]), ds); // [b·c, 2h, k2]
    let da = re(
        B::float_permute(re(da, &[b * c, 2, h, k2]), &[0, 2, 1, 3]),
        &[b * c * h, 2 * k2],
    );
    let dx = re(B::float_matmul(da, t(fw)), &[b, c, hw]);
    (dx, dwr, dwi, dbias)
}

/// The unfused channel MLP: pointwise, bias + dropout + GELU, pointwise, as burn primitives;
/// returns the output and the hidden pre-activation.
fn composed_channel_mlp<B: Backend>(
    x: FloatTensor<B>,
    w1: FloatTensor<B>,
    b1: FloatTensor<B>,
    w2: FloatTensor<B>,
    b2: FloatTensor<B>,
    masks: Option<MaskStreams>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let z = composed_pointwise::<B>(x, w1, None);
    let mask = host_mask::<B>(&z, masks.as_ref());
    let h = composed_forward::<B>(z.clone(), Some(b1), mask);
    (composed_pointwise::<B>(h, w2, Some(b2)), z)
}

/// The unfused channel-MLP backward from burn primitives.
#[allow(clippy::type_complexity)]
fn composed_channel_mlp_backward<B: Backend>(
    x: FloatTensor<B>,
    w1: FloatTensor<B>,
    b1: FloatTensor<B>,
    w2: FloatTensor<B>,
    z: FloatTensor<B>,
    masks: Option<MaskStreams>,
    grad: FloatTensor<B>,
) -> (
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
) {
    let mask = host_mask::<B>(&z, masks.as_ref());
    let h = composed_forward::<B>(z.clone(), Some(b1.clone()), mask.clone());
    let (dh, dw2, db2) = composed_pointwise_backward::<B>(h, w2, true, grad);
    let (dz, db1) = composed_backward::<B>(z, Some(b1), mask, dh);
    let (dx, dw1, _) = composed_pointwise_backward::<B>(x, w1, false, dz);
    (
        dx,
        dw1,
        db1.expect("a bias gradient was asked for"),
        dw2,
        db2.expect("a bias gradient was asked for"),
    )
}

/// The unfused pointwise layer: a broadcast batched matmul `[1, o, i] @ [b, i, n]` and a bias
/// add, as burn primitives.
fn composed_pointwise<B: Backend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
) -> FloatTensor<B> {
    let [o, i] = [w.shape()[0], w.shape()[1]];
    let y = B::float_matmul(B::float_reshape(w, Shape::new([1, o, i])), x);
    match bias {
        Some(b) => B::float_add(y, B::float_reshape(b, Shape::new([1, o, 1]))),
        None => y,
    }
}

/// The unfused pointwise backward from burn primitives.
fn composed_pointwise_backward<B: Backend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    with_bias: bool,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>) {
    let [o, i] = [w.shape()[0], w.shape()[1]];
    let wt = B::float_reshape(B::float_swap_dims(w, 0, 1), Shape::new([1, i, o]));
    let dx = B::float_matmul(wt, grad.clone());
    let dw = B::float_matmul(grad.clone(), B::float_swap_dims(x, 1, 2));
    let dw = B::float_reshape(B::float_sum_dim(dw, 0), Shape::new([o, i]));
    let db = with_bias.then(|| {
        let s = B::float_sum_dim(B::float_sum_dim(grad, 0), 2);
        B::float_reshape(s, Shape::new([o]))
    });
    (dx, dw, db)
}

/// The masks as a tensor of `x`'s shape on `x`'s device (made on the host).
fn host_mask<B: Backend>(
    x: &FloatTensor<B>,
    masks: Option<&MaskStreams>,
) -> Option<FloatTensor<B>> {
    masks.map(|m| masks_tensor::<B>(x, m))
}

/// [`host_mask`] of given masks.
fn masks_tensor<B: Backend>(x: &FloatTensor<B>, masks: &MaskStreams) -> FloatTensor<B> {
    B::float_from_data(TensorData::new(masks.to_vec(), x.shape()), &x.device())
}

/// Dropout alone from burn primitives: `x` times the mask made on the host.
fn composed_dropout<B: Backend>(x: FloatTensor<B>, masks: &MaskStreams) -> FloatTensor<B> {
    let mask = masks_tensor::<B>(&x, masks);
    B::float_mul(x, mask)
}

/// The unfused forward: bias add, mask multiply and GELU as burn primitives.
fn composed_forward<B: Backend>(
    x: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    mask: Option<FloatTensor<B>>,
) -> FloatTensor<B> {
    B::gelu(pre_activation::<B>(x, bias, mask))
}

/// The unfused backward from burn primitives (the backend's own `gelu_backward`).
fn composed_backward<B: Backend>(
    x: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    mask: Option<FloatTensor<B>>,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
    let with_bias = bias.is_some();
    let z = pre_activation::<B>(x, bias, mask.clone());
    let dz = B::gelu_backward(z, grad);
    let dx = match mask {
        Some(m) => B::float_mul(dz, m),
        None => dz,
    };
    let db = with_bias.then(|| {
        let c = dx.shape()[1];
        let s = B::float_sum_dim(B::float_sum_dim(dx.clone(), 0), 2);
        B::float_reshape(s, Shape::new([c]))
    });
    (dx, db)
}

/// `(x + bias[c]) · mask` from burn primitives.
fn pre_activation<B: Backend>(
    x: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    mask: Option<FloatTensor<B>>,
) -> FloatTensor<B> {
    let z = match bias {
        Some(b) => {
            let c = b.shape()[0];
            B::float_add(x, B::float_reshape(b, Shape::new([1, c, 1])))
        }
        None => x,
    };
    match mask {
        Some(m) => B::float_mul(z, m),
        None => z,
    }
}

#[cfg(feature = "cuda")]
impl PnoKernels for burn::backend::Cube {}

/// `gelu((x + bias[c]) · mask)` on `x[batch, channels, points]` and `bias[channels]`, the masks
/// made from `masks` (`[batch, channels · points]`) inside the kernel, as one fused op (see the
/// [module docs](self)).
pub fn bias_dropout_gelu(
    x: Tensor<3>,
    bias: Option<Tensor<1>>,
    masks: Option<MaskStreams>,
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as PnoKernels>::bias_dropout_gelu(
        x.into_dispatch(),
        Operand::new(bias.map(Tensor::into_dispatch)),
        masks,
    ))
}

/// Dropout alone, `x · mask` on `x[batch, channels, points]`, the masks made from `masks`
/// (`[batch, channels · points]`) inside the kernel (see the [module docs](self)): the values of
/// `x` times the mask [`Noise::dropout_mask`](crate::noise::Noise::dropout_mask) would draw, bit
/// for bit. Its backward makes the mask again.
pub fn dropout(x: Tensor<3>, masks: MaskStreams) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as PnoKernels>::dropout(x.into_dispatch(), masks))
}

/// The input gradient and bias gradient of [`bias_dropout_gelu`] for output gradient `grad` (the
/// op's backward on its own, for tests and benchmarks).
pub fn bias_dropout_gelu_backward(
    x: Tensor<3>,
    bias: Option<Tensor<1>>,
    masks: Option<MaskStreams>,
    grad: Tensor<3>,
) -> (Tensor<3>, Option<Tensor<1>>) {
    let (dx, db) = <Dispatch as PnoKernels>::bias_dropout_gelu_backward(
        x.into_dispatch(),
        Operand::new(bias.map(Tensor::into_dispatch)),
        masks,
        grad.into_dispatch(),
    );
    (Tensor::from_dispatch(dx), db.map(Tensor::from_dispatch))
}

/// A pointwise (1×1) layer as one fused op: `w · x[b] + bias` for `x[batch, in, points]`,
/// `w[out, in]`, `bias[out]`, giving `[batch, out, points]` (see the [module docs](self)).
pub fn pointwise(x: Tensor<3>, w: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as PnoKernels>::pointwise(
        x.into_dispatch(),
        w.into_dispatch(),
        Operand::new(bias.map(Tensor::into_dispatch)),
    ))
}

/// The gradients of [`pointwise()`] for output gradient `grad`: input `[batch, in, points]`,
/// weight `[out, in]` and, when `with_bias`, bias `[out]` (the op's backward on its own, for
/// tests and benchmarks).
pub fn pointwise_backward(
    x: Tensor<3>,
    w: Tensor<2>,
    with_bias: bool,
    grad: Tensor<3>,
) -> (Tensor<3>, Tensor<2>, Option<Tensor<1>>) {
    let (dx, dw, db) = <Dispatch as PnoKernels>::pointwise_backward(
        x.into_dispatch(),
        w.into_dispatch(),
        with_bias,
        grad.into_dispatch(),
    );
    (
        Tensor::from_dispatch(dx),
        Tensor::from_dispatch(dw),
        db.map(Tensor::from_dispatch),
    )
}

/// `gelu(x)` through the fused kernel (no bias, no mask).
pub fn gelu(x: Tensor<3>) -> Tensor<3> {
    bias_dropout_gelu(x, None, None)
}

/// A channel MLP as one fused op: `w2 · gelu((w1 · x[b] + b1) · mask) + b2` for
/// `x[batch, in, points]`, `w1[hidden, in]`, `b1[hidden]`, `w2[out, hidden]`, `b2[out]`, the
/// masks (`[batch, hidden · points]`) made inside the kernel; `[batch, out, points]`. On Flex the
/// hidden field is never stored: each (batch item, point block) task runs both layers on a
/// cache-sized block ([`mlp`](mod@mlp)); under autodiff the forward keeps only `w1 · x`.
pub fn channel_mlp(
    x: Tensor<3>,
    w1: Tensor<2>,
    b1: Tensor<1>,
    w2: Tensor<2>,
    b2: Tensor<1>,
    masks: Option<MaskStreams>,
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as PnoKernels>::channel_mlp(
        x.into_dispatch(),
        w1.into_dispatch(),
        b1.into_dispatch(),
        w2.into_dispatch(),
        b2.into_dispatch(),
        masks,
    ))
}

/// [`channel_mlp`] and its hidden pre-activation `w1 · x` (for tests and benchmarks of the
/// backward).
pub fn channel_mlp_with_hidden(
    x: Tensor<3>,
    w1: Tensor<2>,
    b1: Tensor<1>,
    w2: Tensor<2>,
    b2: Tensor<1>,
    masks: Option<MaskStreams>,
) -> (Tensor<3>, Tensor<3>) {
    let (y, z) = <Dispatch as PnoKernels>::channel_mlp_with_hidden(
        x.into_dispatch(),
        w1.into_dispatch(),
        b1.into_dispatch(),
        w2.into_dispatch(),
        b2.into_dispatch(),
        masks,
    );
    (Tensor::from_dispatch(y), Tensor::from_dispatch(z))
}

/// The gradients of [`channel_mlp`] — input, `w1`, `b1`, `w2`, `b2` — for output gradient `grad`,
/// from the hidden pre-activation `z` of [`channel_mlp_with_hidden`] (the op's backward on its
/// own, for tests and benchmarks).
#[allow(clippy::type_complexity)]
pub fn channel_mlp_backward(
    x: Tensor<3>,
    w1: Tensor<2>,
    b1: Tensor<1>,
    w2: Tensor<2>,
    z: Tensor<3>,
    masks: Option<MaskStreams>,
    grad: Tensor<3>,
) -> (Tensor<3>, Tensor<2>, Tensor<1>, Tensor<2>, Tensor<1>) {
    let (dx, dw1, db1, dw2, db2) = <Dispatch as PnoKernels>::channel_mlp_backward(
        x.into_dispatch(),
        w1.into_dispatch(),
        b1.into_dispatch(),
        w2.into_dispatch(),
        z.into_dispatch(),
        masks,
        grad.into_dispatch(),
    );
    (
        Tensor::from_dispatch(dx),
        Tensor::from_dispatch(dw1),
        Tensor::from_dispatch(db1),
        Tensor::from_dispatch(dw2),
        Tensor::from_dispatch(db2),
    )
}

/// A 2-D spectral convolution as one fused op (see [`PnoKernels::spectral2d`] for the shapes and
/// [`spectral`](mod@spectral) for the kernel): `x[batch, c, h·w]` on an `h`-row grid →
/// `[batch, co, h·w]`, bias and Fourier dropout included. On Flex the native kernel; under
/// autodiff it keeps the input's Fourier coefficients and has a hand-written adjoint backward.
#[allow(clippy::too_many_arguments)]
pub fn spectral2d(
    x: Tensor<3>,
    wr: Tensor<3>,
    wi: Tensor<3>,
    bias: Tensor<1>,
    [fw, mh, gh, gw]: [Tensor<2>; 4],
    h: usize,
    masks: Option<MaskStreams>,
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as PnoKernels>::spectral2d(
        x.into_dispatch(),
        wr.into_dispatch(),
        wi.into_dispatch(),
        bias.into_dispatch(),
        fw.into_dispatch(),
        mh.into_dispatch(),
        gh.into_dispatch(),
        gw.into_dispatch(),
        h,
        masks,
    ))
}

/// The gradients of [`spectral2d`] for output gradient `grad`: input `[batch, c, h·w]`, weights
/// `[m, c, co]` (real, imaginary) and bias `[co]` (the op's backward on its own, for tests and
/// benchmarks; it runs the forward again for the coefficients).
#[allow(clippy::too_many_arguments)]
pub fn spectral2d_backward(
    x: Tensor<3>,
    wr: Tensor<3>,
    wi: Tensor<3>,
    bias: Tensor<1>,
    bases: [Tensor<2>; 4],
    h: usize,
    masks: Option<MaskStreams>,
    grad: Tensor<3>,
) -> (Tensor<3>, Tensor<3>, Tensor<3>, Tensor<1>) {
    let [fw, mh, gh, gw] = bases.map(Tensor::into_dispatch);
    let (wr, wi) = (wr.into_dispatch(), wi.into_dispatch());
    let (_, s) = <Dispatch as PnoKernels>::spectral2d_with_coefs(
        x.into_dispatch(),
        wr.clone(),
        wi.clone(),
        bias.into_dispatch(),
        fw.clone(),
        mh.clone(),
        gh.clone(),
        gw.clone(),
        h,
        masks.clone(),
    );
    let (dx, dwr, dwi, db) = <Dispatch as PnoKernels>::spectral2d_backward(
        s,
        wr,
        wi,
        fw,
        mh,
        gh,
        gw,
        h,
        masks,
        grad.into_dispatch(),
    );
    (
        Tensor::from_dispatch(dx),
        Tensor::from_dispatch(dwr),
        Tensor::from_dispatch(dwi),
        Tensor::from_dispatch(db),
    )
}

/// An FNO block as one fused op: `act(spectral2d(x) + skip_w · x[b] + skip_b)`, `skip_w [co, c]`,
/// `skip_b [co]`, GELU when `activate` (the other operands as [`spectral2d`]). Untracked
/// (inference) on Flex, the skip GEMM adds into the convolution's output and GELU runs on each
/// block of rows in cache; with tracked operands, the composition of the fused ops and their
/// backwards.
#[allow(clippy::too_many_arguments)]
pub fn spectral_block(
    x: Tensor<3>,
    wr: Tensor<3>,
    wi: Tensor<3>,
    bias: Tensor<1>,
    skip_w: Tensor<2>,
    skip_b: Option<Tensor<1>>,
    [fw, mh, gh, gw]: [Tensor<2>; 4],
    h: usize,
    masks: Option<MaskStreams>,
    activate: bool,
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as PnoKernels>::spectral2d_block(
        x.into_dispatch(),
        wr.into_dispatch(),
        wi.into_dispatch(),
        bias.into_dispatch(),
        skip_w.into_dispatch(),
        Operand::new(skip_b.map(Tensor::into_dispatch)),
        fw.into_dispatch(),
        mh.into_dispatch(),
        gh.into_dispatch(),
        gw.into_dispatch(),
        h,
        masks,
        activate,
    ))
}
