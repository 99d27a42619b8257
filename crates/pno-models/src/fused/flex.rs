//! The native Flex (CPU) implementation of [`PnoKernels`]: `f32` through the kernels of
//! [`super::math`], any other dtype through the default composition.

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Bytes, Flex, TensorMetadata};
use burn::tensor::{DType, Shape};

use super::math::{self, Operands};
use super::pointwise::{self, Dims};
use super::{
    Operand, PnoKernels, composed_backward, composed_forward, composed_pointwise,
    composed_pointwise_backward, host_mask,
};
use crate::noise::MaskStreams;

/// A contiguous `f32` view of `t` (copied only when `t` is a strided view).
fn contiguous(t: &FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .unwrap_or_else(|| unreachable!("`contiguous` returned a strided tensor"))
}

/// Whether `t` owns its whole buffer, contiguously, so it can be overwritten in place.
fn writable(t: &FlexTensor) -> bool {
    t.is_unique()
        && t.layout().start_offset() == 0
        && t.as_slice::<f32>()
            .is_some_and(|s| s.len() * 4 == t.bytes().len())
}

fn tensor(v: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(v), Layout::contiguous(shape), DType::F32)
}

/// `[batch, channels, points]` → `(channels, points)`.
fn dims(x: &FlexTensor) -> (usize, usize) {
    let s = x.shape();
    assert_eq!(
        s.num_dims(),
        3,
        "bias_dropout_gelu: expected [batch, channels, points], got {s:?}"
    );
    (s[1], s[2])
}

/// The masks cover `x[batch, channels, points]`: one row of `channels · points` per batch item.
fn check_masks(x: &FlexTensor, masks: Option<&MaskStreams>) {
    if let Some(m) = masks {
        let s = x.shape();
        assert!(
            m.batch() == s[0] && m.per_row() == s[1] * s[2],
            "bias_dropout_gelu: masks of {} rows of {} for x {s:?}",
            m.batch(),
            m.per_row()
        );
    }
}

/// The shapes of a pointwise layer from `x[batch, in, points]` and `w[out, in]`.
fn pointwise_dims(x: &FlexTensor, w: &FlexTensor) -> Dims {
    let (s, ws) = (x.shape(), w.shape());
    assert!(
        s.num_dims() == 3 && ws.num_dims() == 2 && ws[1] == s[1],
        "pointwise: expected x [batch, in, points] and w [out, in], got {s:?} and {ws:?}"
    );
    Dims {
        batch: s[0],
        d_in: s[1],
        d_out: ws[0],
        points: s[2],
    }
}

fn all_f32<'a>(ts: impl IntoIterator<Item = &'a FlexTensor>) -> bool {
    ts.into_iter().all(|t| t.dtype() == DType::F32)
}

/// Run `f` on `t`'s buffer in place when `t` owns it, otherwise on a fresh buffer with `t` as
/// the source; returns the result tensor and `f`'s value.
fn map_f32<R>(
    mut t: FlexTensor,
    f: impl FnOnce(&mut [f32], Option<&[f32]>) -> R,
) -> (FlexTensor, R) {
    let shape = t.shape();
    if writable(&t) {
        let r = f(t.storage_mut::<f32>(), None);
        (t, r)
    } else {
        let src = contiguous(&t);
        let mut out = vec![0.0f32; shape.num_elements()];
        let r = f(&mut out, Some(slice(&src)));
        (tensor(out, shape), r)
    }
}

impl PnoKernels for Flex {
    fn bias_dropout_gelu(
        x: FlexTensor,
        bias: Operand<Self>,
        masks: Option<MaskStreams>,
    ) -> FlexTensor {
        let bias = bias.into_option();
        if !all_f32([&x].into_iter().chain(&bias)) {
            let mask = host_mask::<Self>(&x, masks.as_ref());
            return composed_forward::<Self>(x, bias, mask);
        }
        let (channels, points) = dims(&x);
        check_masks(&x, masks.as_ref());
        let bias = bias.as_ref().map(contiguous);
        let ops = Operands {
            channels,
            points,
            bias: bias.as_ref().map(slice),
            masks: masks.as_ref(),
        };
        map_f32(x, |out, src| math::forward(out, src, ops)).0
    }

    fn bias_dropout_gelu_backward(
        x: FlexTensor,
        bias: Operand<Self>,
        masks: Option<MaskStreams>,
        grad: FlexTensor,
    ) -> (FlexTensor, Option<FlexTensor>) {
        let bias = bias.into_option();
        if !all_f32([&x, &grad].into_iter().chain(&bias)) {
            let mask = host_mask::<Self>(&x, masks.as_ref());
            return composed_backward::<Self>(x, bias, mask, grad);
        }
        let (channels, points) = dims(&x);
        check_masks(&x, masks.as_ref());
        let x = contiguous(&x);
        let bias = bias.as_ref().map(contiguous);
        let ops = Operands {
            channels,
            points,
            bias: bias.as_ref().map(slice),
            masks: masks.as_ref(),
        };
        let (dx, sums) = map_f32(grad, |out, src| math::backward(out, src, slice(&x), ops));
        let db = sums.map(|s| tensor(math::bias_grad(&s, channels), Shape::new([channels])));
        (dx, db)
    }

    fn pointwise(x: FlexTensor, w: FlexTensor, bias: Operand<Self>) -> FlexTensor {
        let bias = bias.into_option();
        if !all_f32([&x, &w].into_iter().chain(&bias)) {
            return composed_pointwise::<Self>(x, w, bias);
        }
        let d = pointwise_dims(&x, &w);
        let (x, w) = (contiguous(&x), contiguous(&w));
        let bias = bias.as_ref().map(contiguous);
        let y = pointwise::forward(slice(&x), slice(&w), bias.as_ref().map(slice), d);
        tensor(y, Shape::new([d.batch, d.d_out, d.points]))
    }

    fn pointwise_backward(
        x: FlexTensor,
        w: FlexTensor,
        with_bias: bool,
        grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor, Option<FlexTensor>) {
        if !all_f32([&x, &w, &grad]) {
            return composed_pointwise_backward::<Self>(x, w, with_bias, grad);
        }
        let d = pointwise_dims(&x, &w);
        let (x, w, grad) = (contiguous(&x), contiguous(&w), contiguous(&grad));
        let dx = pointwise::input_grad(slice(&grad), slice(&w), d);
        let dw = pointwise::weight_grad(slice(&grad), slice(&x), d);
        let db = with_bias.then(|| {
            let sums = math::row_sums(slice(&grad), d.points);
            tensor(math::bias_grad(&sums, d.d_out), Shape::new([d.d_out]))
        });
        (
            tensor(dx, Shape::new([d.batch, d.d_in, d.points])),
            tensor(dw, Shape::new([d.d_out, d.d_in])),
            db,
        )
    }
}
