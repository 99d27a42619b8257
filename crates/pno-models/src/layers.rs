//! Pointwise (1×1) layers on channels-first fields `[batch, channels, points]`.
//!
//! A 1×1 convolution is a matrix product over the channel axis: `W[c_out, c_in] @ x[b, c_in, n]`
//! as one broadcast matmul (faster than burn's `Conv2d` backward on the CPU backend). Weights use
//! PyTorch's `nn.Linear` layout `[out, in]` so saved files load into PyTorch directly.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};

use crate::fused::{self, bias_dropout_gelu, channel_mlp, pointwise};
use crate::init::Init;
use crate::noise::MaskStreams;
use crate::noise::Noise;

/// A pointwise linear map over channels, `y[b, o, n] = Σ_i W[o, i] x[b, i, n] + b[o]`.
#[derive(Module, Debug)]
pub struct Pointwise {
    /// Weight `[out, in]`.
    pub weight: Param<Tensor<2>>,
    /// Bias `[out]`, if any.
    pub bias: Option<Param<Tensor<1>>>,
}

impl Pointwise {
    /// PyTorch's default initialisation: `U(-1/√in, 1/√in)` for weight and bias.
    pub fn new(init: &mut Init, d_in: usize, d_out: usize, bias: bool, device: &Device) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        let weight = init.uniform([d_out, d_in], bound, device);
        let bias = bias.then(|| init.uniform([d_out], bound, device));
        Self { weight, bias }
    }

    /// `[batch, in, points]` → `[batch, out, points]`, as one fused op
    /// ([`crate::fused::pointwise()`]).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        pointwise(x, self.weight.val(), self.bias.as_ref().map(|b| b.val()))
    }

    /// The weight product alone, `W @ x` without the bias: `[batch, in, points]` →
    /// `[batch, out, points]` (for epilogues that add the bias themselves).
    pub fn linear(&self, x: Tensor<3>) -> Tensor<3> {
        pointwise(x, self.weight.val(), None)
    }

    /// Output channels.
    pub fn d_out(&self) -> usize {
        self.weight.dims()[0]
    }
}

/// Two pointwise layers with GELU between them and optional dropout on the hidden features
/// (placed before the activation, as in the PNO paper): `in → hidden → out`. With
/// `hidden == 0` it is a single pointwise layer.
#[derive(Module, Debug)]
pub struct ChannelMlp {
    /// First layer (or the only one).
    pub fc1: Pointwise,
    /// Second layer, absent for a single-layer map.
    pub fc2: Option<Pointwise>,
}

impl ChannelMlp {
    /// Build `in → hidden → out` (or `in → out` when `hidden == 0`).
    pub fn new(init: &mut Init, d_in: usize, hidden: usize, d_out: usize, device: &Device) -> Self {
        if hidden == 0 {
            Self {
                fc1: Pointwise::new(init, d_in, d_out, true, device),
                fc2: None,
            }
        } else {
            Self {
                fc1: Pointwise::new(init, d_in, hidden, true, device),
                fc2: Some(Pointwise::new(init, hidden, d_out, true, device)),
            }
        }
    }

    /// Hidden features after dropout and GELU, `[batch, hidden, points]` (the input of `fc2`):
    /// `gelu((W₁x + b₁) · mask)` with the bias, mask and activation as one fused op.
    pub fn hidden(&self, x: Tensor<3>, dropout: Option<(f64, &mut Noise)>) -> Tensor<3> {
        let masks = self.hidden_masks(&x, dropout);
        let h = self.fc1.linear(x);
        bias_dropout_gelu(h, self.fc1.bias.as_ref().map(|b| b.val()), masks)
    }

    /// The dropout masks of the hidden features for input `x` (`[batch, hidden · points]`), if
    /// dropout is on.
    fn hidden_masks(
        &self,
        x: &Tensor<3>,
        dropout: Option<(f64, &mut Noise)>,
    ) -> Option<MaskStreams> {
        match dropout {
            Some((p, noise)) if p > 0.0 => {
                let n = x.dims()[2];
                Some(noise.mask_streams(p, self.fc1.d_out() * n))
            }
            _ => None,
        }
    }

    /// `[batch, in, points]` → `[batch, out, points]`. Two layers run as one fused op
    /// ([`crate::fused::channel_mlp()`]): the hidden features are never stored.
    pub fn forward(&self, x: Tensor<3>, dropout: Option<(f64, &mut Noise)>) -> Tensor<3> {
        let Some(fc2) = &self.fc2 else {
            return self.fc1.forward(x);
        };
        match (&self.fc1.bias, &fc2.bias) {
            (Some(b1), Some(b2)) => {
                let masks = self.hidden_masks(&x, dropout);
                channel_mlp(
                    x,
                    self.fc1.weight.val(),
                    b1.val(),
                    fc2.weight.val(),
                    b2.val(),
                    masks,
                )
            }
            _ => fc2.forward(self.hidden(x, dropout)),
        }
    }

    /// [`ChannelMlp::forward`] with dropout on the output too (neuraloperator's block MLP drops
    /// after both layers): the hidden mask is drawn first, then the output mask.
    pub fn forward_dropout_out(
        &self,
        x: Tensor<3>,
        mut dropout: Option<(f64, &mut Noise)>,
    ) -> Tensor<3> {
        let y = self.forward(x, dropout.as_mut().map(|(p, n)| (*p, &mut **n)));
        match dropout {
            Some((p, noise)) if p > 0.0 => {
                // made inside the kernel from the row streams (the values `dropout_mask` draws)
                let [_, c, n] = y.dims();
                fused::dropout(y, noise.mask_streams(p, c * n))
            }
            _ => y,
        }
    }
}
