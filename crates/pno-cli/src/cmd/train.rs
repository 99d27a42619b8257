//! `pno train`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::ProgressBar;
use serde_json::{Map, Value};

use pno_train::trainer::EpochLog;
use pno_train::watch::Anomaly;
use pno_train::{Progress, RunConfig, TrainOptions, train};

use crate::anomaly_hook::{AnomalyHook, FLUSH};
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
(safetensors), checkpoints, log.jsonl and summary.json.

Training anomalies (loss spikes, gradient-norm explosions, plateaus) are written to
log.jsonl as {\"kind\":\"anomaly\",...} lines. With --anomaly-webhook URL each one is also
POSTed there as JSON (the same fields plus \"run\" and \"ts_ms\"), retried on errors, from
a bounded background queue: delivery never slows or fails training. At the end the
run waits at most 10 s for undelivered events and reports delivered/failed/dropped:
  pno train --config c.toml --data d --out runs/a --anomaly-webhook https://hooks.example/pno")]
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
    #[arg(long, default_value = "cpu", conflicts_with = "devices")]
    device: String,
    /// Data-parallel training on these devices (e.g. cuda:0,cuda:1): each step's batch is split
    /// across them and the gradients summed on the first, one optimizer step; the update equals
    /// one device's on the same batch up to float rounding. `cpu,cpu` runs the shards on two
    /// threads of the CPU backend.
    #[arg(long, value_delimiter = ',', value_name = "DEVICE,...")]
    devices: Vec<String>,
    /// Also POST each training anomaly event as JSON to this http:// or https:// URL
    /// (best effort: never slows or fails training; see below).
    #[arg(long, value_name = "URL")]
    anomaly_webhook: Option<String>,
    /// PEM file of CA certificates to trust for an https:// --anomaly-webhook (default: the
    /// Mozilla roots).
    #[arg(long, value_name = "PEM", requires = "anomaly_webhook")]
    anomaly_webhook_ca: Option<PathBuf>,
}

struct Bar {
    pb: Option<ProgressBar>,
    hidden: bool,
    /// `--anomaly-webhook`: anomaly events also go there.
    hook: Option<AnomalyHook>,
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
    fn anomaly(&mut self, a: &Anomaly) {
        if let Some(h) = &mut self.hook {
            h.send(a);
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
    let _telemetry = crate::telemetry::batch("pno-train")?;
    let config = load_config(args.config.as_deref(), &args.set)?;
    let (out, resume) = match (&args.resume, &args.out) {
        (Some(r), _) => (r.clone(), true),
        (None, Some(o)) => (o.clone(), false),
        (None, None) => bail!("--out RUN_DIR (or --resume RUN_DIR) is required"),
    };
    if !resume && config.is_none() {
        bail!("--config FILE.toml is required for a new run (or use --resume RUN_DIR)");
    }
    // A bad webhook URL or CA file stops here, before any training.
    let hook = match &args.anomaly_webhook {
        Some(url) => Some(AnomalyHook::start(
            url,
            args.anomaly_webhook_ca.as_deref(),
            &out,
        )?),
        None => None,
    };
    let mut progress = Bar {
        pb: None,
        hidden: quiet || json_out,
        hook,
    };
    let data_parallel = args
        .devices
        .iter()
        .map(|d| crate::device::select_device(d))
        .collect::<Result<Vec<_>>>()
        .context("--devices")?;
    let device = match data_parallel.first() {
        Some(d) => d.clone(),
        None => crate::device::select_device(&args.device)?,
    };
    let opts = TrainOptions {
        data: args.data,
        out,
        resume,
        device,
        data_parallel,
    };
    let run_span = tracing::info_span!(
        "train",
        out = %opts.out.display(),
        resume = opts.resume,
        kind = tracing::field::Empty,
        params = tracing::field::Empty,
        epochs = tracing::field::Empty,
        best_epoch = tracing::field::Empty,
        val_rel_l2 = tracing::field::Empty,
        seconds = tracing::field::Empty,
        rollbacks = tracing::field::Empty,
    );
    let result = run_span.in_scope(|| train(config, &opts, &mut progress));
    // Events raised before a failure are flushed too.
    if let Some(hook) = progress.hook.take() {
        hook.finish(FLUSH).print(quiet || json_out);
    }
    let summary = result?;
    run_span.record("kind", summary.kind.to_string());
    run_span.record("params", summary.params);
    run_span.record("epochs", summary.epochs);
    run_span.record("best_epoch", summary.best_epoch);
    run_span.record("val_rel_l2", summary.val_rel_l2);
    run_span.record("seconds", summary.seconds);
    run_span.record("rollbacks", summary.rollbacks);
    drop(run_span);
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
