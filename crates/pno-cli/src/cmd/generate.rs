//! `pno generate`: run a PDE generator over a (shard of a) sample range and write a dataset.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use pno_core::ShardSpec;
use pno_data::{DatasetHeader, DatasetWriter, TensorSpec};
use rayon::prelude::*;
use serde_json::{Value, json};

use crate::config::{apply_set, read_toml};
use crate::progress::bar;

/// Keys of a generate config file that describe the dataset rather than the PDE.
const DATASET_KEYS: &[&str] = &["pde", "n", "seed", "samples_per_file"];

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  pno generate darcy --n 100 --resolution 64 --seed 1 --out data/darcy64
  pno generate darcy --config configs/darcy421.toml --out data/darcy421
  pno generate burgers --set recipe=v1000 --set output=series --n 50 --out data/burgers
  pno generate ns --config configs/ns64_ci.toml --shard 0/4 --out data/ns64   # part 0 of 4

The config file holds the PDE's parameters (see configs/*.toml) and may also set
n, seed and samples_per_file; flags override the file, --set overrides any key.
The same seed gives byte-identical files whatever --threads is; the K parts of
--shard I/K together hold exactly the samples of the unsharded run.
PDEs: darcy, burgers, navier_stokes (ns), ks, heat, wave.")]
pub(crate) struct GenerateArgs {
    /// PDE to solve: darcy, burgers, navier_stokes (ns), ks, heat, wave.
    pde: String,
    /// TOML config with the PDE parameters (and optionally n, seed, samples_per_file).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Number of samples of the whole (unsharded) dataset [default: 16].
    #[arg(long)]
    n: Option<usize>,
    /// Output spatial resolution (grid points per axis).
    #[arg(long, short)]
    resolution: Option<usize>,
    /// Base seed; sample i draws from stream i of this seed [default: 0].
    #[arg(long, short)]
    seed: Option<u64>,
    /// Output dataset folder.
    #[arg(long, short)]
    out: PathBuf,
    /// Write only part I of K (zero-based), e.g. 0/4, for cluster job arrays.
    #[arg(long, default_value = "0/1")]
    shard: ShardSpec,
    /// Override a config key, e.g. --set nu=1e-3 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Worker threads [default: all cores].
    #[arg(long, short = 'j')]
    threads: Option<usize>,
    /// Samples per safetensors file [default: 1024 or fewer so a file stays under ~512 MiB].
    #[arg(long)]
    samples_per_file: Option<usize>,
}

pub(crate) fn run(args: GenerateArgs, json: bool, quiet: bool) -> Result<()> {
    let pde = pno_solvers::canonical_pde(&args.pde)?;
    let mut cfg = match &args.config {
        Some(p) => read_toml(p)?,
        None => serde_json::Map::new(),
    };
    for s in &args.set {
        apply_set(&mut cfg, s)?;
    }
    let take_u64 = |cfg: &mut serde_json::Map<String, Value>, key: &str| -> Result<Option<u64>> {
        match cfg.remove(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).with_context(|| {
                format!("config key `{key}`: expected a non-negative integer, got {v}")
            }),
        }
    };
    if let Some(v) = cfg.remove("pde") {
        let named = v.as_str().map(pno_solvers::canonical_pde).transpose()?;
        if named != Some(pde) {
            bail!("config key `pde`: the file is for {v}, but the command asked for {pde}");
        }
    }
    let n = args
        .n
        .or(take_u64(&mut cfg, "n")?.map(|v| v as usize))
        .unwrap_or(16);
    let seed = args.seed.or(take_u64(&mut cfg, "seed")?).unwrap_or(0);
    let spf_cfg = take_u64(&mut cfg, "samples_per_file")?.map(|v| v as usize);
    debug_assert!(DATASET_KEYS.iter().all(|k| !cfg.contains_key(*k)));
    if let Some(r) = args.resolution {
        cfg.insert("resolution".into(), json!(r));
    }
    if n == 0 {
        bail!("--n: expected at least 1 sample, got 0");
    }

    let generator = pno_solvers::build(pde, Value::Object(cfg))?;
    let layout = generator.layout();
    let bytes_per_sample: usize = layout.iter().map(|t| t.len() * 4).sum();
    let samples_per_file = args
        .samples_per_file
        .or(spf_cfg)
        .unwrap_or_else(|| (512 * 1024 * 1024 / bytes_per_sample.max(1)).clamp(1, 1024));
    if samples_per_file == 0 {
        bail!("--samples-per-file: expected at least 1, got 0");
    }
    let range = args.shard.range(n);
    let header = DatasetHeader {
        pde: pde.to_string(),
        recipe: generator.recipe().to_string(),
        solver: generator.solver(),
        parameters: generator.parameters(),
        seed,
        n_samples: n,
        tensors: layout
            .iter()
            .map(|t| TensorSpec {
                name: t.name.clone(),
                shape: t.shape.clone(),
            })
            .collect(),
        times: generator.times(),
        shard: args.shard,
        generator: format!("pno-physics-bench {}", env!("CARGO_PKG_VERSION")),
    };

    let pool = {
        let mut b = rayon::ThreadPoolBuilder::new();
        if let Some(t) = args.threads {
            if t == 0 {
                bail!("--threads: expected at least 1, got 0");
            }
            b = b.num_threads(t);
        }
        b.build().context("starting worker threads")?
    };
    let threads = pool.current_num_threads();
    let mut writer = DatasetWriter::create(&args.out, header, samples_per_file)
        .with_context(|| format!("creating dataset in {}", args.out.display()))?;

    let pb = bar(range.len() as u64, pde, quiet || json);
    let started = Instant::now();
    // Samples are computed in parallel in chunks and written in index order by a separate
    // writer thread (checksums and statistics overlap with the next chunk's computation), so
    // memory stays bounded and the files do not depend on the thread count.
    let chunk = (threads * 8).max(8);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Vec<Vec<f32>>>>(2);
    std::thread::scope(|scope| -> Result<()> {
        let writer_thread = scope.spawn(move || -> Result<()> {
            for samples in rx {
                for s in &samples {
                    writer.push(s)?;
                }
            }
            writer.finish()?;
            Ok(())
        });
        let mut next = range.start;
        let mut produced: Result<()> = Ok(());
        while next < range.end {
            let end = (next + chunk).min(range.end);
            let computed: Result<Vec<Vec<Vec<f32>>>, _> = pool.install(|| {
                (next..end)
                    .into_par_iter()
                    .map(|i| {
                        let s = generator.sample(seed, i as u64).map(|tensors| {
                            tensors
                                .into_iter()
                                .map(|v| v.into_iter().map(|x| x as f32).collect())
                                .collect()
                        });
                        pb.inc(1);
                        s
                    })
                    .collect()
            });
            match computed {
                Ok(samples) => {
                    if tx.send(samples).is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    produced = Err(e.into());
                    break;
                }
            }
            next = end;
        }
        drop(tx);
        let written = writer_thread
            .join()
            .map_err(|_| anyhow::anyhow!("the dataset writer thread panicked"))?;
        produced?;
        written
    })?;
    pb.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let count = range.len();
    let summary = json!({
        "out": args.out,
        "pde": pde,
        "recipe": generator.recipe(),
        "samples": count,
        "first_sample": range.start,
        "shard": args.shard.to_string(),
        "seed": seed,
        "tensors": layout,
        "seconds": secs,
        "samples_per_second": count as f64 / secs.max(1e-12),
        "threads": threads,
    });
    if json {
        println!("{summary}");
    } else {
        let shapes: Vec<String> = layout
            .iter()
            .map(|t| format!("{} {:?}", t.name, t.shape))
            .collect();
        println!(
            "wrote {count} {pde} samples ({}) to {} in {secs:.2} s ({:.2} samples/s, {threads} threads)",
            shapes.join(", "),
            args.out.display(),
            count as f64 / secs.max(1e-12),
        );
    }
    Ok(())
}
