//! The `pno-load` command: open-loop load against a loopback `pno serve`, and MTTR analysis.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use pno_load::{RetryPolicy, RunConfig, Summary, Target};

/// Open-loop HTTP load generator for chaos and overload benchmarks of `pno serve` (loopback only).
///
/// Examples:
///   pno-load --url http://127.0.0.1:8000/v2/models/pno/infer --body req.json \
///            --header 'Authorization: Bearer K' --rate 200 --duration 30 \
///            --out timeline.jsonl --summary summary.json
///   pno-load mttr --timeline timeline.jsonl --faults faults.json
#[derive(Parser, Debug)]
#[command(
    version,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true,
    verbatim_doc_comment
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Time to recover from each fault window of a timeline, and in-window success fractions.
    Mttr {
        /// Timeline JSONL written by `--out`.
        #[arg(long)]
        timeline: PathBuf,
        /// JSON array of `{"name", "start_ms", "end_ms", ["class"]}` (ms since the run started).
        #[arg(long)]
        faults: PathBuf,
        /// Failure-free time that counts as recovered, ms.
        #[arg(long, default_value_t = 2000.0)]
        quiet_ms: f64,
        /// Also write the JSON report here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Target URL: http://127.0.0.1|localhost|[::1][:PORT]/PATH.
    #[arg(long, required = true)]
    url: Option<String>,
    /// Request body file: POST it (GET without).
    #[arg(long)]
    body: Option<PathBuf>,
    /// Extra header 'Name: value' (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Arrivals per second.
    #[arg(long, required = true)]
    rate: Option<f64>,
    /// Seconds during which requests start.
    #[arg(long, required = true)]
    duration: Option<f64>,
    /// Client timeout per request (retries included), ms.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Most outstanding requests; arrivals beyond it are counted as client_dropped.
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
    /// Poisson arrivals instead of evenly spaced ones.
    #[arg(long)]
    poisson: bool,
    /// On 429/503 with Retry-After, wait (capped at 10 s, plus full jitter) and retry up to 3 times.
    #[arg(long)]
    retry_after: bool,
    /// Write the per-request timeline here (JSONL).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the summary here (JSON).
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Seed of the arrivals and the retry jitter.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> ExitCode {
    match dispatch(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Mttr {
            timeline,
            faults,
            quiet_ms,
            out,
        }) => {
            let records = pno_load::read_timeline(&timeline)?;
            let faults = pno_load::read_faults(&faults)?;
            let report = pno_load::mttr(&records, &faults, quiet_ms);
            let json = serde_json::to_string_pretty(&report)?;
            println!("{}\n{json}", report.markdown());
            if let Some(out) = out {
                std::fs::write(&out, json + "\n")
                    .with_context(|| format!("write {}", out.display()))?;
            }
            Ok(())
        }
        None => load(cli.run),
    }
}

fn load(args: RunArgs) -> Result<()> {
    let (Some(url), Some(rate), Some(duration)) = (args.url, args.rate, args.duration) else {
        bail!("--url, --rate and --duration are required");
    };
    let target = Target::parse(&url)?;
    if !(duration.is_finite() && duration > 0.0 && duration < 1e7) {
        bail!("invalid --duration: expected seconds in (0, 1e7), got {duration}");
    }
    let body = match &args.body {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("read --body {}", path.display()))?)
        }
        None => None,
    };
    let headers = args
        .headers
        .iter()
        .map(|h| pno_load::parse_header(h))
        .collect::<Result<Vec<_>, _>>()?;
    let cfg = RunConfig {
        target,
        headers,
        body,
        rate,
        duration: Duration::from_secs_f64(duration),
        timeout: Duration::from_millis(args.timeout_ms),
        max_in_flight: args.max_in_flight,
        poisson: args.poisson,
        retry: if args.retry_after {
            RetryPolicy::default()
        } else {
            RetryPolicy::NONE
        },
        seed: args.seed,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let records = runtime.block_on(pno_load::run(&cfg))?;
    let summary = Summary::of(&records, duration);
    if let Some(path) = &args.out {
        pno_load::write_timeline(path, &records)?;
    }
    if let Some(path) = &args.summary {
        let json = serde_json::to_string_pretty(&summary)? + "\n";
        std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
    }
    print!("{}", summary.markdown());
    Ok(())
}
