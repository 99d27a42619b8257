//! `pno train` and `pno predict`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::ProgressBar;
use serde_json::{Map, Value, json};

use pno_data::{NpyData, open_any, write_npz};
use pno_train::trainer::EpochLog;
use pno_train::{Progress, RunConfig, TrainOptions, load_trained, train};

use crate::config::{apply_set, read_toml};
use crate::progress::bar;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  pno train --config configs/darcy64_pno_d.toml --data data/darcy64 --out runs/pno_d
  pno train --config configs/darcy16_fno.toml --data darcy_train_16.pt --out runs/fno16 --set train.epochs=5
  pno train --resume runs/pno_d --data data/darcy64          # continue after a crash

The config has three tables: [data] (tensor names, n_train, n_test, val_fraction,
subsample, normalize, check), [model] (kind = fno | deeponet | mc_dropout | ensemble |
laplace | pno_d | pno_r | vi_pno, neuraloperator key names) and [train] (seed, epochs,
batch_size, optimizer, lr, schedule, loss, grad_clip, patience, ...). Unknown keys
are refused. The run folder holds the config, normaliser, best weights
(safetensors), checkpoints, log.jsonl and summary.json.")]
pub(crate) struct TrainArgs {
    /// TOML config ([data], [model], [train]).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Dataset: a pno dataset folder, neuralop .pt, .npz/.npy or PDEBench HDF5.
    #[arg(long, short)]
    data: PathBuf,
    /// New run folder.
    #[arg(long, short, required_unless_present = "resume")]
    out: Option<PathBuf>,
    /// Override a config key, e.g. --set train.lr=5e-4 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Continue the interrupted run in this folder from its newest good checkpoint.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "out")]
    resume: Option<PathBuf>,
    /// Backend: cpu, or cuda / cuda:N in a CUDA build.
    #[arg(long, default_value = "cpu")]
    device: String,
}

struct Bar {
    pb: Option<ProgressBar>,
    hidden: bool,
}

impl Progress for Bar {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, batches: usize) {
        let pb = bar(
            batches as u64,
            &format!("epoch {epoch}/{epochs}"),
            self.hidden,
        );
        self.pb = Some(pb);
    }
    fn step(&mut self, loss: f64) {
        if let Some(pb) = &self.pb {
            pb.inc(1);
            pb.set_message(format!("loss {loss:.4e}"));
        }
    }
    fn epoch_end(&mut self, log: &EpochLog) {
        if let Some(pb) = self.pb.take() {
            pb.finish_and_clear();
        }
        if !self.hidden {
            eprintln!(
                "epoch {:>4}  lr {:.2e}  train {:.4e}  val {:.4e}  val rel-L2 {:.4}  {:.1} samples/s{}",
                log.epoch,
                log.lr,
                log.train_loss,
                log.val_loss,
                log.val_rel_l2,
                log.samples_per_s,
                if log.best { "  *best" } else { "" }
            );
        }
    }
    fn event(&mut self, message: &str) {
        if let Some(pb) = &self.pb {
            pb.suspend(|| eprintln!("{message}"));
        } else {
            eprintln!("{message}");
        }
    }
}

fn load_config(path: Option<&Path>, set: &[String]) -> Result<Option<RunConfig>> {
    if path.is_none() && set.is_empty() {
        return Ok(None);
    }
    let mut map = match path {
        Some(p) => read_toml(p)?,
        None => Map::new(),
    };
    for s in set {
        apply_set(&mut map, s)?;
    }
    let what = path.map_or_else(|| "--set".to_string(), |p| p.display().to_string());
    Ok(Some(
        RunConfig::from_value(Value::Object(map)).with_context(|| format!("config {what}"))?,
    ))
}

pub(crate) fn run_train(args: TrainArgs, json_out: bool, quiet: bool) -> Result<()> {
    let config = load_config(args.config.as_deref(), &args.set)?;
    let (out, resume) = match (&args.resume, &args.out) {
        (Some(r), _) => (r.clone(), true),
        (None, Some(o)) => (o.clone(), false),
        (None, None) => bail!("--out RUN_DIR (or --resume RUN_DIR) is required"),
    };
    if !resume && config.is_none() {
        bail!("--config FILE.toml is required for a new run (or use --resume RUN_DIR)");
    }
    let mut progress = Bar {
        pb: None,
        hidden: quiet || json_out,
    };
    let device = crate::device::select_device(&args.device)?;
    let opts = TrainOptions {
        data: args.data,
        out,
        resume,
        device,
    };
    let summary = train(config, &opts, &mut progress)?;
    if json_out {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "trained {} ({} params) for {} epochs in {:.1} s ({:.1} samples/s); best epoch {} val {:.4e}, val rel-L2 {:.4}; {} rollback(s){}",
            summary.kind,
            summary.params,
            summary.epochs,
            summary.seconds,
            summary.samples_per_s,
            summary.best_epoch,
            summary.best_val,
            summary.val_rel_l2,
            summary.rollbacks,
            if summary.early_stopped {
                "; stopped early"
            } else {
                ""
            }
        );
        println!("run folder: {}", summary.run.display());
    }
    Ok(())
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  pno predict --run runs/pno_d --input data/darcy64 --samples 100 --out pred.npz
  pno predict --run runs/pno_d --input x.npy --samples 32 --seed 7 --out pred.npz
  pno predict --run runs/fno16 --input darcy_test_32.pt --samples 1 --out sr.npz   # other resolution

Writes mean, std, samples [n_samples, n, c, ...], quantiles [levels, n, c, ...],
quantile_levels (and aleatoric_var where the model separates it), in physical units.
The same seed gives the same output; any batch size gives the same draws.")]
pub(crate) struct PredictArgs {
    /// Run folder written by `pno train`.
    #[arg(long)]
    run: PathBuf,
    /// Inputs: any supported dataset (its x tensor) or a .npy array [n, c, ...].
    #[arg(long, short)]
    input: PathBuf,
    /// Predictive draws per input.
    #[arg(long, short, default_value_t = 100)]
    samples: usize,
    /// Seed of the draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Quantile levels, comma-separated.
    #[arg(
        long,
        default_value = "0.025,0.05,0.25,0.5,0.75,0.95,0.975",
        value_delimiter = ','
    )]
    quantiles: Vec<f64>,
    /// Inputs per forward pass.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Output .npz file.
    #[arg(long, short)]
    out: PathBuf,
    /// Backend: cpu, or cuda / cuda:N in a CUDA build.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Inputs `[n, c, points]` and grid from any supported path.
pub(crate) fn read_inputs(
    path: &Path,
    name: &str,
    channels: usize,
    axes: usize,
) -> Result<(Vec<f32>, usize, Vec<usize>)> {
    let src = open_any(path).with_context(|| format!("reading inputs {}", path.display()))?;
    let set = src.to_samples()?;
    let t = set
        .tensors
        .iter()
        .find(|(n, _)| n == name)
        .or_else(|| {
            if src.format == pno_data::Format::Npy {
                set.tensors.first()
            } else {
                None
            }
        })
        .map(|(_, t)| t)
        .with_context(|| format!("{}: no tensor named {name:?}", path.display()))?;
    let s = t.shape().to_vec();
    // [n, c, spatial…] or, without a channel axis for one-channel models, [n, spatial…].
    let (n, c, grid) = if s.len() == axes + 2 {
        (s[0], s[1], s[2..].to_vec())
    } else if s.len() == axes + 1 && channels == 1 {
        (s[0], 1, s[1..].to_vec())
    } else {
        bail!(
            "{}: tensor {name:?}: expected [n, {channels}, {} spatial axes], got shape {s:?}",
            path.display(),
            axes
        );
    };
    if c != channels {
        bail!(
            "{}: tensor {name:?}: expected {channels} channel(s), got {c} (shape {s:?})",
            path.display()
        );
    }
    Ok((t.to_f32_vec(), n, grid))
}

pub(crate) fn run_predict(args: PredictArgs, json_out: bool) -> Result<()> {
    if args.samples == 0 || args.samples > 100_000 {
        bail!("--samples: expected 1..=100000, got {}", args.samples);
    }
    if let Some(q) = args.quantiles.iter().find(|q| !(0.0..=1.0).contains(*q)) {
        bail!("--quantiles: expected levels in [0, 1], got {q}");
    }
    let device = crate::device::select_device(&args.device)?;
    let trained = load_trained(&args.run, &device)
        .with_context(|| format!("loading run {}", args.run.display()))?;
    let name = trained.file.data.x.clone();
    let (x, n, grid) = read_inputs(
        &args.input,
        &name,
        trained.file.in_channels,
        trained.file.grid.len(),
    )?;
    let pred = trained.predict(x, n, &grid, args.samples, args.seed, args.batch, &device)?;
    let q = pred.quantiles(&args.quantiles);
    let c = pred.channels;
    let mut field = vec![n, c];
    field.extend(&grid);
    let mut sshape = vec![args.samples];
    sshape.extend(&field);
    let mut qshape = vec![args.quantiles.len()];
    qshape.extend(&field);
    let levels: Vec<f64> = args.quantiles.clone();
    let mut entries: Vec<(&str, Vec<usize>, NpyData<'_>)> = vec![
        ("mean", field.clone(), NpyData::F32(&pred.mean)),
        ("std", field.clone(), NpyData::F32(&pred.std)),
        ("samples", sshape, NpyData::F32(&pred.samples)),
        ("quantiles", qshape, NpyData::F32(&q)),
        ("quantile_levels", vec![levels.len()], NpyData::F64(&levels)),
    ];
    if let Some(a) = &pred.aleatoric_var {
        entries.push(("aleatoric_var", field.clone(), NpyData::F32(a)));
    }
    let refs: Vec<(&str, &[usize], NpyData<'_>)> = entries
        .iter()
        .map(|(k, s, d)| (*k, s.as_slice(), *d))
        .collect();
    write_npz(&args.out, &refs).with_context(|| format!("writing {}", args.out.display()))?;
    if json_out {
        println!(
            "{}",
            json!({"out": args.out, "n": n, "samples": args.samples, "grid": grid, "channels": c, "seed": args.seed, "kind": trained.file.model.kind.name()})
        );
    } else {
        println!(
            "predicted {n} input(s) on grid {grid:?} with {} draws ({}) -> {}",
            args.samples,
            trained.file.model.kind.name(),
            args.out.display()
        );
    }
    Ok(())
}
