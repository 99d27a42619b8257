//! A trained model loaded from its run folder, and prediction in physical units.

use std::path::Path;

use pno_models::burn::tensor::Device;
use pno_models::laplace::LaplacePosterior;
use pno_models::{Model, ModelError, Predictive};

use crate::dir::RunDir;
use crate::error::{Result, RunError, io_err};
use crate::files::{FORMAT, ModelFile, Normalizers, read_json};
use crate::weights::from_safetensors;

/// A trained model loaded from its run folder, ready to predict.
#[derive(Debug)]
pub struct TrainedModel {
    /// The model (weights, Laplace posterior and spread scale applied).
    pub model: Model,
    /// `model.json`.
    pub file: ModelFile,
    /// `normalizer.json`.
    pub normalizers: Normalizers,
    /// The run folder.
    pub run: RunDir,
    /// `reference.json`: drift-monitoring reference statistics (None: a run written before
    /// they existed, served without drift monitoring).
    pub reference: Option<std::sync::Arc<crate::reference::ReferenceStats>>,
}

/// Load a run for inference: checks the format tag, verifies the weights checksum, the shapes
/// of every tensor and the finiteness of every value; a corrupt, mismatched or
/// unknown-format run is refused with the file named.
pub fn load_trained(dir: &Path, device: &Device) -> Result<TrainedModel> {
    let trained = load_weights(dir, device, true)?;
    if trained.reference.is_none() {
        tracing::warn!(
            run = %dir.display(),
            "run has no reference statistics (no reference.json): drift monitoring is off for it"
        );
    }
    Ok(trained)
}

/// [`load_trained`], optionally without the Laplace posterior (while it is being fitted).
pub fn load_weights(dir: &Path, device: &Device, with_posterior: bool) -> Result<TrainedModel> {
    let run = RunDir::new(dir);
    if !run.model().exists() {
        return Err(RunError::Corrupt {
            path: dir.to_path_buf(),
            what: "run folder".into(),
            expected: "model.json, normalizer.json and weights.safetensors written by `pno train`"
                .into(),
            got: "no model.json".into(),
        });
    }
    let tag: serde_json::Value = read_json(&run.model(), "model.json")?;
    let format = tag.get("format").and_then(|f| f.as_str()).unwrap_or("");
    if format != FORMAT {
        return Err(RunError::Format {
            path: run.model(),
            expected: FORMAT,
            got: format.to_string(),
        });
    }
    let file: ModelFile = serde_json::from_value(tag).map_err(|e| RunError::Corrupt {
        path: run.model(),
        what: "model.json".into(),
        expected: "the JSON pno writes".into(),
        got: e.to_string(),
    })?;
    let normalizers: Normalizers = read_json(&run.normalizer(), "normalizer.json")?;
    let bytes = std::fs::read(run.weights()).map_err(io_err("read", &run.weights()))?;
    let sum = pno_core::sha256_hex(&bytes);
    if sum != file.weights_sha256 {
        return Err(RunError::Corrupt {
            path: run.weights(),
            what: "checksum".into(),
            expected: format!("sha256 {} (model.json)", file.weights_sha256),
            got: sum,
        });
    }
    let (tensors, _) = from_safetensors(&bytes, &run.weights())?;
    let mut model = file.model.init(0, device);
    model = pno_models::weights::load_named(model, &tensors).map_err(|e| match e {
        ModelError::Weights {
            name,
            expected,
            got,
        } => RunError::Corrupt {
            path: run.weights(),
            what: format!("tensor {name}"),
            expected,
            got,
        },
        other => RunError::Model(other),
    })?;
    if with_posterior && file.model.kind == pno_models::Kind::Laplace {
        let post: LaplacePosterior = read_json(&run.laplace(), "laplace.json")?;
        model.laplace = Some(post);
    }
    if !(file.spread_scale.is_finite() && file.spread_scale > 0.0) {
        return Err(RunError::Corrupt {
            path: run.model(),
            what: "spread_scale".into(),
            expected: "a positive number".into(),
            got: file.spread_scale.to_string(),
        });
    }
    model.spread_scale = file.spread_scale;
    Ok(TrainedModel {
        model,
        file,
        normalizers,
        reference: crate::reference::ReferenceStats::load(dir)?.map(std::sync::Arc::new),
        run,
    })
}

/// What to predict: inputs `x[n, in, points]` in physical units on `grid`.
#[derive(Debug, Clone, Copy)]
pub struct PredictRequest<'a> {
    /// Input values `[n, in_channels, points]`, row-major.
    pub x: &'a [f32],
    /// Inputs.
    pub n: usize,
    /// Spatial grid of the inputs (any resolution the model accepts).
    pub grid: &'a [usize],
    /// Predictive draws per input.
    pub n_samples: usize,
    /// Seed of the draws.
    pub seed: u64,
    /// Inputs per forward pass (≥ 1).
    pub batch: usize,
    /// Set by the caller to stop early: checked between forward passes, after which
    /// [`TrainedModel::predict`] returns `ModelError::Cancelled`.
    pub cancel: Option<&'a std::sync::atomic::AtomicBool>,
}

impl TrainedModel {
    /// Predict in physical units: the inputs are normalised with the run's input normaliser,
    /// and the draws, mean, std and aleatoric variance are mapped back with its target
    /// normaliser. Row `i` of the request uses noise stream `i`, so the same seed gives the same
    /// draws whatever the batching. Non-finite inputs and wrong sizes are refused.
    pub fn predict(&self, req: &PredictRequest<'_>, device: &Device) -> Result<Predictive> {
        self.check(req)?;
        let keys: Vec<(u64, u64)> = (0..req.n as u64).map(|i| (req.seed, i)).collect();
        self.predict_keyed(req, &keys, device)
    }

    /// Several requests on the same grid with the same number of draws in one computation
    /// (dynamic batching): their inputs go through the model together, input `i` of request
    /// `r` drawing from the streams of `(seed_r, i)`, so each answer equals
    /// [`TrainedModel::predict`] of that request alone. A request that fails its own checks
    /// (size, non-finite values) gets its error and leaves the others alone; a model error
    /// during the shared computation is every request's. Kinds whose passes share draws
    /// across rows ([`Model::shares_draws_across_rows`]) compute request by request. The
    /// first request's `batch` and `cancel` apply to the shared computation.
    pub fn predict_many(
        &self,
        reqs: &[PredictRequest<'_>],
        device: &Device,
    ) -> Vec<Result<Predictive>> {
        let mut out: Vec<Option<Result<Predictive>>> = reqs
            .iter()
            .map(|r| {
                let same = r.grid == reqs[0].grid && r.n_samples == reqs[0].n_samples;
                match self.check(r) {
                    Err(e) => Some(Err(e)),
                    Ok(()) if !same => Some(Err(RunError::Model(ModelError::Input {
                        what: "batch".into(),
                        expected: format!(
                            "the grid {:?} and {} draws of the batch's first request",
                            reqs[0].grid, reqs[0].n_samples
                        ),
                        got: format!("grid {:?}, {} draws", r.grid, r.n_samples),
                    }))),
                    Ok(()) if self.model.shares_draws_across_rows() => {
                        Some(self.predict(r, device))
                    }
                    Ok(()) => None,
                }
            })
            .collect();
        let joint: Vec<usize> = (0..reqs.len()).filter(|&i| out[i].is_none()).collect();
        if let Some(&first) = joint.first() {
            let x: Vec<f32> = joint
                .iter()
                .flat_map(|&i| reqs[i].x.iter().copied())
                .collect();
            let keys: Vec<(u64, u64)> = joint
                .iter()
                .flat_map(|&i| (0..reqs[i].n as u64).map(move |row| (reqs[i].seed, row)))
                .collect();
            let all = PredictRequest {
                x: &x,
                n: keys.len(),
                ..reqs[first]
            };
            match self.predict_keyed(&all, &keys, device) {
                Ok(p) => {
                    let mut start = 0;
                    for &i in &joint {
                        out[i] = Some(Ok(p.rows(start, reqs[i].n)));
                        start += reqs[i].n;
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for &i in &joint {
                        out[i] = Some(Err(match &e {
                            RunError::Model(ModelError::Cancelled) => {
                                RunError::Model(ModelError::Cancelled)
                            }
                            _ => RunError::Model(ModelError::Input {
                                what: "batch".into(),
                                expected: "a batch the model computes".into(),
                                got: msg.clone(),
                            }),
                        }));
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or(Err(RunError::Model(ModelError::Cancelled))))
            .collect()
    }

    /// A request's own checks: its size and finite inputs.
    fn check(&self, req: &PredictRequest<'_>) -> Result<()> {
        let PredictRequest { n, grid, .. } = *req;
        let cin = self.file.in_channels;
        let p: usize = grid.iter().product();
        if req.x.len() != n * cin * p || n == 0 {
            return Err(RunError::Model(ModelError::Input {
                what: "x".into(),
                expected: format!(
                    "[n, {cin}, {grid:?}] with n ≥ 1 ({} values per sample)",
                    cin * p
                ),
                got: format!("{} values for n = {n}", req.x.len()),
            }));
        }
        if let Some(i) = req.x.iter().position(|v| !v.is_finite()) {
            return Err(RunError::Model(ModelError::Input {
                what: "x".into(),
                expected: "finite values".into(),
                got: format!("{} in sample {}", req.x[i], i / (cin * p)),
            }));
        }
        Ok(())
    }

    /// [`TrainedModel::predict`] of a checked request with a `(seed, row)` key per input.
    fn predict_keyed(
        &self,
        req: &PredictRequest<'_>,
        keys: &[(u64, u64)],
        device: &Device,
    ) -> Result<Predictive> {
        let PredictRequest {
            n, grid, n_samples, ..
        } = *req;
        let cin = self.file.in_channels;
        let p: usize = grid.iter().product();
        let mut x = req.x.to_vec();
        if let Some(nx) = &self.normalizers.x {
            nx.transform(&mut x, cin, p)?;
        }
        let cout = self.file.out_channels;
        let d = cout * p;
        let mut samples = vec![0.0f32; n_samples * n * d];
        let (mut mean, mut std) = (vec![0.0f32; n * d], vec![0.0f32; n * d]);
        let mut alea: Option<Vec<f32>> = None;
        let batch = req.batch.max(1);
        let max_rows = max_rows(p, batch);
        for start in (0..n).step_by(batch) {
            if req
                .cancel
                .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            {
                return Err(RunError::Model(ModelError::Cancelled));
            }
            let b = batch.min(n - start);
            let xt = Model::tensor(
                x[start * cin * p..(start + b) * cin * p].to_vec(),
                [b, cin, p],
                device,
            );
            let pr = self.model.predict_rows(
                xt,
                grid,
                n_samples,
                &keys[start..start + b],
                max_rows,
                req.cancel,
            )?;
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
        Ok(Predictive {
            samples,
            n_samples,
            batch: n,
            channels: cout,
            grid: grid.to_vec(),
            mean,
            std,
            aleatoric_var: alea,
        })
    }
}

/// The most rows one forward pass of a dropout model stacks (used by
/// [`TrainedModel::predict`]): about 4 Mi values of 64 channels, at most 4096 rows, at least
/// `batch`.
pub(crate) fn max_rows(points: usize, batch: usize) -> usize {
    (4096 * 1024 / points.max(1).saturating_mul(64))
        .min(4096)
        .max(batch)
}
