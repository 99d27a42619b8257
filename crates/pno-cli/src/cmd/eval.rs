//! `pno eval`: metrics of a trained run on a dataset split.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{Value, json};

use pno_data::{NpyData, write_npz};
use pno_run::load_trained;
use pno_train::{EvalOptions, Evaluation, evaluate};

use crate::cmd::opts::{DrawOpts, SplitArg, split_name};

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  pno eval --run runs/darcy64_pno_d --data data/darcy64 --split test --samples 100
  pno eval --run runs/darcy16_fno --data darcy_test_16.pt --json
  pno eval --run runs/darcy16_pno_d --data darcy_test_32.pt --samples 100   # super-resolution
  pno eval --run runs/ks_pno_r --data data/ks --rollout 5 --json            # autoregressive

On the dataset the run was trained on, --split picks the recorded test/val/train/calibration
samples; on any other file every sample is evaluated (--split all: every sample). Metrics are in physical units
(the run's normaliser is inverted): rel_l2, l2_abs, rmse, mse, h1_rel, nll, crps,
crps_fair, energy_score, coverage_50..99, function_coverage_95, interval_width_90,
interval_score_90, calibration_error, miscalibration_area, sharpness, spread_skill;
models that separate data noise add total_var, aleatoric_var, epistemic_var and
aleatoric_fraction (law of total variance). --rollout K (runs trained on [data.window])
adds per-step metrics and the fraction of sample trajectories that diverged.")]
pub(crate) struct EvalArgs {
    /// Run folder written by `pno train`.
    #[arg(long)]
    run: PathBuf,
    /// Dataset (any supported format) holding the run's input and target tensors.
    #[arg(long, short)]
    data: PathBuf,
    /// Which samples.
    #[arg(long, value_enum, default_value = "test")]
    split: SplitArg,
    #[command(flatten)]
    draws: DrawOpts,
    /// Autoregressive rollout steps (runs trained on trajectory windows).
    #[arg(long, default_value_t = 0)]
    rollout: usize,
    /// Also write input, mean, std, samples and target to this .npz.
    #[arg(long, value_name = "FILE.npz")]
    save_predictions: Option<PathBuf>,
}

/// The JSON object of an evaluation: the metric keys at the top level, then the context.
pub(crate) fn evaluation_json(e: &Evaluation, kind: &str, n_samples: usize) -> Result<Value> {
    let mut obj = serde_json::to_value(&e.report)?;
    if let Some(m) = obj.as_object_mut() {
        if let Some(dec) = &e.decomposition
            && let Value::Object(d) = serde_json::to_value(dec)?
        {
            m.extend(d);
        }
        m.insert("n".into(), json!(e.n));
        m.insert("n_samples".into(), json!(n_samples));
        m.insert("resolution".into(), json!(e.grid));
        m.insert("split".into(), json!(split_name(e.split)));
        m.insert("kind".into(), json!(kind));
        m.insert("predict_seconds".into(), json!(e.predict_seconds));
        m.insert("curves".into(), serde_json::to_value(&e.curves)?);
        if !e.rollout.is_empty() {
            m.insert("rollout".into(), serde_json::to_value(&e.rollout)?);
        }
    }
    Ok(obj)
}

pub(crate) fn run(args: EvalArgs, json_out: bool) -> Result<()> {
    let device = args.draws.device()?;
    let trained = load_trained(&args.run, &device)
        .with_context(|| format!("loading run {}", args.run.display()))?;
    let opts = EvalOptions {
        split: args.split.split(),
        samples: args.draws.samples,
        seed: args.draws.seed,
        batch: args.draws.batch,
        rollout: args.rollout,
        ..EvalOptions::default()
    };
    let e = evaluate(&trained, &args.data, &opts, &device).with_context(|| {
        format!(
            "evaluating {} on {}",
            args.run.display(),
            args.data.display()
        )
    })?;
    if let Some(path) = &args.save_predictions {
        let (n, grid) = (e.n, &e.grid);
        let shape = |c: usize| {
            let mut s = vec![n, c];
            s.extend(grid);
            s
        };
        let field = shape(e.pred.channels);
        let input = shape(trained.file.in_channels);
        let mut sshape = vec![args.draws.samples];
        sshape.extend(&field);
        write_npz(
            path,
            &[
                ("input", &input, NpyData::F32(&e.x)),
                ("mean", &field, NpyData::F32(&e.pred.mean)),
                ("std", &field, NpyData::F32(&e.pred.std)),
                ("samples", &sshape, NpyData::F32(&e.pred.samples)),
                ("target", &field, NpyData::F32(&e.y)),
            ],
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    let kind = trained.file.model.kind.name();
    let obj = evaluation_json(&e, kind, args.draws.samples)?;
    if json_out {
        println!("{obj}");
        return Ok(());
    }
    println!(
        "{kind} on {} ({} split, {} functions, grid {:?}, {} draws)",
        args.data.display(),
        split_name(e.split),
        e.n,
        e.grid,
        args.draws.samples
    );
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            match (v.as_u64(), v.as_f64()) {
                _ if matches!(k.as_str(), "curves" | "rollout" | "resolution") => {}
                (Some(i), _) => println!("  {k:<22} {i}"),
                (None, Some(f)) => println!("  {k:<22} {f:.6}"),
                _ => println!("  {k:<22} {v}"),
            }
        }
    }
    if !e.rollout.is_empty() {
        println!("  rollout: step  rel_l2    crps      coverage_90  diverged");
        for s in &e.rollout {
            println!(
                "           {:>4}  {:<8.4}  {:<8.4}  {:<11.3}  {:.3}",
                s.step, s.report.rel_l2, s.report.crps, s.report.coverage_90, s.diverged_fraction
            );
        }
    }
    Ok(())
}
