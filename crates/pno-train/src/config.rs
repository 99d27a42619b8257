//! Run configuration: the `[data]`, `[model]` and `[train]` tables of a training TOML,
//! validated before anything is loaded. Unknown keys are rejected by name.

use serde::{Deserialize, Serialize};

use pno_models::ModelConfig;
use pno_run::{DataSpec, Window, WindowLayout};

use crate::error::{Result, TrainError, config_err};

/// The whole config file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Which tensors to learn and how to split them.
    #[serde(default)]
    pub data: DataConfig,
    /// The model.
    #[serde(default)]
    pub model: ModelConfig,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainConfig,
}

/// `[data]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Input tensor name (default `x`).
    pub x: Option<String>,
    /// Target tensor name (default `y`).
    pub y: Option<String>,
    /// Use only the first `n_train` samples of the training part.
    pub n_train: Option<usize>,
    /// Samples at the end of the dataset held out as the test split (default 0 for a
    /// dataset used only for training; `pno eval --split test` evaluates them).
    pub n_test: Option<usize>,
    /// Fraction of the training part carved out (by seed) for validation (default 0.1).
    pub val_fraction: Option<f64>,
    /// Keep every `subsample`-th point per spatial axis (default 1).
    pub subsample: Option<usize>,
    /// Normalise inputs and targets per channel (default true).
    pub normalize: Option<bool>,
    /// Run `pno data check` on the dataset first (default true).
    pub check: Option<bool>,
    /// Domain length per spatial axis (default 1), for the discretised norms.
    pub domain_length: Option<f64>,
    /// Periodic domain (central differences wrap in H¹), default false.
    pub periodic: Option<bool>,
    /// Samples carved (by seed) from the training part for conformal calibration (default 0;
    /// `pno calibrate --split calibration` uses them).
    pub n_calibration: Option<usize>,
    /// Learn a time step of a trajectory tensor `[n, T, c, x…]` (`data.x` names it).
    pub window: Option<WindowConfig>,
}

/// `[data.window]`: input/target windows cut from trajectories.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Input frames (default 1).
    pub t_in: Option<usize>,
    /// Target frames that follow them (default 1).
    pub t_out: Option<usize>,
    /// Keep every `stride`-th frame (temporal downsampling, default 1).
    pub stride: Option<usize>,
    /// First input frame (default 0).
    pub start: Option<usize>,
    /// `channels` (default: frames become channels of a field on the spatial grid) or `field`
    /// (1-D data only: time becomes the first axis of a 2-D `(t, x)` field; needs t_in = t_out).
    pub layout: Option<String>,
}

/// `[train]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Seed for initialisation, data order, splits and noise (default 0).
    pub seed: Option<u64>,
    /// Maximum epochs (default 50).
    pub epochs: Option<usize>,
    /// Batch size (default 16).
    pub batch_size: Option<usize>,
    /// `adam` (default) or `adamw`.
    pub optimizer: Option<String>,
    /// Learning rate (default 1e-3).
    pub lr: Option<f64>,
    /// Weight decay (L2 for adam, decoupled for adamw; default 0).
    pub weight_decay: Option<f64>,
    /// Adam ε (default 1e-8, PyTorch's).
    pub eps: Option<f64>,
    /// `constant` (default), `step`, `cosine` or `plateau`.
    pub schedule: Option<String>,
    /// `step`: epochs between decays (default 10).
    pub step_size: Option<usize>,
    /// `cosine`: the half period in epochs (PyTorch's `T_max`; default `epochs`, so the rate
    /// reaches `min_lr` at the end; neuraloperator's Darcy example uses 30 with 20 epochs).
    pub t_max: Option<usize>,
    /// `step`/`plateau`: decay factor (default 0.5).
    pub gamma: Option<f64>,
    /// `plateau`: epochs without improvement before a decay (default 5).
    pub plateau_patience: Option<usize>,
    /// Floor of the scheduled learning rate (default 0): where `cosine` ends, and where `step`
    /// and `plateau` stop decaying (a base `lr` below it is kept). The fault-tolerant back-off
    /// after a rollback scales the scheduled rate and may go below it.
    pub min_lr: Option<f64>,
    /// Training loss: `auto` (default: by model kind), `l2`, `l2_rel`, `h1`, `nll`, `crps`,
    /// `energy`, `elbo`.
    pub loss: Option<String>,
    /// KL weight β of the ELBO (default 1).
    pub kl_weight: Option<f64>,
    /// Weight λ of a relative-H¹ term on the predictive mean added to the loss (default 0):
    /// `loss + λ·H1(mean, y)`, e.g. a scoring rule sharpened by a small accuracy term.
    pub h1_weight: Option<f64>,
    /// Ensembles: `independent` (default; each member draws its own batch order every epoch,
    /// as separately trained networks would) or `shared` (all members see the same batches).
    pub member_order: Option<String>,
    /// Global gradient-norm clip (default 1.0; 0 disables).
    pub grad_clip: Option<f64>,
    /// Early-stopping patience in epochs (default 10; 0 disables).
    pub patience: Option<usize>,
    /// Minimum improvement that resets the patience (default 1e-4).
    pub min_delta: Option<f64>,
    /// Epochs before early stopping may trigger (default 0).
    pub min_epochs: Option<usize>,
    /// Validation metric for early stopping and best checkpoint: `loss` (default) or `rel_l2`.
    pub val_metric: Option<String>,
    /// Consecutive failed (non-finite) steps before the run stops (default 5).
    pub max_failures: Option<usize>,
    /// Learning-rate factor applied at each rollback (default 0.1).
    pub lr_backoff: Option<f64>,
    /// Checkpoints kept (default 3).
    pub keep_checkpoints: Option<usize>,
    /// Rows per forward pass at validation/prediction (default 64).
    pub eval_batch: Option<usize>,
}

/// Learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Fixed.
    Constant,
    /// Multiply by `gamma` every `step_size` epochs.
    Step {
        /// Epochs between decays.
        step_size: usize,
        /// Factor.
        gamma: f64,
    },
    /// Cosine annealing from `lr` towards `min_lr` over `t_max` epochs (default `epochs`).
    Cosine,
    /// Multiply by `gamma` after `patience` epochs without validation improvement.
    Plateau {
        /// Patience.
        patience: usize,
        /// Factor.
        gamma: f64,
    },
}

/// Training loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Absolute discretised L².
    L2,
    /// Relative L².
    L2Rel,
    /// Relative H¹.
    H1,
    /// Gaussian NLL (models with a std head).
    Nll,
    /// Gaussian CRPS (std head) or fair sample CRPS.
    Crps,
    /// Fair energy score over the training draws.
    Energy,
    /// Gaussian NLL + β·KL (vi_pno).
    Elbo,
}

/// Validated `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSpec {
    /// Seed.
    pub seed: u64,
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Decoupled weight decay.
    pub adamw: bool,
    /// Learning rate.
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Adam ε.
    pub eps: f64,
    /// Schedule.
    pub schedule: Schedule,
    /// Minimum learning rate.
    pub min_lr: f64,
    /// Cosine half period in epochs (`None`: the run's epochs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t_max: Option<usize>,
    /// Loss.
    pub loss: Loss,
    /// KL weight.
    pub kl_weight: f64,
    /// Weight of the added relative-H¹ term on the mean (0 = none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub h1_weight: f64,
    /// Ensemble members draw independent batch orders (false: one shared order; runs saved
    /// before the key existed trained with a shared order).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub member_orders: bool,
    /// Gradient clip (0 = off).
    pub grad_clip: f64,
    /// Early-stopping patience (0 = off).
    pub patience: usize,
    /// Minimum improvement.
    pub min_delta: f64,
    /// Epochs before early stopping.
    pub min_epochs: usize,
    /// Validate on relative L² of the mean instead of the loss.
    pub val_rel_l2: bool,
    /// Failures before stopping.
    pub max_failures: usize,
    /// Rollback factor.
    pub lr_backoff: f64,
    /// Checkpoints kept.
    pub keep_checkpoints: usize,
    /// Rows per evaluation pass.
    pub eval_batch: usize,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn window_spec(w: &WindowConfig, d: &DataConfig) -> Result<Window> {
    let count = |key: &str, v: Option<usize>, min: usize| -> Result<usize> {
        let v = v.unwrap_or(1.max(min));
        if v < min || v > 4096 {
            return Err(config_err(key, format!("an integer in {min}..=4096"), v));
        }
        Ok(v)
    };
    let t_in = count("data.window.t_in", w.t_in, 1)?;
    let t_out = count("data.window.t_out", w.t_out, 1)?;
    let stride = count("data.window.stride", w.stride, 1)?;
    let start = w.start.unwrap_or(0);
    if start > 1 << 20 {
        return Err(config_err("data.window.start", "a frame index", start));
    }
    let layout = match w.layout.as_deref().unwrap_or("channels") {
        "channels" => WindowLayout::Channels,
        "field" => WindowLayout::Field,
        o => {
            return Err(config_err(
                "data.window.layout",
                "\"channels\" or \"field\"",
                format!("{o:?}"),
            ));
        }
    };
    if layout == WindowLayout::Field && t_in != t_out {
        return Err(config_err(
            "data.window.t_out",
            format!("t_out = t_in = {t_in} with layout = \"field\" (one grid in and out)"),
            t_out,
        ));
    }
    if let (Some(x), Some(y)) = (&d.x, &d.y)
        && x != y
    {
        return Err(config_err(
            "data.y",
            format!("the trajectory tensor {x:?} (or unset) with [data.window]"),
            format!("{y:?}"),
        ));
    }
    Ok(Window {
        t_in,
        t_out,
        stride,
        start,
        layout,
    })
}

fn pos_f(key: &str, v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(config_err(key, "a positive finite number", v))
    }
}

fn nonneg_f(key: &str, v: f64) -> Result<f64> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(config_err(key, "a finite number ≥ 0", v))
    }
}

impl RunConfig {
    /// Parse a raw JSON object (from TOML plus `--set` overrides).
    pub fn from_value(value: serde_json::Value) -> Result<Self> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            TrainError::Config {
                key: if path == "." { "config".into() } else { path },
                expected: "the documented keys and types of [data], [model] and [train]".into(),
                got: e.into_inner().to_string(),
            }
        })
    }

    /// The run's seed (`train.seed`, default 0): weights, data order, splits.
    pub fn seed(&self) -> u64 {
        self.train.seed.unwrap_or(0)
    }

    /// Validate `[data]`.
    pub fn data_spec(&self) -> Result<DataSpec> {
        let d = &self.data;
        let val_fraction = d.val_fraction.unwrap_or(0.1);
        if !(val_fraction.is_finite() && (0.0..0.9).contains(&val_fraction)) {
            return Err(config_err(
                "data.val_fraction",
                "a fraction in [0, 0.9)",
                val_fraction,
            ));
        }
        let subsample = d.subsample.unwrap_or(1);
        if subsample == 0 || subsample > 64 {
            return Err(config_err(
                "data.subsample",
                "an integer in 1..=64",
                subsample,
            ));
        }
        if d.n_train == Some(0) {
            return Err(config_err("data.n_train", "at least 1", 0));
        }
        let window = match &d.window {
            None => None,
            Some(w) => Some(window_spec(w, d)?),
        };
        let default_x = if window.is_some() { "u" } else { "x" };
        Ok(DataSpec {
            x: d.x.clone().unwrap_or_else(|| default_x.into()),
            y: match &window {
                Some(_) => d.x.clone().unwrap_or_else(|| default_x.into()),
                None => d.y.clone().unwrap_or_else(|| "y".into()),
            },
            n_train: d.n_train,
            n_test: d.n_test.unwrap_or(0),
            val_fraction,
            subsample,
            normalize: d.normalize.unwrap_or(true),
            check: d.check.unwrap_or(true),
            domain_length: pos_f("data.domain_length", d.domain_length.unwrap_or(1.0))?,
            periodic: d.periodic.unwrap_or(false),
            n_calibration: d.n_calibration.unwrap_or(0),
            window,
        })
    }

    /// Validate `[train]` for a model of `kind` (the default loss depends on it).
    pub fn train_spec(&self, kind: pno_models::Kind, gaussian_head: bool) -> Result<TrainSpec> {
        use pno_models::Kind;
        let t = &self.train;
        let lr = pos_f("train.lr", t.lr.unwrap_or(1e-3))?;
        let epochs = t.epochs.unwrap_or(50);
        if epochs == 0 || epochs > 100_000 {
            return Err(config_err(
                "train.epochs",
                "an integer in 1..=100000",
                epochs,
            ));
        }
        let batch_size = t.batch_size.unwrap_or(16);
        if batch_size == 0 || batch_size > 65_536 {
            return Err(config_err(
                "train.batch_size",
                "an integer in 1..=65536",
                batch_size,
            ));
        }
        let adamw = match t.optimizer.as_deref().unwrap_or("adam") {
            "adam" => false,
            "adamw" => true,
            o => {
                return Err(config_err(
                    "train.optimizer",
                    "\"adam\" or \"adamw\"",
                    format!("{o:?}"),
                ));
            }
        };
        let gamma = t.gamma.unwrap_or(0.5);
        if !(gamma.is_finite() && gamma > 0.0 && gamma <= 1.0) {
            return Err(config_err("train.gamma", "a factor in (0, 1]", gamma));
        }
        let schedule = match t.schedule.as_deref().unwrap_or("constant") {
            "constant" => Schedule::Constant,
            "step" => {
                let step_size = t.step_size.unwrap_or(10);
                if step_size == 0 {
                    return Err(config_err("train.step_size", "at least 1", 0));
                }
                Schedule::Step { step_size, gamma }
            }
            "cosine" => Schedule::Cosine,
            "plateau" => Schedule::Plateau {
                patience: t.plateau_patience.unwrap_or(5),
                gamma,
            },
            o => {
                return Err(config_err(
                    "train.schedule",
                    "\"constant\", \"step\", \"cosine\" or \"plateau\"",
                    format!("{o:?}"),
                ));
            }
        };
        let default_loss = match kind {
            Kind::PnoD | Kind::PnoR => Loss::Energy,
            Kind::ViPno => Loss::Elbo,
            Kind::Ensemble if gaussian_head => Loss::Nll,
            Kind::Deeponet => Loss::L2Rel,
            _ => Loss::L2,
        };
        let loss = match t.loss.as_deref().unwrap_or("auto") {
            "auto" => default_loss,
            "l2" => Loss::L2,
            "l2_rel" => Loss::L2Rel,
            "h1" => Loss::H1,
            "nll" => Loss::Nll,
            "crps" => Loss::Crps,
            "energy" => Loss::Energy,
            "elbo" => Loss::Elbo,
            o => {
                return Err(config_err(
                    "train.loss",
                    "auto, l2, l2_rel, h1, nll, crps, energy or elbo",
                    format!("{o:?}"),
                ));
            }
        };
        let has_std = gaussian_head || matches!(kind, Kind::PnoR | Kind::ViPno);
        let sampled = matches!(kind, Kind::PnoD | Kind::PnoR);
        match loss {
            Loss::Nll if !has_std => {
                return Err(config_err(
                    "train.loss",
                    "nll only for models with a std head (pno_r, vi_pno, gaussian ensembles)",
                    "nll",
                ));
            }
            Loss::Energy if !sampled => {
                return Err(config_err(
                    "train.loss",
                    "energy only for pno_d and pno_r (it needs several draws)",
                    "energy",
                ));
            }
            Loss::Crps if !(sampled || has_std) => {
                return Err(config_err(
                    "train.loss",
                    "crps only for pno_d, pno_r or models with a std head",
                    "crps",
                ));
            }
            Loss::Elbo if kind != Kind::ViPno => {
                return Err(config_err("train.loss", "elbo only for vi_pno", "elbo"));
            }
            _ => {}
        }
        if kind == Kind::ViPno && loss != Loss::Elbo {
            return Err(config_err(
                "train.loss",
                "elbo (or auto) for vi_pno",
                format!("{loss:?}"),
            ));
        }
        let val_rel_l2 = match t.val_metric.as_deref().unwrap_or("loss") {
            "loss" => false,
            "rel_l2" => true,
            o => {
                return Err(config_err(
                    "train.val_metric",
                    "\"loss\" or \"rel_l2\"",
                    format!("{o:?}"),
                ));
            }
        };
        let lr_backoff = t.lr_backoff.unwrap_or(0.1);
        if !(lr_backoff.is_finite() && lr_backoff > 0.0 && lr_backoff < 1.0) {
            return Err(config_err(
                "train.lr_backoff",
                "a factor in (0, 1)",
                lr_backoff,
            ));
        }
        let max_failures = t.max_failures.unwrap_or(5);
        if max_failures == 0 {
            return Err(config_err("train.max_failures", "at least 1", 0));
        }
        let keep_checkpoints = t.keep_checkpoints.unwrap_or(3);
        if keep_checkpoints < 2 {
            return Err(config_err(
                "train.keep_checkpoints",
                "at least 2 (one to fall back on)",
                keep_checkpoints,
            ));
        }
        let eps = pos_f("train.eps", t.eps.unwrap_or(1e-8))?;
        let eval_batch = t.eval_batch.unwrap_or(64);
        if eval_batch == 0 {
            return Err(config_err("train.eval_batch", "at least 1", 0));
        }
        Ok(TrainSpec {
            seed: self.seed(),
            epochs,
            batch_size,
            adamw,
            lr,
            weight_decay: nonneg_f("train.weight_decay", t.weight_decay.unwrap_or(0.0))?,
            eps,
            schedule,
            min_lr: nonneg_f("train.min_lr", t.min_lr.unwrap_or(0.0))?,
            t_max: match (t.t_max, &schedule) {
                (None, _) => None,
                (Some(0), _) => return Err(config_err("train.t_max", "at least 1", 0)),
                (Some(n), Schedule::Cosine) => Some(n),
                (Some(n), _) => {
                    return Err(config_err(
                        "train.t_max",
                        "only with schedule = \"cosine\"",
                        n,
                    ));
                }
            },
            loss,
            kl_weight: nonneg_f("train.kl_weight", t.kl_weight.unwrap_or(1.0))?,
            h1_weight: match t.h1_weight {
                Some(w) if loss == Loss::H1 => {
                    return Err(config_err(
                        "train.h1_weight",
                        "only with a loss other than \"h1\" (it adds an H1 term)",
                        w,
                    ));
                }
                w => nonneg_f("train.h1_weight", w.unwrap_or(0.0))?,
            },
            member_orders: match (t.member_order.as_deref(), kind) {
                (None | Some("independent"), Kind::Ensemble) => true,
                (Some("shared"), Kind::Ensemble) => false,
                (Some(o @ ("independent" | "shared")), _) => {
                    return Err(config_err(
                        "train.member_order",
                        "only with kind = \"ensemble\"",
                        o,
                    ));
                }
                (None, _) => false,
                (Some(o), _) => {
                    return Err(config_err(
                        "train.member_order",
                        "\"independent\" or \"shared\"",
                        format!("{o:?}"),
                    ));
                }
            },
            grad_clip: nonneg_f("train.grad_clip", t.grad_clip.unwrap_or(1.0))?,
            patience: t.patience.unwrap_or(10),
            min_delta: nonneg_f("train.min_delta", t.min_delta.unwrap_or(1e-4))?,
            min_epochs: t.min_epochs.unwrap_or(0),
            val_rel_l2,
            max_failures,
            lr_backoff,
            keep_checkpoints,
            eval_batch,
        })
    }
}
