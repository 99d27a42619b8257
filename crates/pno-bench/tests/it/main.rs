//! Suites on real files: validation, tables, a whole tiny suite with its report, resume, and
//! the HTML page rendered by headless Chromium.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformal;
mod report;
mod suite;

use std::path::{Path, PathBuf};

use pno_bench::{CellResult, RunOptions, Suite, run_suite};

/// Write `text` as `name` in `dir` and return the path.
pub(crate) fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A tiny suite: Darcy 16² and KS 32 points, 3 methods (one conformal), `seeds`.
pub(crate) fn tiny_suite(dir: &Path, seeds: &str) -> PathBuf {
    file(
        dir,
        "darcy.toml",
        "pde = \"darcy\"\nrecipe = \"fno\"\nn = 48\nseed = 0\nresolution = 16\n",
    );
    file(
        dir,
        "ks.toml",
        "pde = \"ks\"\nn = 40\nseed = 0\nresolution = 32\nlength = 32.0\ndt = 0.05\nsave_every = 1.0\nt_final = 8.0\n",
    );
    file(
        dir,
        "suite.toml",
        &format!(
            r#"[suite]
name = "tiny"
description = "test suite"
seeds = {seeds}
samples = 8
rollout = 2

[[pde]]
name = "darcy16"
generator = "darcy.toml"
data = {{ n_test = 8, n_calibration = 8, check = false }}
model = {{ hidden_channels = 6, n_layers = 2, n_modes = [4, 4], lifting_channels = 8, projection_channels = 8 }}
train = {{ epochs = 2, batch_size = 8, lr = 0.003 }}

[[pde]]
name = "ks32"
generator = "ks.toml"
data = {{ n_test = 8, n_calibration = 8, periodic = true, domain_length = 32.0, window = {{ t_in = 2, t_out = 2, start = 1 }} }}
model = {{ hidden_channels = 6, n_layers = 2, n_modes = [8], lifting_channels = 8, projection_channels = 8 }}
train = {{ epochs = 2, batch_size = 8, lr = 0.003 }}

[[method]]
name = "fno"
model = {{ kind = "fno" }}

[[method]]
name = "pno_d"
model = {{ kind = "pno_d", dropout = 0.1 }}

[[method]]
name = "pno_d+conformal"
base = "pno_d"
conformal = {{ level = 0.9 }}
"#
        ),
    )
}

/// Options every test runs cells with (CPU, batch 8).
pub(crate) fn opts() -> RunOptions {
    RunOptions {
        device: pno_models::burn::tensor::Device::flex(),
        batch: 8,
        part: None,
    }
}

/// A finished run of the tiny suite (seeds 0 and 1) in a folder of the test's own.
pub(crate) struct Finished {
    /// Holds the suite files and `out/`; removed on drop.
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) suite: Suite,
    pub(crate) out: PathBuf,
    /// The 12 cell results, in cell order.
    pub(crate) results: Vec<CellResult>,
}

/// Runs the tiny suite (seeds 0 and 1; under a second on this CPU backend) in a fresh folder,
/// one per test.
pub(crate) fn finished_suite() -> Finished {
    let dir = tempfile::tempdir().unwrap();
    let suite = Suite::load(&tiny_suite(dir.path(), "[0, 1]")).unwrap();
    let out = dir.path().join("out");
    let results = run_suite(&suite, &out, &opts(), &mut |_| {}).unwrap();
    Finished {
        _dir: dir,
        suite,
        out,
        results,
    }
}

/// A constructed cell result of `pde`/`method`/`seed` with `metrics`, nothing else.
pub(crate) fn result(pde: &str, method: &str, seed: u64, metrics: &[(&str, f64)]) -> CellResult {
    let empty = || pno_metrics::CalibrationCurve {
        expected: vec![],
        observed: vec![],
    };
    CellResult {
        pde: pde.into(),
        method: method.into(),
        seed,
        kind: "x".into(),
        params: 0,
        config: serde_json::Value::Null,
        timings: Default::default(),
        metrics: metrics
            .iter()
            .map(|&(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect(),
        calibration: None,
        curves: pno_train::eval::Curves {
            coverage: empty(),
            reliability: empty(),
            pit: pno_metrics::pit_histogram(&[0.5], 2).unwrap(),
        },
        rollout: vec![],
        example: pno_bench::runner::Example {
            grid: vec![4],
            in_channels: 1,
            out_channels: 1,
            input: vec![0.0; 4],
            target: vec![0.0; 4],
            mean: vec![0.0; 4],
            std: vec![0.0; 4],
        },
        suite_sha256: String::new(),
        commit: String::new(),
        coverage_curve: None,
        conformal: None,
        conformal_note: None,
    }
}

/// `r` with a calibrated variant of scale `k` and `metrics`.
pub(crate) fn calibrated(mut r: CellResult, k: f64, metrics: &[(&str, f64)]) -> CellResult {
    r.conformal = Some(pno_bench::conformal::Conformalized {
        level: 0.9,
        mode: pno_run::ConformalMode::Pointwise,
        spread_scale: k,
        n_functions: 8,
        metrics: metrics
            .iter()
            .map(|&(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect(),
        coverage_curve: pno_metrics::CalibrationCurve {
            expected: vec![],
            observed: vec![],
        },
    });
    r
}
