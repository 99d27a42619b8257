//! `pno data`: inspect, convert and quality-check datasets.

use std::path::PathBuf;

use anyhow::{Context, bail};
use pno_core::SplitFractions;
use pno_data::{CheckOptions, LeakageSplits};

/// Arguments of `pno data`.
#[derive(clap::Args, Debug)]
#[command(after_help = DATA_EXAMPLES)]
pub(crate) struct DataArgs {
    #[command(subcommand)]
    cmd: DataCmd,
}

const DATA_EXAMPLES: &str = "\
Examples:
  pno data info data/darcy64
  pno data convert darcy_train_16.pt data/darcy16
  pno data check data/darcy64 --splits train=0.8,test=0.2
  pno data check data/darcy64 --run runs/pno_d          # the splits that run trained on";

#[derive(clap::Subcommand, Debug)]
enum DataCmd {
    /// Show tensors, shapes, dtypes, statistics (min/max/mean/std, NaN/Inf) and provenance.
    #[command(after_help = "\
Reads: pno dataset folders, .npy, .npz, neuraloperator .pt, PDEBench HDF5.

Examples:
  pno data info data/darcy64
  pno data info darcy_train_16.pt --json")]
    Info {
        /// Dataset folder (manifest.json) or file (.npy, .npz, .pt, .h5/.hdf5).
        path: PathBuf,
    },
    /// Convert an external dataset into our format (manifest.json + safetensors files).
    #[command(after_help = "\
neuralop .pt: x/y gain a channel axis ([n,16,16] -> [n,1,16,16]).
PDEBench flat: tensor (N,nt,nx) -> u [N,nt,1,nx] with times; Darcy nu -> x, tensor -> y.
PDEBench grouped: data (nt,nx[,ny],nc) per group -> u [N,nt,nc,nx(,ny)].
.npy -> x; .npz keys kept. The output folder must not already hold a dataset.

Examples:
  pno data convert darcy_train_16.pt data/darcy16
  pno data convert 1D_Burgers_Sols_Nu0.001.hdf5 data/burgers_pdebench")]
    Convert {
        /// Input file (or dataset folder).
        input: PathBuf,
        /// Output dataset folder (created).
        out_dir: PathBuf,
    },
    /// Quality gate: NaN/Inf, shapes/dtypes, sample counts, checksums, ranges, constant and
    /// duplicate samples, train/test leakage, missing shard parts. Exits non-zero on failure.
    #[command(after_help = "\
On success, writes summary statistics (per tensor and channel: moments, quantiles,
histogram) to <dir>/stats.json, or to --stats-out for a single-file input.
The leakage check compares contiguous --splits fractions, or with --run the exact
(seeded) splits a training run recorded — `pno train` itself gates its data with the
splits it is about to carve.

Examples:
  pno data check data/darcy64
  pno data check data/darcy64 --splits train=0.7,validation=0.1,test=0.2 --json
  pno data check data/darcy64 --run runs/pno_d
  pno data check burgers_train_16.pt --stats-out burgers_stats.json")]
    Check {
        /// Dataset folder or file.
        path: PathBuf,
        /// Split fractions in sample order, for the leakage check.
        #[arg(long, value_parser = parse_splits, default_value = "train=0.8,test=0.2")]
        splits: SplitFractions,
        /// Check leakage across the splits this training run recorded instead.
        #[arg(long, value_name = "RUN", conflicts_with = "splits")]
        run: Option<PathBuf>,
        /// Where to write statistics for a single-file input.
        #[arg(long)]
        stats_out: Option<PathBuf>,
    },
}

/// Parses `train=0.8,validation=0.1,calibration=0,test=0.1`.
fn parse_splits(s: &str) -> Result<SplitFractions, String> {
    let mut f = SplitFractions {
        train: 0.0,
        validation: 0.0,
        calibration: 0.0,
        test: 0.0,
    };
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("expected name=fraction, got {part:?}"))?;
        let v: f64 = v
            .trim()
            .parse()
            .map_err(|_| format!("expected a number for {k}, got {v:?}"))?;
        match k.trim() {
            "train" => f.train = v,
            "validation" | "val" => f.validation = v,
            "calibration" | "cal" => f.calibration = v,
            "test" => f.test = v,
            other => {
                return Err(format!(
                    "unknown split {other:?}; expected train, validation, calibration, test"
                ));
            }
        }
    }
    f.validate().map_err(|e| e.to_string())?;
    Ok(f)
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}

/// Runs `pno data …`; `json` prints one JSON object instead of text.
pub(crate) fn run(args: DataArgs, json: bool) -> anyhow::Result<()> {
    match args.cmd {
        DataCmd::Info { path } => {
            let info =
                pno_data::info(&path).with_context(|| format!("reading {}", path.display()))?;
            if json {
                print_json(&info)?;
            } else {
                println!("{info}");
            }
        }
        DataCmd::Convert { input, out_dir } => {
            let m = pno_data::convert(&input, &out_dir).with_context(|| {
                format!("converting {} into {}", input.display(), out_dir.display())
            })?;
            if json {
                print_json(&serde_json::json!({
                    "input": input.display().to_string(),
                    "out_dir": out_dir.display().to_string(),
                    "n_samples": m.n_samples,
                    "tensors": m.tensors.iter().map(|t| serde_json::json!({"name": t.name, "shape": t.shape})).collect::<Vec<_>>(),
                    "times": m.times.as_ref().map(Vec::len),
                    "files": m.files.len(),
                }))?;
            } else {
                println!(
                    "converted {} -> {} ({} samples)",
                    input.display(),
                    out_dir.display(),
                    m.n_samples
                );
                for t in &m.tensors {
                    println!("  {} {:?} per sample", t.name, t.shape);
                }
            }
        }
        DataCmd::Check {
            path,
            splits,
            run,
            stats_out,
        } => {
            let splits = match run {
                None => LeakageSplits::Fractions(splits),
                Some(run) => {
                    let prov = pno_run::RunDir::new(&run)
                        .read_provenance()
                        .with_context(|| {
                            format!("--run {}: reading the recorded splits", run.display())
                        })?;
                    LeakageSplits::Indices(prov.splits)
                }
            };
            let opts = CheckOptions {
                splits,
                stats_out,
                ..CheckOptions::default()
            };
            let report = pno_data::check(&path, &opts)
                .with_context(|| format!("checking {}", path.display()))?;
            if json {
                let mut v = serde_json::to_value(&report)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("passed".into(), report.passed().into());
                }
                print_json(&v)?;
            } else {
                println!("{report}");
            }
            if !report.passed() {
                let names: Vec<String> = report
                    .failures()
                    .iter()
                    .map(|c| format!("{}: {}", c.name, c.detail))
                    .collect();
                bail!(
                    "data check failed for {}: {}",
                    path.display(),
                    names.join("; ")
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_splits_valid_and_invalid() {
        let f = parse_splits("train=0.7,validation=0.1,test=0.2").unwrap();
        assert_eq!((f.train, f.validation, f.test), (0.7, 0.1, 0.2));
        assert!(parse_splits("train=0.7,test=0.2").is_err());
        assert!(parse_splits("train=0.8,exam=0.2").is_err());
        assert!(parse_splits("train").is_err());
    }
}
