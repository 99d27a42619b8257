//! [`PnoKernels`] under autodiff: the forward runs the inner backend's fused kernel; the
//! backward is hand-written and calls the inner backend's fused backward.
//!
//! - bias + dropout + GELU saves the op's input `x`, the bias (a handle to a tensor that is alive
//!   anyway) and the mask's stream positions (the backward makes the mask again); `x` replaces
//!   the pre-activation the unfused GELU would keep.
//! - The pointwise layer saves its input and weight, as burn's matmul backward does.

use burn::backend::Backend;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;

use super::{Operand, PnoKernels};
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

impl<B: Backend + PnoKernels, C: CheckpointStrategy> PnoKernels for Autodiff<B, C> {
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
