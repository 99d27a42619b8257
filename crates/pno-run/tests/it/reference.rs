//! `reference.json`: features equal to `pno_data::field_features` (the one feature definition),
//! a manufactured spectrum landing in its bands (Parseval), save/load, malformed files named,
//! old runs without the file, and publishing carries the file.

use std::collections::BTreeMap;

use pno_data::{Tensor, TensorData, field_features};
use pno_models::burn::tensor::Device;
use pno_run::reference::{
    self, BANDS, FeatureSummary, FeatureTable, REFERENCE_FILE, REFERENCE_FORMAT, ReferenceStats,
    SpreadReference,
};
use pno_run::{GateRecord, RunDir, load_trained, publish};

use super::{S, write_run};

/// `n` samples, `c` channels on an `S`×`S` grid: smooth fields with sample- and
/// channel-dependent amplitudes, offsets and wavenumbers.
fn fields(n: usize, c: usize) -> Vec<f32> {
    let mut x = Vec::with_capacity(n * c * S * S);
    for s in 0..n {
        for ch in 0..c {
            for i in 0..S {
                for j in 0..S {
                    let (u, v) = (i as f32 / S as f32, j as f32 / S as f32);
                    let t = std::f32::consts::TAU;
                    let k = (1 + (s + ch) % 3) as f32;
                    x.push(
                        ch as f32
                            + 0.1 * s as f32
                            + (t * k * u).sin()
                            + 0.3 * (s as f32 + 1.0) * (t * (u + 2.0 * v)).cos(),
                    );
                }
            }
        }
    }
    x
}

/// A complete reference for `n` samples of [`fields`]`(n, 1)` on the `S`×`S` grid.
fn stats(n: usize) -> ReferenceStats {
    let x = fields(n, 1);
    let grid = [S, S];
    let f = reference::input_features(&x, n, 1, &grid, BANDS).unwrap();
    let indices: Vec<usize> = (0..n).collect();
    let inputs = FeatureTable::new("train", n, indices.clone(), f);
    let p = reference::field_table(&x, n, 1, &grid, reference::PREDICTION_TENSOR, BANDS).unwrap();
    let predictions = FeatureTable::new("val", n, indices.clone(), p);
    let values: Vec<f64> = (0..n).map(|i| 0.1 + i as f64 * 0.01).collect();
    let summary = FeatureSummary::of("spread", &values, &reference::QUANTILE_LEVELS);
    ReferenceStats {
        format: REFERENCE_FORMAT.into(),
        grid: grid.to_vec(),
        in_channels: 1,
        out_channels: 1,
        bands: BANDS,
        quantile_levels: reference::QUANTILE_LEVELS.to_vec(),
        inputs,
        predictions,
        spread: SpreadReference {
            split: "val".into(),
            n_split: n,
            indices,
            draws: reference::SPREAD_DRAWS,
            seed: 3,
            spread_scale: 1.0,
            values,
            summary,
        },
    }
}

/// `a` and `b` agree, numbers to 1e-15 relative: serde_json (without its `float_roundtrip`
/// feature) may read a printed f64 back one unit in the last place off.
fn assert_same(a: &ReferenceStats, b: &ReferenceStats) {
    fn walk(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
        use serde_json::Value as V;
        match (a, b) {
            (V::Number(x), V::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!(
                    (x - y).abs() <= 1e-15 * x.abs().max(y.abs()),
                    "{at}: {x} vs {y}"
                );
            }
            (V::Array(x), V::Array(y)) => {
                assert_eq!(x.len(), y.len(), "{at}");
                for (i, (x, y)) in x.iter().zip(y).enumerate() {
                    walk(x, y, &format!("{at}[{i}]"));
                }
            }
            (V::Object(x), V::Object(y)) => {
                assert_eq!(
                    x.keys().collect::<Vec<_>>(),
                    y.keys().collect::<Vec<_>>(),
                    "{at}"
                );
                for (k, x) in x {
                    walk(x, &y[k], &format!("{at}.{k}"));
                }
            }
            _ => assert_eq!(a, b, "{at}"),
        }
    }
    walk(
        &serde_json::to_value(a).unwrap(),
        &serde_json::to_value(b).unwrap(),
        "",
    );
}

#[test]
fn input_features_are_field_features_exactly() {
    let (n, c) = (5, 2);
    let x = fields(n, c);
    let got = reference::input_features(&x, n, c, &[S, S], BANDS).unwrap();
    let as_f64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let t = Tensor::new(vec![n, c, S, S], TensorData::F64(as_f64)).unwrap();
    let want = field_features(&t, "x", BANDS).unwrap();
    assert_eq!(got, want);
    assert_eq!(got.names[0], "x[0].mean");
    assert_eq!(got.names[got.names.len() / 2], "x[1].mean");
    // The table keeps the same rows, and a request on the reference grid gets the same rows.
    let table = FeatureTable::new("train", n, (0..n).collect(), got.clone());
    assert_eq!(
        (table.values.clone(), table.names.clone()),
        (want.values, want.names)
    );
    let mut r = stats(n);
    r.in_channels = c;
    let req = r.request_features(&x, n, c, &[S, S]).unwrap().unwrap();
    assert_eq!(req, got);
    // Summaries are of the columns: mean of feature 0 = mean of the sample means.
    let col = table.column(0);
    let mean = col.iter().sum::<f64>() / n as f64;
    assert!((table.summary[0].mean - mean).abs() < 1e-12);
    assert_eq!(
        table.summary[0].min,
        col.iter().copied().fold(f64::MAX, f64::min)
    );
    assert_eq!(
        table.summary[0].quantiles.len(),
        reference::QUANTILE_LEVELS.len()
    );
}

/// Oracle (Parseval): `3 + cos(2π·2u) + 0.5·sin(2π(3u + 4v))` has mode |k| = 2 with power ∝ 1²
/// and |k| = 5 with power ∝ 0.5²: shares 0.8 in band `k2` and 0.2 in `k5+` (16² edges 1, 2, 3,
/// 5); mean 3, std √(1/2 + 1/8).
#[test]
fn a_manufactured_spectrum_lands_in_its_bands() {
    let s = 16;
    let mut x = Vec::new();
    for i in 0..s {
        for j in 0..s {
            let (u, v) = (i as f64 / s as f64, j as f64 / s as f64);
            let t = std::f64::consts::TAU;
            x.push((3.0 + (t * 2.0 * u).cos() + 0.5 * (t * (3.0 * u + 4.0 * v)).sin()) as f32);
        }
    }
    let f = reference::input_features(&x, 1, 1, &[s, s], BANDS).unwrap();
    assert_eq!(
        f.names,
        [
            "x[0].mean",
            "x[0].std",
            "x[0].k1",
            "x[0].k2",
            "x[0].k3-4",
            "x[0].k5+"
        ]
    );
    let want = [3.0, (0.5f64 + 0.125).sqrt(), 0.0, 0.8, 0.0, 0.2];
    for (g, w) in f.values.iter().zip(want) {
        // f32 inputs: 1e-6 relative.
        assert!((g - w).abs() < 1e-6 * (1.0 + w), "{:?}", f.values);
    }
}

#[test]
fn requests_on_another_grid_or_with_bad_inputs_are_not_compared() {
    let r = stats(4);
    let x32 = vec![0.5f32; 32 * 32];
    assert!(r.request_features(&x32, 1, 1, &[32, 32]).unwrap().is_none());
    let x = fields(2, 1);
    let e = r
        .request_features(&x, 2, 3, &[S, S])
        .unwrap_err()
        .to_string();
    assert!(e.contains("channels"), "{e}");
    let mut bad = x.clone();
    bad[3] = f32::INFINITY;
    let e = r
        .request_features(&bad, 2, 1, &[S, S])
        .unwrap_err()
        .to_string();
    assert!(e.contains("finite"), "{e}");
    let e = r
        .request_features(&x, 3, 1, &[S, S])
        .unwrap_err()
        .to_string();
    assert!(e.contains("3"), "{e}");
}

#[test]
fn reference_round_trips_through_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let r = stats(6);
    r.save(dir.path()).unwrap();
    assert_eq!(
        RunDir::new(dir.path()).reference(),
        dir.path().join(REFERENCE_FILE)
    );
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "a temporary file was left behind");
    let back = ReferenceStats::load(dir.path()).unwrap().unwrap();
    assert_same(&back, &r);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(REFERENCE_FILE)).unwrap()).unwrap();
    for key in [
        "format",
        "grid",
        "in_channels",
        "out_channels",
        "bands",
        "quantile_levels",
        "inputs",
        "predictions",
        "spread",
    ] {
        assert!(v.get(key).is_some(), "{key} missing");
    }
    // 8² grid, k_max 4: bands k1, k2, k3+ after mean and std.
    assert_eq!(r.inputs.names.len(), 5);
    assert_eq!(v["inputs"]["values"].as_array().unwrap().len(), 6 * 5);
    // No file: a run written before reference statistics existed.
    let empty = tempfile::tempdir().unwrap();
    assert!(ReferenceStats::load(empty.path()).unwrap().is_none());
}

#[test]
fn malformed_reference_files_are_refused_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(REFERENCE_FILE);
    let load_err = |v: &serde_json::Value| {
        std::fs::write(&path, serde_json::to_vec(v).unwrap()).unwrap();
        ReferenceStats::load(dir.path()).unwrap_err().to_string()
    };
    let good = serde_json::to_value(stats(4)).unwrap();
    std::fs::write(&path, b"{not json").unwrap();
    let e = ReferenceStats::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains(REFERENCE_FILE), "{e}");

    let mut v = good.clone();
    v["format"] = "pno-reference-9".into();
    let e = load_err(&v);
    assert!(
        e.contains(REFERENCE_FILE) && e.contains("format") && e.contains(REFERENCE_FORMAT),
        "{e}"
    );
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("spread");
    let e = load_err(&v);
    assert!(e.contains(REFERENCE_FILE) && e.contains("`spread`"), "{e}");
    let mut v = good.clone();
    v["inputs"]["values"].as_array_mut().unwrap().pop();
    let e = load_err(&v);
    assert!(
        e.contains(REFERENCE_FILE) && e.contains("inputs.values"),
        "{e}"
    );
    let mut v = good.clone();
    v["spread"]["values"][0] = (-1.0).into();
    let e = load_err(&v);
    assert!(e.contains("spread.values"), "{e}");
    let mut v = good.clone();
    v["predictions"]["summary"][1]["quantiles"] = serde_json::json!([0.5]);
    let e = load_err(&v);
    assert!(e.contains("predictions.summary.quantiles"), "{e}");
    let mut v = good;
    v["grid"] = serde_json::json!([]);
    let e = load_err(&v);
    assert!(e.contains("grid"), "{e}");
}

#[test]
fn runs_load_with_their_reference_and_old_runs_without() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path());
    let device = Device::flex();
    // A run written before reference statistics existed loads and predicts.
    let t = load_trained(dir.path(), &device).unwrap();
    assert!(t.reference.is_none());
    let r = stats(3);
    r.save(dir.path()).unwrap();
    let t = load_trained(dir.path(), &device).unwrap();
    assert_same(t.reference.as_deref().unwrap(), &r);
    // A corrupt reference is a corrupt run: refused naming the file.
    std::fs::write(dir.path().join(REFERENCE_FILE), b"[]").unwrap();
    let e = load_trained(dir.path(), &device).unwrap_err().to_string();
    assert!(e.contains(REFERENCE_FILE), "{e}");
}

#[test]
fn a_published_version_carries_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (run, repo) = (dir.path().join("run"), dir.path().join("repo"));
    std::fs::create_dir_all(&run).unwrap();
    write_run(&run);
    let r = stats(3);
    r.save(&run).unwrap();
    let gate = GateRecord {
        gate_sha256: String::new(),
        gate_file: String::new(),
        data_sha256: "ab".into(),
        data_path: "data".into(),
        split: None,
        n_functions: 1,
        n_samples: 2,
        seed: 0,
        metrics: BTreeMap::new(),
        champion: None,
        rows: Vec::new(),
        passed: true,
        time_unix: 0,
    };
    let v = publish(&run, &repo, "m", &gate).unwrap();
    let t = load_trained(&pno_run::version_dir(&repo, "m", v), &Device::flex()).unwrap();
    assert_same(t.reference.as_deref().unwrap(), &r);
}
