//! [`PnoKernels`] under autodiff: the forward runs the inner backend's fused kernel; the
//! backward is hand-written and calls the inner backend's fused backward.
//!
//! - bias + dropout + GELU saves the op's input `x`, the bias (a handle to a tensor that is alive
//!   anyway) and the mask's stream positions (the backward makes the mask again); `x` replaces
//!   the pre-activation the unfused GELU would keep.
//! - Dropout alone saves only the mask's stream positions (it is linear in its input).
//! - The pointwise layer saves its input and weight, as burn's matmul backward does.
//! - The channel MLP saves its input, the weights and the hidden pre-activation `w1 · x` (one
//!   hidden-sized field; the unfused layers keep two) and the mask's stream positions; the
//!   backward recomputes the activation block by block.
//! - The 2-D spectral convolution saves the input's Fourier coefficients (`[batch, c, 2·m]`,
//!   far smaller than the field; the op is linear in the input, so the field is not needed),
//!   the weights and bases, and the mask's stream positions.

use burn::backend::AutodiffBackend;
use burn::backend::Backend;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;

use super::{Operand, PnoKernels, composed_spectral_block};
use crate::noise::MaskStreams;

/// Backward with a tracked bias: parents `[x, bias]`.
#[derive(Debug)]
struct WithBias;

/// Backward without a bias: parent `[x]`.
#[derive(Debug)]
struct WithoutBias;

type State<B> = (FloatTensor<B>, Option<FloatTensor<B>>, Option<MaskStreams>);

impl<B: Backend + PnoKernels> Backward<B, 2> for WithBias {
    type State = State<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_b] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, bias, mask) = ops.state;
        let (dx, db) = B::bias_dropout_gelu_backward(x, Operand::new(bias), mask, grad);
        if let (Some(node), Some(db)) = (node_b, db) {
            grads.register::<B>(node.id, db);
        }
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
    }
}

impl<B: Backend + PnoKernels> Backward<B, 1> for WithoutBias {
    type State = State<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, _, mask) = ops.state;
        let (dx, _) = B::bias_dropout_gelu_backward(x, Operand::Absent, mask, grad);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
    }
}

/// Pointwise backward with a tracked bias: parents `[x, w, bias]`.
#[derive(Debug)]
struct PointwiseWithBias;

/// Pointwise backward without a bias: parents `[x, w]`.
#[derive(Debug)]
struct PointwiseWithoutBias;

/// The pointwise backward's inputs `(x, w)`.
type PointwiseState<B> = (FloatTensor<B>, FloatTensor<B>);

impl<B: Backend + PnoKernels> Backward<B, 3> for PointwiseWithBias {
    type State = PointwiseState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, w) = ops.state;
        let (dx, dw, db) = B::pointwise_backward(x, w, true, grad);
        if let (Some(node), Some(db)) = (node_b, db) {
            grads.register::<B>(node.id, db);
        }
        if let Some(node) = node_w {
            grads.register::<B>(node.id, dw);
        }
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
    }
}

impl<B: Backend + PnoKernels> Backward<B, 2> for PointwiseWithoutBias {
    type State = PointwiseState<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, w) = ops.state;
        let (dx, dw, _) = B::pointwise_backward(x, w, false, grad);
        if let Some(node) = node_w {
            grads.register::<B>(node.id, dw);
        }
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
    }
}

/// Channel-MLP backward: parents `[x, w1, b1, w2, b2]`.
#[derive(Debug)]
struct ChannelMlpBackward;

/// The channel-MLP backward's inputs `(x, w1, b1, w2, z, masks)`.
type ChannelMlpState<B> = (
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    Option<MaskStreams>,
);

impl<B: Backend + PnoKernels> Backward<B, 5> for ChannelMlpBackward {
    type State = ChannelMlpState<B>;

    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x, w1, b1, w2, z, masks) = ops.state;
        let (dx, dw1, db1, dw2, db2) = B::channel_mlp_backward(x, w1, b1, w2, z, masks, grad);
        for (node, g) in ops.parents.into_iter().zip([dx, dw1, db1, dw2, db2]) {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// 2-D spectral-convolution backward: parents `[x, wr, wi, bias]`.
#[derive(Debug)]
struct SpectralBackward;

/// The spectral backward's inputs: the input's coefficients (not the field: the op is linear in
/// it), the weights, the constant DFT bases, the grid rows and the mask's stream positions.
#[derive(Clone, Debug)]
struct SpectralState<B: Backend> {
    s: FloatTensor<B>,
    wr: FloatTensor<B>,
    wi: FloatTensor<B>,
    bases: [FloatTensor<B>; 4],
    h: usize,
    masks: Option<MaskStreams>,
}

impl<B: Backend + PnoKernels> Backward<B, 4> for SpectralBackward {
    type State = SpectralState<B>;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let SpectralState {
            s,
            wr,
            wi,
            bases: [fw, mh, gh, gw],
            h,
            masks,
        } = ops.state;
        let (dx, dwr, dwi, db) = B::spectral2d_backward(s, wr, wi, fw, mh, gh, gw, h, masks, grad);
        for (node, g) in ops.parents.into_iter().zip([dx, dwr, dwi, db]) {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// Dropout backward: parent `[x]`; the state is the mask's stream positions only (the op is
/// linear, so its backward is the same op on the output gradient).
#[derive(Debug)]
struct DropoutBackward;

impl<B: Backend + PnoKernels> Backward<B, 1> for DropoutBackward {
    type State = MaskStreams;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::dropout(grad, ops.state));
        }
    }
}

impl<B: Backend + PnoKernels, C: CheckpointStrategy> PnoKernels for Autodiff<B, C> {
    fn dropout(x: FloatTensor<Self>, masks: MaskStreams) -> FloatTensor<Self> {
        match DropoutBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::dropout(x.primitive().clone(), masks.clone());
                prep.finish(masks, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::dropout(x.into_primitive(), masks)),
        }
    }

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
        // The bases are constants: never tracked, so not parents.
        let [fw, mh, gh, gw] = [fw, mh, gh, gw].map(|t| t.into_primitive());
        match SpectralBackward
            .prepare::<C>([x.node(), wr.node(), wi.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (wrp, wip) = (wr.primitive().clone(), wi.primitive().clone());
                let (y, s) = B::spectral2d_with_coefs(
                    x.into_primitive(),
                    wrp.clone(),
                    wip.clone(),
                    bias.into_primitive(),
                    fw.clone(),
                    mh.clone(),
                    gh.clone(),
                    gw.clone(),
                    h,
                    masks.clone(),
                );
                let state = SpectralState {
                    s,
                    wr: wrp,
                    wi: wip,
                    bases: [fw, mh, gh, gw],
                    h,
                    masks,
                };
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::spectral2d(
                x.into_primitive(),
                wr.into_primitive(),
                wi.into_primitive(),
                bias.into_primitive(),
                fw,
                mh,
                gh,
                gw,
                h,
                masks,
            )),
        }
    }

    /// Tracked operands (training) go through the composition of the fused ops, each with its
    /// hand-written backward; untracked ones (inference on an autodiff device) run the inner
    /// backend's block kernel.
    fn spectral2d_block(
        x: FloatTensor<Self>,
        wr: FloatTensor<Self>,
        wi: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        skip_w: FloatTensor<Self>,
        skip_b: Operand<Self>,
        fw: FloatTensor<Self>,
        mh: FloatTensor<Self>,
        gh: FloatTensor<Self>,
        gw: FloatTensor<Self>,
        h: usize,
        masks: Option<MaskStreams>,
        activate: bool,
    ) -> FloatTensor<Self> {
        let skip_b = skip_b.into_option();
        let tracked = [&x, &wr, &wi, &bias, &skip_w]
            .into_iter()
            .chain(&skip_b)
            .any(|t| t.is_tracked());
        if tracked {
            return composed_spectral_block::<Self>(
                x,
                [wr, wi, bias, skip_w],
                Operand::new(skip_b),
                [fw, mh, gh, gw],
                h,
                masks,
                activate,
            );
        }
        let inner = |t: FloatTensor<Self>| t.into_primitive();
        <Self as AutodiffBackend>::from_inner(B::spectral2d_block(
            inner(x),
            inner(wr),
            inner(wi),
            inner(bias),
            inner(skip_w),
            Operand::new(skip_b.map(inner)),
            inner(fw),
            inner(mh),
            inner(gh),
            inner(gw),
            h,
            masks,
            activate,
        ))
    }

    fn channel_mlp(
        x: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        b1: FloatTensor<Self>,
        w2: FloatTensor<Self>,
        b2: FloatTensor<Self>,
        masks: Option<MaskStreams>,
    ) -> FloatTensor<Self> {
        match ChannelMlpBackward
            .prepare::<C>([x.node(), w1.node(), b1.node(), w2.node(), b2.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let [xp, w1p, b1p, w2p, b2p] =
                    [&x, &w1, &b1, &w2, &b2].map(|t| t.primitive().clone());
                let (y, z) = B::channel_mlp_with_hidden(
                    xp.clone(),
                    w1p.clone(),
                    b1p.clone(),
                    w2p.clone(),
                    b2p,
                    masks.clone(),
                );
                prep.finish((xp, w1p, b1p, w2p, z, masks), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::channel_mlp(
                x.into_primitive(),
                w1.into_primitive(),
                b1.into_primitive(),
                w2.into_primitive(),
                b2.into_primitive(),
                masks,
            )),
        }
    }

    fn pointwise(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: Operand<Self>,
    ) -> FloatTensor<Self> {
        match bias.into_option() {
            Some(bias) => match PointwiseWithBias
                .prepare::<C>([x.node(), w.node(), bias.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (xp, wp) = (x.primitive().clone(), w.primitive().clone());
                    let out = B::pointwise(
                        xp.clone(),
                        wp.clone(),
                        Operand::Given(bias.primitive().clone()),
                    );
                    prep.finish((xp, wp), out)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::pointwise(
                    x.into_primitive(),
                    w.into_primitive(),
                    Operand::Given(bias.into_primitive()),
                )),
            },
            None => match PointwiseWithoutBias
                .prepare::<C>([x.node(), w.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (xp, wp) = (x.primitive().clone(), w.primitive().clone());
                    let out = B::pointwise(xp.clone(), wp.clone(), Operand::Absent);
                    prep.finish((xp, wp), out)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::pointwise(
                    x.into_primitive(),
                    w.into_primitive(),
                    Operand::Absent,
                )),
            },
        }
    }

    fn bias_dropout_gelu(
        x: FloatTensor<Self>,
        bias: Operand<Self>,
        mask: Option<MaskStreams>,
    ) -> FloatTensor<Self> {
        match bias.into_option() {
            Some(bias) => match WithBias
                .prepare::<C>([x.node(), bias.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (xp, bp) = (x.primitive().clone(), bias.primitive().clone());
                    let out =
                        B::bias_dropout_gelu(xp.clone(), Operand::Given(bp.clone()), mask.clone());
                    prep.finish((xp, Some(bp), mask), out)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::bias_dropout_gelu(
                    x.into_primitive(),
                    Operand::Given(bias.into_primitive()),
                    mask,
                )),
            },
            None => match WithoutBias
                .prepare::<C>([x.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let xp = x.primitive().clone();
                    let out = B::bias_dropout_gelu(xp.clone(), Operand::Absent, mask.clone());
                    prep.finish((xp, None, mask), out)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::bias_dropout_gelu(
                    x.into_primitive(),
                    Operand::Absent,
                    mask,
                )),
            },
        }
    }
}
