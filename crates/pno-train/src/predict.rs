//! Prediction in physical units from a trained run.

use pno_models::burn::tensor::Device;

use crate::error::{Result, TrainError};
use crate::run::TrainedModel;

/// A predictive distribution in physical units.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Draws `[samples, n, out, points]`.
    pub samples: Vec<f32>,
    /// Mean `[n, out, points]`.
    pub mean: Vec<f32>,
    /// Std `[n, out, points]`.
    pub std: Vec<f32>,
    /// Aleatoric variance `[n, out, points]`, when the model separates it.
    pub aleatoric_var: Option<Vec<f32>>,
    /// Draws.
    pub n_samples: usize,
    /// Inputs.
    pub n: usize,
    /// Output channels.
    pub channels: usize,
    /// Grid.
    pub grid: Vec<usize>,
}

impl Prediction {
    /// Quantiles `[levels, n, out, points]` of the draws.
    pub fn quantiles(&self, levels: &[f64]) -> Vec<f32> {
        pno_models::model::quantiles(&self.samples, self.n_samples, levels)
    }
}

impl TrainedModel {
    /// Predict for inputs `x[n, in, points]` (physical units) on `grid`. Row `i` of the request
    /// uses noise stream `first_row + i`, so the same seed gives the same draws whatever the
    /// batching. `batch` bounds the inputs per forward pass.
    #[allow(clippy::too_many_arguments)]
    pub fn predict(
        &self,
        mut x: Vec<f32>,
        n: usize,
        grid: &[usize],
        n_samples: usize,
        seed: u64,
        batch: usize,
        device: &Device,
    ) -> Result<Prediction> {
        let cin = self.file.in_channels;
        let p: usize = grid.iter().product();
        if x.len() != n * cin * p || n == 0 {
            return Err(TrainError::Model(pno_models::ModelError::Input {
                what: "x".into(),
                expected: format!(
                    "[n, {cin}, {grid:?}] with n ≥ 1 ({} values per sample)",
                    cin * p
                ),
                got: format!("{} values for n = {n}", x.len()),
            }));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(TrainError::Model(pno_models::ModelError::Input {
                what: "x".into(),
                expected: "finite values".into(),
                got: format!("{} in sample {}", x[i], i / (cin * p)),
            }));
        }
        if let Some(nx) = &self.normalizers.x {
            nx.transform(&mut x, cin, p)?;
        }
        let cout = self.file.out_channels;
        let d = cout * p;
        let mut samples = vec![0.0f32; n_samples * n * d];
        let (mut mean, mut std) = (vec![0.0f32; n * d], vec![0.0f32; n * d]);
        let mut alea: Option<Vec<f32>> = None;
        let batch = batch.max(1);
        let max_rows = (4096 * 1024 / (p.max(1) * 64)).clamp(batch, 4096);
        for start in (0..n).step_by(batch) {
            let b = batch.min(n - start);
            let xt = pno_models::Model::tensor(
                x[start * cin * p..(start + b) * cin * p].to_vec(),
                [b, cin, p],
                device,
            );
            let pr = self
                .model
                .predict(xt, grid, n_samples, seed, start as u64, max_rows)?;
            for s in 0..n_samples {
                let src = &pr.samples[s * b * d..(s + 1) * b * d];
                samples[(s * n + start) * d..(s * n + start + b) * d].copy_from_slice(src);
            }
            mean[start * d..(start + b) * d].copy_from_slice(&pr.mean);
            std[start * d..(start + b) * d].copy_from_slice(&pr.std);
            if let Some(a) = pr.aleatoric_var {
                alea.get_or_insert_with(|| vec![0.0; n * d])[start * d..(start + b) * d]
                    .copy_from_slice(&a);
            }
        }
        if let Some(ny) = &self.normalizers.y {
            ny.inverse_transform(&mut mean, cout, p)?;
            ny.inverse_std(&mut std, cout, p)?;
            ny.inverse_transform(&mut samples, cout, p)?;
            if let Some(a) = &mut alea {
                // Variances scale with the square of the std factor.
                let mut s: Vec<f32> = a.iter().map(|v| v.max(0.0).sqrt()).collect();
                ny.inverse_std(&mut s, cout, p)?;
                a.iter_mut().zip(s).for_each(|(v, s)| *v = s * s);
            }
        }
        Ok(Prediction {
            samples,
            mean,
            std,
            aleatoric_var: alea,
            n_samples,
            n,
            channels: cout,
            grid: grid.to_vec(),
        })
    }
}
