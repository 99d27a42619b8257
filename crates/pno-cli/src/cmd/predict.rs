//! `pno predict`: mean, std, draws and quantiles of a trained run, in physical units.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;

use pno_data::{NpyData, open_any, write_npz};
use pno_run::{PredictRequest, load_trained};

use crate::cmd::opts::DrawOpts;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  pno predict --run runs/pno_d --input data/darcy64 --samples 100 --out pred.npz
  pno predict --run runs/pno_d --input x.npy --samples 32 --seed 7 --out pred.npz
  pno predict --run runs/fno16 --input darcy_test_32.pt --samples 1 --out sr.npz   # other resolution

Writes mean, std, samples [n_samples, n, c, ...], quantiles [levels, n, c, ...],
quantile_levels (and aleatoric_var where the model separates it), in physical units.
The same seed gives the same output; any batch size gives the same draws.")]
pub(crate) struct PredictArgs {
    /// Run folder written by `pno train`.
    #[arg(long)]
    run: PathBuf,
    /// Inputs: any supported dataset (its x tensor) or a .npy array [n, c, ...].
    #[arg(long, short)]
    input: PathBuf,
    #[command(flatten)]
    draws: DrawOpts,
    /// Quantile levels, comma-separated.
    #[arg(
        long,
        default_value = "0.025,0.05,0.25,0.5,0.75,0.95,0.975",
        value_delimiter = ','
    )]
    quantiles: Vec<f64>,
    /// Output .npz file.
    #[arg(long, short)]
    out: PathBuf,
}

/// Inputs `[n, c, points]` and grid from any supported path.
fn read_inputs(
    path: &Path,
    name: &str,
    channels: usize,
    axes: usize,
) -> Result<(Vec<f32>, usize, Vec<usize>)> {
    let src = open_any(path).with_context(|| format!("reading inputs {}", path.display()))?;
    let set = src.to_samples()?;
    let t = set
        .tensors
        .iter()
        .find(|(n, _)| n == name)
        .or_else(|| {
            if src.format == pno_data::Format::Npy {
                set.tensors.first()
            } else {
                None
            }
        })
        .map(|(_, t)| t)
        .with_context(|| format!("{}: no tensor named {name:?}", path.display()))?;
    let s = t.shape().to_vec();
    // [n, c, spatial…] or, without a channel axis for one-channel models, [n, spatial…].
    let (n, c, grid) = if s.len() == axes + 2 {
        (s[0], s[1], s[2..].to_vec())
    } else if s.len() == axes + 1 && channels == 1 {
        (s[0], 1, s[1..].to_vec())
    } else {
        bail!(
            "{}: tensor {name:?}: expected [n, {channels}, {} spatial axes], got shape {s:?}",
            path.display(),
            axes
        );
    };
    if c != channels {
        bail!(
            "{}: tensor {name:?}: expected {channels} channel(s), got {c} (shape {s:?})",
            path.display()
        );
    }
    Ok((t.to_f32_vec(), n, grid))
}

pub(crate) fn run(args: PredictArgs, json_out: bool) -> Result<()> {
    let samples = args.draws.samples;
    if samples == 0 || samples > 100_000 {
        bail!("--samples: expected 1..=100000, got {samples}");
    }
    if let Some(q) = args.quantiles.iter().find(|q| !(0.0..=1.0).contains(*q)) {
        bail!("--quantiles: expected levels in [0, 1], got {q}");
    }
    let device = args.draws.device()?;
    let trained = load_trained(&args.run, &device)
        .with_context(|| format!("loading run {}", args.run.display()))?;
    let name = trained.file.data.x.clone();
    let (x, n, grid) = read_inputs(
        &args.input,
        &name,
        trained.file.in_channels,
        trained.file.grid.len(),
    )?;
    let req = PredictRequest {
        x: &x,
        n,
        grid: &grid,
        n_samples: samples,
        seed: args.draws.seed,
        batch: args.draws.batch,
        cancel: None,
    };
    let pred = trained.predict(&req, &device)?;
    let q = pred.quantiles(&args.quantiles);
    let c = pred.channels;
    let mut field = vec![n, c];
    field.extend(&grid);
    let mut sshape = vec![samples];
    sshape.extend(&field);
    let mut qshape = vec![args.quantiles.len()];
    qshape.extend(&field);
    let levels: Vec<f64> = args.quantiles.clone();
    let mut entries: Vec<(&str, Vec<usize>, NpyData<'_>)> = vec![
        ("mean", field.clone(), NpyData::F32(&pred.mean)),
        ("std", field.clone(), NpyData::F32(&pred.std)),
        ("samples", sshape, NpyData::F32(&pred.samples)),
        ("quantiles", qshape, NpyData::F32(&q)),
        ("quantile_levels", vec![levels.len()], NpyData::F64(&levels)),
    ];
    if let Some(a) = &pred.aleatoric_var {
        entries.push(("aleatoric_var", field.clone(), NpyData::F32(a)));
    }
    let refs: Vec<(&str, &[usize], NpyData<'_>)> = entries
        .iter()
        .map(|(k, s, d)| (*k, s.as_slice(), *d))
        .collect();
    write_npz(&args.out, &refs).with_context(|| format!("writing {}", args.out.display()))?;
    if json_out {
        println!(
            "{}",
            json!({"out": args.out, "n": n, "samples": samples, "grid": grid, "channels": c, "seed": args.draws.seed, "kind": trained.file.model.kind.name()})
        );
    } else {
        println!(
            "predicted {n} input(s) on grid {grid:?} with {} draws ({}) -> {}",
            samples,
            trained.file.model.kind.name(),
            args.out.display()
        );
    }
    Ok(())
}
