//! `pno promote`: gate a challenger run against the champion and publish it as the next version.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use pno_train::{Gate, PromoteOptions, promote};

use crate::cmd::eval::print_gate;
use crate::cmd::opts::{DrawOpts, SplitArg, split_name};

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  pno promote --run runs/v2 --repository models --model darcy --gate configs/gate_darcy.toml
  pno promote --run runs/v2 --repository models --model darcy --data darcy_heldout.npz --json

The challenger (--run) and the current champion (the newest version of --model in the
repository) are evaluated on the same frozen samples (the challenger's --split of --data,
default the data it was trained on; every sample of another file), with the same seed and
draws. On pass, the run is copied atomically into <repository>/<model>/<next version>/ with
a gate.json record (gate file hash, data hash, metrics of both, every check, verdict, time);
on failure nothing is written and the command exits with status 2, naming the failing
checks. Without --gate: every metric finite, and rel_l2 and crps within 5 %, nll within 0.5
and coverage_90 within 0.05 of the champion's distance to nominal.")]
pub(crate) struct PromoteArgs {
    /// The challenger's run folder.
    #[arg(long)]
    run: PathBuf,
    /// The model repository `pno serve` reads.
    #[arg(long)]
    repository: PathBuf,
    /// The model's name in the repository.
    #[arg(long)]
    model: String,
    /// Quality gate (TOML).
    #[arg(long, value_name = "FILE.toml")]
    gate: Option<PathBuf>,
    /// Evaluation data (default: the data the challenger was trained on).
    #[arg(long, short)]
    data: Option<PathBuf>,
    /// Which samples.
    #[arg(long, value_enum, default_value = "test")]
    split: SplitArg,
    #[command(flatten)]
    draws: DrawOpts,
}

pub(crate) fn run(args: PromoteArgs, json_out: bool) -> Result<()> {
    let device = args.draws.device()?;
    let gate = match &args.gate {
        None => None,
        Some(p) => {
            let (g, sha) = Gate::load(p)?;
            Some((g, p.clone(), sha))
        }
    };
    let opts = PromoteOptions {
        run: args.run.clone(),
        repository: args.repository.clone(),
        model: args.model.clone(),
        gate,
        data: args.data.clone(),
        split: args.split.split(),
        samples: args.draws.samples,
        seed: args.draws.seed,
        batch: args.draws.batch,
    };
    let p = promote(&opts, &device).with_context(|| {
        format!(
            "promoting {} to {}/{}",
            args.run.display(),
            args.repository.display(),
            args.model
        )
    })?;
    if json_out {
        println!(
            "{}",
            json!({"promoted": p.version.is_some(), "version": p.version, "champion": p.champion, "record": p.record})
        );
    } else {
        println!(
            "{} as {}/{}: evaluated on {} ({} split, {} functions, {} draws, seed {}); champion: {}",
            args.run.display(),
            args.repository.display(),
            args.model,
            p.record.data_path,
            split_name(p.record.split),
            p.record.n_functions,
            p.record.n_samples,
            p.record.seed,
            p.champion
                .map_or("none".to_string(), |v| format!("version {v}"))
        );
        print_gate(&p.record.rows, false);
        if let Some(v) = p.version {
            println!(
                "promoted: {}",
                pno_run::version_dir(&args.repository, &args.model, v).display()
            );
        }
    }
    if p.version.is_none() {
        let failed: Vec<String> = p
            .record
            .failures()
            .iter()
            .map(|r| format!("{} ({} vs {})", r.check, r.value, r.threshold))
            .collect();
        eprintln!(
            "error: {} refused: the gate failed: {}",
            args.run.display(),
            failed.join("; ")
        );
        std::process::exit(2);
    }
    Ok(())
}
