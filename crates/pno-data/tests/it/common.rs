//! Shared helpers: fixture paths, expected values, small datasets.
// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use pno_core::ShardSpec;
use pno_data::{DatasetHeader, DatasetWriter, Manifest, TensorSpec};

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub(crate) fn expected() -> serde_json::Value {
    let bytes = std::fs::read(fixture("expected.json")).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Compares a tensor's values with the expected.json summary of `file`/`key`.
pub(crate) fn assert_matches_expected(file: &str, key: &str, shape: &[usize], values: &[f64]) {
    let e = expected();
    let s = &e["files"][file][key];
    let want_shape: Vec<usize> = s["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(shape, want_shape.as_slice(), "{file}/{key} shape");
    let sum: f64 = values.iter().sum();
    pno_core::testing::assert_close(&[sum], &[s["sum"].as_f64().unwrap()], 1e-6, 1e-6);
    for (i, v) in s["picks"].as_object().unwrap() {
        let i: usize = i.parse().unwrap();
        pno_core::testing::assert_close(&[values[i]], &[v.as_f64().unwrap()], 1e-12, 0.0);
    }
}

pub(crate) fn header(n: usize, shard: ShardSpec) -> DatasetHeader {
    DatasetHeader {
        pde: "darcy".into(),
        recipe: "test".into(),
        solver: "none".into(),
        parameters: serde_json::json!({"alpha": 2.0, "tau": 3.0, "grid": [4, 4]}),
        seed: 42,
        n_samples: n,
        tensors: vec![
            TensorSpec {
                name: "x".into(),
                shape: vec![1, 4, 4],
            },
            TensorSpec {
                name: "y".into(),
                shape: vec![1, 4, 4],
            },
        ],
        times: None,
        shard,
        generator: "pno-physics-bench test".into(),
    }
}

/// Deterministic sample `i`: x varies with i, y = 2x + 1.
pub(crate) fn sample(i: usize) -> Vec<Vec<f32>> {
    let x: Vec<f32> = (0..16)
        .map(|k| ((i * 16 + k) as f32 * 0.37).sin())
        .collect();
    let y = x.iter().map(|v| 2.0 * v + 1.0).collect();
    vec![x, y]
}

/// Writes `n` samples (`sample(i)`) as shard `shard` into `dir`.
pub(crate) fn write(dir: &Path, n: usize, shard: ShardSpec, per_file: usize) -> Manifest {
    let mut w = DatasetWriter::create(dir, header(n, shard), per_file).unwrap();
    for i in shard.range(n) {
        w.push(&sample(i)).unwrap();
    }
    w.finish().unwrap()
}

/// Like [`write`] but with custom sample values.
pub(crate) fn write_with(dir: &Path, n: usize, f: impl Fn(usize) -> Vec<Vec<f32>>) -> Manifest {
    let mut w = DatasetWriter::create(dir, header(n, ShardSpec::WHOLE), 3).unwrap();
    for i in 0..n {
        w.push(&f(i)).unwrap();
    }
    w.finish().unwrap()
}
