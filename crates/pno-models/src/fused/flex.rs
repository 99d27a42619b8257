//! The native Flex (CPU) implementation of [`PnoKernels`]: `f32` through the kernels of
//! [`super::math`], any other dtype through the default composition.

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Bytes, Flex, TensorMetadata};
use burn::tensor::{DType, Shape};

use super::math::{self, Operands};
use super::mlp::{self, MlpDims, MlpWeights};
use super::pointwise::{self, Dims};
use super::spectral::{self, SpectralBackwardOperands, SpectralDims, SpectralOperands, Tail};
use super::{
    Operand, PnoKernels, composed_backward, composed_channel_mlp, composed_channel_mlp_backward,
    composed_dropout, composed_forward, composed_pointwise, composed_pointwise_backward,
    composed_spectral_block, composed_spectral2d, composed_spectral2d_backward, host_mask,
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

/// The shapes of a channel MLP from `x[batch, in, points]`, `w1[hidden, in]`, `b1[hidden]`,
/// `w2[out, hidden]`, and whether the native kernel takes them (all `f32`, no empty dimension;
/// anything else goes through the composition).
fn mlp_dims(x: &FlexTensor, w1: &FlexTensor, b1: &FlexTensor, w2: &FlexTensor) -> Option<MlpDims> {
    let (s, s1, sb1, s2) = (x.shape(), w1.shape(), b1.shape(), w2.shape());
    assert!(
        s.num_dims() == 3
            && s1.num_dims() == 2
            && s2.num_dims() == 2
            && sb1.num_dims() == 1
            && s1[1] == s[1]
            && sb1[0] == s1[0]
            && s2[1] == s1[0],
        "channel_mlp: expected x [batch, in, points], w1 [hidden, in], b1 [hidden], \
         w2 [out, hidden], got {s:?}, {s1:?}, {sb1:?}, {s2:?}"
    );
    let d = MlpDims {
        batch: s[0],
        d_in: s[1],
        hidden: s1[0],
        d_out: s2[0],
        points: s[2],
    };
    let native = all_f32([x, w1, b1, w2])
        && [d.batch, d.d_in, d.hidden, d.d_out, d.points]
            .iter()
            .all(|&v| v > 0);
    native.then_some(d)
}

/// [`mlp_dims`] for a forward, with the second bias `b2[out]`.
fn mlp_forward_dims(
    x: &FlexTensor,
    w1: &FlexTensor,
    b1: &FlexTensor,
    w2: &FlexTensor,
    b2: &FlexTensor,
) -> Option<MlpDims> {
    let d = mlp_dims(x, w1, b1, w2);
    let sb2 = b2.shape();
    assert!(
        sb2.num_dims() == 1 && sb2[0] == w2.shape()[0],
        "channel_mlp: expected b2 [out] for w2 {:?}, got {sb2:?}",
        w2.shape()
    );
    d.filter(|_| b2.dtype() == DType::F32)
}

/// The masks cover the hidden field `[batch, hidden, points]`.
fn check_mlp_masks(d: MlpDims, masks: Option<&MaskStreams>) {
    if let Some(m) = masks {
        assert!(
            m.batch() == d.batch && m.per_row() == d.hidden * d.points,
            "channel_mlp: masks of {} rows of {} for a hidden field {:?}",
            m.batch(),
            m.per_row(),
            [d.batch, d.hidden, d.points]
        );
    }
}

/// The native channel-MLP forward, keeping the hidden pre-activation when asked.
fn mlp_forward(
    [x, w1, b1, w2, b2]: [FlexTensor; 5],
    masks: Option<&MaskStreams>,
    d: MlpDims,
    keep_hidden: bool,
) -> (FlexTensor, Option<FlexTensor>) {
    check_mlp_masks(d, masks);
    let [x, w1, b1, w2, b2] = [x, w1, b1, w2, b2].map(|t| contiguous(&t));
    let w = MlpWeights {
        w1: slice(&w1),
        b1: slice(&b1),
        w2: slice(&w2),
    };
    let (y, z) = mlp::forward(slice(&x), w, slice(&b2), masks, d, keep_hidden);
    (
        tensor(y, Shape::new([d.batch, d.d_out, d.points])),
        z.map(|z| tensor(z, Shape::new([d.batch, d.hidden, d.points]))),
    )
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

    fn dropout(x: FlexTensor, masks: MaskStreams) -> FlexTensor {
        if !all_f32([&x]) {
            return composed_dropout::<Self>(x, &masks);
        }
        let (channels, points) = dims(&x);
        check_masks(&x, Some(&masks));
        let ops = Operands {
            channels,
            points,
            bias: None,
            masks: Some(&masks),
        };
        map_f32(x, |out, src| math::dropout(out, src, ops)).0
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

    fn channel_mlp(
        x: FlexTensor,
        w1: FlexTensor,
        b1: FlexTensor,
        w2: FlexTensor,
        b2: FlexTensor,
        masks: Option<MaskStreams>,
    ) -> FlexTensor {
        match mlp_forward_dims(&x, &w1, &b1, &w2, &b2) {
            Some(d) => mlp_forward([x, w1, b1, w2, b2], masks.as_ref(), d, false).0,
            None => composed_channel_mlp::<Self>(x, w1, b1, w2, b2, masks).0,
        }
    }

    fn channel_mlp_with_hidden(
        x: FlexTensor,
        w1: FlexTensor,
        b1: FlexTensor,
        w2: FlexTensor,
        b2: FlexTensor,
        masks: Option<MaskStreams>,
    ) -> (FlexTensor, FlexTensor) {
        match mlp_forward_dims(&x, &w1, &b1, &w2, &b2) {
            Some(d) => {
                let (y, z) = mlp_forward([x, w1, b1, w2, b2], masks.as_ref(), d, true);
                (y, z.expect("the hidden field was asked for"))
            }
            None => composed_channel_mlp::<Self>(x, w1, b1, w2, b2, masks),
        }
    }

    fn channel_mlp_backward(
        x: FlexTensor,
        w1: FlexTensor,
        b1: FlexTensor,
        w2: FlexTensor,
        z: FlexTensor,
        masks: Option<MaskStreams>,
        grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor, FlexTensor, FlexTensor) {
        let d = mlp_dims(&x, &w1, &b1, &w2).filter(|_| all_f32([&z, &grad]));
        let Some(d) = d else {
            return composed_channel_mlp_backward::<Self>(x, w1, b1, w2, z, masks, grad);
        };
        check_mlp_masks(d, masks.as_ref());
        let [x, w1, b1, w2, z, grad] = [x, w1, b1, w2, z, grad].map(|t| contiguous(&t));
        let w = MlpWeights {
            w1: slice(&w1),
            b1: slice(&b1),
            w2: slice(&w2),
        };
        let g = mlp::backward(slice(&x), slice(&z), w, masks.as_ref(), slice(&grad), d);
        (
            tensor(g.dx, Shape::new([d.batch, d.d_in, d.points])),
            tensor(g.dw1, Shape::new([d.hidden, d.d_in])),
            tensor(g.db1, Shape::new([d.hidden])),
            tensor(g.dw2, Shape::new([d.d_out, d.hidden])),
            tensor(g.db2, Shape::new([d.d_out])),
        )
    }

    fn spectral2d(
        x: FlexTensor,
        wr: FlexTensor,
        wi: FlexTensor,
        bias: FlexTensor,
        fw: FlexTensor,
        mh: FlexTensor,
        gh: FlexTensor,
        gw: FlexTensor,
        h: usize,
        masks: Option<MaskStreams>,
    ) -> FlexTensor {
        spectral_forward([x, wr, wi, bias, fw, mh, gh, gw], h, masks, false, None).0
    }

    fn spectral2d_block(
        x: FlexTensor,
        wr: FlexTensor,
        wi: FlexTensor,
        bias: FlexTensor,
        skip_w: FlexTensor,
        skip_b: Operand<Self>,
        fw: FlexTensor,
        mh: FlexTensor,
        gh: FlexTensor,
        gw: FlexTensor,
        h: usize,
        masks: Option<MaskStreams>,
        activate: bool,
    ) -> FlexTensor {
        let tail = BlockTail {
            w: skip_w,
            b: skip_b.into_option(),
            activate,
        };
        spectral_forward(
            [x, wr, wi, bias, fw, mh, gh, gw],
            h,
            masks,
            false,
            Some(tail),
        )
        .0
    }

    fn spectral2d_with_coefs(
        x: FlexTensor,
        wr: FlexTensor,
        wi: FlexTensor,
        bias: FlexTensor,
        fw: FlexTensor,
        mh: FlexTensor,
        gh: FlexTensor,
        gw: FlexTensor,
        h: usize,
        masks: Option<MaskStreams>,
    ) -> (FlexTensor, FlexTensor) {
        let (y, s) = spectral_forward([x, wr, wi, bias, fw, mh, gh, gw], h, masks, true, None);
        (y, s.expect("the coefficients were asked for"))
    }

    fn spectral2d_backward(
        s: FlexTensor,
        wr: FlexTensor,
        wi: FlexTensor,
        fw: FlexTensor,
        mh: FlexTensor,
        gh: FlexTensor,
        gw: FlexTensor,
        h: usize,
        masks: Option<MaskStreams>,
        grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor, FlexTensor) {
        let gs = grad.shape();
        assert!(
            gs.num_dims() == 3,
            "spectral2d_backward: expected grad [batch, co, h·w], got {gs:?}"
        );
        let d = spectral_dims([gs[0], gs[2]], &wr, &fw, &mh, h);
        let native = all_f32([&s, &wr, &wi, &fw, &mh, &gh, &gw, &grad]) && d.is_some();
        let Some(d) = d.filter(|_| native) else {
            return composed_spectral2d_backward::<Self>(
                s,
                wr,
                wi,
                [fw, mh, gh, gw],
                h,
                masks,
                grad,
            );
        };
        let [s, wr, wi, fw, mh, gh, gw, grad] =
            [s, wr, wi, fw, mh, gh, gw, grad].map(|t| contiguous(&t));
        let ops = SpectralBackwardOperands {
            s: slice(&s),
            wr: slice(&wr),
            wi: slice(&wi),
            fw: slice(&fw),
            mh: slice(&mh),
            gh: slice(&gh),
            gw: slice(&gw),
            grad: slice(&grad),
        };
        let g = spectral::backward(ops, masks.as_ref(), d);
        let wshape = || Shape::new([d.k1 * d.k2, d.d_in, d.d_out]);
        (
            tensor(g.dx, Shape::new([d.batch, d.d_in, d.h * d.w])),
            tensor(g.dwr, wshape()),
            tensor(g.dwi, wshape()),
            tensor(g.dbias, Shape::new([d.d_out])),
        )
    }
}

/// The shapes of a 2-D spectral convolution from `[batch, h·w]`, the weights `[m, c, co]` and
/// the forward bases `fw [w, 2·k2]`, `mh [2·k1, 2·h]`; `None` when a dimension is empty (the
/// composition handles that).
fn spectral_dims(
    [batch, hw]: [usize; 2],
    wr: &FlexTensor,
    fw: &FlexTensor,
    mh: &FlexTensor,
    h: usize,
) -> Option<SpectralDims> {
    let ws = wr.shape();
    assert!(
        ws.num_dims() == 3 && h > 0 && hw % h == 0,
        "spectral2d: expected h·w points with h = {h} and weights [m, c, co], got {hw} points \
         and weights {ws:?}"
    );
    let d = SpectralDims {
        batch,
        d_in: ws[1],
        d_out: ws[2],
        h,
        w: hw / h,
        k1: mh.shape()[0] / 2,
        k2: fw.shape()[1] / 2,
    };
    [d.batch, d.d_in, d.d_out, d.w, d.k1, d.k2]
        .iter()
        .all(|&v| v > 0)
        .then_some(d)
}

/// An FNO block's skip connection (`w [co, c]`, optional bias `[co]`) and whether GELU follows.
struct BlockTail {
    w: FlexTensor,
    b: Option<FlexTensor>,
    activate: bool,
}

/// The native 2-D spectral forward (the composition for anything but `f32`), keeping the
/// coefficients when asked, and with a [`BlockTail`] the whole FNO block.
fn spectral_forward(
    [x, wr, wi, bias, fw, mh, gh, gw]: [FlexTensor; 8],
    h: usize,
    masks: Option<MaskStreams>,
    keep_coefs: bool,
    tail: Option<BlockTail>,
) -> (FlexTensor, Option<FlexTensor>) {
    let (xs, ws) = (x.shape(), wr.shape());
    assert!(
        xs.num_dims() == 3 && ws.num_dims() == 3 && ws[1] == xs[1],
        "spectral2d: expected x [batch, c, h·w] and weights [m, c, co], got {xs:?} and {ws:?}"
    );
    if let Some(t) = &tail {
        let ss = t.w.shape();
        assert!(
            ss.num_dims() == 2 && ss[0] == ws[2] && ss[1] == xs[1],
            "spectral2d_block: expected skip weights [co, c] for x {xs:?} and weights {ws:?}, \
             got {ss:?}"
        );
    }
    let d = spectral_dims([xs[0], xs[2]], &wr, &fw, &mh, h);
    let tail_f32 = tail
        .as_ref()
        .is_none_or(|t| all_f32([&t.w].into_iter().chain(&t.b)));
    let native = all_f32([&x, &wr, &wi, &bias, &fw, &mh, &gh, &gw]) && tail_f32 && d.is_some();
    let Some(d) = d.filter(|_| native) else {
        return match tail {
            Some(t) => {
                let y = composed_spectral_block::<Flex>(
                    x,
                    [wr, wi, bias, t.w],
                    Operand::new(t.b),
                    [fw, mh, gh, gw],
                    h,
                    masks,
                    t.activate,
                );
                (y, None)
            }
            None => {
                let (y, s) =
                    composed_spectral2d::<Flex>(x, wr, wi, bias, [fw, mh, gh, gw], h, masks);
                (y, Some(s))
            }
        };
    };
    let [x, wr, wi, bias, fw, mh, gh, gw] =
        [x, wr, wi, bias, fw, mh, gh, gw].map(|t| contiguous(&t));
    let skip = tail
        .as_ref()
        .map(|t| (contiguous(&t.w), t.b.as_ref().map(contiguous)));
    let ops = SpectralOperands {
        x: slice(&x),
        wr: slice(&wr),
        wi: slice(&wi),
        bias: slice(&bias),
        fw: slice(&fw),
        mh: slice(&mh),
        gh: slice(&gh),
        gw: slice(&gw),
    };
    let tail = Tail {
        skip: skip.as_ref().map(|(w, _)| slice(w)),
        skip_bias: skip.as_ref().and_then(|(_, b)| b.as_ref().map(slice)),
        activate: tail.is_some_and(|t| t.activate),
    };
    let (y, s) = spectral::forward(ops, masks.as_ref(), d, keep_coefs, tail);
    (
        tensor(y, Shape::new([d.batch, d.d_out, d.h * d.w])),
        s.map(|s| tensor(s, Shape::new([d.batch, d.d_in, 2 * d.k1 * d.k2]))),
    )
}
