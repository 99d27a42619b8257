//! Fault tolerance: NaN/Inf rollback, crash + exact resume, corrupted checkpoints, bad data.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use pno_data::{NpyData, write_npz};
use pno_run::from_safetensors;
use pno_train::{Progress, Quiet, TrainError, TrainOptions, train};

use crate::{config, synthetic};

fn weights(run: &Path) -> std::collections::BTreeMap<String, pno_models::weights::NamedTensor> {
    let bytes = std::fs::read(run.join("weights.safetensors")).unwrap();
    from_safetensors(&bytes, run).unwrap().0
}

fn max_diff(a: &Path, b: &Path) -> f32 {
    let (wa, wb) = (weights(a), weights(b));
    assert_eq!(wa.keys().collect::<Vec<_>>(), wb.keys().collect::<Vec<_>>());
    wa.iter()
        .map(|(k, t)| {
            t.values
                .iter()
                .zip(&wb[k].values)
                .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        })
        .fold(0.0, f32::max)
}

#[test]
fn absurd_learning_rate_rolls_back_and_never_keeps_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path(), 32);
    let mut cfg = config("fno", 3);
    cfg.train.lr = Some(1e12);
    cfg.train.grad_clip = Some(0.0);
    cfg.train.max_failures = Some(4);
    let out = dir.path().join("run");
    let res = train(
        Some(cfg),
        &TrainOptions {
            data,
            out: out.clone(),
            resume: false,
            device: pno_models::burn::tensor::Device::flex(),
            data_parallel: Vec::new(),
        },
        &mut Quiet,
    );
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    println!("{log}");
    assert!(log.contains("rollback"), "a rollback is logged: {log}");
    match res {
        Err(TrainError::Diverged { failures, .. }) => assert_eq!(failures, 4),
        Ok(s) => assert!(s.rollbacks > 0),
        Err(e) => panic!("unexpected error {e}"),
    }
    // Whatever was kept on disk is finite.
    if out.join("weights.safetensors").exists() {
        assert!(
            weights(&out)
                .values()
                .all(|t| t.values.iter().all(|v| v.is_finite()))
        );
    }
    let ck = pno_train::checkpoint::Checkpoints::new(&out, 3);
    if let Some(l) = ck.load_latest().unwrap() {
        assert!(
            l.tensors
                .values()
                .all(|t| t.values.iter().all(|v| v.is_finite()))
        );
    }
}

/// Dies (panics) when epoch `at` starts, i.e. right after the checkpoint of epoch `at − 1`.
struct Crash {
    at: usize,
}

impl Progress for Crash {
    fn epoch_start(&mut self, epoch: usize, _epochs: usize, _batches: usize) {
        assert!(
            epoch != self.at,
            "simulated crash at the start of epoch {epoch}"
        );
    }
}

#[test]
fn resume_after_a_crash_ends_with_the_uninterrupted_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path(), 40);
    for kind in ["fno", "pno_d"] {
        let full = dir.path().join(format!("{kind}-full"));
        let a = train(
            Some(config(kind, 4)),
            &TrainOptions {
                data: data.clone(),
                out: full.clone(),
                resume: false,
                device: pno_models::burn::tensor::Device::flex(),
                data_parallel: Vec::new(),
            },
            &mut Quiet,
        )
        .unwrap();
        let crashed = dir.path().join(format!("{kind}-crashed"));
        let opts = TrainOptions {
            data: data.clone(),
            out: crashed.clone(),
            resume: false,
            device: pno_models::burn::tensor::Device::flex(),
            data_parallel: Vec::new(),
        };
        let r = catch_unwind(AssertUnwindSafe(|| {
            train(Some(config(kind, 4)), &opts, &mut Crash { at: 3 })
        }));
        assert!(r.is_err(), "the simulated crash happened");
        let resumed = TrainOptions {
            data: data.clone(),
            out: crashed.clone(),
            resume: true,
            device: pno_models::burn::tensor::Device::flex(),
            data_parallel: Vec::new(),
        };
        let b = train(None, &resumed, &mut Quiet).unwrap();
        assert_eq!(a.epochs, b.epochs);
        let d = max_diff(&full, &crashed);
        println!("{kind}: max |w_full - w_resumed| = {d:e}");
        assert!(d <= 1e-6, "{kind}: resumed weights differ by {d}");
        assert!((a.best_val - b.best_val).abs() <= 1e-6 * a.best_val.abs().max(1.0));
        let log = std::fs::read_to_string(crashed.join("log.jsonl")).unwrap();
        assert!(log.contains("resumed from"), "{log}");
    }
}

#[test]
fn corrupted_newest_checkpoint_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path(), 40);
    let full = dir.path().join("full");
    train(
        Some(config("fno", 4)),
        &TrainOptions {
            data: data.clone(),
            out: full.clone(),
            resume: false,
            device: pno_models::burn::tensor::Device::flex(),
            data_parallel: Vec::new(),
        },
        &mut Quiet,
    )
    .unwrap();
    for (how, damage) in [("bitflip", 0usize), ("truncate", 1)] {
        let run = dir.path().join(how);
        let opts = TrainOptions {
            data: data.clone(),
            out: run.clone(),
            resume: false,
            device: pno_models::burn::tensor::Device::flex(),
            data_parallel: Vec::new(),
        };
        let r = catch_unwind(AssertUnwindSafe(|| {
            train(Some(config("fno", 4)), &opts, &mut Crash { at: 4 })
        }));
        assert!(r.is_err());
        let newest = run.join("checkpoints/ckpt-000003.safetensors");
        let mut bytes = std::fs::read(&newest).unwrap();
        if damage == 0 {
            let k = bytes.len() / 2;
            bytes[k] ^= 0x10;
        } else {
            bytes.truncate(bytes.len() / 3);
        }
        std::fs::write(&newest, &bytes).unwrap();
        let b = train(
            None,
            &TrainOptions {
                data: data.clone(),
                out: run.clone(),
                resume: true,
                device: pno_models::burn::tensor::Device::flex(),
                data_parallel: Vec::new(),
            },
            &mut Quiet,
        )
        .unwrap();
        assert_eq!(b.epochs, 4);
        let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
        assert!(
            log.contains("skipped corrupt checkpoint") && log.contains("ckpt-000003"),
            "{how}: {log}"
        );
        assert!(
            log.contains("(epoch 2)"),
            "{how}: resumed from epoch 2: {log}"
        );
        // Determinism makes the replayed epochs identical.
        let d = max_diff(&full, &run);
        assert!(d <= 1e-6, "{how}: {d}");
    }
}

#[test]
fn data_with_nan_fails_the_quality_gate_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let n = 16;
    let mut x: Vec<f32> = (0..n * 256).map(|i| (i as f32 * 0.37).sin()).collect();
    let y: Vec<f32> = (0..n * 256).map(|i| (i as f32 * 0.11).cos()).collect();
    x[3 * 256 + 5] = f32::NAN;
    let path = dir.path().join("bad.npz");
    let shape = [n, 1, 16, 16];
    write_npz(
        &path,
        &[
            ("x", &shape, NpyData::F32(&x)),
            ("y", &shape, NpyData::F32(&y)),
        ],
    )
    .unwrap();
    let e = train(
        Some(config("fno", 1)),
        &TrainOptions {
            data: path,
            out: dir.path().join("run"),
            resume: false,
            device: pno_models::burn::tensor::Device::flex(),
            data_parallel: Vec::new(),
        },
        &mut Quiet,
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("quality check") && msg.contains("finite"),
        "{msg}"
    );
    assert!(!dir.path().join("run").exists());
}

#[test]
fn resuming_a_finished_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path(), 24);
    let run = dir.path().join("run");
    let opts = |resume| TrainOptions {
        data: data.clone(),
        out: run.clone(),
        resume,
        device: pno_models::burn::tensor::Device::flex(),
        data_parallel: Vec::new(),
    };
    let a = train(Some(config("fno", 2)), &opts(false), &mut Quiet).unwrap();
    let before = std::fs::read(run.join("weights.safetensors")).unwrap();
    let b = train(None, &opts(true), &mut Quiet).unwrap();
    assert_eq!((a.epochs, a.best_epoch), (b.epochs, b.best_epoch));
    assert_eq!(
        std::fs::read(run.join("weights.safetensors")).unwrap(),
        before
    );
    // A resume with a different config is refused rather than silently mixing runs.
    let e = train(Some(config("fno", 5)), &opts(true), &mut Quiet)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--config"), "{e}");
    // And a resume against other data is refused too.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let data2 = synthetic(&other, 30);
    let e = train(
        None,
        &TrainOptions {
            data: data2,
            ..opts(true)
        },
        &mut Quiet,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("sha256"), "{e}");
}

/// The epochs' logged training losses of a run.
fn train_losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "epoch")
        .map(|v| v["train_loss"].as_f64().unwrap())
        .collect()
}

/// Data-parallel steps (each batch split across replicas, each differentiated by its own thread,
/// here on the CPU backend; 3 replicas and a batch of 5 do not split evenly) end with the
/// single-device weights and log the same losses, for a deterministic kind, a dropout kind with
/// per-row random streams and the variational kind (its KL term is a per-batch term). Weight
/// decay makes the update depend on the gradient's scale, so a wrongly weighted shard sum shows.
#[test]
fn data_parallel_training_ends_with_the_single_device_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path(), 32);
    let flex = pno_models::burn::tensor::Device::flex;
    for kind in ["fno", "pno_d", "vi_pno"] {
        let run = |name: &str, replicas: usize| {
            let mut cfg = config(kind, 2);
            cfg.train.batch_size = Some(5);
            cfg.train.weight_decay = Some(0.05);
            let out = dir.path().join(format!("{kind}-{name}"));
            train(
                Some(cfg),
                &TrainOptions {
                    data: data.clone(),
                    out: out.clone(),
                    resume: false,
                    device: flex(),
                    data_parallel: (0..replicas).map(|_| flex()).collect(),
                },
                &mut Quiet,
            )
            .unwrap();
            out
        };
        let single = run("single", 0);
        let parallel = run("parallel", 3);
        let d = max_diff(&single, &parallel);
        let (a, b) = (train_losses(&single), train_losses(&parallel));
        println!("{kind}: max |w_single - w_parallel| = {d:e}; losses {a:?} vs {b:?}");
        assert!(d <= 2e-5, "{kind}: data-parallel weights differ by {d}");
        assert_eq!(a.len(), 2);
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() <= 1e-5 * x.abs().max(1e-3),
                "{kind}: {a:?} vs {b:?}"
            );
        }
    }
}
