//! The training loop: seeded data order, per-epoch validation, schedules, early stopping,
//! best-checkpoint selection, NaN/Inf guards with rollback, atomic checkpoints and exact resume.
//!
//! Determinism: the data order of epoch `e` is a ChaCha8 permutation keyed by `(seed, e)`, the
//! dropout masks and noise of a step by `(seed, step, sample index)`, and the weights by the
//! seed, so a run resumed from the checkpoint after epoch `e` replays epochs `e+1…` exactly as
//! the uninterrupted run would: on the CPU backend the weights come out bit-identical (other
//! backends may reorder float reductions).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use pno_data::Normalizer;
use pno_models::burn::module::Module;
use pno_models::burn::optim::GradientsParams;
use pno_models::burn::tensor::{Device, Tensor, TensorData};
use pno_models::config::BackboneSpec;
use pno_models::laplace::LaplaceStats;
use pno_models::losses::{self, LossGrid};
use pno_models::weights::{NamedTensor, load_named, named_tensors};
use pno_models::{Kind, Model, ModelSpec};

use pno_core::seed::{mix, salt};
use pno_core::{SplitIndices, atomic_write, sha256_hex};
use pno_data::LeakageSplits;
use pno_run::reference::{self, FeatureSummary, FeatureTable, ReferenceStats, SpreadReference};
use pno_run::{
    FORMAT, ModelFile, Normalizers, PredictRequest, ProvenanceFile, RunDir, TrainedModel,
    read_json, to_safetensors, write_json,
};

use crate::checkpoint::{Checkpoints, TrainState};
use crate::config::{Loss, RunConfig, Schedule, TrainSpec};
use crate::data::{Fields, load_fields};
use crate::error::{Result, TrainError, io_err};
use crate::optim::{AdamConfig, AdamState, StepOutcome, adam_step};

/// How a training run is started.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The dataset.
    pub data: PathBuf,
    /// The run folder.
    pub out: PathBuf,
    /// Continue the run in `out` from its newest good checkpoint.
    pub resume: bool,
    /// Backend device (without autodiff; the trainer adds it).
    pub device: Device,
    /// Data-parallel training: every step's batch is split into contiguous shards, one per
    /// device here, each differentiated on its device by its own thread on a replica of the
    /// model, and the gradients are summed on `device` for one optimizer step. The update
    /// equals the single-device update on the same batch up to float summation order: each
    /// sample keeps its random streams (they are keyed by its row, not its place in a shard).
    /// Fewer than two devices: `device` alone.
    pub data_parallel: Vec<Device>,
}

/// One line of `log.jsonl` for an epoch.
#[derive(Debug, Clone, Serialize)]
pub struct EpochLog {
    /// `epoch`.
    pub kind: &'static str,
    /// Epoch (1-based).
    pub epoch: usize,
    /// Learning rate used.
    pub lr: f64,
    /// Mean training loss.
    pub train_loss: f64,
    /// Validation loss.
    pub val_loss: f64,
    /// Validation relative L² of the predictive mean (normalised units).
    pub val_rel_l2: f64,
    /// Largest gradient norm seen (before clipping).
    pub max_grad_norm: f64,
    /// Steps whose gradient was clipped.
    pub clipped_steps: usize,
    /// Whether this epoch set a new best.
    pub best: bool,
    /// Seconds for the epoch.
    pub seconds: f64,
    /// Training samples per second.
    pub samples_per_s: f64,
    /// CPU seconds the process used during the epoch (all threads).
    pub cpu_s: f64,
    /// Peak resident memory of the process so far, MiB.
    pub rss_peak_mb: f64,
}

/// Callbacks for progress display.
pub trait Progress {
    /// Before an epoch with `batches` steps.
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _batches: usize) {}
    /// After each step.
    fn step(&mut self, _loss: f64) {}
    /// After an epoch.
    fn epoch_end(&mut self, _log: &EpochLog) {}
    /// An event (rollback, resume, fallback).
    fn event(&mut self, _message: &str) {}
    /// A training anomaly (loss spike, gradient explosion, plateau), after [`Progress::event`]
    /// showed its message and before it is appended to `log.jsonl`. Sinks that forward it
    /// elsewhere (the CLI's `--anomaly-webhook`) must not block: training waits for them.
    fn anomaly(&mut self, _a: &crate::watch::Anomaly) {}
}

/// A progress sink that shows nothing.
pub struct Quiet;
impl Progress for Quiet {}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Run folder.
    pub run: PathBuf,
    /// Model kind.
    pub kind: String,
    /// Parameters.
    pub params: usize,
    /// Epochs completed.
    pub epochs: usize,
    /// Best epoch.
    pub best_epoch: usize,
    /// Best validation metric.
    pub best_val: f64,
    /// Validation relative L² at the best epoch's weights.
    pub val_rel_l2: f64,
    /// Rollbacks that happened.
    pub rollbacks: usize,
    /// Stopped early.
    pub early_stopped: bool,
    /// Training seconds (this invocation).
    pub seconds: f64,
    /// Mean training throughput (samples/s, this invocation).
    pub samples_per_s: f64,
    /// Training samples.
    pub n_train: usize,
    /// Validation samples.
    pub n_val: usize,
    /// CPU seconds of the training epochs (this invocation, all threads).
    pub cpu_s: f64,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mb: f64,
}

fn append_log(path: &Path, value: &impl Serialize) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err("open", path))?;
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    f.write_all(&line).map_err(io_err("write", path))?;
    f.sync_data().map_err(io_err("fsync", path))
}

#[derive(Serialize)]
struct Event<'a> {
    kind: &'static str,
    epoch: usize,
    message: &'a str,
}

/// A training anomaly in `log.jsonl`.
#[derive(Serialize)]
struct AnomalyLine<'a> {
    kind: &'static str,
    #[serde(flatten)]
    anomaly: &'a crate::watch::Anomaly,
}

fn log_anomaly(run: &RunDir, progress: &mut dyn Progress, a: &crate::watch::Anomaly) -> Result<()> {
    progress.event(&a.message);
    progress.anomaly(a);
    tracing::warn!(
        detector = a.detector,
        epoch = a.epoch,
        value = a.value,
        baseline = a.baseline,
        "{}",
        a.message
    );
    append_log(
        &run.log(),
        &AnomalyLine {
            kind: "anomaly",
            anomaly: a,
        },
    )
}

fn log_event(run: &RunDir, progress: &mut dyn Progress, epoch: usize, message: &str) -> Result<()> {
    progress.event(message);
    tracing::info!(epoch, "{message}");
    append_log(
        &run.log(),
        &Event {
            kind: "event",
            epoch,
            message,
        },
    )
}

fn tensor3(v: Vec<f32>, dims: [usize; 3], device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(v, dims), device)
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f64::NAN)
}

/// The training loss of one batch for every member, summed.
#[allow(clippy::too_many_arguments)]
fn batch_loss(
    model: &Model,
    batches: &[Batch],
    grid: &[usize],
    lg: &LossGrid,
    ts: &TrainSpec,
    step_seed: u64,
    n_train: usize,
) -> (Tensor<1>, Tensor<3>) {
    let mut total: Option<Tensor<1>> = None;
    let mut mean_pred: Option<Tensor<3>> = None;
    for member in 0..model.members.len() {
        let Batch { x, y, rows } = &batches[member.min(batches.len() - 1)];
        let (samples, std) = model.train_forward(member, x.clone(), grid, step_seed, rows);
        let m = samples.dims()[0];
        let mean = samples.clone().mean_dim(0).squeeze_dim::<3>(0);
        let first = || samples.clone().narrow(0, 0, 1).squeeze_dim::<3>(0);
        let l = match ts.loss {
            Loss::L2 => losses::l2_abs(mean.clone(), y.clone(), lg),
            Loss::L2Rel => losses::l2_rel(mean.clone(), y.clone()),
            Loss::H1 => losses::h1_rel(mean.clone(), y.clone(), lg),
            Loss::Nll => match &std {
                Some(s) => losses::gaussian_nll(first(), s.clone(), y.clone()),
                None => losses::l2_abs(mean.clone(), y.clone(), lg),
            },
            Loss::Crps => match (&std, m) {
                (Some(s), 1) => losses::crps_gaussian(first(), s.clone(), y.clone()),
                _ => losses::crps_fair(samples.clone(), y.clone()),
            },
            Loss::Energy => losses::energy_score(samples.clone(), y.clone(), lg),
            Loss::Elbo => {
                let data = match &std {
                    Some(s) => losses::gaussian_nll(first(), s.clone(), y.clone()),
                    None => losses::l2_abs(mean.clone(), y.clone(), lg),
                };
                let [_, c, p] = y.dims();
                match model.members[member].kl(model.spec.prior_std) {
                    Some(kl) => losses::elbo(data, kl, ts.kl_weight, n_train * c * p),
                    None => data,
                }
            }
        };
        let l = if ts.h1_weight > 0.0 {
            l + losses::h1_rel(mean.clone(), y.clone(), lg) * ts.h1_weight
        } else {
            l
        };
        total = Some(match total {
            Some(t) => t + l,
            None => l,
        });
        mean_pred = Some(match mean_pred {
            Some(p) => p + mean / model.members.len() as f64,
            None => mean / model.members.len() as f64,
        });
    }
    let y = &batches[0].y;
    (
        total.unwrap_or_else(|| Tensor::zeros([1], &y.device())),
        mean_pred.unwrap_or_else(|| y.zeros_like()),
    )
}

/// One member's training batch: inputs, targets and the samples' indices (which key their
/// noise streams). [`batch_loss`] takes one for all members or one per member.
struct Batch {
    x: Tensor<3>,
    y: Tensor<3>,
    rows: Vec<u64>,
}

impl Batch {
    fn gather(p: &Prepared, idx: &[usize], device: &Device) -> Batch {
        let (xv, yv) = p.fields.gather(idx);
        let (b, pts) = (idx.len(), p.fields.points());
        Batch {
            x: tensor3(xv, [b, p.fields.cin, pts], device),
            y: tensor3(yv, [b, p.fields.cout, pts], device),
            rows: idx.iter().map(|&i| i as u64).collect(),
        }
    }
}

/// This epoch's data orders: one shared by every member, or (ensembles with independent member
/// orders) one per member, member 0's being the shared order so a one-member run is unchanged.
fn epoch_orders(p: &Prepared, members: usize, epoch: usize) -> Vec<Vec<usize>> {
    let n = if p.ts.member_orders { members } else { 1 };
    (0..n)
        .map(|j| {
            let mut order = p.splits.train.clone();
            let key = if j == 0 {
                mix(&[p.ts.seed, epoch as u64, salt::EPOCH_ORDER])
            } else {
                mix(&[p.ts.seed, epoch as u64, salt::EPOCH_ORDER, j as u64])
            };
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(key));
            order
        })
        .collect()
}

fn schedule_lr(ts: &TrainSpec, epoch: usize, state: &TrainState) -> f64 {
    let base = state.base_lr;
    let lr = match ts.schedule {
        Schedule::Constant => base,
        Schedule::Step { step_size, gamma } => base * gamma.powi((epoch / step_size) as i32),
        Schedule::Cosine => {
            ts.min_lr
                + 0.5
                    * (base - ts.min_lr)
                    * (1.0
                        + (std::f64::consts::PI * epoch as f64
                            / ts.t_max.unwrap_or(ts.epochs) as f64)
                            .cos())
        }
        Schedule::Plateau { .. } => base * state.plateau_scale,
    };
    // Every schedule stops at min_lr (as PyTorch's ReduceLROnPlateau(min_lr) does; cosine ends
    // there anyway); a base rate already below it is kept. The rollback back-off then scales
    // the scheduled rate and may take it below min_lr.
    lr.max(ts.min_lr.min(base)) * state.lr_scale
}

struct Prepared {
    fields: Fields,
    splits: SplitIndices,
    spec: ModelSpec,
    ts: TrainSpec,
    lg: LossGrid,
}

fn normalize(fields: &mut Fields, train: &[usize], on: bool) -> Result<Normalizers> {
    if !on {
        return Ok(Normalizers { x: None, y: None });
    }
    let p = fields.points();
    let (tx, ty) = fields.gather(train);
    let nx = Normalizer::fit(&tx, train.len(), fields.cin, p)?;
    let ny = Normalizer::fit(&ty, train.len(), fields.cout, p)?;
    nx.transform(&mut fields.x, fields.cin, p)?;
    ny.transform(&mut fields.y, fields.cout, p)?;
    Ok(Normalizers {
        x: Some(nx),
        y: Some(ny),
    })
}

/// Mean validation loss and relative L² of the mean over `idx` (no gradients).
/// The loss and gradients of one data-parallel step (see [`TrainOptions::data_parallel`]):
/// `chunk` split into contiguous shards, one per device of `replicas` (autodiff devices); each
/// shard's loss, weighted by its share of the batch so that the weighted sum is the batch's
/// loss (per-batch terms such as a KL penalty included), differentiated by its own thread on a
/// replica of `model` on its device; the gradients moved to `main` and summed there. `None`
/// gradients when a shard's loss is not finite.
#[allow(clippy::too_many_arguments)]
fn sharded_grads(
    model: &Model,
    p: &Prepared,
    chunks: &[&[usize]],
    step_seed: u64,
    n_train: usize,
    main: &Device,
    replicas: &[Device],
) -> (f64, Option<GradientsParams>) {
    let b = chunks[0].len();
    let per = b.div_ceil(replicas.len());
    let results: Vec<(f64, Option<GradientsParams>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..b)
            .step_by(per)
            .zip(replicas)
            .map(|(start, dev)| {
                let replica = model.clone().fork(dev);
                let end = (start + per).min(b);
                s.spawn(move || {
                    let n = end - start;
                    // Every member's batch is split at the same positions.
                    let batches: Vec<Batch> = chunks
                        .iter()
                        .map(|c| Batch::gather(p, &c[start..end], dev))
                        .collect();
                    let (loss, _) = batch_loss(
                        &replica,
                        &batches,
                        &p.fields.grid,
                        &p.lg,
                        &p.ts,
                        step_seed,
                        n_train,
                    );
                    let loss = loss.mul_scalar(n as f64 / b as f64);
                    let value = scalar(loss.clone());
                    if !value.is_finite() {
                        return (value, None);
                    }
                    let grads = GradientsParams::from_grads(loss.backward(), &replica);
                    (value, Some(grads.to_device(main, &replica)))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut sum = pno_models::burn::optim::GradientsAccumulator::<Model>::new();
    let mut value = 0.0;
    for (v, g) in results {
        value += v;
        match g {
            Some(g) => sum.accumulate(model, g),
            None => return (v, None),
        }
    }
    (value, Some(sum.grads()))
}

fn validate(model: &Model, p: &Prepared, idx: &[usize], device: &Device) -> (f64, f64) {
    if idx.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let (mut loss, mut rel, mut n) = (0.0, 0.0, 0usize);
    let val_seed = mix(&[p.ts.seed, salt::VALIDATION]);
    for chunk in idx.chunks(p.ts.eval_batch.max(1)) {
        let b = chunk.len();
        let batch = Batch::gather(p, chunk, device);
        let y = batch.y.clone();
        let (l, mean) = batch_loss(
            model,
            &[batch],
            &p.fields.grid,
            &p.lg,
            &p.ts,
            val_seed,
            p.splits.train.len(),
        );
        loss += scalar(l) * b as f64;
        rel += scalar(losses::l2_rel(mean, y)) * b as f64;
        n += b;
    }
    (loss / n as f64, rel / n as f64)
}

fn model_tensors(model: &Model, adam: &AdamState) -> BTreeMap<String, NamedTensor> {
    let mut t: BTreeMap<String, NamedTensor> = named_tensors(model)
        .into_iter()
        .map(|(k, v)| (format!("model.{k}"), v))
        .collect();
    t.extend(adam.to_named());
    t
}

/// `model` with the best weights of the run folder `init` (checksum verified).
fn warm_start(model: Model, init: &Path) -> Result<Model> {
    let from = RunDir::new(init);
    let file = from.read_model_file()?;
    let bytes = std::fs::read(from.weights()).map_err(io_err("read", &from.weights()))?;
    let sum = sha256_hex(&bytes);
    if sum != file.weights_sha256 {
        return Err(TrainError::DataShape {
            path: from.weights(),
            field: "sha256".into(),
            expected: format!("the weights model.json names ({})", file.weights_sha256),
            got: sum,
        });
    }
    let (tensors, _) = pno_run::from_safetensors(&bytes, &from.weights())?;
    Ok(load_named(model, &tensors)?)
}

fn save_weights(run: &RunDir, model: &Model) -> Result<String> {
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pno-weights-1".to_string());
    meta.insert("kind".to_string(), model.spec.kind.name().to_string());
    let bytes = to_safetensors(&named_tensors(model), meta)?;
    atomic_write(&run.weights(), &bytes)?;
    Ok(sha256_hex(&bytes))
}

/// Train (or resume) a run. Returns the summary; the run folder holds everything else.
pub fn train(
    config: Option<RunConfig>,
    opts: &TrainOptions,
    progress: &mut dyn Progress,
) -> Result<Summary> {
    train_from(config, opts, None, progress)
}

/// [`train`], starting from the best weights of the run folder `init` instead of a fresh
/// initialisation (a warm start, e.g. the previous round of active learning). The weights must
/// fit the model of `config`; normalisers, optimizer state and schedule start afresh. A resumed
/// run continues from its own checkpoint; before its first checkpoint it starts from `init`
/// again, so a crash anywhere gives the run an uninterrupted one would.
pub fn train_from(
    config: Option<RunConfig>,
    opts: &TrainOptions,
    init: Option<&Path>,
    progress: &mut dyn Progress,
) -> Result<Summary> {
    let started = Instant::now();
    let run = RunDir::new(&opts.out);
    let config = if opts.resume {
        let c: RunConfig = read_json(&run.config(), "config.json")?;
        if let Some(given) = config {
            // A resume continues the recorded run; a different config would not be a resume.
            let a = serde_json::to_value(&given).unwrap_or_default();
            let b = serde_json::to_value(&c).unwrap_or_default();
            if a != b {
                return Err(TrainError::Config {
                    key: "--config".into(),
                    expected: format!(
                        "no config (or the one recorded in {})",
                        run.config().display()
                    ),
                    got: "a different config".into(),
                });
            }
        }
        c
    } else {
        let c = config.unwrap_or_default();
        if opts.out.exists()
            && std::fs::read_dir(&opts.out)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        {
            return Err(TrainError::Config {
                key: "--out".into(),
                expected: "a new or empty folder (use --resume to continue a run)".into(),
                got: format!("{} is not empty", opts.out.display()),
            });
        }
        c
    };
    let ds = config.data_spec()?;
    // The quality gate's leakage check compares the very splits carved below.
    let gate = LeakageSplits::Plan(ds.plan(config.seed()));
    let (mut fields, prov) = load_fields(&opts.data, &ds, &gate)?;
    let spec = config
        .model
        .validate(fields.cin, fields.cout, &fields.grid)?;
    let gaussian_head = matches!(&spec.backbone, BackboneSpec::Fno(f) if f.std_head)
        || matches!(&spec.backbone, BackboneSpec::Deeponet(d) if d.std_head);
    let ts = config.train_spec(spec.kind, gaussian_head)?;
    let splits = ds.plan(ts.seed).carve(fields.n)?;
    if opts.resume {
        let old: ProvenanceFile = read_json(&run.provenance(), "provenance.json")?;
        if old.data.sha256 != prov.sha256 {
            return Err(TrainError::DataShape {
                path: opts.data.clone(),
                field: "sha256".into(),
                expected: format!("the data the run was trained on ({})", old.data.sha256),
                got: prov.sha256,
            });
        }
    }
    // `reference.json` describes the inputs in physical units: taken before normalisation.
    let ref_inputs = ReferenceInputs::gather(&fields, &splits)?;
    let normalizers = normalize(&mut fields, &splits.train, ds.normalize)?;
    let lg = LossGrid {
        dims: fields.grid.clone(),
        lengths: vec![ds.domain_length; fields.grid.len()],
        periodic: ds.periodic,
    };
    let device = opts.device.clone().autodiff();
    let mut model = spec.init(ts.seed, &device);
    if let Some(init) = init {
        model = warm_start(model, init)?;
    }
    let params = model.num_params();
    let p = Prepared {
        fields,
        splits,
        spec: spec.clone(),
        ts: ts.clone(),
        lg,
    };
    let mut file = ModelFile {
        format: FORMAT.into(),
        model: spec.clone(),
        train: serde_json::to_value(&ts).unwrap_or_default(),
        data: ds,
        in_channels: p.fields.cin,
        out_channels: p.fields.cout,
        grid: p.fields.grid.clone(),
        weights_sha256: String::new(),
        spread_scale: 1.0,
        calibration: None,
    };
    let ckpts = Checkpoints::new(&opts.out, ts.keep_checkpoints);
    let mut adam = AdamState::default();
    let mut state = TrainState::fresh(ts.lr);
    if opts.resume {
        let old: ModelFile = read_json(&run.model(), "model.json")?;
        file.weights_sha256 = old.weights_sha256;
        match ckpts.load_latest()? {
            Some(loaded) => {
                for s in &loaded.skipped {
                    log_event(
                        &run,
                        progress,
                        loaded.state.epoch,
                        &format!("skipped corrupt checkpoint: {s}"),
                    )?;
                }
                let model_t: BTreeMap<String, NamedTensor> = loaded
                    .tensors
                    .iter()
                    .filter_map(|(k, v)| {
                        k.strip_prefix("model.").map(|n| (n.to_string(), v.clone()))
                    })
                    .collect();
                model = load_named(model, &model_t)?;
                adam = AdamState::from_named(&loaded.tensors, loaded.state.step);
                state = loaded.state;
                log_event(
                    &run,
                    progress,
                    state.epoch,
                    &format!(
                        "resumed from {} (epoch {})",
                        loaded.file.display(),
                        state.epoch
                    ),
                )?;
            }
            None => log_event(
                &run,
                progress,
                0,
                "resume: no checkpoint yet, starting from epoch 0",
            )?,
        }
    } else {
        std::fs::create_dir_all(&opts.out).map_err(io_err("create", &opts.out))?;
        write_json(&run.config(), &config)?;
        write_json(
            &run.provenance(),
            &ProvenanceFile {
                data: prov,
                splits: p.splits.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
        )?;
        write_json(&run.normalizer(), &normalizers)?;
        write_json(&run.model(), &file)?;
    }
    let cfg = AdamConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: ts.eps,
        weight_decay: ts.weight_decay,
        decoupled: ts.adamw,
    };
    let n_train = p.splits.train.len();
    let replicas: Vec<Device> = opts
        .data_parallel
        .iter()
        .map(|d| d.clone().autodiff())
        .collect();
    if replicas.len() > 1 {
        let msg = format!(
            "data-parallel training on {} devices ({}): each batch split into shards, gradients summed on the first",
            replicas.len(),
            opts.data_parallel
                .iter()
                .map(|d| format!("{d:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        log_event(&run, progress, state.epoch, &msg)?;
    }
    let mut last_good = (model.clone(), adam.clone(), state.clone());
    let mut failures = 0usize;
    let mut early = false;
    let mut trained_samples = 0usize;
    let mut train_secs = 0.0;
    let mut watch = crate::watch::Watch::new(crate::watch::WatchConfig::default());
    let mut peak_rss_mb = 0.0f64;
    let mut cpu_total = 0.0f64;
    while !state.finished && state.epoch < ts.epochs {
        let epoch = state.epoch;
        let lr = schedule_lr(&ts, epoch, &state);
        let orders = epoch_orders(&p, model.members.len(), epoch);
        // Step k trains member j on the k-th batch of its order (all orders have the same
        // batch sizes); with one shared order every member sees the same batch.
        let steps: Vec<Vec<&[usize]>> = (0..orders[0].len().div_ceil(ts.batch_size))
            .map(|k| {
                orders
                    .iter()
                    .map(|o| &o[k * ts.batch_size..((k + 1) * ts.batch_size).min(o.len())])
                    .collect()
            })
            .collect();
        progress.epoch_start(epoch + 1, ts.epochs, steps.len());
        // One span per epoch (exported when the CLI installed an OTLP exporter; free otherwise).
        let epoch_span = tracing::info_span!(
            "epoch",
            epoch = epoch + 1,
            epochs = ts.epochs,
            batches = steps.len(),
            lr,
            train_loss = tracing::field::Empty,
            val_loss = tracing::field::Empty,
            val_rel_l2 = tracing::field::Empty,
            max_grad_norm = tracing::field::Empty,
            clipped_steps = tracing::field::Empty,
            samples_per_s = tracing::field::Empty,
            best = tracing::field::Empty,
        );
        let _epoch_guard = epoch_span.enter();
        let t0 = Instant::now();
        let cpu0 = pno_core::resources::cpu_seconds().unwrap_or(0.0);
        let (mut sum, mut count, mut max_norm, mut clipped) = (0.0, 0usize, 0.0f64, 0usize);
        let mut failed: Option<String> = None;
        for chunks in &steps {
            let b = chunks[0].len();
            let step_seed = mix(&[ts.seed, state.step, salt::TRAIN_STEP]);
            let (value, grads) = if replicas.len() > 1 {
                sharded_grads(&model, &p, chunks, step_seed, n_train, &device, &replicas)
            } else {
                let batches: Vec<Batch> = chunks
                    .iter()
                    .map(|c| Batch::gather(&p, c, &device))
                    .collect();
                let (loss, _) = batch_loss(
                    &model,
                    &batches,
                    &p.fields.grid,
                    &p.lg,
                    &ts,
                    step_seed,
                    n_train,
                );
                let value = scalar(loss.clone());
                let grads = value
                    .is_finite()
                    .then(|| GradientsParams::from_grads(loss.backward(), &model));
                (value, grads)
            };
            let Some(grads) = grads.filter(|_| value.is_finite()) else {
                failed = Some(format!(
                    "non-finite loss {value} at step {}",
                    state.step + 1
                ));
                break;
            };
            let (next, outcome) = adam_step(model, grads, &mut adam, cfg, lr, ts.grad_clip);
            model = next;
            match outcome {
                StepOutcome::NonFinite => {
                    failed = Some(format!("non-finite gradient at step {}", state.step + 1));
                    break;
                }
                StepOutcome::Applied { grad_norm } => {
                    watch.step(state.step, value, Some(grad_norm));
                    max_norm = max_norm.max(grad_norm);
                    if ts.grad_clip > 0.0 && grad_norm > ts.grad_clip {
                        clipped += 1;
                    }
                }
            }
            state.step += 1;
            sum += value * b as f64;
            count += b;
            progress.step(value);
        }
        let (val_loss, val_rel) = if failed.is_none() {
            let v = validate(&model.valid(), &p, &p.splits.val, &device.clone().inner());
            if p.splits.val.is_empty() {
                (sum / count.max(1) as f64, f64::NAN)
            } else {
                v
            }
        } else {
            (f64::NAN, f64::NAN)
        };
        if failed.is_none() && !val_loss.is_finite() {
            failed = Some(format!("non-finite validation loss {val_loss}"));
        }
        // Spikes, explosions and plateaus seen this epoch (also when it is about to be rolled
        // back: they are what came before the failure).
        let watched = if failed.is_none() {
            if ts.val_rel_l2 && val_rel.is_finite() {
                val_rel
            } else {
                val_loss
            }
        } else {
            f64::NAN
        };
        for a in watch.end_epoch(epoch + 1, watched) {
            log_anomaly(&run, progress, &a)?;
        }
        if let Some(reason) = failed {
            failures += 1;
            state.rollbacks += 1;
            let (m, a, s) = last_good.clone();
            let rollbacks = state.rollbacks;
            let lr_scale = state.lr_scale * ts.lr_backoff;
            model = m;
            adam = a;
            state = s;
            state.rollbacks = rollbacks;
            state.lr_scale = lr_scale;
            let msg = format!(
                "rollback {failures}/{}: {reason} in epoch {}; restored the state after epoch {}, learning rate x{} -> {:e}",
                ts.max_failures,
                epoch + 1,
                state.epoch,
                ts.lr_backoff,
                schedule_lr(&ts, state.epoch, &state)
            );
            log_event(&run, progress, epoch + 1, &msg)?;
            if failures >= ts.max_failures {
                return Err(TrainError::Diverged {
                    failures,
                    epoch: epoch + 1,
                    lr: schedule_lr(&ts, state.epoch, &state),
                    run: opts.out.clone(),
                });
            }
            continue;
        }
        // A whole epoch went through: the failure streak is over.
        failures = 0;
        let secs = t0.elapsed().as_secs_f64();
        train_secs += secs;
        let cpu_s = pno_core::resources::cpu_seconds().unwrap_or(0.0) - cpu0;
        cpu_total += cpu_s;
        let rss_peak_mb =
            pno_core::resources::rss_bytes().map_or(0.0, |(_, peak)| peak as f64 / 1048576.0);
        peak_rss_mb = peak_rss_mb.max(rss_peak_mb);
        trained_samples += count;
        let metric = if ts.val_rel_l2 && val_rel.is_finite() {
            val_rel
        } else {
            val_loss
        };
        let improved = !state.best.is_finite() || metric < state.best - ts.min_delta;
        if improved {
            state.best = metric;
            state.best_epoch = epoch + 1;
            state.wait = 0;
            file.weights_sha256 = save_weights(&run, &model.valid())?;
            write_json(&run.model(), &file)?;
        } else {
            state.wait += 1;
        }
        if let Schedule::Plateau { patience, gamma } = ts.schedule {
            if improved {
                state.plateau_wait = 0;
            } else {
                state.plateau_wait += 1;
                if state.plateau_wait > patience {
                    state.plateau_scale *= gamma;
                    state.plateau_wait = 0;
                }
            }
        }
        state.epoch = epoch + 1;
        if ts.patience > 0 && state.epoch >= ts.min_epochs && state.wait >= ts.patience {
            early = true;
            state.finished = true;
        }
        if state.epoch >= ts.epochs {
            state.finished = true;
        }
        let log = EpochLog {
            kind: "epoch",
            epoch: state.epoch,
            lr,
            train_loss: sum / count.max(1) as f64,
            val_loss,
            val_rel_l2: val_rel,
            max_grad_norm: max_norm,
            clipped_steps: clipped,
            best: improved,
            seconds: secs,
            samples_per_s: count as f64 / secs.max(1e-9),
            cpu_s,
            rss_peak_mb,
        };
        append_log(&run.log(), &log)?;
        epoch_span.record("train_loss", log.train_loss);
        epoch_span.record("val_loss", log.val_loss);
        epoch_span.record("val_rel_l2", log.val_rel_l2);
        epoch_span.record("max_grad_norm", log.max_grad_norm);
        epoch_span.record("clipped_steps", log.clipped_steps);
        epoch_span.record("samples_per_s", log.samples_per_s);
        epoch_span.record("best", log.best);
        progress.epoch_end(&log);
        if early {
            log_event(
                &run,
                progress,
                state.epoch,
                &format!("early stop: no improvement for {} epochs", state.wait),
            )?;
        }
        if state.finished {
            finish(&run, &mut model, &p, &device, &mut file, progress)?;
        }
        ckpts.save(&model_tensors(&model, &adam), &state)?;
        last_good = (model.clone(), adam.clone(), state.clone());
    }
    // Report on the best weights (`load_weights`: `load_trained` would warn that the run has no
    // reference statistics yet).
    let best = pno_run::load_weights(&opts.out, &device.clone().inner(), true)?;
    let (_, val_rel) = validate(&best.model, &p, &p.splits.val, &device.clone().inner());
    let t_ref = Instant::now();
    let reference = ref_inputs.finish(&best, ts.seed, ts.eval_batch, &device.clone().inner())?;
    reference.save(&opts.out)?;
    let msg = format!(
        "reference statistics: {} training inputs, {} {} predictions x {} draws (median spread \
         {:.3e}) in {:.2} s",
        reference.inputs.n_samples,
        reference.spread.values.len(),
        reference.spread.split,
        reference.spread.draws,
        reference.spread.summary.quantiles[3],
        t_ref.elapsed().as_secs_f64()
    );
    progress.event(&msg);
    tracing::info!("{msg}");
    let summary = Summary {
        run: opts.out.clone(),
        kind: spec.kind.name().into(),
        params,
        epochs: state.epoch,
        best_epoch: state.best_epoch,
        best_val: state.best,
        val_rel_l2: val_rel,
        rollbacks: state.rollbacks,
        early_stopped: early,
        seconds: started.elapsed().as_secs_f64(),
        samples_per_s: trained_samples as f64 / train_secs.max(1e-9),
        n_train,
        n_val: p.splits.val.len(),
        cpu_s: cpu_total,
        peak_rss_mb: pno_core::resources::rss_bytes().map_or(peak_rss_mb, |(_, peak)| {
            peak_rss_mb.max(peak as f64 / 1048576.0)
        }),
    };
    write_json(&run.summary(), &summary)?;
    Ok(summary)
}

/// What `reference.json` needs of the data in physical units, taken before normalisation: the
/// features of (a subsample of) the training inputs, and the validation inputs to predict.
struct ReferenceInputs {
    inputs: FeatureTable,
    /// `val`, or `train` when the run has no validation samples.
    split: &'static str,
    n_split: usize,
    idx: Vec<usize>,
    x: Vec<f32>,
    cin: usize,
}

impl ReferenceInputs {
    fn gather(fields: &Fields, splits: &SplitIndices) -> Result<Self> {
        let train = reference::subsample(&splits.train, reference::MAX_INPUT_ROWS);
        let (x, _) = fields.gather(&train);
        let f =
            reference::input_features(&x, train.len(), fields.cin, &fields.grid, reference::BANDS)?;
        let inputs = FeatureTable::new("train", splits.train.len(), train, f);
        let (split, pool) = if splits.val.is_empty() {
            ("train", &splits.train)
        } else {
            ("val", &splits.val)
        };
        let idx = reference::subsample(pool, reference::MAX_SPREAD_ROWS);
        let (x, _) = fields.gather(&idx);
        Ok(Self {
            inputs,
            split,
            n_split: pool.len(),
            idx,
            x,
            cin: fields.cin,
        })
    }

    /// The reference statistics, with `best`'s predictions ([`reference::SPREAD_DRAWS`] draws
    /// seeded `seed`) on the held inputs.
    fn finish(
        self,
        best: &TrainedModel,
        seed: u64,
        batch: usize,
        device: &Device,
    ) -> Result<ReferenceStats> {
        let n = self.idx.len();
        let grid = best.file.grid.clone();
        let pred = best.predict(
            &PredictRequest {
                x: &self.x,
                n,
                grid: &grid,
                n_samples: reference::SPREAD_DRAWS,
                seed,
                batch,
                cancel: None,
            },
            device,
        )?;
        let f = reference::field_table(
            &pred.mean,
            n,
            pred.channels,
            &grid,
            reference::PREDICTION_TENSOR,
            reference::BANDS,
        )?;
        let predictions = FeatureTable::new(self.split, self.n_split, self.idx.clone(), f);
        let values = reference::sample_spread(&pred.std, n);
        let summary = FeatureSummary::of("spread", &values, &reference::QUANTILE_LEVELS);
        Ok(ReferenceStats {
            format: reference::REFERENCE_FORMAT.into(),
            grid,
            in_channels: self.cin,
            out_channels: pred.channels,
            bands: reference::BANDS,
            quantile_levels: reference::QUANTILE_LEVELS.to_vec(),
            inputs: self.inputs,
            predictions,
            spread: SpreadReference {
                split: self.split.into(),
                n_split: self.n_split,
                indices: self.idx,
                draws: reference::SPREAD_DRAWS,
                seed,
                spread_scale: best.file.spread_scale,
                values,
                summary,
            },
        })
    }
}

/// After the last epoch: fit the Laplace posterior on the best weights.
fn finish(
    run: &RunDir,
    model: &mut Model,
    p: &Prepared,
    device: &Device,
    file: &mut ModelFile,
    progress: &mut dyn Progress,
) -> Result<()> {
    if p.spec.kind != Kind::Laplace {
        return Ok(());
    }
    progress.event("fitting the last-layer Laplace posterior on the best weights");
    let best = pno_run::load_weights(&run.dir, &device.clone().inner(), false)?;
    let stats = laplace_stats(&best.model, p, &device.clone().inner());
    let post = stats.fit()?;
    write_json(&run.laplace(), &post)?;
    model.laplace = Some(post.clone());
    let msg = format!(
        "laplace: sigma_obs {:.4e}, prior precision {:.4e}, log evidence {:.6e}",
        post.sigma_obs, post.prior_precision, post.log_evidence
    );
    log_event(run, progress, 0, &msg)?;
    write_json(&run.model(), file)?;
    Ok(())
}

fn laplace_stats(model: &Model, p: &Prepared, device: &Device) -> LaplaceStats {
    let pts = p.fields.points();
    let net = &model.members[0];
    let mut gram: Option<Vec<f64>> = None;
    let (mut rss, mut feats) = (0.0, 0usize);
    for chunk in p.splits.train.chunks(p.ts.eval_batch.max(1)) {
        let (x, y) = p.fields.gather(chunk);
        let b = chunk.len();
        let x = tensor3(x, [b, p.fields.cin, pts], device);
        let y = tensor3(y, [b, p.fields.cout, pts], device);
        let head = net.forward(x, &p.fields.grid, &mut pno_models::fno::Pass::features());
        rss += scalar((head.mean - y).powi_scalar(2).sum().reshape([1]));
        let f = head
            .features
            .clone()
            .expect("a features pass returns the features");
        let [_, nf, _] = f.dims();
        let phi = Tensor::cat(vec![f, Tensor::ones([b, 1, pts], device)], 1); // [b, P, pts]
        let g = phi
            .clone()
            .matmul(phi.swap_dims(1, 2))
            .sum_dim(0)
            .reshape([nf + 1, nf + 1]);
        let g: Vec<f64> = g
            .into_data()
            .convert::<f64>()
            .try_into_vec::<f64>()
            .unwrap_or_default();
        feats = nf + 1;
        match &mut gram {
            Some(acc) => acc.iter_mut().zip(&g).for_each(|(a, v)| *a += v),
            None => gram = Some(g),
        }
    }
    let theta_sq = net
        .fno
        .as_ref()
        .map(|f| {
            let last = f.last_layer();
            let w: f64 = named_sq(last.weight.val().reshape([-1]));
            let b: f64 = last.bias.as_ref().map(|b| named_sq(b.val())).unwrap_or(0.0);
            w + b
        })
        .unwrap_or(0.0);
    LaplaceStats {
        gram: gram.unwrap_or_default(),
        features: feats,
        rss,
        points: (p.splits.train.len() * pts) as f64,
        outputs: p.fields.cout,
        theta_sq,
    }
}

fn named_sq(t: Tensor<1>) -> f64 {
    t.into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .unwrap_or_default()
        .iter()
        .map(|v| v * v)
        .sum()
}

#[cfg(test)]
mod schedule_tests {
    use super::*;
    use crate::config::RunConfig;

    #[test]
    fn cosine_with_t_max_matches_pytorchs_cosine_annealing() {
        // PyTorch's CosineAnnealingLR(T_max = 30) stepped per epoch, 20 epochs, lr 8e-3: the
        // closed form η_e = η_min + (η_0 − η_min)(1 + cos(π e / T_max)) / 2: epoch 10 → 0.006,
        // epoch 15 → 0.004, epoch 19 → 0.0023730.
        let cfg: RunConfig =
            toml::from_str("[train]\nepochs = 20\nlr = 8e-3\nschedule = \"cosine\"\nt_max = 30\n")
                .unwrap();
        let ts = cfg.train_spec(pno_models::Kind::Fno, false).unwrap();
        let state = TrainState::fresh(ts.lr);
        let lr = |e| schedule_lr(&ts, e, &state);
        assert!((lr(0) - 8e-3).abs() < 1e-15);
        assert!((lr(10) - 6e-3).abs() < 1e-12, "{}", lr(10));
        assert!((lr(15) - 4e-3).abs() < 1e-12, "{}", lr(15));
        let want19 = 4e-3 * (1.0 + (std::f64::consts::PI * 19.0 / 30.0).cos());
        assert!((lr(19) - want19).abs() < 1e-15 && (lr(19) - 0.0023730).abs() < 1e-6);
        // Without t_max the period is the run's epochs: the last epoch is near min_lr.
        let plain: RunConfig =
            toml::from_str("[train]\nepochs = 20\nlr = 8e-3\nschedule = \"cosine\"\n").unwrap();
        let ts = plain.train_spec(pno_models::Kind::Fno, false).unwrap();
        assert!((schedule_lr(&ts, 10, &state) - 4e-3).abs() < 1e-12);
        // t_max is refused with another schedule, naming the key.
        let bad: RunConfig = toml::from_str("[train]\nt_max = 30\nschedule = \"step\"\n").unwrap();
        let e = bad
            .train_spec(pno_models::Kind::Fno, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.t_max") && e.contains("cosine"), "{e}");
    }

    #[test]
    fn step_and_plateau_stop_at_min_lr_and_the_backoff_scales_below_it() {
        let spec = |sched: &str| {
            let cfg: RunConfig = toml::from_str(&format!(
                "[train]\nepochs = 100\nlr = 1e-3\nmin_lr = 1e-4\ngamma = 0.5\n{sched}"
            ))
            .unwrap();
            cfg.train_spec(pno_models::Kind::Fno, false).unwrap()
        };
        let mut state = TrainState::fresh(1e-3);
        // Plateau: 1e-3 · 0.5^k until the floor; after 4 decays it is 6.25e-5 → 1e-4.
        let ts = spec("schedule = \"plateau\"\nplateau_patience = 3\n");
        for (k, want) in [(0, 1e-3), (1, 5e-4), (3, 1.25e-4), (4, 1e-4), (9, 1e-4)] {
            state.plateau_scale = 0.5f64.powi(k);
            let got = schedule_lr(&ts, 0, &state);
            assert!(
                (got - want).abs() < 1e-15,
                "plateau after {k} decays: {got} != {want}"
            );
        }
        // The rollback back-off multiplies the floored rate: 1e-4 · 0.5.
        state.lr_scale = 0.5;
        assert!((schedule_lr(&ts, 0, &state) - 5e-5).abs() < 1e-15);
        // Step: every 10 epochs ×0.5, floored at 1e-4 from epoch 40 on.
        let ts = spec("schedule = \"step\"\nstep_size = 10\n");
        let state = TrainState::fresh(1e-3);
        for (e, want) in [(9, 1e-3), (10, 5e-4), (39, 1.25e-4), (40, 1e-4), (99, 1e-4)] {
            let got = schedule_lr(&ts, e, &state);
            assert!(
                (got - want).abs() < 1e-15,
                "step at epoch {e}: {got} != {want}"
            );
        }
        // A base rate below the floor is kept, not raised to it.
        let cfg: RunConfig =
            toml::from_str("[train]\nlr = 1e-5\nmin_lr = 1e-4\nschedule = \"plateau\"\n").unwrap();
        let ts = cfg.train_spec(pno_models::Kind::Fno, false).unwrap();
        let mut state = TrainState::fresh(1e-5);
        state.plateau_scale = 0.25;
        assert!((schedule_lr(&ts, 0, &state) - 1e-5).abs() < 1e-18);
    }

    #[test]
    fn h1_weight_adds_the_h1_term_of_the_mean() {
        let spec = |extra: &str| {
            let cfg: RunConfig = toml::from_str(&format!(
                "[model]\nkind = \"pno_d\"\nhidden_channels = 4\nn_layers = 1\nn_modes = [4, 4]\n\
                 lifting_channels = 4\nprojection_channels = 4\n[train]\nloss = \"energy\"\n{extra}"
            ))
            .unwrap();
            (
                cfg.model.validate(1, 1, &[8, 8]).unwrap(),
                cfg.train_spec(pno_models::Kind::PnoD, false),
            )
        };
        let (ms, plain) = spec("");
        let plain = plain.unwrap();
        let (_, mixed) = spec("h1_weight = 0.25\n");
        let mixed = mixed.unwrap();
        assert_eq!((plain.h1_weight, mixed.h1_weight), (0.0, 0.25));
        let device = Device::flex();
        let model = ms.init(3, &device);
        let v = |seed: u64| -> Vec<f32> {
            (0..2 * 64)
                .map(|i| ((i as u64 * 7 + seed) % 13) as f32 / 13.0 - 0.4)
                .collect()
        };
        let x = Tensor::<3>::from_data(TensorData::new(v(1), [2, 1, 64]), &device);
        let y = Tensor::<3>::from_data(TensorData::new(v(5), [2, 1, 64]), &device);
        let lg = LossGrid::unit(&[8, 8]);
        let run = |ts: &TrainSpec| {
            batch_loss(
                &model,
                &[Batch {
                    x: x.clone(),
                    y: y.clone(),
                    rows: vec![0, 1],
                }],
                &[8, 8],
                &lg,
                ts,
                9,
                2,
            )
        };
        let (l0, mean) = run(&plain);
        let (l1, _) = run(&mixed);
        let h1 = scalar(losses::h1_rel(mean, y.clone(), &lg));
        let (l0, l1) = (scalar(l0), scalar(l1));
        assert!(h1 > 0.0);
        assert!(
            (l1 - l0 - 0.25 * h1).abs() < 1e-5 * l1.abs(),
            "{l1} vs {l0} + 0.25·{h1}"
        );
        // Refused with an H1 loss (it would double the term) and when negative.
        for (extra, what) in [
            ("loss = \"h1\"\nh1_weight = 0.1\n", "only with"),
            ("h1_weight = -1.0\n", "train.h1_weight"),
        ] {
            let cfg: RunConfig = toml::from_str(&format!("[train]\n{extra}")).unwrap();
            let e = cfg
                .train_spec(pno_models::Kind::Fno, false)
                .unwrap_err()
                .to_string();
            assert!(e.contains("train.h1_weight") && e.contains(what), "{e}");
        }
    }
}
