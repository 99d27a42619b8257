//! `pno generate`: run a PDE generator over a (shard of a) sample range and write a dataset.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use pno_core::ShardSpec;
use serde_json::{Value, json};

use crate::config::{apply_set, read_toml};
use crate::progress::bar;

/// Keys of a generate config file that describe the dataset rather than the PDE.
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
    let keys = pno_gen::take_dataset_keys(&mut cfg)?;
    let (named, n_cfg, seed_cfg, spf_cfg) = (keys.pde, keys.n, keys.seed, keys.samples_per_file);
    if let Some(v) = named {
        let named = pno_solvers::canonical_pde(&v)?;
        if named != pde {
            bail!("config key `pde`: the file is for {v}, but the command asked for {pde}");
        }
    }
    let n = args.n.or(n_cfg.map(|v| v as usize)).unwrap_or(16);
    let seed = args.seed.or(seed_cfg).unwrap_or(0);
    if let Some(r) = args.resolution {
        cfg.insert("resolution".into(), json!(r));
    }
    if n == 0 {
        bail!("--n: expected at least 1 sample, got 0");
    }
    let samples_per_file = args.samples_per_file.or(spf_cfg.map(|v| v as usize));
    if samples_per_file == Some(0) {
        bail!("--samples-per-file: expected at least 1, got 0");
    }
    if args.threads == Some(0) {
        bail!("--threads: expected at least 1, got 0");
    }
    let job = pno_gen::Job {
        pde,
        params: cfg,
        n,
        seed,
        shard: args.shard,
        samples_per_file,
        threads: args.threads,
    };
    let range = args.shard.range(n);
    let pb = bar(range.len() as u64, pde, quiet || json);
    let w = pno_gen::generate(&job, &args.out, &|k| pb.inc(k))
        .with_context(|| format!("generating {pde} into {}", args.out.display()))?;
    pb.finish_and_clear();
    let (secs, count, threads) = (w.seconds, w.samples, w.threads);
    let layout: Vec<Value> = w
        .tensors
        .iter()
        .map(|(name, shape)| json!({"name": name, "shape": shape}))
        .collect();
    let summary = json!({
        "out": args.out,
        "pde": pde,
        "recipe": w.recipe,
        "samples": count,
        "first_sample": w.first_sample,
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
        let shapes: Vec<String> = w
            .tensors
            .iter()
            .map(|(name, shape)| format!("{name} {shape:?}"))
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
