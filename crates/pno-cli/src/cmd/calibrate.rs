//! `pno calibrate`: split-conformal calibration of a run's predictive spread.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use pno_run::ConformalMode;
use pno_train::{CalibrateOptions, calibrate};

use crate::cmd::opts::{DrawOpts, ModeArg, SplitArg, split_name};

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  pno calibrate --run runs/darcy64_pno_d --data data/darcy64                 # data.n_calibration samples
  pno calibrate --run runs/darcy64_pno_d --data data/darcy64 --split val --level 0.95
  pno calibrate --run runs/darcy64_pno_d --data data/darcy64 --mode function --delta 0.1

Split-conformal scaling of the predictive spread about the mean: the scale is stored in the
run's model.json (with a record of how it was obtained) and applied by predict, eval and
serve. --mode pointwise: the expected fraction of covered points is the level; --mode
function: with probability ≥ 1 − delta a new function has at least that fraction covered.
Calibrate on samples the model never trained on (train with data.n_calibration > 0).")]
pub(crate) struct CalibrateArgs {
    /// Run folder written by `pno train` (its model.json is updated).
    #[arg(long)]
    run: PathBuf,
    /// Dataset holding the calibration samples.
    #[arg(long, short)]
    data: PathBuf,
    /// Which samples.
    #[arg(long, value_enum, default_value = "calibration")]
    split: SplitArg,
    /// Nominal central-interval level.
    #[arg(long, default_value_t = 0.9)]
    level: f64,
    /// Quantile rule.
    #[arg(long, value_enum, default_value = "pointwise")]
    mode: ModeArg,
    /// Function mode: allowed fraction of functions below the level.
    #[arg(long, default_value_t = 0.1)]
    delta: f64,
    #[command(flatten)]
    draws: DrawOpts,
}

pub(crate) fn run(args: CalibrateArgs, json_out: bool) -> Result<()> {
    let mode = match args.mode {
        ModeArg::Pointwise => ConformalMode::Pointwise,
        ModeArg::Function => ConformalMode::Function { delta: args.delta },
    };
    let device = args.draws.device()?;
    let opts = CalibrateOptions {
        split: args.split.split(),
        level: args.level,
        mode,
        samples: args.draws.samples,
        seed: args.draws.seed,
        batch: args.draws.batch,
    };
    let rec = calibrate(&args.run, &args.data, &opts, &device)
        .with_context(|| format!("calibrating {}", args.run.display()))?;
    if json_out {
        println!("{}", serde_json::to_string(&rec)?);
    } else {
        println!(
            "{}: spread scale {:.4} from {} {} functions; coverage at {} on them {:.3} -> {:.3}",
            args.run.display(),
            rec.spread_scale,
            rec.n_functions,
            split_name(rec.split),
            rec.level,
            rec.coverage_before,
            rec.coverage_after
        );
    }
    Ok(())
}
