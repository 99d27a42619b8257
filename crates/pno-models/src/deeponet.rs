//! DeepONet (Lu, Jin, Pang, Zhang & Karniadakis, "Learning nonlinear operators via DeepONet
//! based on the universal approximation theorem of operators", Nature Machine Intelligence
//! 2021): a branch MLP reads the input function at fixed sensors, a trunk MLP reads the query
//! coordinates, and the output is `G(u)(y) = Σ_k b_k(u) t_k(y) + b0` per output channel.
//!
//! Inputs at a resolution other than the sensor grid are linearly resampled onto the sensors
//! (endpoint-aligned), and the trunk is evaluated on the input's own grid, so the model answers
//! at any resolution.

use burn::module::Module;
use burn::tensor::activation::{gelu, softplus};
use burn::tensor::{Device, Tensor, TensorData};

use crate::config::DeepOnetSpec;
use crate::fno::{Head, Pass, grid_channels};
use crate::fused;
use crate::init::Init;
use crate::layers::Pointwise;

/// The DeepONet network.
#[derive(Module, Debug)]
pub struct DeepOnet {
    /// Branch layers (`in·sensors → hidden → … → (1 + std)·out·p`).
    pub branch: Vec<Pointwise>,
    /// Trunk layers (`axes → hidden → … → p`).
    pub trunk: Vec<Pointwise>,
    /// Output bias `[out]`.
    pub bias: Pointwise,
    /// The validated architecture.
    #[module(skip)]
    pub spec: DeepOnetSpec,
}

impl DeepOnetSpec {
    /// Build the network with weights drawn from `seed`.
    pub fn init(&self, seed: u64, device: &Device) -> DeepOnet {
        let mut init = Init::new(seed);
        let sensors: usize = self.sensors.iter().product();
        let heads = if self.std_head { 2 } else { 1 };
        let mut branch = vec![Pointwise::new(
            &mut init,
            self.in_channels * sensors,
            self.hidden_channels,
            true,
            device,
        )];
        for _ in 1..self.n_layers {
            branch.push(Pointwise::new(
                &mut init,
                self.hidden_channels,
                self.hidden_channels,
                true,
                device,
            ));
        }
        branch.push(Pointwise::new(
            &mut init,
            self.hidden_channels,
            heads * self.out_channels * self.basis_size,
            true,
            device,
        ));
        let mut trunk = vec![Pointwise::new(
            &mut init,
            self.sensors.len(),
            self.hidden_channels,
            true,
            device,
        )];
        for _ in 1..self.n_layers {
            trunk.push(Pointwise::new(
                &mut init,
                self.hidden_channels,
                self.hidden_channels,
                true,
                device,
            ));
        }
        trunk.push(Pointwise::new(
            &mut init,
            self.hidden_channels,
            self.basis_size,
            true,
            device,
        ));
        // The output bias is a 1×(heads·out) map applied to a constant 1.
        let bias = Pointwise::new(&mut init, 1, heads * self.out_channels, false, device);
        DeepOnet {
            branch,
            trunk,
            bias,
            spec: self.clone(),
        }
    }
}

/// Endpoint-aligned linear interpolation matrix `[n_in, n_out]` (columns sum to 1).
fn interp_matrix(n_in: usize, n_out: usize) -> Vec<f64> {
    let mut m = vec![0.0; n_in * n_out];
    for j in 0..n_out {
        let t = if n_out == 1 {
            0.0
        } else {
            j as f64 * (n_in - 1) as f64 / (n_out - 1) as f64
        };
        let i0 = (t.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        let w = t - i0 as f64;
        m[i0 * n_out + j] += 1.0 - w;
        m[i1 * n_out + j] += w;
    }
    m
}

fn matrix(v: Vec<f64>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    let v: Vec<f32> = v.into_iter().map(|x| x as f32).collect();
    Tensor::from_data(TensorData::new(v, [rows, cols]), device)
}

/// Resample `[batch, c, points]` from `grid` onto `target` (same number of axes).
pub fn resample(x: Tensor<3>, grid: &[usize], target: &[usize]) -> Tensor<3> {
    if grid == target {
        return x;
    }
    let [b, c, _] = x.dims();
    let device = x.device();
    match (grid, target) {
        ([n], [m]) => x
            .reshape([b * c, *n])
            .matmul(matrix(interp_matrix(*n, *m), *n, *m, &device))
            .reshape([b, c, *m]),
        ([h, w], [th, tw]) => {
            let y =
                x.reshape([b * c * h, *w])
                    .matmul(matrix(interp_matrix(*w, *tw), *w, *tw, &device));
            let ih = matrix(interp_matrix(*h, *th), *h, *th, &device).transpose(); // [th, h]
            ih.unsqueeze_dim::<3>(0)
                .matmul(y.reshape([b * c, *h, *tw]))
                .reshape([b, c, th * tw])
        }
        _ => x,
    }
}

impl DeepOnet {
    /// `x[batch, in, points]` on `grid` → [`Head`] on the same grid.
    pub fn forward(&self, x: Tensor<3>, grid: &[usize], pass: &mut Pass<'_>) -> Head {
        let spec = &self.spec;
        let [b, _, _] = x.dims();
        let device = x.device();
        let p = spec.basis_size;
        let co = spec.out_channels;
        // Branch on [1, features, batch] so each layer is one matmul.
        let u = resample(x, grid, &spec.sensors)
            .reshape([b as i32, -1])
            .transpose()
            .unsqueeze_dim::<3>(0);
        let last = self.branch.len() - 1;
        let mut h = u;
        for (i, layer) in self.branch.iter().enumerate() {
            h = layer.forward(h);
            if i < last {
                if pass.dropout
                    && spec.dropout > 0.0
                    && let Some(noise) = pass.noise.as_deref_mut()
                {
                    // The masks follow the batch rows' streams: view as [batch, hidden, 1],
                    // where the fused op makes each row's mask from its stream.
                    let [_, f, _] = h.dims();
                    let rows = h.squeeze_dim::<2>(0).transpose().unsqueeze_dim::<3>(2);
                    let rows = fused::dropout(rows, noise.mask_streams(spec.dropout, f));
                    h = rows.squeeze_dim::<2>(2).transpose().unsqueeze_dim::<3>(0);
                }
                h = gelu(h);
            }
        }
        let heads = if spec.std_head { 2 } else { 1 };
        let coef = h
            .squeeze_dim::<2>(0)
            .transpose()
            .reshape([b, heads * co, p]); // [b, heads·co, p]
        let mut t = grid_channels(grid, &device); // [1, axes, points]
        for layer in &self.trunk {
            t = gelu(layer.forward(t));
        }
        let t = t.squeeze_dim::<2>(0); // [p, points]
        let out = coef.matmul(t.unsqueeze_dim::<3>(0)) / (p as f64).sqrt(); // [b, heads·co, points]
        let bias = self.bias.weight.val().reshape([1, heads * co, 1]);
        let out = out + bias;
        let mean = out.clone().narrow(1, 0, co);
        let std = spec
            .std_head
            .then(|| softplus(out.narrow(1, co, co), 1.0) + 1e-6);
        Head {
            mean: mean.clone(),
            std,
            features: Some(mean),
        }
    }
}
