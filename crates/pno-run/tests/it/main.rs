//! The run folder: a run written by hand (no trainer involved) is loaded, checked and predicted
//! with, against the model's own normalised-unit prediction as the oracle.
#![allow(clippy::unwrap_used)]

mod footprint;
mod reference;

use std::collections::BTreeMap;
use std::path::Path;

use pno_core::{Split, sha256_hex};
use pno_data::Normalizer;
use pno_models::burn::tensor::Device;
use pno_models::config::ModelConfig;
use pno_models::weights::named_tensors;
use pno_models::{Model, ModelError, ModelSpec};
use pno_run::{
    CalibrationRecord, ConformalMode, DataSpec, FORMAT, ModelFile, Normalizers, PredictRequest,
    RunDir, RunError, load_trained, to_safetensors, write_json,
};

const S: usize = 8;

fn spec() -> ModelSpec {
    ModelConfig {
        kind: Some("mc_dropout".into()),
        hidden_channels: Some(4),
        n_layers: Some(1),
        n_modes: Some(vec![3, 3]),
        lifting_channels: Some(8),
        projection_channels: Some(8),
        ..Default::default()
    }
    .validate(1, 1, &[S, S])
    .unwrap()
}

fn data_spec() -> DataSpec {
    DataSpec {
        x: "x".into(),
        y: "y".into(),
        n_train: None,
        n_test: 0,
        val_fraction: 0.1,
        subsample: 1,
        normalize: true,
        check: false,
        domain_length: 1.0,
        periodic: false,
        n_calibration: 0,
        window: None,
    }
}

fn normalizers() -> Normalizers {
    let n = |mean: f64, std: f64| Normalizer {
        mean: vec![mean],
        std: vec![std],
        eps: 0.0,
    };
    Normalizers {
        x: Some(n(2.0, 0.5)),
        y: Some(n(-3.0, 4.0)),
    }
}

/// Writes a complete run folder for a freshly initialised model (seed 1).
fn write_run(dir: &Path) -> Model {
    let device = Device::flex();
    let model = spec().init(1, &device);
    let bytes = to_safetensors(&named_tensors(&model), BTreeMap::new()).unwrap();
    let run = RunDir::new(dir);
    std::fs::write(run.weights(), &bytes).unwrap();
    let file = ModelFile {
        format: FORMAT.into(),
        model: spec(),
        train: serde_json::json!({"seed": 1}),
        data: data_spec(),
        in_channels: 1,
        out_channels: 1,
        grid: vec![S, S],
        weights_sha256: sha256_hex(&bytes),
        spread_scale: 1.0,
        calibration: None,
    };
    write_json(&run.model(), &file).unwrap();
    write_json(&run.normalizer(), &normalizers()).unwrap();
    model
}

fn input(n: usize) -> Vec<f32> {
    (0..n * S * S)
        .map(|i| 2.0 + (i as f32 * 0.37).sin())
        .collect()
}

fn req(x: &[f32], n: usize, batch: usize) -> PredictRequest<'_> {
    PredictRequest {
        x,
        n,
        grid: &[S, S],
        n_samples: 4,
        seed: 9,
        batch,
        cancel: None,
    }
}

#[test]
fn predict_is_the_model_in_physical_units() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_run(dir.path());
    let device = Device::flex();
    let t = load_trained(dir.path(), &device).unwrap();
    let x = input(3);
    let p = t.predict(&req(&x, 3, 2), &device).unwrap();
    // Oracle: the model itself on inputs normalised by hand, outputs mapped back by hand.
    let xn: Vec<f32> = x.iter().map(|v| (v - 2.0) / 0.5).collect();
    let q = model
        .predict(
            Model::tensor(xn, [3, 1, S * S], &device),
            &[S, S],
            4,
            9,
            0,
            64,
        )
        .unwrap();
    assert_eq!((p.n_samples, p.batch, p.channels), (4, 3, 1));
    for (a, b) in p.mean.iter().zip(&q.mean) {
        assert!(
            (a - (b * 4.0 - 3.0)).abs() <= 1e-5 * (1.0 + a.abs()),
            "{a} vs {b}"
        );
    }
    for (a, b) in p.std.iter().zip(&q.std) {
        assert!((a - b * 4.0).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
    }
    assert!(p.std.iter().any(|s| *s > 0.0), "dropout gives a spread");
    // Batching does not change the draws; the seed does.
    let one = t.predict(&req(&x, 3, 1), &device).unwrap();
    assert_eq!(one.samples, p.samples);
    let other = t
        .predict(
            &PredictRequest {
                seed: 10,
                ..req(&x, 3, 2)
            },
            &device,
        )
        .unwrap();
    assert_ne!(other.samples, p.samples);
}

#[test]
fn bad_inputs_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path());
    let device = Device::flex();
    let t = load_trained(dir.path(), &device).unwrap();
    let mut x = input(2);
    let e = t.predict(&req(&x, 3, 1), &device).unwrap_err().to_string();
    assert!(e.contains("values for n = 3"), "{e}");
    x[S * S + 5] = f32::NAN;
    let e = t.predict(&req(&x, 2, 1), &device).unwrap_err().to_string();
    assert!(e.contains("finite") && e.contains("sample 1"), "{e}");
}

#[test]
fn unknown_format_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path());
    let run = RunDir::new(dir.path());
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.model()).unwrap()).unwrap();
    v["format"] = "pno-run-2".into();
    write_json(&run.model(), &v).unwrap();
    let err = load_trained(dir.path(), &Device::flex()).unwrap_err();
    assert!(matches!(err, RunError::Format { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("model.json") && msg.contains("pno-run-2") && msg.contains(FORMAT),
        "{msg}"
    );
    // A run without any format tag is refused the same way.
    v.as_object_mut().unwrap().remove("format");
    write_json(&run.model(), &v).unwrap();
    let err = load_trained(dir.path(), &Device::flex()).unwrap_err();
    assert!(matches!(err, RunError::Format { .. }), "{err:?}");
}

#[test]
fn corrupt_files_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path());
    let run = RunDir::new(dir.path());
    let mut w = std::fs::read(run.weights()).unwrap();
    let last = w.len() - 1;
    w[last] ^= 0x40;
    std::fs::write(run.weights(), &w).unwrap();
    let e = load_trained(dir.path(), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("weights.safetensors") && e.contains("checksum"),
        "{e}"
    );
    std::fs::write(run.normalizer(), b"{not json").unwrap();
    let e = load_trained(dir.path(), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(e.contains("normalizer.json"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    let e = load_trained(empty.path(), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no model.json"), "{e}");
}

#[test]
fn calibration_scales_the_spread_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path());
    let device = Device::flex();
    let run = RunDir::new(dir.path());
    let before_file = run.read_model_file().unwrap();
    let x = input(2);
    let before = load_trained(dir.path(), &device)
        .unwrap()
        .predict(&req(&x, 2, 2), &device)
        .unwrap();
    let record = CalibrationRecord {
        level: 0.9,
        mode: ConformalMode::Function { delta: 0.1 },
        spread_scale: 2.5,
        split: Some(Split::Calibration),
        n_functions: 10,
        n_samples: 4,
        data_sha256: "ab".into(),
        coverage_before: 0.7,
        coverage_after: 0.9,
    };
    run.set_calibration(&record).unwrap();
    let after_file = run.read_model_file().unwrap();
    assert_eq!(after_file.calibration.as_ref(), Some(&record));
    assert_eq!(after_file.spread_scale, 2.5);
    assert_eq!(
        ModelFile {
            spread_scale: 1.0,
            calibration: None,
            ..after_file
        },
        before_file
    );
    let after = load_trained(dir.path(), &device)
        .unwrap()
        .predict(&req(&x, 2, 2), &device)
        .unwrap();
    for (a, b) in after.std.iter().zip(&before.std) {
        assert!(
            (a - 2.5 * b).abs() <= 1e-4 * (1.0 + a.abs()),
            "{a} vs 2.5 × {b}"
        );
    }
    for (a, b) in after.mean.iter().zip(&before.mean) {
        assert!(
            (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
            "the mean moves: {a} vs {b}"
        );
    }
    let text = std::fs::read_to_string(run.model()).unwrap();
    assert!(text.contains("\"split\": \"calibration\""), "{text}");
}

#[test]
fn a_set_cancel_flag_stops_prediction_and_an_unset_one_changes_nothing() {
    use std::sync::atomic::AtomicBool;
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path());
    let device = Device::flex();
    let t = load_trained(dir.path(), &device).unwrap();
    let x = input(3);
    let stop = AtomicBool::new(true);
    let e = t
        .predict(
            &PredictRequest {
                cancel: Some(&stop),
                ..req(&x, 3, 1)
            },
            &device,
        )
        .unwrap_err();
    assert!(
        matches!(e, pno_run::RunError::Model(ModelError::Cancelled)),
        "{e}"
    );
    let go = AtomicBool::new(false);
    let a = t
        .predict(
            &PredictRequest {
                cancel: Some(&go),
                ..req(&x, 3, 1)
            },
            &device,
        )
        .unwrap();
    let b = t.predict(&req(&x, 3, 1), &device).unwrap();
    assert_eq!(a.samples, b.samples);
}
