//! Evaluation, conformal calibration, trajectory windows and rollouts on real run folders.

use std::path::{Path, PathBuf};

use pno_core::Split;
use pno_data::LeakageSplits;
use pno_data::{NpyData, write_npz};
use pno_models::burn::tensor::Device;
use pno_run::{ConformalMode, load_trained};
use pno_train::data::load_fields;
use pno_train::{
    CalibrateOptions, EvalOptions, Quiet, RunConfig, TrainOptions, calibrate, evaluate, train,
};

/// Trajectories `u[i, t, 0, x]` of travelling waves on 32 periodic points: each frame is the
/// previous one shifted by one cell, plus noise of std `noise` (a learnable one-step map).
fn waves(dir: &Path, n: usize, frames: usize, noise: f32) -> PathBuf {
    use rand::{Rng, SeedableRng};
    let s = 32;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut u = Vec::with_capacity(n * frames * s);
    for _ in 0..n {
        let a: Vec<f32> = (0..3).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
        for t in 0..frames {
            for x in 0..s {
                let z = std::f32::consts::TAU * (x as f32 - t as f32) / s as f32;
                let e: f32 = (0..4).map(|_| rng.random::<f32>() - 0.5).sum::<f32>();
                u.push(a[0] * z.sin() + a[1] * (2.0 * z).cos() + a[2] + noise * e * 1.732);
            }
        }
    }
    let path = dir.join("waves.npz");
    write_npz(&path, &[("u", &[n, frames, 1, s], NpyData::F32(&u))]).unwrap();
    path
}

fn window_config(kind: &str, epochs: usize, extra: serde_json::Value) -> RunConfig {
    let mut v = serde_json::json!({
        "data": {"n_test": 16, "val_fraction": 0.1, "periodic": true,
                 "window": {"t_in": 1, "t_out": 1}},
        "model": {"kind": kind, "hidden_channels": 8, "n_layers": 2, "n_modes": [8],
                  "lifting_channels": 16, "projection_channels": 16},
        "train": {"seed": 1, "epochs": epochs, "batch_size": 8, "lr": 5e-3}
    });
    merge(&mut v, extra);
    RunConfig::from_value(v).unwrap()
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn trained(cfg: RunConfig, data: &Path, out: &Path) {
    let opts = TrainOptions {
        data: data.to_path_buf(),
        out: out.to_path_buf(),
        resume: false,
        device: Device::flex(),
        data_parallel: Vec::new(),
    };
    train(Some(cfg), &opts, &mut Quiet).unwrap();
}

#[test]
fn windows_are_cut_from_the_recorded_frames() {
    let dir = tempfile::tempdir().unwrap();
    // u[i, t, c, x] = 1000 i + 10 t + c + x/100: every value names its position.
    let (n, frames, c, s) = (3, 12, 2, 8);
    let mut u = Vec::new();
    for i in 0..n {
        for t in 0..frames {
            for ch in 0..c {
                for x in 0..s {
                    u.push(1000.0 * i as f32 + 10.0 * t as f32 + ch as f32 + x as f32 / 100.0);
                }
            }
        }
    }
    let path = dir.path().join("u.npz");
    write_npz(&path, &[("u", &[n, frames, c, s], NpyData::F32(&u))]).unwrap();
    let cfg = RunConfig::from_value(serde_json::json!({"data": {"check": false,
        "window": {"t_in": 2, "t_out": 3, "stride": 2, "start": 1}}}))
    .unwrap();
    let spec = cfg.data_spec().unwrap();
    let w = spec.window.unwrap();
    assert_eq!(w.frames(0), vec![1, 3]);
    assert_eq!(w.frames(1), vec![5, 7, 9]);
    assert_eq!(w.frames(2), vec![11, 13, 15]);
    assert_eq!(w.frames_needed(1), 10);
    let (f, _) = load_fields(&path, &spec, &LeakageSplits::default()).unwrap();
    assert_eq!((f.n, f.cin, f.cout, f.grid.clone()), (3, 4, 6, vec![8]));
    // Sample 2, input channel 3 = frame 3, channel 1; target channel 4 = frame 9, channel 0.
    let at = |v: &[f32], ch: usize, chans: usize, x: usize| v[(2 * chans + ch) * s + x];
    assert_eq!(at(&f.x, 3, 4, 5), 2000.0 + 30.0 + 1.0 + 0.05);
    assert_eq!(at(&f.y, 4, 6, 7), 2000.0 + 90.0 + 0.07);

    // The (t, x) field layout needs one channel and t_in = t_out.
    let e = RunConfig::from_value(serde_json::json!({"data": {
        "window": {"t_in": 2, "t_out": 3, "layout": "field"}}}))
    .unwrap()
    .data_spec()
    .unwrap_err();
    assert!(e.to_string().contains("data.window.t_out"), "{e}");
    let one = dir.path().join("one.npz");
    write_npz(
        &one,
        &[("u", &[n, frames, s], NpyData::F32(&u[..n * frames * s]))],
    )
    .unwrap();
    let cfg = RunConfig::from_value(serde_json::json!({"data": {"check": false,
        "window": {"t_in": 4, "t_out": 4, "layout": "field"}}}))
    .unwrap();
    let (f, _) = load_fields(&one, &cfg.data_spec().unwrap(), &LeakageSplits::default()).unwrap();
    assert_eq!((f.cin, f.cout, f.grid.clone()), (1, 1, vec![4, 8]));
    assert_eq!(f.y[0], u[4 * s]);

    // Too-short trajectories are refused with the window named.
    let cfg = RunConfig::from_value(serde_json::json!({"data": {"check": false,
        "window": {"t_in": 8, "t_out": 8}}}))
    .unwrap();
    let e = load_fields(&path, &cfg.data_spec().unwrap(), &LeakageSplits::default()).unwrap_err();
    assert!(
        e.to_string().contains("16 frames") && e.to_string().contains("data.window"),
        "{e}"
    );
    // A different target tensor contradicts the window.
    let e = RunConfig::from_value(serde_json::json!({"data": {"x": "u", "y": "v", "window": {}}}))
        .unwrap()
        .data_spec()
        .unwrap_err();
    assert!(e.to_string().contains("data.y"), "{e}");
}

#[test]
fn conformal_scaling_reaches_the_nominal_coverage_on_held_out_functions() {
    let dir = tempfile::tempdir().unwrap();
    let data = waves(dir.path(), 240, 2, 0.15);
    let run = dir.path().join("run");
    // A deliberately overconfident model: little dropout, few epochs.
    trained(
        window_config(
            "mc_dropout",
            4,
            serde_json::json!({"data": {"n_test": 80, "n_calibration": 80},
                               "model": {"dropout": 0.02}}),
        ),
        &data,
        &run,
    );
    let device = Device::flex();
    let opts = EvalOptions {
        samples: 40,
        ..EvalOptions::default()
    };
    let before = evaluate(&load_trained(&run, &device).unwrap(), &data, &opts, &device).unwrap();
    let rec = calibrate(
        &run,
        &data,
        &CalibrateOptions {
            samples: 40,
            ..CalibrateOptions::default()
        },
        &device,
    )
    .unwrap();
    assert_eq!(rec.split, Some(Split::Calibration));
    assert_eq!(rec.n_functions, 80);
    // On the calibration points the conformal quantile covers ⌈(N+1)·0.9⌉/N of them.
    assert!(
        rec.coverage_after >= 0.9 && rec.coverage_after < 0.905,
        "{rec:?}"
    );
    assert!(
        rec.coverage_before < 0.8,
        "model not overconfident: {rec:?}"
    );
    let t = load_trained(&run, &device).unwrap();
    assert_eq!(t.model.spread_scale, rec.spread_scale);
    assert_eq!(
        t.file.calibration.as_ref().unwrap().spread_scale,
        rec.spread_scale
    );
    let after = evaluate(&t, &data, &opts, &device).unwrap();
    // Same draws, rescaled about the mean: the spread scales by k exactly, the mean not at all.
    let ratio = after.report.sharpness / before.report.sharpness;
    assert!(
        (ratio / rec.spread_scale - 1.0).abs() < 1e-4,
        "{ratio} vs {rec:?}"
    );
    assert!((after.report.rel_l2 - before.report.rel_l2).abs() < 1e-6);
    // Held-out test functions: coverage near the nominal level (80 functions × 32 points;
    // the per-function spread of coverage gives a few percent of slack).
    let cov = after.report.coverage_90;
    assert!(
        (cov - 0.9).abs() < 0.05,
        "test coverage {cov} (before {})",
        before.report.coverage_90
    );
    assert!(
        (cov - 0.9).abs() < (before.report.coverage_90 - 0.9).abs(),
        "calibration did not help: {} -> {cov}",
        before.report.coverage_90
    );

    // Function mode: with probability ≥ 1 − δ a new function has ≥ 90 % of its points covered.
    let rec = calibrate(
        &run,
        &data,
        &CalibrateOptions {
            samples: 40,
            mode: ConformalMode::Function { delta: 0.2 },
            ..CalibrateOptions::default()
        },
        &device,
    )
    .unwrap();
    let t = load_trained(&run, &device).unwrap();
    let e = evaluate(&t, &data, &opts, &device).unwrap();
    let (n, d) = (e.n, e.y.len() / e.n);
    let (lo, hi) = {
        let m = opts.samples;
        let mut lo = vec![0f64; n * d];
        let mut hi = vec![0f64; n * d];
        for j in 0..n * d {
            let mut v: Vec<f64> = (0..m)
                .map(|k| f64::from(e.pred.samples[k * n * d + j]))
                .collect();
            v.sort_by(f64::total_cmp);
            lo[j] = pno_metrics::quantile_sorted(&v, 0.05);
            hi[j] = pno_metrics::quantile_sorted(&v, 0.95);
        }
        (lo, hi)
    };
    let good = (0..n)
        .filter(|&i| {
            let c = (i * d..(i + 1) * d)
                .filter(|&j| {
                    let y = f64::from(e.y[j]);
                    lo[j] < y && y < hi[j]
                })
                .count();
            c as f64 >= 0.9 * d as f64
        })
        .count() as f64
        / n as f64;
    assert!(
        good >= 0.8 - 0.1,
        "functions ≥ 90 % covered: {good} ({rec:?})"
    );

    // A deterministic model has no spread to scale.
    let det = dir.path().join("det");
    trained(
        window_config(
            "fno",
            1,
            serde_json::json!({"data": {"n_test": 80, "n_calibration": 80}}),
        ),
        &data,
        &det,
    );
    let e = calibrate(&det, &data, &CalibrateOptions::default(), &device).unwrap_err();
    assert!(e.to_string().contains("zero spread"), "{e}");
}

#[test]
fn rollouts_propagate_each_draw_and_count_divergence() {
    let dir = tempfile::tempdir().unwrap();
    let data = waves(dir.path(), 64, 6, 0.0);
    let run = dir.path().join("run");
    trained(
        window_config("pno_d", 3, serde_json::json!({})),
        &data,
        &run,
    );
    let device = Device::flex();
    let t = load_trained(&run, &device).unwrap();
    let opts = EvalOptions {
        samples: 8,
        rollout: 4,
        ..EvalOptions::default()
    };
    let e = evaluate(&t, &data, &opts, &device).unwrap();
    assert_eq!(e.rollout.len(), 4);
    assert_eq!(e.rollout[3].frames, vec![4]);
    // Step 1 is the one-step evaluation: same draws, same metrics.
    assert!((e.rollout[0].report.crps - e.report.crps).abs() < 1e-9);
    assert!((e.rollout[0].report.rel_l2 - e.report.rel_l2).abs() < 1e-9);
    assert!(e.rollout.iter().all(|s| s.diverged_fraction == 0.0));
    // Errors compound: the last step is worse than the first.
    assert!(e.rollout[3].report.rel_l2 > e.rollout[0].report.rel_l2);
    // With a tiny bound every trajectory counts as diverged, and the clipped draws stay finite.
    let tight = EvalOptions {
        divergence_factor: 1e-6,
        ..opts.clone()
    };
    let e = evaluate(&t, &data, &tight, &device).unwrap();
    assert!(e.rollout.iter().all(|s| s.diverged_fraction == 1.0));
    assert!(e.rollout.iter().all(|s| s.report.crps.is_finite()));
    // Longer than the trajectories, or a run without windows: refused with the option named.
    let long = EvalOptions {
        rollout: 6,
        ..opts.clone()
    };
    let err = evaluate(&t, &data, &long, &device).unwrap_err();
    assert!(err.to_string().contains("--rollout"), "{err}");
    let e = evaluate(
        &t,
        &data,
        &EvalOptions {
            split: Some(Split::Calibration),
            ..opts
        },
        &device,
    )
    .unwrap_err();
    assert!(e.to_string().contains("n_calibration"), "{e}");
}
