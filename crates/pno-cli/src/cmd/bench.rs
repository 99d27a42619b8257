//! `pno bench`: run a suite (methods × PDEs × seeds) and write its report.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use pno_bench::{RunOptions, Suite, run_suite, write_report};

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  pno bench --suite configs/suite_smoke.toml --out reports/smoke
  pno bench --suite configs/suite_paper.toml --out reports/paper --dry-run   # list the cells
  pno bench --suite configs/suite_smoke.toml --out reports/smoke --report-only

Each cell (PDE × method × seed) trains a run, calibrates it if the method is conformal,
evaluates it on the PDE's test split (and rolls it out for trajectory data), and records
cell.json; an interrupted suite continues where it stopped (finished cells are kept,
an interrupted training resumes from its last checkpoint). The report: results.json,
results.csv, tables.md, tables.tex, plots/*.svg|png and index.html.")]
pub(crate) struct BenchArgs {
    /// Suite file (TOML).
    #[arg(long)]
    suite: PathBuf,
    /// Output folder (data, runs, results and report).
    #[arg(long, short)]
    out: PathBuf,
    /// Validate the suite and list its cells without running anything.
    #[arg(long)]
    dry_run: bool,
    /// Rewrite the report from the recorded cells without running missing ones.
    #[arg(long)]
    report_only: bool,
    /// Inputs per forward pass in evaluation.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Backend: cpu, or cuda / cuda:N in a CUDA build.
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub(crate) fn run(args: BenchArgs, json_out: bool, quiet: bool) -> Result<()> {
    let suite = Suite::load(&args.suite)?;
    let cells = suite.cells();
    if args.dry_run {
        let ids: Vec<String> = cells.iter().map(|&c| suite.cell_id(c)).collect();
        if json_out {
            println!("{}", json!({"suite": suite.name, "cells": ids}));
        } else {
            println!("suite {}: {} cells", suite.name, ids.len());
            for id in ids {
                println!("  {id}");
            }
        }
        return Ok(());
    }
    let device = crate::device::select_device(&args.device)?;
    let opts = RunOptions {
        device,
        batch: args.batch.max(1),
    };
    let mut log = |line: &str| {
        if !quiet && !json_out {
            eprintln!("{line}");
        }
    };
    let results = if args.report_only {
        let mut done = Vec::new();
        for &c in &cells {
            let path = pno_bench::runner::cell_dir(&args.out, &suite, c).join("cell.json");
            if let Ok(bytes) = std::fs::read(&path) {
                done.push(
                    serde_json::from_slice(&bytes)
                        .with_context(|| format!("reading {}", path.display()))?,
                );
            }
        }
        done
    } else {
        run_suite(&suite, &args.out, &opts, &mut log)?
    };
    let files = write_report(&suite, &results, &args.out)
        .with_context(|| format!("writing the report to {}", args.out.display()))?;
    if json_out {
        println!(
            "{}",
            json!({"suite": suite.name, "out": args.out, "cells": results.len(),
                   "files": files.files})
        );
    } else {
        println!("{}", files.markdown);
        println!(
            "report: {} ({} cells)",
            args.out.join("index.html").display(),
            results.len()
        );
    }
    Ok(())
}
