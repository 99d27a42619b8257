//! Fused operations as a burn backend extension ([`PnoKernels`]).
//!
//! [`pointwise()`] is a pointwise (1×1) layer, `W · x + bias` over `[batch, in, points]`: GEMMs
//! into buffers of its own (burn's broadcast matmul copies every output once more), split over
//! batch items and point blocks so a row's values never depend on the batch it is in; the
//! backward computes the input, weight and bias gradients the same way ([`pointwise`](mod@pointwise)
//! module).
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
//! The dropout mask is never a tensor: the op gets it as [`MaskStreams`], the positions of the
//! row streams of [`crate::noise::Noise`] it comes from, and the Flex kernels make each row's
//! mask entries from them as they go, in the forward and again in the backward (nothing of the
//! mask is written to memory or kept for the backward). The values are those
//! [`Noise::dropout_mask`](crate::noise::Noise::dropout_mask) draws. Other backends get the mask
//! made on the host. The op takes no gradient with respect to it.

pub mod math;
pub mod pointwise;

mod autodiff;
mod flex;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, ExtensionType, TensorMetadata, backend_extension};
use burn::tensor::{Shape, Tensor, TensorData};

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
    masks.map(|m| {
        let shape = x.shape();
        B::float_from_data(TensorData::new(m.to_vec(), shape), &x.device())
    })
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
