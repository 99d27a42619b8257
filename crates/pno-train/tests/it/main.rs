//! Training runs on real files: contract, fault tolerance, resume, corruption.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod evaluation;
mod faults;
mod gate;
mod runs;

use std::path::{Path, PathBuf};

use pno_data::{NpyData, write_npz};
use pno_train::RunConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A learnable synthetic operator on 16×16: y = smoothed, shifted x plus x², as `data.npz`.
pub(crate) fn synthetic(dir: &Path, n: usize) -> PathBuf {
    let s = 16;
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut x = Vec::with_capacity(n * s * s);
    let mut y = Vec::with_capacity(n * s * s);
    for _ in 0..n {
        let a: Vec<f32> = (0..4).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
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
    )
    .unwrap();
    path
}

pub(crate) fn config(kind: &str, epochs: usize) -> RunConfig {
    RunConfig::from_value(serde_json::json!({
        "data": {"n_test": 8, "val_fraction": 0.2},
        "model": {"kind": kind, "hidden_channels": 8, "n_layers": 2, "n_modes": [6, 6],
                  "lifting_channels": 16, "projection_channels": 16},
        "train": {"seed": 3, "epochs": epochs, "batch_size": 8, "lr": 3e-3}
    }))
    .unwrap()
}
