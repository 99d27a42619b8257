//! Evaluation of a trained run on a dataset split: every metric of `pno-metrics` in physical
//! units, calibration curves (coverage against level, quantile reliability, PIT histogram), the
//! law-of-total-variance decomposition of the predictive variance, and autoregressive rollouts
//! for runs trained on trajectory windows.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use pno_core::Split;
use pno_core::seed::{mix, salt};
use pno_data::LeakageSplits;
use pno_metrics::{
    CalibrationCurve, Domain, PitHistogram, Prediction as MetricInput, Report, SamplePred,
    calibration_curve, pit_histogram, pit_values,
};
use pno_models::Predictive;
use pno_models::burn::tensor::Device;
use pno_run::{DataSpec, PredictRequest, Provenance, TrainedModel};

use crate::data::{Fields, Series, load_fields, load_series};
use crate::error::{Result, TrainError};

pub(crate) fn option_err(
    option: &str,
    expected: impl Into<String>,
    got: impl std::fmt::Display,
) -> TrainError {
    TrainError::Option {
        option: option.to_string(),
        expected: expected.into(),
        got: got.to_string(),
    }
}

fn split_name(split: Option<Split>) -> &'static str {
    split.map_or("all", |s| s.name())
}

/// The sample indices of `split` (`None`: every sample) in a dataset of `n` samples whose
/// provenance is `prov`, and the split actually used: on the file the run was trained on (same
/// SHA-256) the recorded split; on any other file `test` and all mean every sample and the
/// other splits are refused.
pub(crate) fn split_indices(
    trained: &TrainedModel,
    prov: &Provenance,
    n: usize,
    split: Option<Split>,
) -> Result<(Vec<usize>, Option<Split>)> {
    let recorded = trained.run.read_provenance()?;
    let same = recorded.data.sha256 == prov.sha256;
    let (idx, used) = match (split, same) {
        (None, _) | (Some(Split::Test), false) => ((0..n).collect(), None),
        (Some(s), true) => (recorded.splits.get(s).to_vec(), Some(s)),
        (Some(s), false) => {
            return Err(option_err(
                &format!("--split {}", s.name()),
                format!(
                    "test or all on a file other than the one the run was trained on ({})",
                    recorded.data.path.display()
                ),
                s.name(),
            ));
        }
    };
    if idx.is_empty() {
        let hint = match split {
            Some(Split::Calibration) => {
                "train with data.n_calibration > 0, or use --split validation"
            }
            _ => "use --split all, or a separate test file",
        };
        return Err(option_err(
            "--split",
            format!("a split with samples ({hint})"),
            format!("{} is empty", split_name(split)),
        ));
    }
    if let Some(&bad) = idx.iter().find(|&&i| i >= n) {
        return Err(option_err(
            "--split",
            format!("sample indices below the file's {n} samples"),
            bad,
        ));
    }
    Ok((idx, used))
}

/// Options of [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// Which samples (`None`: every sample of the file).
    pub split: Option<Split>,
    /// Predictive draws per input (≥ 2).
    pub samples: usize,
    /// Seed of the draws.
    pub seed: u64,
    /// Inputs per forward pass.
    pub batch: usize,
    /// Autoregressive rollout steps (0: none).
    pub rollout: usize,
    /// A sample trajectory whose values exceed this multiple of the largest |target| of the
    /// evaluated trajectories (or become non-finite) counts as diverged.
    pub divergence_factor: f64,
    /// Levels of the calibration curves (≥ 2).
    pub curve_levels: usize,
    /// Evaluate exactly these sample indices instead of `split` (a champion judged on the
    /// challenger's frozen samples); `split` then only labels the result.
    pub indices: Option<Vec<usize>>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            split: Some(Split::Test),
            samples: 100,
            seed: 0,
            batch: 16,
            rollout: 0,
            divergence_factor: 10.0,
            curve_levels: 21,
            indices: None,
        }
    }
}

/// Mean predictive variance split by the law of total variance,
/// `Var[y] = E[σ²_aleatoric] + Var[μ]` (epistemic = total − aleatoric, floored at 0), averaged
/// over every point of every function (physical units²).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decomposition {
    /// Mean total predictive variance.
    pub total_var: f64,
    /// Mean aleatoric (data-noise) variance.
    pub aleatoric_var: f64,
    /// Mean epistemic (model) variance.
    pub epistemic_var: f64,
    /// aleatoric / total.
    pub aleatoric_fraction: f64,
}

impl Decomposition {
    /// From the predictive std and the aleatoric variance, both `[n, d]`.
    pub fn new(std: &[f32], aleatoric_var: &[f32]) -> Self {
        let k = std.len().max(1) as f64;
        let total: f64 = std
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum::<f64>()
            / k;
        let (mut alea, mut epi) = (0.0f64, 0.0f64);
        for (&s, &a) in std.iter().zip(aleatoric_var) {
            let (t, a) = (f64::from(s) * f64::from(s), f64::from(a).max(0.0));
            alea += a.min(t);
            epi += (t - a).max(0.0);
        }
        Self {
            total_var: total,
            aleatoric_var: alea / k,
            epistemic_var: epi / k,
            aleatoric_fraction: if total > 0.0 { alea / k / total } else { 0.0 },
        }
    }
}

/// Calibration curves of a prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curves {
    /// Coverage of central intervals against their nominal level (`calibration_curve`).
    pub coverage: CalibrationCurve,
    /// Quantile reliability: fraction of targets below the predictive `q`-quantile against `q`
    /// (from the PIT values).
    pub reliability: CalibrationCurve,
    /// PIT histogram (10 bins).
    pub pit: PitHistogram,
}

impl Curves {
    /// Curves of draws `[m, n, d]` against targets `[n, d]`.
    pub fn from_samples(pred: &SamplePred<'_, f32>, target: &[f32], levels: usize) -> Result<Self> {
        let input = MetricInput::Samples(*pred);
        let coverage = calibration_curve(&input, target, levels)?;
        let pit = pit_values(&input, target)?;
        let mut sorted = pit;
        sorted.sort_by(f64::total_cmp);
        let expected: Vec<f64> = (0..levels)
            .map(|k| k as f64 / (levels - 1) as f64)
            .collect();
        let observed = expected
            .iter()
            .map(|&q| sorted.partition_point(|&v| v <= q) as f64 / sorted.len().max(1) as f64)
            .collect();
        Ok(Self {
            coverage,
            reliability: CalibrationCurve { expected, observed },
            pit: pit_histogram(&sorted, 10)?,
        })
    }
}

/// One step of an autoregressive rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutStep {
    /// Step (1 = the first predicted window).
    pub step: usize,
    /// Stored frame indices of the step's target window.
    pub frames: Vec<usize>,
    /// Every metric over the functions and draws of this step (diverged draws clipped to the
    /// divergence bound).
    pub report: Report,
    /// Fraction of sample trajectories that have diverged by this step.
    pub diverged_fraction: f64,
}

/// An evaluated split.
#[derive(Debug)]
pub struct Evaluation {
    /// Every metric (physical units).
    pub report: Report,
    /// Functions evaluated.
    pub n: usize,
    /// Model grid.
    pub grid: Vec<usize>,
    /// The split used (`None`: every sample of the file).
    pub split: Option<Split>,
    /// Sample indices in the file.
    pub indices: Vec<usize>,
    /// Calibration curves.
    pub curves: Curves,
    /// Variance decomposition (models that separate aleatoric noise).
    pub decomposition: Option<Decomposition>,
    /// Inputs `[n, in, points]`.
    pub x: Vec<f32>,
    /// Targets `[n, out, points]`.
    pub y: Vec<f32>,
    /// The prediction (physical units).
    pub pred: Predictive,
    /// Rollout steps (`rollout > 0`).
    pub rollout: Vec<RolloutStep>,
    /// Seconds spent predicting (one-step evaluation).
    pub predict_seconds: f64,
}

fn domain(spec: &DataSpec, grid: &[usize], channels: usize) -> Result<Domain> {
    Ok(Domain::new(
        grid,
        &vec![spec.domain_length; grid.len()],
        channels,
        spec.periodic,
    )?)
}

/// Fields of `data` for the run (windows for a windowed run), without the quality gate.
pub fn run_fields(trained: &TrainedModel, data: &Path) -> Result<(Fields, Provenance)> {
    let mut spec = trained.file.data.clone();
    spec.check = false;
    let (fields, prov) = load_fields(data, &spec, &LeakageSplits::default())?;
    if fields.cin != trained.file.in_channels || fields.cout != trained.file.out_channels {
        return Err(TrainError::DataShape {
            path: data.to_path_buf(),
            field: spec.x,
            expected: format!(
                "{} input and {} target channel(s) like the run",
                trained.file.in_channels, trained.file.out_channels
            ),
            got: format!("{} and {}", fields.cin, fields.cout),
        });
    }
    Ok((fields, prov))
}

/// A prediction on one split of a dataset (what evaluation and calibration both start from).
#[derive(Debug, Clone)]
pub struct SplitPrediction {
    /// Every field of the file.
    pub fields: Fields,
    /// Where the file came from.
    pub prov: Provenance,
    /// The indices predicted.
    pub indices: Vec<usize>,
    /// The split actually used (`None`: every sample).
    pub split: Option<Split>,
    /// Inputs `[n, in, points]` of the split.
    pub x: Vec<f32>,
    /// Targets `[n, out, points]` of the split.
    pub y: Vec<f32>,
    /// The prediction (physical units).
    pub pred: Predictive,
}

/// How many predictive draws, under which seed, in passes of how many inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draws {
    /// Draws per input.
    pub samples: usize,
    /// Seed of the draws.
    pub seed: u64,
    /// Inputs per forward pass.
    pub batch: usize,
}

/// Load `data` for the run, choose `split` (the recorded split on the training file; every
/// sample of another file for `test` or `None`) and predict it.
pub fn predict_on_split(
    trained: &TrainedModel,
    data: &Path,
    split: Option<Split>,
    indices: Option<&[usize]>,
    draws: Draws,
    device: &Device,
) -> Result<SplitPrediction> {
    let (fields, prov) = run_fields(trained, data)?;
    let (indices, split) = match indices {
        None => split_indices(trained, &prov, fields.n, split)?,
        Some(idx) => {
            if let Some(&bad) = idx.iter().find(|&&i| i >= fields.n) {
                return Err(option_err(
                    "indices",
                    format!("sample indices below the file's {} samples", fields.n),
                    bad,
                ));
            }
            if idx.is_empty() {
                return Err(option_err("indices", "at least one sample", "none"));
            }
            (idx.to_vec(), split)
        }
    };
    let (x, y) = fields.gather(&indices);
    let req = PredictRequest {
        x: &x,
        n: indices.len(),
        grid: &fields.grid,
        n_samples: draws.samples,
        seed: draws.seed,
        batch: draws.batch,
        cancel: None,
    };
    let pred = trained.predict(&req, device)?;
    Ok(SplitPrediction {
        fields,
        prov,
        indices,
        split,
        x,
        y,
        pred,
    })
}

fn draws(opts: &EvalOptions) -> Draws {
    Draws {
        samples: opts.samples,
        seed: opts.seed,
        batch: opts.batch,
    }
}

/// Evaluate `trained` on `opts.split` of `data`.
pub fn evaluate(
    trained: &TrainedModel,
    data: &Path,
    opts: &EvalOptions,
    device: &Device,
) -> Result<Evaluation> {
    if opts.samples < 2 || opts.samples > 100_000 {
        return Err(option_err(
            "--samples",
            "2..=100000 (the sample metrics need pairs)",
            opts.samples,
        ));
    }
    if opts.curve_levels < 2 {
        return Err(option_err("curve levels", "at least 2", opts.curve_levels));
    }
    let t0 = Instant::now();
    let SplitPrediction {
        fields,
        indices,
        split,
        x,
        y,
        pred,
        ..
    } = predict_on_split(
        trained,
        data,
        opts.split,
        opts.indices.as_deref(),
        draws(opts),
        device,
    )?;
    let predict_seconds = t0.elapsed().as_secs_f64();
    let n = indices.len();
    let d = pred.per_function();
    let sp = SamplePred::new(&pred.samples, opts.samples, n, d)?;
    let spec = &trained.file.data;
    let report = Report::from_samples(&sp, &y, &domain(spec, &fields.grid, pred.channels)?)?;
    let curves = Curves::from_samples(&sp, &y, opts.curve_levels)?;
    let decomposition = pred
        .aleatoric_var
        .as_ref()
        .map(|a| Decomposition::new(&pred.std, a));
    let rollout = if opts.rollout > 0 {
        rollout(trained, data, &indices, opts, device)?
    } else {
        Vec::new()
    };
    Ok(Evaluation {
        report,
        n,
        grid: fields.grid,
        split,
        indices,
        curves,
        decomposition,
        x,
        y,
        pred,
        rollout,
        predict_seconds,
    })
}

/// Autoregressive rollout of `steps = opts.rollout` windows from the input window of each
/// trajectory `indices` of `data`. Step 1 draws `opts.samples` predictions per trajectory; from
/// step 2 on, each draw is propagated as its own trajectory (one stochastic pass per draw and
/// step, noise keyed by the step), so the spread grows the way the model's errors compound.
pub fn rollout(
    trained: &TrainedModel,
    data: &Path,
    indices: &[usize],
    opts: &EvalOptions,
    device: &Device,
) -> Result<Vec<RolloutStep>> {
    let spec = &trained.file.data;
    let Some(w) = spec.window else {
        return Err(option_err(
            "--rollout",
            "a run trained on trajectory windows ([data.window])",
            "a run trained on input/target pairs",
        ));
    };
    if !(opts.divergence_factor.is_finite() && opts.divergence_factor > 0.0) {
        return Err(option_err(
            "divergence factor",
            "a positive number",
            opts.divergence_factor,
        ));
    }
    let mut s = spec.clone();
    s.check = false;
    let (series, _) = load_series(data, &s, &LeakageSplits::default())?;
    let steps = opts.rollout;
    let need = w.frames_needed(steps);
    if need > series.frames {
        return Err(option_err(
            "--rollout",
            format!(
                "at most the steps the trajectories hold ({} frames; {steps} steps need {need})",
                series.frames
            ),
            steps,
        ));
    }
    let (cin, cout, grid) = series.model_shape(&w, data, &spec.x)?;
    let p: usize = grid.iter().product();
    let (n, m) = (indices.len(), opts.samples);
    let (din, d) = (cin * p, cout * p);
    let truth: Vec<Vec<f32>> = (1..=steps)
        .map(|k| gather_window(&series, indices, &w.frames(k)))
        .collect();
    // Divergence bound: factor × the largest |target| over every evaluated trajectory and step.
    let scale = truth
        .iter()
        .flatten()
        .fold(0.0f32, |a, &v| a.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    let b = (opts.divergence_factor as f32) * scale;
    let dom = domain(spec, &grid, cout)?;
    let x0 = gather_window(&series, indices, &w.frames(0));
    // Trajectory (draw j, function i) lives in row j·n + i of `inputs`.
    let mut inputs: Vec<f32> = (0..m).flat_map(|_| x0.iter().copied()).collect();
    let mut diverged = vec![false; m * n];
    let mut out = Vec::with_capacity(steps);
    for k in 1..=steps {
        let req = if k == 1 {
            PredictRequest {
                x: &x0,
                n,
                grid: &grid,
                n_samples: m,
                seed: opts.seed,
                batch: opts.batch,
                cancel: None,
            }
        } else {
            PredictRequest {
                x: &inputs,
                n: m * n,
                grid: &grid,
                n_samples: 1,
                seed: mix(&[opts.seed, salt::ROLLOUT, k as u64]),
                batch: opts.batch,
                cancel: None,
            }
        };
        let mut draws = trained.predict(&req, device)?.samples;
        for (r, row) in draws.chunks_mut(d).enumerate() {
            let mut bad = false;
            for v in row.iter_mut() {
                if !v.is_finite() || v.abs() > b {
                    bad = true;
                    *v = if v.is_nan() { b } else { v.clamp(-b, b) };
                }
            }
            diverged[r] |= bad;
        }
        let sp = SamplePred::new(&draws, m, n, d)?;
        let report = Report::from_samples(&sp, &truth[k - 1], &dom)?;
        out.push(RolloutStep {
            step: k,
            frames: w.frames(k),
            report,
            diverged_fraction: diverged.iter().filter(|&&b| b).count() as f64 / (m * n) as f64,
        });
        // Next input: the last t_in frames of (input frames ++ predicted frames).
        let keep = din - d.min(din);
        let mut next = Vec::with_capacity(inputs.len());
        for r in 0..m * n {
            let cur = &inputs[r * din..(r + 1) * din];
            let pred = &draws[r * d..(r + 1) * d];
            next.extend_from_slice(&cur[din - keep..]);
            next.extend_from_slice(&pred[d - (din - keep)..]);
        }
        inputs = next;
    }
    Ok(out)
}

fn gather_window(series: &Series, indices: &[usize], frames: &[usize]) -> Vec<f32> {
    indices
        .iter()
        .flat_map(|&i| series.window(i, frames))
        .collect()
}
