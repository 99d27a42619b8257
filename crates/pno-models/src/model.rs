//! The model every command works with: one or more networks plus what turns their outputs
//! into a predictive distribution, answering [`Model::predict`] the same way for every kind.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use crate::config::{BackboneSpec, Kind, ModelSpec, NoiseKind};
use crate::deeponet::DeepOnet;
use crate::error::{ModelError, Result};
use crate::fno::{Fno, Head, Pass};
use crate::laplace::LaplacePosterior;
use crate::noise::Noise;
use pno_core::seed::{mix, salt};

/// One network (exactly one of the fields is set).
#[derive(Module, Debug)]
pub struct Network {
    /// FNO backbone.
    pub fno: Option<Fno>,
    /// DeepONet backbone.
    pub deeponet: Option<DeepOnet>,
}

impl Network {
    /// Forward pass; see [`Fno::forward`].
    pub fn forward(&self, x: Tensor<3>, grid: &[usize], pass: &mut Pass<'_>) -> Head {
        match (&self.fno, &self.deeponet) {
            (Some(f), _) => f.forward(x, grid, pass),
            (None, Some(d)) => d.forward(x, grid, pass),
            (None, None) => unreachable_network(),
        }
    }

    /// A stochastic pass with `noise`: dropout on or off, variational weights sampled or not.
    pub fn sample(
        &self,
        x: Tensor<3>,
        grid: &[usize],
        noise: &mut Noise,
        dropout: bool,
        sample_weights: bool,
    ) -> Head {
        self.forward(
            x,
            grid,
            &mut Pass {
                noise: Some(noise),
                dropout,
                sample_weights,
                features: false,
            },
        )
    }

    /// KL of the variational layers (FNO only).
    pub fn kl(&self, prior_std: f64) -> Option<Tensor<1>> {
        self.fno.as_ref().and_then(|f| f.kl(prior_std))
    }
}

fn unreachable_network() -> Head {
    // `Model::new` always sets one backbone.
    panic!("network without a backbone")
}

/// A probabilistic neural operator of any kind.
#[derive(Module, Debug)]
pub struct Model {
    /// The networks (ensemble members; one for every other kind).
    pub members: Vec<Network>,
    /// Fitted last-layer posterior (`laplace` after fitting).
    #[module(skip)]
    pub laplace: Option<LaplacePosterior>,
    /// Post-hoc multiplier of the predicted spread (split-conformal calibration; 1 = none).
    #[module(skip)]
    pub spread_scale: f64,
    /// The validated spec.
    #[module(skip)]
    pub spec: ModelSpec,
}

/// A predictive distribution for a batch, on the host: in the model's (normalised) units from
/// [`Model::predict`], in physical units from a trained run's `predict` (`pno-run`).
#[derive(Debug, Clone, PartialEq)]
pub struct Predictive {
    /// Draws `[samples, batch, out, points]`, row-major.
    pub samples: Vec<f32>,
    /// Number of draws.
    pub n_samples: usize,
    /// Batch size.
    pub batch: usize,
    /// Output channels.
    pub channels: usize,
    /// Spatial grid.
    pub grid: Vec<usize>,
    /// Predictive mean `[batch, out, points]` (analytic where the model has one).
    pub mean: Vec<f32>,
    /// Predictive std `[batch, out, points]`.
    pub std: Vec<f32>,
    /// Aleatoric part of the variance `[batch, out, points]` (models with a std head), so that
    /// `std² = aleatoric + epistemic` by the law of total variance.
    pub aleatoric_var: Option<Vec<f32>>,
}

impl Predictive {
    /// Inputs `start .. start + n` of this prediction as a prediction of their own.
    pub fn rows(&self, start: usize, n: usize) -> Predictive {
        let d = self.per_function();
        let (a, b) = (start * d, (start + n) * d);
        Predictive {
            samples: (0..self.n_samples)
                .flat_map(|k| {
                    let base = k * self.batch * d;
                    self.samples[base + a..base + b].iter().copied()
                })
                .collect(),
            n_samples: self.n_samples,
            batch: n,
            channels: self.channels,
            grid: self.grid.clone(),
            mean: self.mean[a..b].to_vec(),
            std: self.std[a..b].to_vec(),
            aleatoric_var: self.aleatoric_var.as_ref().map(|v| v[a..b].to_vec()),
        }
    }

    /// Values per function (`out × points`).
    pub fn per_function(&self) -> usize {
        self.channels * self.grid.iter().product::<usize>()
    }

    /// Empirical quantiles `[levels, batch, out, points]` of the draws (linear interpolation
    /// between order statistics, numpy's default).
    pub fn quantiles(&self, levels: &[f64]) -> Vec<f32> {
        quantiles(&self.samples, self.n_samples, levels)
    }
}

/// Empirical quantiles `[levels, d]` of draws `[samples, d]` (linear interpolation between
/// order statistics, numpy's default).
pub fn quantiles(samples: &[f32], n_samples: usize, levels: &[f64]) -> Vec<f32> {
    let s = n_samples.max(1);
    let d = samples.len() / s;
    let mut out = vec![0.0f32; levels.len() * d];
    let mut col = vec![0.0f32; s];
    for i in 0..d {
        for (k, c) in col.iter_mut().enumerate() {
            *c = samples[k * d + i];
        }
        col.sort_by(|a, b| a.total_cmp(b));
        for (l, &q) in levels.iter().enumerate() {
            let pos = q.clamp(0.0, 1.0) * (s - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(s - 1);
            let w = (pos - lo as f64) as f32;
            out[l * d + i] = col[lo] * (1.0 - w) + col[hi] * w;
        }
    }
    out
}

impl ModelSpec {
    /// Build the model; member `k` draws its weights from `mix(seed, k)`.
    pub fn init(&self, seed: u64, device: &Device) -> Model {
        let members = (0..self.n_members)
            .map(|k| {
                let s = mix(&[seed, k as u64, salt::MEMBER]);
                match &self.backbone {
                    BackboneSpec::Fno(f) => Network {
                        fno: Some(f.init(s, device)),
                        deeponet: None,
                    },
                    BackboneSpec::Deeponet(d) => Network {
                        fno: None,
                        deeponet: Some(d.init(s, device)),
                    },
                }
            })
            .collect();
        Model {
            members,
            laplace: None,
            spread_scale: 1.0,
            spec: self.clone(),
        }
    }
}

/// `mean + std · eps`, elementwise.
fn gaussian_draw(mean: &[f32], std: &[f32], eps: &[f32]) -> Vec<f32> {
    mean.iter()
        .zip(std)
        .zip(eps)
        .map(|((&m, &sd), &e)| m + sd * e)
        .collect()
}

fn host(t: Tensor<3>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default()
}

impl Model {
    /// Check an input batch `[batch, in, points]` on `grid` against the model.
    pub fn check_input(&self, dims: [usize; 3], grid: &[usize]) -> Result<()> {
        let (cin, modes) = match &self.spec.backbone {
            BackboneSpec::Fno(f) => (f.in_channels, Some(&f.n_modes)),
            BackboneSpec::Deeponet(d) => (d.in_channels, None),
        };
        if grid.len() != self.spec.grid.len() {
            return Err(ModelError::Input {
                what: "x".into(),
                expected: format!("{} spatial axes", self.spec.grid.len()),
                got: format!("{} ({grid:?})", grid.len()),
            });
        }
        if dims[1] != cin {
            return Err(ModelError::Input {
                what: "x".into(),
                expected: format!("{cin} channels"),
                got: format!("{}", dims[1]),
            });
        }
        if dims[2] != grid.iter().product::<usize>() || dims[0] == 0 {
            return Err(ModelError::Input {
                what: "x".into(),
                expected: format!(
                    "a non-empty batch with {} points",
                    grid.iter().product::<usize>()
                ),
                got: format!("shape {dims:?}"),
            });
        }
        if modes.is_some() && grid.iter().any(|&n| n < 4) {
            return Err(ModelError::Input {
                what: "x".into(),
                expected: "at least 4 points per axis".into(),
                got: format!("grid {grid:?}"),
            });
        }
        Ok(())
    }

    /// Whether the model's predictive distribution has any spread.
    pub fn is_stochastic(&self) -> bool {
        !matches!(self.spec.kind, Kind::Fno | Kind::Deeponet)
    }

    /// Draws for the training loss: `[train_samples, batch, out, points]` plus the std head of
    /// the first draw (for NLL/CRPS losses). `step_seed` keys the randomness of this step and
    /// `rows` the batch's sample indices (batch-invariant masks).
    pub fn train_forward(
        &self,
        member: usize,
        x: Tensor<3>,
        grid: &[usize],
        step_seed: u64,
        rows: &[u64],
    ) -> (Tensor<4>, Option<Tensor<3>>) {
        let net = &self.members[member];
        let m = self.spec.train_samples;
        let [b, c, p] = x.dims();
        match self.spec.kind {
            Kind::PnoD | Kind::McDropout => {
                // Stack the M draws into one batch: rows keyed (draw, sample index).
                let keys: Vec<(u64, u64)> = (0..m as u64)
                    .flat_map(|d| rows.iter().map(move |&r| (d, r)))
                    .collect();
                let mut noise = Noise::from_keys(step_seed, 0, keys);
                let xs = x
                    .unsqueeze_dim::<4>(0)
                    .expand([m, b, c, p])
                    .reshape([m * b, c, p]);
                let head = net.sample(xs, grid, &mut noise, true, false);
                let [_, co, _] = head.mean.dims();
                (head.mean.reshape([m, b, co, p]), None)
            }
            Kind::PnoR => {
                let mut noise = Noise::from_keys(step_seed, 0, rows.iter().map(|&r| (0, r)));
                let head = net.sample(x, grid, &mut noise, true, false);
                let std = head.std.clone().unwrap_or_else(|| head.mean.zeros_like());
                let [_, co, _] = head.mean.dims();
                let mut eps_noise = Noise::from_keys(
                    step_seed,
                    1,
                    (1..=m as u64).flat_map(|d| rows.iter().map(move |&r| (d, r))),
                );
                let eps = self.noise_field(&mut eps_noise, m * b, co, grid, &head.mean.device());
                let eps = eps.reshape([m, b, co, p]);
                let samples =
                    head.mean.unsqueeze_dim::<4>(0) + std.clone().unsqueeze_dim::<4>(0) * eps;
                (samples, Some(std))
            }
            Kind::ViPno => {
                let mut noise = Noise::from_keys(step_seed, 0, rows.iter().map(|&r| (0, r)));
                let head = net.sample(x, grid, &mut noise, false, true);
                (head.mean.unsqueeze_dim::<4>(0), head.std)
            }
            _ => {
                let head = net.forward(x, grid, &mut Pass::deterministic());
                (head.mean.unsqueeze_dim::<4>(0), head.std)
            }
        }
    }

    fn noise_field(
        &self,
        noise: &mut Noise,
        rows: usize,
        co: usize,
        grid: &[usize],
        device: &Device,
    ) -> Tensor<3> {
        let p: usize = grid.iter().product();
        match self.spec.noise {
            NoiseKind::White => noise.normal([rows, co, p], device),
            NoiseKind::Correlated { length } => noise.correlated(co, grid, length, device),
        }
    }

    /// Predictive distribution for `x[batch, in, points]` on `grid` with `n_samples` draws.
    ///
    /// Randomness is keyed by `(seed, draw, first_row + i)`, so row `i`'s draws do not depend
    /// on the batch it came in. `max_rows` bounds how many rows go through one forward pass.
    pub fn predict(
        &self,
        x: Tensor<3>,
        grid: &[usize],
        n_samples: usize,
        seed: u64,
        first_row: u64,
        max_rows: usize,
    ) -> Result<Predictive> {
        self.predict_until(x, grid, n_samples, seed, first_row, max_rows, None)
    }

    /// [`Model::predict`] that stops with [`ModelError::Cancelled`] once `cancel` is set,
    /// checked between chunks of draws (the draws computed are the same as without it).
    #[allow(clippy::too_many_arguments)]
    pub fn predict_until(
        &self,
        x: Tensor<3>,
        grid: &[usize],
        n_samples: usize,
        seed: u64,
        first_row: u64,
        max_rows: usize,
        cancel: Option<&std::sync::atomic::AtomicBool>,
    ) -> Result<Predictive> {
        let [b, _, _] = x.dims();
        let rows: Vec<(u64, u64)> = (0..b as u64).map(|i| (seed, first_row + i)).collect();
        self.predict_rows(x, grid, n_samples, &rows, max_rows, cancel)
    }

    /// Whether one pass's draws share randomness across its rows (a posterior weight sample
    /// of last-layer Laplace or VI-PNO): such a pass takes rows of one seed only.
    pub fn shares_draws_across_rows(&self) -> bool {
        matches!(self.spec.kind, Kind::Laplace | Kind::ViPno)
    }

    /// [`Model::predict_until`] with a `(seed, row)` key per input row: row `i` draws from
    /// the streams of `rows[i]`, so inputs of different requests, each with its own seed and
    /// row numbers, can share one pass and get exactly the draws they would get alone
    /// (dynamic batching). Kinds that [share draws across rows](Model::shares_draws_across_rows)
    /// take one seed per call.
    pub fn predict_rows(
        &self,
        x: Tensor<3>,
        grid: &[usize],
        n_samples: usize,
        rows: &[(u64, u64)],
        max_rows: usize,
        cancel: Option<&std::sync::atomic::AtomicBool>,
    ) -> Result<Predictive> {
        let cancelled = || cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed));
        self.check_input(x.dims(), grid)?;
        if rows.len() != x.dims()[0] {
            return Err(ModelError::Input {
                what: "rows".into(),
                expected: format!("one (seed, row) key per input ({})", x.dims()[0]),
                got: rows.len().to_string(),
            });
        }
        // The shared stream (posterior weight samples) follows the first row's seed.
        let seed = rows.first().map_or(0, |r| r.0);
        if self.shares_draws_across_rows()
            && let Some(other) = rows.iter().find(|r| r.0 != seed)
        {
            return Err(ModelError::Input {
                what: "rows".into(),
                expected: format!(
                    "one seed for every row of a {} pass (its posterior draws are shared by the pass)",
                    self.spec.kind.name()
                ),
                got: format!("seeds {seed} and {}", other.0),
            });
        }
        if n_samples == 0 {
            return Err(ModelError::Input {
                what: "n_samples".into(),
                expected: "at least 1".into(),
                got: "0".into(),
            });
        }
        let [b, c, p] = x.dims();
        let device = x.device();
        let s = n_samples;
        let mut draws: Vec<Vec<f32>> = Vec::with_capacity(s);
        let mut aleatoric: Option<Vec<f64>> = None;
        let mut means_of_heads: Option<Vec<f32>> = None;
        match self.spec.kind {
            Kind::Fno | Kind::Deeponet => {
                let head = self.members[0].forward(x, grid, &mut Pass::deterministic());
                let mean = host(head.mean);
                means_of_heads = Some(mean.clone());
                draws = vec![mean; s];
            }
            Kind::McDropout | Kind::PnoD => {
                // Several draws per forward pass, at most `max_rows` rows at a time.
                let per_pass = (max_rows / b).max(1);
                let mut d0 = 0;
                while d0 < s {
                    if cancelled() {
                        return Err(ModelError::Cancelled);
                    }
                    let k = per_pass.min(s - d0);
                    let keys: Vec<(u64, u64, u64)> = (d0 as u64..(d0 + k) as u64)
                        .flat_map(|d| rows.iter().map(move |&(rs, r)| (rs, d, r)))
                        .collect();
                    let mut noise = Noise::from_seeded_keys(seed, 0, keys);
                    let xs = x
                        .clone()
                        .unsqueeze_dim::<4>(0)
                        .expand([k, b, c, p])
                        .reshape([k * b, c, p]);
                    let head = self.members[0].sample(xs, grid, &mut noise, true, false);
                    let v = host(head.mean);
                    let per = v.len() / k;
                    draws.extend(v.chunks(per).map(<[f32]>::to_vec));
                    d0 += k;
                }
            }
            Kind::Ensemble => {
                let heads: Vec<Head> = self
                    .members
                    .iter()
                    .map(|m| m.forward(x.clone(), grid, &mut Pass::deterministic()))
                    .collect();
                let means: Vec<Vec<f32>> = heads.iter().map(|h| host(h.mean.clone())).collect();
                let stds: Option<Vec<Vec<f32>>> = heads
                    .iter()
                    .map(|h| h.std.clone().map(host))
                    .collect::<Option<Vec<_>>>();
                let d = means[0].len();
                if let Some(stds) = &stds {
                    let mut al = vec![0.0f64; d];
                    for sd in stds {
                        for (a, &v) in al.iter_mut().zip(sd) {
                            *a += f64::from(v) * f64::from(v) / stds.len() as f64;
                        }
                    }
                    aleatoric = Some(al);
                }
                let co = d / (b * p);
                for k in 0..s {
                    if cancelled() {
                        return Err(ModelError::Cancelled);
                    }
                    let mi = k % self.members.len();
                    let mut v = means[mi].clone();
                    if let Some(stds) = &stds {
                        let mut noise = Noise::from_seeded_keys(
                            seed,
                            k as u64,
                            rows.iter().map(|&(rs, r)| (rs, k as u64, r)),
                        );
                        let eps = host(noise.normal([b, co, p], &device));
                        for ((o, &sd), e) in v.iter_mut().zip(&stds[mi]).zip(eps) {
                            *o += sd * e;
                        }
                    }
                    draws.push(v);
                }
            }
            Kind::Laplace => {
                let head = self.members[0].forward(x, grid, &mut Pass::features());
                let Some(post) = &self.laplace else {
                    return Err(ModelError::Input {
                        what: "model".into(),
                        expected: "a fitted last-layer posterior (run training to the end)".into(),
                        got: "none".into(),
                    });
                };
                let fno = self.members[0].fno.as_ref();
                let last = fno.map(Fno::last_layer);
                let Some(last) = last else {
                    return Err(ModelError::Input {
                        what: "model".into(),
                        expected: "an fno backbone".into(),
                        got: "deeponet".into(),
                    });
                };
                let feats = host(head.features.expect("a features pass returns the features"));
                let w = last
                    .weight
                    .val()
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .unwrap_or_default();
                let bias = last.bias.as_ref().map(|b| {
                    b.val()
                        .into_data()
                        .convert::<f32>()
                        .try_into_vec::<f32>()
                        .unwrap_or_default()
                });
                let co = last.d_out();
                let f = feats.len() / (b * p);
                for k in 0..s {
                    let mut noise = Noise::from_seeded_keys(
                        seed,
                        k as u64,
                        rows.iter().map(|&(rs, r)| (rs, k as u64, r)),
                    );
                    let delta = post.sample_delta(&mut noise, co);
                    let eps = host(noise.normal([b, co, p], &device));
                    draws.push(post.apply(&feats, &w, bias.as_deref(), &delta, &eps, b, f, co, p));
                }
                aleatoric = Some(vec![post.sigma_obs * post.sigma_obs; b * co * p]);
            }
            Kind::PnoR => {
                let head = self.members[0].forward(x, grid, &mut Pass::deterministic());
                let mean = host(head.mean.clone());
                let std = head.std.map(host).unwrap_or_else(|| vec![0.0; mean.len()]);
                means_of_heads = Some(mean.clone());
                let co = mean.len() / (b * p);
                for k in 0..s {
                    let mut noise = Noise::from_seeded_keys(
                        seed,
                        k as u64,
                        rows.iter().map(|&(rs, r)| (rs, k as u64, r)),
                    );
                    let eps = host(self.noise_field(&mut noise, b, co, grid, &device));
                    draws.push(gaussian_draw(&mean, &std, &eps));
                }
                aleatoric = Some(std.iter().map(|&v| f64::from(v) * f64::from(v)).collect());
            }
            Kind::ViPno => {
                let mut al: Option<Vec<f64>> = None;
                for k in 0..s {
                    let mut noise = Noise::from_seeded_keys(
                        seed,
                        k as u64,
                        rows.iter().map(|&(rs, r)| (rs, k as u64, r)),
                    );
                    let head = self.members[0].sample(x.clone(), grid, &mut noise, false, true);
                    let mean = host(head.mean);
                    let std = head.std.map(host).unwrap_or_else(|| vec![0.0; mean.len()]);
                    let co = mean.len() / (b * p);
                    let eps = host(noise.normal([b, co, p], &device));
                    let a = al.get_or_insert_with(|| vec![0.0; mean.len()]);
                    for (av, &sd) in a.iter_mut().zip(&std) {
                        *av += f64::from(sd) * f64::from(sd) / s as f64;
                    }
                    draws.push(gaussian_draw(&mean, &std, &eps));
                }
                aleatoric = al;
            }
        }
        let d = draws[0].len();
        let co = d / (b * p);
        // Mean and std of the draws (f64), then the conformal spread scale around the mean.
        let mut mean = vec![0.0f64; d];
        for v in &draws {
            for (m, &x) in mean.iter_mut().zip(v) {
                *m += f64::from(x) / s as f64;
            }
        }
        if let Some(mh) = &means_of_heads
            && matches!(self.spec.kind, Kind::Fno | Kind::Deeponet | Kind::PnoR)
        {
            // Use the analytic mean where the model has one.
            mean.iter_mut()
                .zip(mh)
                .for_each(|(m, &v)| *m = f64::from(v));
        }
        let mut var = vec![0.0f64; d];
        if s > 1 {
            for v in &draws {
                for ((acc, &x), &m) in var.iter_mut().zip(v).zip(&mean) {
                    *acc += (f64::from(x) - m).powi(2) / (s - 1) as f64;
                }
            }
        }
        let scale = self.spread_scale;
        let mut samples = Vec::with_capacity(s * d);
        for v in &draws {
            samples.extend(
                v.iter()
                    .zip(&mean)
                    .map(|(&x, &m)| (m + (f64::from(x) - m) * scale) as f32),
            );
        }
        Ok(Predictive {
            samples,
            n_samples: s,
            batch: b,
            channels: co,
            grid: grid.to_vec(),
            mean: mean.iter().map(|&m| m as f32).collect(),
            std: var.iter().map(|&v| (v.sqrt() * scale) as f32).collect(),
            aleatoric_var: aleatoric
                .map(|a| a.iter().map(|&v| (v * scale * scale) as f32).collect()),
        })
    }

    /// Upload a host batch `[batch, c, points]` to `device`.
    pub fn tensor(values: Vec<f32>, dims: [usize; 3], device: &Device) -> Tensor<3> {
        Tensor::from_data(TensorData::new(values, dims), device)
    }
}
