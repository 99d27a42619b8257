//! Test fixtures (feature `testing`) for the integration tests of this crate and of the crates
//! that load its runs: a learnable synthetic operator written as `.npz`, a tiny run
//! configuration, and a tiny trained run that is built once and then reused.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use pno_data::{NpyData, write_npz};
use pno_models::burn::tensor::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Result, io_err};
use crate::{Quiet, RunConfig, TrainOptions, train};
use pno_run::load_trained;

/// Side of the square grid of [`synthetic_npz`].
pub const GRID: usize = 16;

/// Bumped whenever [`synthetic_npz`], [`tiny_config`] or what a run folder holds change, so that
/// [`cached_tiny_run`] never reuses a run trained on other data, with another configuration, or
/// without files newer code writes (2: `reference.json`).
const FIXTURE_VERSION: u32 = 2;

/// Writes `dir/data.npz` and returns its path: `n` samples of a learnable operator on a
/// [`GRID`]×[`GRID`] periodic grid, tensors `x` and `y` of shape `[n, 1, GRID, GRID]` (f32).
///
/// `x` is a random combination of three Fourier modes and a constant (coefficients uniform in
/// [-1, 1), ChaCha8 seeded 42, so the file is the same on every call); `y` = g + 0.3·g², where
/// g is the mean of `x` shifted by one cell along each axis.
pub fn synthetic_npz(dir: &Path, n: usize) -> Result<PathBuf> {
    let s = GRID;
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut x = Vec::with_capacity(n * s * s);
    let mut y = Vec::with_capacity(n * s * s);
    for _ in 0..n {
        let a: [f32; 4] = std::array::from_fn(|_| rng.random::<f32>() * 2.0 - 1.0);
        let f = |i: usize, j: usize| {
            let (u, v) = (i as f32 / s as f32, j as f32 / s as f32);
            let t = std::f32::consts::TAU;
            a[0] * (t * u).sin() + a[1] * (t * v).cos() + a[2] * (t * (u + v)).sin() + a[3]
        };
        for i in 0..s {
            for j in 0..s {
                x.push(f(i, j));
            }
        }
        for i in 0..s {
            for j in 0..s {
                let g = 0.5 * (f((i + 1) % s, j) + f(i, (j + 1) % s));
                y.push(g + 0.3 * g * g);
            }
        }
    }
    let path = dir.join("data.npz");
    let shape = [n, 1, s, s];
    write_npz(
        &path,
        &[
            ("x", &shape, NpyData::F32(&x)),
            ("y", &shape, NpyData::F32(&y)),
        ],
    )?;
    Ok(path)
}

/// A run configuration small enough for tests: model `kind` with 8 hidden channels, 2 layers,
/// 6×6 modes and 16 lifting/projection channels; `epochs` epochs of batch 8 at lr 3e-3, seed 3;
/// 8 test samples and a fifth of the rest for validation.
pub fn tiny_config(kind: &str, epochs: usize) -> Result<RunConfig> {
    RunConfig::from_value(serde_json::json!({
        "data": {"n_test": 8, "val_fraction": 0.2},
        "model": {"kind": kind, "hidden_channels": 8, "n_layers": 2, "n_modes": [6, 6],
                  "lifting_channels": 16, "projection_channels": 16},
        "train": {"seed": 3, "epochs": epochs, "batch_size": 8, "lr": 3e-3}
    }))
}

/// Trains [`tiny_config`]`(kind, epochs)` on [`synthetic_npz`]`(dir, n)` (CPU) into `dir/run` and
/// returns the run folder.
pub fn tiny_run(dir: &Path, kind: &str, n: usize, epochs: usize) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let data = synthetic_npz(dir, n)?;
    let out = dir.join("run");
    let opts = TrainOptions {
        data,
        out: out.clone(),
        resume: false,
        device: Device::flex(),
        data_parallel: Vec::new(),
    };
    train(Some(tiny_config(kind, epochs)?), &opts, &mut Quiet)?;
    Ok(out)
}

/// [`tiny_run`] trained once under `cache` (for example `CARGO_TARGET_TMPDIR`) and reused for as
/// long as it loads: `<cache>/tiny-run-v<version>-<kind>-n<n>-e<epochs>/run`.
///
/// Test processes may race: each trains in a folder of its own, and the first complete run
/// renamed into place wins. A run that sits in that place but no longer loads (written by other
/// code) is left alone and this call returns its own freshly trained copy instead.
pub fn cached_tiny_run(cache: &Path, kind: &str, n: usize, epochs: usize) -> Result<PathBuf> {
    let slot = cache.join(format!("tiny-run-v{FIXTURE_VERSION}-{kind}-n{n}-e{epochs}"));
    let run = slot.join("run");
    let loads = |p: &Path| load_trained(p, &Device::flex()).is_ok();
    if loads(&run) {
        return Ok(run);
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let work = slot.join(format!("work-{}-{nanos}", std::process::id()));
    let fresh = tiny_run(&work, kind, n, epochs)?;
    if std::fs::rename(&fresh, &run).is_ok() || loads(&run) {
        // Ours or another process's complete run is in place; the rest of `work` is scratch.
        std::fs::remove_dir_all(&work).map_err(io_err("remove", &work))?;
        return Ok(run);
    }
    Ok(fresh)
}
