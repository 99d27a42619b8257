//! The run-folder contract for every model kind, and prediction from it.

use pno_models::burn::tensor::Device;
use pno_run::{PredictRequest, load_trained};
use pno_train::{Quiet, TrainOptions, train};

use crate::{config, synthetic};

#[test]
fn every_kind_trains_and_predicts_from_its_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path(), 48);
    for kind in [
        "fno",
        "deeponet",
        "mc_dropout",
        "ensemble",
        "laplace",
        "pno_d",
        "pno_r",
        "vi_pno",
    ] {
        let mut cfg = config(kind, 3);
        if kind == "deeponet" {
            cfg.model.n_modes = None;
            cfg.model.lifting_channels = None;
            cfg.model.projection_channels = None;
        }
        if kind == "ensemble" {
            cfg.model.n_members = Some(3);
        }
        let out = dir.path().join(kind);
        let opts = TrainOptions {
            data: data.clone(),
            out: out.clone(),
            resume: false,
            device: pno_models::burn::tensor::Device::flex(),
            data_parallel: Vec::new(),
        };
        let s = train(Some(cfg), &opts, &mut Quiet).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(s.epochs, 3, "{kind}");
        assert_eq!((s.n_train, s.n_val), (32, 8), "{kind}");
        assert!(s.val_rel_l2.is_finite(), "{kind}");
        for f in [
            "config.json",
            "model.json",
            "normalizer.json",
            "weights.safetensors",
            "provenance.json",
            "log.jsonl",
            "summary.json",
            "checkpoints/index.json",
        ] {
            assert!(out.join(f).exists(), "{kind}: {f} missing");
        }
        let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
        assert_eq!(
            log.lines()
                .filter(|l| l.contains("\"kind\":\"epoch\""))
                .count(),
            3,
            "{kind}: {log}"
        );
        // Resource readings per epoch and in the summary; a healthy run raises no anomaly.
        for l in log.lines().filter(|l| l.contains("\"kind\":\"epoch\"")) {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            // CPU time is counted in 10 ms ticks: a tiny epoch may read 0.
            assert!(v["cpu_s"].as_f64().unwrap() >= 0.0, "{kind}: {l}");
            assert!(v["rss_peak_mb"].as_f64().unwrap() > 1.0, "{kind}: {l}");
        }
        assert!(!log.contains("\"kind\":\"anomaly\""), "{kind}: {log}");
        assert!(s.peak_rss_mb > 1.0 && s.cpu_s >= 0.0, "{kind}: {s:?}");
        let device = Device::flex();
        let t = load_trained(&out, &device).unwrap();
        let x: Vec<f32> = (0..2 * 256).map(|i| (i as f32 * 0.01).sin()).collect();
        let req = |batch| PredictRequest {
            x: &x,
            n: 2,
            grid: &[16, 16],
            n_samples: 5,
            seed: 1,
            batch,
            cancel: None,
        };
        let p = t.predict(&req(4), &device).unwrap();
        assert_eq!(p.samples.len(), 5 * 2 * 256);
        assert!(p.mean.iter().chain(&p.std).all(|v| v.is_finite()), "{kind}");
        // Same seed, same output; batch size does not matter.
        let q = t.predict(&req(1), &device).unwrap();
        let diff = p
            .samples
            .iter()
            .zip(&q.samples)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff < 1e-5, "{kind}: batch 4 vs 1 differ by {diff}");
        // Zero-shot super-resolution for the FNO family.
        if kind != "deeponet" {
            let x32: Vec<f32> = (0..32 * 32).map(|i| (i as f32 * 0.003).cos()).collect();
            let r32 = PredictRequest {
                x: &x32,
                n: 1,
                grid: &[32, 32],
                n_samples: 3,
                seed: 0,
                batch: 1,
                cancel: None,
            };
            let p32 = t.predict(&r32, &device).unwrap();
            assert_eq!(p32.mean.len(), 32 * 32);
        }
    }
}

#[test]
fn training_reduces_the_error_of_a_learnable_operator() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path(), 96);
    let mut cfg = config("fno", 12);
    cfg.train.lr = Some(5e-3);
    let opts = TrainOptions {
        data,
        out: dir.path().join("run"),
        resume: false,
        device: pno_models::burn::tensor::Device::flex(),
        data_parallel: Vec::new(),
    };
    let s = train(Some(cfg), &opts, &mut Quiet).unwrap();
    let log = std::fs::read_to_string(dir.path().join("run/log.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    let first = first["val_rel_l2"].as_f64().unwrap();
    println!("val rel-L2: epoch 1 {first:.4}, best {:.4}", s.val_rel_l2);
    assert!(
        s.val_rel_l2 < 0.5 * first,
        "first {first}, final {}",
        s.val_rel_l2
    );
}

#[test]
fn bad_config_and_bad_data_are_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path(), 16);
    let e = pno_train::RunConfig::from_value(serde_json::json!({"train": {"learning_rate": 1}}))
        .unwrap_err();
    assert!(e.to_string().contains("learning_rate"), "{e}");
    let mut cfg = config("fno", 1);
    cfg.data.x = Some("a".into());
    let e = train(
        Some(cfg),
        &TrainOptions {
            data: data.clone(),
            out: dir.path().join("r1"),
            resume: false,
            device: pno_models::burn::tensor::Device::flex(),
            data_parallel: Vec::new(),
        },
        &mut pno_train::Quiet,
    )
    .unwrap_err();
    assert!(e.to_string().contains("\"a\""), "{e}");
    assert!(
        !dir.path().join("r1").exists(),
        "nothing written on a refused run"
    );
    let mut cfg = config("fno", 1);
    cfg.train.lr = Some(-1.0);
    let e = train(
        Some(cfg),
        &TrainOptions {
            data: data.clone(),
            out: dir.path().join("r2"),
            resume: false,
            device: pno_models::burn::tensor::Device::flex(),
            data_parallel: Vec::new(),
        },
        &mut pno_train::Quiet,
    )
    .unwrap_err();
    assert!(e.to_string().contains("train.lr"), "{e}");
    // A non-empty output folder is not overwritten.
    std::fs::create_dir_all(dir.path().join("r3")).unwrap();
    std::fs::write(dir.path().join("r3/keep.txt"), b"x").unwrap();
    let e = train(
        Some(config("fno", 1)),
        &TrainOptions {
            data,
            out: dir.path().join("r3"),
            resume: false,
            device: pno_models::burn::tensor::Device::flex(),
            data_parallel: Vec::new(),
        },
        &mut pno_train::Quiet,
    )
    .unwrap_err();
    assert!(e.to_string().contains("--out"), "{e}");
    assert_eq!(std::fs::read(dir.path().join("r3/keep.txt")).unwrap(), b"x");
}

#[test]
fn config_type_errors_name_the_dotted_key() {
    let e = pno_train::RunConfig::from_value(serde_json::json!({"train": {"epochs": "ten"}}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("train.epochs") && e.contains("ten"), "{e}");
    let e = pno_train::RunConfig::from_value(serde_json::json!({"model": {"n_modes": [12, -1]}}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.n_modes"), "{e}");
    let e = pno_train::RunConfig::from_value(serde_json::json!({"optim": {}}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("optim"), "{e}");
}

#[test]
fn ensemble_members_draw_independent_batch_orders() {
    use pno_models::weights::named_tensors;
    // One epoch of a two-member ensemble, with shared and with independent batch orders.
    // Without gradient clipping each member's update depends on its own batches only, so
    // member 0 (whose order is the shared one) ends bit-for-bit the same both ways, and member 1
    // ends elsewhere only because it saw other batches.
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path(), 48);
    let weights = |order: &str| {
        let mut cfg = config("ensemble", 1);
        cfg.model.n_members = Some(2);
        cfg.train.grad_clip = Some(0.0);
        cfg.train.member_order = Some(order.into());
        let out = dir.path().join(order);
        let opts = TrainOptions {
            data: data.clone(),
            out: out.clone(),
            resume: false,
            device: Device::flex(),
            data_parallel: Vec::new(),
        };
        train(Some(cfg), &opts, &mut Quiet).unwrap();
        named_tensors(&load_trained(&out, &Device::flex()).unwrap().model)
    };
    let (shared, independent) = (weights("shared"), weights("independent"));
    let max_diff = |member: &str| {
        shared
            .iter()
            .filter(|(k, _)| k.starts_with(member))
            .flat_map(|(k, a)| a.values.iter().zip(&independent[k].values))
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
    };
    assert_eq!(
        max_diff("members.0."),
        0.0,
        "member 0 must keep the shared order"
    );
    assert!(
        max_diff("members.1.") > 1e-4,
        "member 1 trained on the same batches with independent orders"
    );
    // The default for ensembles is independent orders; the key is refused for other kinds.
    use pno_models::Kind;
    let mut t = config("ensemble", 1);
    assert!(t.train_spec(Kind::Ensemble, false).unwrap().member_orders);
    t.train.member_order = Some("shared".into());
    assert!(!t.train_spec(Kind::Ensemble, false).unwrap().member_orders);
    t.train.member_order = Some("independent".into());
    let e = t.train_spec(Kind::PnoD, false).unwrap_err().to_string();
    assert!(
        e.contains("train.member_order") && e.contains("ensemble"),
        "{e}"
    );
    t.train.member_order = Some("random".into());
    let e = t.train_spec(Kind::Ensemble, false).unwrap_err().to_string();
    assert!(
        e.contains("train.member_order") && e.contains("shared"),
        "{e}"
    );
}

#[test]
fn requests_predicted_together_equal_each_predicted_alone() {
    use pno_train::testing::tiny_run;
    // Dynamic batching's contract on trained runs: requests with their own seeds and sizes in
    // one computation get exactly what each gets alone; a bad request fails alone.
    let dir = tempfile::tempdir().unwrap();
    for kind in ["pno_d", "pno_r", "vi_pno", "ensemble"] {
        let run = tiny_run(&dir.path().join(kind), kind, 24, 1).unwrap();
        let device = Device::flex();
        let t = load_trained(&run, &device).unwrap();
        let x: Vec<f32> = (0..4 * 256).map(|i| (i as f32 * 0.013).sin()).collect();
        let nan: Vec<f32> = (0..256)
            .map(|i| if i == 7 { f32::NAN } else { 0.1 })
            .collect();
        let reqs = [
            req(&x[..256], 1, 7, &[16, 16]),
            req(&x[256..], 3, 8, &[16, 16]),
            req(&nan, 1, 9, &[16, 16]),
            req(&x[..1024], 1, 7, &[32, 32]),
            req(&x[512..768], 1, 7, &[16, 16]),
        ];
        let together = t.predict_many(&reqs, &device);
        for (i, r) in together.iter().enumerate() {
            match i {
                2 => {
                    let e = r.as_ref().unwrap_err().to_string();
                    assert!(e.contains("finite"), "{kind}: {e}");
                }
                3 => {
                    let e = r.as_ref().unwrap_err().to_string();
                    assert!(e.contains("grid"), "{kind}: {e}");
                }
                _ => {
                    let alone = t.predict(&reqs[i], &device).unwrap();
                    assert_eq!(r.as_ref().unwrap(), &alone, "{kind}: request {i}");
                }
            }
        }
        // The same input under the same seed as request 0, as input 0 of another request,
        // gets request 0's draws.
        let again = t.predict_many(
            &[
                req(&x[512..768], 1, 8, &[16, 16]),
                req(&x[..256], 1, 7, &[16, 16]),
            ],
            &device,
        );
        assert_eq!(
            again[1].as_ref().unwrap(),
            together[0].as_ref().unwrap(),
            "{kind}"
        );
    }
}

fn req<'a>(x: &'a [f32], n: usize, seed: u64, grid: &'a [usize]) -> PredictRequest<'a> {
    PredictRequest {
        x,
        n,
        grid,
        n_samples: 4,
        seed,
        batch: 16,
        cancel: None,
    }
}
