//! `pno bench`: run a suite (methods × PDEs × seeds), or part of one on a job array, and write
//! its report; `pno bench merge` joins the parts.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use pno_bench::{Part, RunOptions, Suite, merge, run_suite, write_report};

#[derive(Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "\
Examples:
  pno bench --suite configs/suite_smoke.toml --out reports/smoke
  pno bench --suite configs/suite_paper.toml --out reports/paper --list-cells --cells 0/8
  pno bench --suite configs/suite_smoke.toml --out reports/smoke --report-only
  pno bench --suite configs/suite_paper.toml --out /shared/paper --cells 3/8     # part 3 of 8
  sbatch --array=0-7 ...   # each task: pno bench --suite ... --out /shared/paper  (reads SLURM_ARRAY_*)
  pno bench merge /shared/paper --suite configs/suite_paper.toml --out reports/paper

Each cell (PDE × method × seed) trains a run, calibrates it if the method is conformal,
evaluates it on the PDE's test split (and rolls it out for trajectory data), and records
cell.json (with the suite's fingerprint and the code's git commit); an interrupted suite
continues where it stopped. The report: results.json, results.csv, tables.md, tables.tex,
plots/*.svg|png and index.html.

Job arrays: --cells I/K (0-based I) runs part I of K. Cells are assigned by a hash of their
(PDE, training method, seed), so adding a seed or method never moves the others; a derived
method runs with its base. Without --cells the part comes from SLURM_ARRAY_TASK_ID
(- SLURM_ARRAY_TASK_MIN) of SLURM_ARRAY_TASK_COUNT, or JOB_COMPLETION_INDEX of
PNO_CELLS_COUNT (Kubernetes Indexed Job). Parts may share one --out folder (generated data
is shared safely) or use their own; `pno bench merge` checks that every cell is there
exactly once and from this very suite, then writes the report."
)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    cmd: Option<BenchCmd>,
    /// Suite file (TOML).
    #[arg(long)]
    suite: Option<PathBuf>,
    /// Output folder (data, runs, results and report).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Validate the suite and list its cells (with their part under --cells) without running.
    #[arg(long, alias = "dry-run")]
    list_cells: bool,
    /// Run only part I (0-based) of K.
    #[arg(long, value_name = "I/K")]
    cells: Option<String>,
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

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// Join the parts of a suite run on a job array into one report.
    Merge {
        /// Part output folders (one shared folder, or one per part).
        #[arg(required = true)]
        parts: Vec<PathBuf>,
        /// The suite file the parts ran.
        #[arg(long)]
        suite: PathBuf,
        /// Report folder.
        #[arg(long, short)]
        out: PathBuf,
    },
}

fn part(args: &BenchArgs) -> Result<Option<Part>> {
    if let Some(s) = &args.cells {
        return Ok(Some(s.parse()?));
    }
    Ok(Part::from_env(&|k| std::env::var(k).ok()).transpose()?)
}

pub(crate) fn run(args: BenchArgs, json_out: bool, quiet: bool) -> Result<()> {
    let _telemetry = crate::telemetry::batch("pno-bench")?;
    if let Some(BenchCmd::Merge { parts, suite, out }) = &args.cmd {
        let suite = Suite::load(suite)?;
        let results = merge(&suite, parts)?;
        let files = write_report(&suite, &results, out)
            .with_context(|| format!("writing the report to {}", out.display()))?;
        if json_out {
            println!(
                "{}",
                json!({"suite": suite.name, "sha256": suite.sha256, "out": out,
                       "cells": results.len(), "files": files.files})
            );
        } else {
            println!("{}", files.markdown);
            println!(
                "merged {} cells from {} part folder(s): {}",
                results.len(),
                parts.len(),
                out.join("index.html").display()
            );
        }
        return Ok(());
    }
    let Some(suite_path) = &args.suite else {
        bail!("--suite: expected a suite file (or `pno bench merge`)");
    };
    let suite = Suite::load(suite_path)?;
    let part = part(&args)?;
    let cells = suite.cells();
    if args.list_cells {
        let list: Vec<serde_json::Value> = cells
            .iter()
            .map(|&c| {
                let p = part.map(|p| suite.part_of(c, p.count));
                json!({"cell": suite.cell_id(c), "unit": suite.unit_id(c), "part": p,
                       "selected": part.is_none_or(|q| p == Some(q.index))})
            })
            .collect();
        if json_out {
            println!(
                "{}",
                json!({"suite": suite.name, "sha256": suite.sha256,
                       "cells": cells.iter().map(|&c| suite.cell_id(c)).collect::<Vec<_>>(),
                       "details": list,
                       "part": part.map(|p| format!("{}/{}", p.index, p.count))})
            );
        } else {
            println!(
                "suite {} ({} cells, sha256 {})",
                suite.name,
                cells.len(),
                suite.sha256
            );
            for v in list {
                let mark = if v["selected"] == true { "*" } else { " " };
                match v["part"].as_u64() {
                    Some(p) => {
                        println!("  {mark} {:<40} part {p}", v["cell"].as_str().unwrap_or(""))
                    }
                    None => println!("  {}", v["cell"].as_str().unwrap_or("")),
                }
            }
        }
        return Ok(());
    }
    let Some(out) = &args.out else {
        bail!("--out: expected an output folder");
    };
    let device = crate::device::select_device(&args.device)?;
    let opts = RunOptions {
        device,
        batch: args.batch.max(1),
        part,
    };
    let mut log = |line: &str| {
        if !quiet && !json_out {
            eprintln!("{line}");
        }
    };
    let results = if args.report_only {
        let mut done = Vec::new();
        for &c in &cells {
            let path = pno_bench::runner::cell_dir(out, &suite, c).join("cell.json");
            if let Ok(bytes) = std::fs::read(&path) {
                done.push(
                    serde_json::from_slice(&bytes)
                        .with_context(|| format!("reading {}", path.display()))?,
                );
            }
        }
        done
    } else {
        let span = tracing::info_span!("suite", suite = %suite.path.display(), cells = cells.len());
        span.in_scope(|| run_suite(&suite, out, &opts, &mut log))?
    };
    if let Some(p) = part {
        // A part writes its cells only; the report comes from `pno bench merge`.
        if json_out {
            println!(
                "{}",
                json!({"suite": suite.name, "sha256": suite.sha256, "out": out,
                       "part": format!("{}/{}", p.index, p.count), "cells": results.len()})
            );
        } else {
            println!(
                "part {}/{} of suite {}: {} cells in {} (merge with `pno bench merge`)",
                p.index,
                p.count,
                suite.name,
                results.len(),
                out.display()
            );
        }
        return Ok(());
    }
    let files = write_report(&suite, &results, out)
        .with_context(|| format!("writing the report to {}", out.display()))?;
    if json_out {
        println!(
            "{}",
            json!({"suite": suite.name, "out": out, "cells": results.len(),
                   "files": files.files})
        );
    } else {
        println!("{}", files.markdown);
        println!(
            "report: {} ({} cells)",
            out.join("index.html").display(),
            results.len()
        );
    }
    Ok(())
}
