//! `pno` — generate PDE benchmark datasets, train probabilistic neural operators, predict with them.
//!
//! ```text
//! pno generate darcy --config configs/darcy64.toml --n 200 --out data/darcy64
//! pno data check data/darcy64
//! ```

// Doc comments on the argument structs are clap's terminal help text (`[data]` means a TOML
// table there, `<model>` a placeholder), not rustdoc markup.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

mod anomaly_hook;
mod cmd;
mod config;
mod device;
mod progress;
mod telemetry;

use std::process::ExitCode;

/// mimalloc as the global allocator: the engine allocates a fresh output buffer per tensor op,
/// and glibc's malloc serves the large ones as new mmaps (page faults on every first touch)
/// where mimalloc reuses freed pages (BENCHMARKS.md, "Global allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

/// Probabilistic neural operators: PDE data, models that know how sure they are.
#[derive(Parser, Debug)]
#[command(name = "pno", version, about, long_about = None, after_help = EXAMPLES)]
struct Cli {
    /// Print results as one JSON object on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Commands,
}

const EXAMPLES: &str = "\
Examples:
  pno generate darcy --config configs/darcy64.toml --n 200 --out data/darcy64
  pno generate navier_stokes --n 1000 --shard 3/10 --out data/ns64    # 4th of 10 cluster jobs
  pno data check data/darcy64
  pno data convert darcy_train_16.pt data/darcy16
  pno data info data/darcy64 --json
  pno train --config configs/darcy64_pno_d.toml --data data/darcy64 --out runs/pno_d
  pno predict --run runs/pno_d --input data/darcy64 --samples 100 --out pred.npz
  pno calibrate --run runs/pno_d --data data/darcy64
  pno eval --run runs/pno_d --data data/darcy64 --split test --samples 100
  pno eval --run runs/pno_d --data data/darcy64 --gate configs/gate_darcy64.toml
  pno promote --run runs/pno_d --repository models --model darcy --gate configs/gate_darcy64.toml
  pno bench --suite configs/suite_smoke.toml --out reports/smoke
  pno active --config configs/darcy16_pno_d.toml --pde darcy --resolution 16 --budget 40 --batch 8 --acquisition variance --seeds 0,1,2 --out runs/al";

#[derive(Subcommand, Debug)]
enum Commands {
    /// Generate a seeded, reproducible dataset with one of the built-in PDE solvers.
    Generate(cmd::generate::GenerateArgs),
    /// Inspect, convert and quality-check datasets (ours, neuralop .pt, PDEBench HDF5, npy/npz).
    Data(cmd::data::DataArgs),
    /// Train a (probabilistic) neural operator from a TOML config; fault-tolerant, resumable.
    Train(cmd::train::TrainArgs),
    /// Active learning: label the inputs the model is least sure of with our own solvers,
    /// retrain, repeat; learning curves against random acquisition; resumable.
    Active(cmd::active::ActiveArgs),
    /// Predict mean, std, samples and quantiles with a trained run.
    Predict(cmd::predict::PredictArgs),
    /// Accuracy and uncertainty metrics of a trained run on a dataset split.
    Eval(cmd::eval::EvalArgs),
    /// Split-conformal calibration of a run's predictive spread.
    Calibrate(cmd::calibrate::CalibrateArgs),
    /// Gate a challenger run against the champion and publish it as the next version.
    Promote(cmd::promote::PromoteArgs),
    /// Run a benchmark suite (methods × PDEs × seeds) and write its report.
    Bench(cmd::bench::BenchArgs),
    /// Serve trained runs over the Open Inference Protocol v2 (REST, JSON and binary tensors).
    Serve(cmd::serve::ServeArgs),
    /// Pin, unpin, load and unload models on a running `pno serve` (operator key).
    Repository(cmd::repository::RepositoryArgs),
    /// Create, list and revoke API keys for `pno serve`.
    Keys(cmd::keys::KeysArgs),
    /// Verify a `pno serve` audit log's hash chain.
    Audit(cmd::audit::AuditArgs),
    /// Check this machine: threads, memory, CPU features, font and Chromium, CUDA driver.
    Doctor(cmd::doctor::DoctorArgs),
}

/// Logs a retried atomic write (checkpoints, run files, reports): through `tracing` when a
/// subscriber is installed (`pno serve`), on stderr otherwise.
fn log_write_retry(path: &std::path::Path, r: &pno_core::retry::Retried) {
    if tracing::dispatcher::has_been_set() {
        tracing::warn!(
            class = "transient",
            op = "write",
            path = %path.display(),
            attempt = r.attempt,
            delay_ms = r.delay.as_millis() as u64,
            error = %r.error,
            "retrying"
        );
    } else {
        eprintln!(
            "warning: writing {} failed with a transient error ({}); retrying in {} ms",
            path.display(),
            r.error,
            r.delay.as_millis()
        );
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    pno_core::set_atomic_write_observer(log_write_retry);
    let result = match cli.command {
        Commands::Generate(args) => cmd::generate::run(args, cli.json, cli.quiet),
        Commands::Data(args) => cmd::data::run(args, cli.json),
        Commands::Train(args) => cmd::train::run_train(args, cli.json, cli.quiet),
        Commands::Active(args) => cmd::active::run(args, cli.json, cli.quiet),
        Commands::Predict(args) => cmd::predict::run(args, cli.json),
        Commands::Eval(args) => cmd::eval::run(args, cli.json),
        Commands::Calibrate(args) => cmd::calibrate::run(args, cli.json),
        Commands::Promote(args) => cmd::promote::run(args, cli.json),
        Commands::Bench(args) => cmd::bench::run(args, cli.json, cli.quiet),
        Commands::Serve(args) => cmd::serve::run(args, cli.json),
        Commands::Repository(args) => cmd::repository::run(args, cli.json),
        Commands::Keys(args) => cmd::keys::run(args, cli.json),
        Commands::Audit(args) => cmd::audit::run(args, cli.json),
        Commands::Doctor(args) => cmd::doctor::run(args, cli.json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
