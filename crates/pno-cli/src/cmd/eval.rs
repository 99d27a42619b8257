//! `pno eval`: metrics of a trained run on a dataset split.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{Value, json};

use pno_data::{NpyData, write_npz};
use pno_run::{GateRow, load_trained};
use pno_train::gate::measure;
use pno_train::promote::{champion_evidence, data_sha};
use pno_train::{EvalOptions, Evaluation, Evidence, Gate, evaluate};

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
adds per-step metrics and the fraction of sample trajectories that diverged.

--gate FILE.toml checks the metrics against thresholds (absolute bounds, nominal coverage
inside its binomial confidence interval, p99 predict latency and peak memory, and with
--champion RUN non-inferiority margins against a champion evaluated on the same samples):
it prints a pass/fail table (or `gate` in --json) and exits with status 2 on failure.
  pno eval --run runs/v2 --data data/darcy64 --gate configs/gate_darcy.toml --champion runs/v1")]
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
    /// Quality gate (TOML): print a pass/fail table and exit non-zero on failure.
    #[arg(long, value_name = "FILE.toml")]
    gate: Option<PathBuf>,
    /// Champion run (or repository version folder) for the gate's relative checks, evaluated on
    /// the same samples, seed and draws.
    #[arg(long, value_name = "RUN", requires = "gate")]
    champion: Option<PathBuf>,
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
    let mut obj = evaluation_json(&e, kind, args.draws.samples)?;
    let verdict = match &args.gate {
        None => None,
        Some(path) => {
            let (gate, _) = Gate::load(path)?;
            let mut evidence = Evidence::of(&e)?;
            if let Some(p) = &gate.performance {
                evidence.performance = Some(measure(
                    &trained,
                    &e.x,
                    &e.grid,
                    p,
                    args.draws.samples,
                    &device,
                )?);
            }
            let champion = match &args.champion {
                None => None,
                Some(dir) => {
                    let sha = data_sha(&trained, &args.data)?;
                    Some(
                        champion_evidence(dir, &args.data, &sha, &e, &opts, &device)
                            .with_context(|| format!("evaluating champion {}", dir.display()))?,
                    )
                }
            };
            let rows = gate.check(&evidence, champion.as_ref());
            let passed = rows.iter().all(|r| r.passed);
            if let Some(m) = obj.as_object_mut() {
                m.insert(
                    "gate".into(),
                    json!({"file": path, "passed": passed, "rows": rows, "relative_checked": champion.is_some()}),
                );
            }
            Some((rows, passed, gate.has_relative() && champion.is_none()))
        }
    };
    if json_out {
        println!("{obj}");
        return gate_exit(verdict.as_ref());
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
    if let Some((rows, _, skipped)) = &verdict {
        print_gate(rows, *skipped);
    }
    gate_exit(verdict.as_ref())
}

/// Exit status 2 (with the failing checks named) when a gate failed.
fn gate_exit(verdict: Option<&(Vec<GateRow>, bool, bool)>) -> Result<()> {
    match verdict {
        Some((rows, false, _)) => {
            let failed: Vec<&str> = rows
                .iter()
                .filter(|r| !r.passed)
                .map(|r| r.check.as_str())
                .collect();
            eprintln!("error: gate failed: {}", failed.join("; "));
            std::process::exit(2);
        }
        _ => Ok(()),
    }
}

/// The pass/fail table of a gate.
pub(crate) fn print_gate(rows: &[GateRow], relative_skipped: bool) {
    println!("  gate:");
    println!(
        "    {:<4}  {:<48}  {:>12}  {:>12}  threshold",
        "", "check", "value", "champion"
    );
    for r in rows {
        let champion = r.champion.map_or(String::new(), |c| format!("{c:.6}"));
        println!(
            "    {:<4}  {:<48}  {:>12.6}  {:>12}  {}",
            if r.passed { "PASS" } else { "FAIL" },
            r.check,
            r.value,
            champion,
            r.threshold
        );
    }
    if relative_skipped {
        println!("    (no champion given: relative checks skipped; pass --champion RUN)");
    }
    let ok = rows.iter().all(|r| r.passed);
    println!("  verdict: {}", if ok { "PASS" } else { "FAIL" });
}
