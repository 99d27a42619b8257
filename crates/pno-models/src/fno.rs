//! Fourier Neural Operator (Li et al., "Fourier Neural Operator for Parametric Partial
//! Differential Equations", ICLR 2021), laid out like neuraloperator's `FNO`: optional grid
//! channels, a lifting MLP, `n_layers` Fourier blocks (spectral convolution + bias-free linear
//! skip, GELU between blocks), a projection MLP. The probabilistic variants of Bülte, Scholl &
//! Kutyniok ("Probabilistic neural operators for functional uncertainty quantification",
//! TMLR 2025) add dropout in the lifting/projection MLPs and on the Fourier coefficients
//! (PNO_D) or a second, standard-deviation head (PNO_R).

use burn::module::{Module, Param};
use burn::tensor::activation::softplus;
use burn::tensor::{Device, Tensor, TensorData};

use crate::config::FnoSpec;
use crate::fused;
use crate::init::Init;
use crate::layers::{ChannelMlp, Pointwise};
use crate::noise::Noise;
use crate::spectral::{SpectralConv, SpectralNoise};

/// One Fourier block: `spectral(x) + skip(x)`, optionally followed by a channel MLP with a
/// soft-gating skip from the block input (neuraloperator's `use_mlp`):
/// `mlp(gelu(spectral(x) + skip(x))) + gate ⊙ x`.
#[derive(Module, Debug)]
pub struct FourierBlock {
    /// The spectral convolution.
    pub spectral: SpectralConv,
    /// The bias-free pointwise skip connection.
    pub skip: Pointwise,
    /// The block's channel MLP `hidden → width → hidden`, if any.
    pub mlp: Option<ChannelMlp>,
    /// Soft-gating weights `[hidden]` of the MLP's skip connection (initialised to ones).
    pub mlp_gate: Option<Param<Tensor<1>>>,
}

/// What a network returns for a batch.
#[derive(Debug, Clone)]
pub struct Head {
    /// Mean (or the deterministic output) `[batch, out, points]`.
    pub mean: Tensor<3>,
    /// Predicted standard deviation `[batch, out, points]` for models with a std head.
    pub std: Option<Tensor<3>>,
    /// Input of the last linear layer `[batch, features, points]` (for last-layer Laplace), when
    /// the pass asked for it ([`Pass::features`]).
    pub features: Option<Tensor<3>>,
}

/// How stochastic one forward pass is.
pub struct Pass<'a> {
    /// Random streams (required when anything below is on).
    pub noise: Option<&'a mut Noise>,
    /// Apply dropout (MLP and Fourier).
    pub dropout: bool,
    /// Sample variational weights.
    pub sample_weights: bool,
    /// Return the last layer's input ([`Head::features`]); otherwise the projection runs as one
    /// fused op that never stores its hidden features.
    pub features: bool,
}

impl Pass<'_> {
    /// A deterministic pass.
    pub fn deterministic() -> Pass<'static> {
        Pass {
            noise: None,
            dropout: false,
            sample_weights: false,
            features: false,
        }
    }

    /// A deterministic pass that also returns the last layer's input ([`Head::features`]).
    pub fn features() -> Pass<'static> {
        Pass {
            features: true,
            ..Pass::deterministic()
        }
    }
}

/// The FNO network.
#[derive(Module, Debug)]
pub struct Fno {
    /// Lifting MLP `in (+ grid) → lifting → hidden`.
    pub lifting: ChannelMlp,
    /// Fourier blocks.
    pub blocks: Vec<FourierBlock>,
    /// Projection MLP `hidden → projection → out` (the mean head).
    pub projection: ChannelMlp,
    /// Standard-deviation head with the projection's shape (PNO_R, Gaussian ensembles).
    pub std_head: Option<ChannelMlp>,
    /// The validated architecture.
    #[module(skip)]
    pub spec: FnoSpec,
}

impl FnoSpec {
    /// Build the network with weights drawn from `seed`.
    pub fn init(&self, seed: u64, device: &Device) -> Fno {
        let mut init = Init::new(seed);
        let d_in = self.in_channels
            + if self.positional_embedding {
                self.n_modes.len()
            } else {
                0
            };
        let lifting = ChannelMlp::new(
            &mut init,
            d_in,
            self.lifting_channels,
            self.hidden_channels,
            device,
        );
        let blocks = (0..self.n_layers)
            .map(|_| FourierBlock {
                spectral: SpectralConv::with_factorization(
                    &mut init,
                    self.hidden_channels,
                    self.hidden_channels,
                    &self.n_modes,
                    self.factorization,
                    self.variational_sigma,
                    device,
                ),
                skip: Pointwise::new(
                    &mut init,
                    self.hidden_channels,
                    self.hidden_channels,
                    false,
                    device,
                ),
                mlp: self.block_mlp.map(|m| {
                    ChannelMlp::new(
                        &mut init,
                        self.hidden_channels,
                        m.width,
                        self.hidden_channels,
                        device,
                    )
                }),
                mlp_gate: self
                    .block_mlp
                    .map(|_| Param::from_tensor(Tensor::ones([self.hidden_channels], device))),
            })
            .collect();
        let projection = ChannelMlp::new(
            &mut init,
            self.hidden_channels,
            self.projection_channels,
            self.out_channels,
            device,
        );
        let std_head = self.std_head.then(|| {
            ChannelMlp::new(
                &mut init,
                self.hidden_channels,
                self.projection_channels,
                self.out_channels,
                device,
            )
        });
        Fno {
            lifting,
            blocks,
            projection,
            std_head,
            spec: self.clone(),
        }
    }
}

/// Grid coordinates `x_i = i / n` per axis as channels `[1, axes, points]` (neuraloperator's
/// `GridEmbeddingND` with boundaries `[0, 1]`).
pub fn grid_channels(grid: &[usize], device: &Device) -> Tensor<3> {
    let points: usize = grid.iter().product();
    let mut v = Vec::with_capacity(grid.len() * points);
    for axis in 0..grid.len() {
        let stride: usize = grid[axis + 1..].iter().product();
        let n = grid[axis];
        v.extend((0..points).map(|p| ((p / stride) % n) as f32 / n as f32));
    }
    Tensor::from_data(TensorData::new(v, [1, grid.len(), points]), device)
}

/// Zero-pad a `[batch, c, points]` field on `grid` at the end of every axis by `pad[axis]`.
fn pad_end(x: Tensor<3>, grid: &[usize], pad: &[usize]) -> Tensor<3> {
    let [b, c, _] = x.dims();
    let device = x.device();
    match grid {
        [_] => Tensor::cat(vec![x, Tensor::zeros([b, c, pad[0]], &device)], 2),
        [h, w] => {
            let x = x.reshape([b, c, *h, *w]);
            let x = Tensor::cat(vec![x, Tensor::zeros([b, c, *h, pad[1]], &device)], 3);
            let x = Tensor::cat(
                vec![x, Tensor::zeros([b, c, pad[0], w + pad[1]], &device)],
                2,
            );
            x.reshape([b, c, (h + pad[0]) * (w + pad[1])])
        }
        _ => x,
    }
}

/// Undo [`pad_end`].
fn crop(x: Tensor<3>, grid: &[usize], pad: &[usize]) -> Tensor<3> {
    let [b, c, _] = x.dims();
    match grid {
        [n] => x.narrow(2, 0, *n),
        [h, w] => x
            .reshape([b, c, h + pad[0], w + pad[1]])
            .narrow(2, 0, *h)
            .narrow(3, 0, *w)
            .reshape([b, c, h * w]),
        _ => x,
    }
}

impl Fno {
    /// The padding (points per axis) used at spatial size `grid`.
    pub fn padding(&self, grid: &[usize]) -> Vec<usize> {
        grid.iter()
            .map(|&n| (n as f64 * self.spec.domain_padding).round() as usize)
            .collect()
    }

    /// `x[batch, in_channels, points]` on `grid` → [`Head`] with fields `[batch, out, points]`.
    pub fn forward(&self, x: Tensor<3>, grid: &[usize], pass: &mut Pass<'_>) -> Head {
        let spec = &self.spec;
        let [b, _, _] = x.dims();
        let device = x.device();
        let x = if spec.positional_embedding {
            let g = grid_channels(grid, &device);
            let [_, a, n] = g.dims();
            Tensor::cat(vec![x, g.expand([b, a, n])], 1)
        } else {
            x
        };
        let mlp_p = if pass.dropout { spec.dropout } else { 0.0 };
        let fourier_p = if pass.dropout {
            spec.fourier_dropout
        } else {
            0.0
        };
        let mut x = self
            .lifting
            .forward(x, pass.noise.as_deref_mut().map(|n| (mlp_p, n)));
        let pad = self.padding(grid);
        let padded = pad.iter().any(|&p| p > 0);
        let pgrid: Vec<usize> = grid.iter().zip(&pad).map(|(n, p)| n + p).collect();
        if padded {
            x = pad_end(x, grid, &pad);
        }
        let last = self.blocks.len().saturating_sub(1);
        for (i, block) in self.blocks.iter().enumerate() {
            let noise = match pass.noise.as_deref_mut() {
                Some(n) if fourier_p > 0.0 || pass.sample_weights => Some(SpectralNoise {
                    dropout: fourier_p,
                    sample_weights: pass.sample_weights,
                    noise: n,
                }),
                _ => None,
            };
            // The convolution, the skip and (between blocks, or before a block MLP) GELU as one
            // fused op.
            let with_mlp = block.mlp.is_some() && block.mlp_gate.is_some();
            let y = block.spectral.forward_block(
                x.clone(),
                &pgrid,
                noise,
                &block.skip,
                with_mlp || i < last,
            );
            x = match (&block.mlp, &block.mlp_gate) {
                (Some(mlp), Some(gate)) => {
                    let p = if pass.dropout {
                        spec.block_mlp.map_or(0.0, |m| m.dropout)
                    } else {
                        0.0
                    };
                    let h = mlp.forward_dropout_out(y, pass.noise.as_deref_mut().map(|n| (p, n)));
                    let y = h + x * gate.val().reshape([1, -1, 1]);
                    if i < last { fused::gelu(y) } else { y }
                }
                _ => y,
            };
        }
        if padded {
            x = crop(x, grid, &pad);
        }
        let std = self.std_head.as_ref().map(|h| {
            softplus(
                h.forward(x.clone(), pass.noise.as_deref_mut().map(|n| (mlp_p, n))),
                1.0,
            ) + 1e-6
        });
        let mlp = pass.noise.as_deref_mut().map(|n| (mlp_p, n));
        let (features, mean) = match &self.projection.fc2 {
            Some(fc2) if pass.features => {
                let f = self.projection.hidden(x, mlp);
                (Some(f.clone()), fc2.forward(f))
            }
            None if pass.features => (Some(x.clone()), self.projection.fc1.forward(x)),
            _ => (None, self.projection.forward(x, mlp)),
        };
        Head {
            mean,
            std,
            features,
        }
    }

    /// The last linear layer (the one last-layer Laplace puts a posterior on).
    pub fn last_layer(&self) -> &Pointwise {
        self.projection.fc2.as_ref().unwrap_or(&self.projection.fc1)
    }

    /// Sum of the KL terms of all variational spectral layers.
    pub fn kl(&self, prior_std: f64) -> Option<Tensor<1>> {
        self.blocks
            .iter()
            .filter_map(|b| b.spectral.kl(prior_std))
            .reduce(|a, b| a + b)
    }
}
