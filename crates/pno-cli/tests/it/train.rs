//! `pno train` / `pno predict` end to end: configs, prediction files, kill -9 and resume.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{assert_errors_name, config, darcy, pno_ok, tiny_train, train_args};

fn npz(path: &Path) -> Vec<(String, pno_data::Tensor)> {
    pno_data::read_npz(path).unwrap()
}

#[test]
fn every_model_config_trains_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let data = darcy(&dir.path().join("d16"), 16, 24, 1);
    let cfg_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut seen = 0;
    let mut names: Vec<String> = std::fs::read_dir(&cfg_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            (n.starts_with("darcy16_") || n.starts_with("darcy64_")) && n.ends_with(".toml")
        })
        .collect();
    names.sort();
    for name in names {
        let run = dir
            .path()
            .join(name.trim_end_matches(".toml"))
            .display()
            .to_string();
        // Shrink to seconds: one epoch on 24 samples of 16x16 (no calibration split: the
        // recipes hold out 100 samples for it).
        tiny_train(
            &name,
            &data,
            &run,
            &[
                "train.epochs=1",
                "data.n_train=12",
                "data.n_test=4",
                "data.n_calibration=0",
                "train.batch_size=6",
            ],
        );
        let pred = dir.path().join(format!("{name}.npz"));
        pno_ok(&[
            "predict",
            "--run",
            &run,
            "--input",
            &data,
            "--samples",
            "3",
            "--out",
            pred.to_str().unwrap(),
        ]);
        let t = npz(&pred);
        let get = |k: &str| {
            t.iter()
                .find(|(n, _)| n == k)
                .map(|(_, t)| t.shape().to_vec())
        };
        assert_eq!(get("mean"), Some(vec![24, 1, 16, 16]), "{name}");
        assert_eq!(get("samples"), Some(vec![3, 24, 1, 16, 16]), "{name}");
        assert_eq!(get("quantiles"), Some(vec![7, 24, 1, 16, 16]), "{name}");
        seen += 1;
    }
    // 8 model kinds x 2 datasets, plus darcy16's recipe variants (TFNO, the calibrated PNO_D,
    // neuraloperator's MC-dropout FNO).
    assert_eq!(seen, 19, "8 models x 2 datasets + 3 darcy16 recipes");
}

#[test]
fn predict_is_seeded_and_works_at_another_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let data = darcy(&dir.path().join("d16"), 16, 20, 1);
    let run = dir.path().join("run").display().to_string();
    tiny_train("darcy16_pno_d.toml", &data, &run, &["train.epochs=2"]);
    let p = |seed: &str, out: &str, input: &str| {
        let path = dir.path().join(out);
        pno_ok(&[
            "predict",
            "--run",
            &run,
            "--input",
            input,
            "--samples",
            "8",
            "--seed",
            seed,
            "--out",
            path.to_str().unwrap(),
            "--batch",
            "3",
        ]);
        std::fs::read(path).unwrap()
    };
    assert_eq!(
        p("5", "a.npz", &data),
        p("5", "b.npz", &data),
        "same seed, same file"
    );
    assert_ne!(p("5", "a.npz", &data), p("6", "c.npz", &data));
    let d24 = darcy(&dir.path().join("d24"), 24, 3, 1);
    p("1", "sr.npz", &d24);
    let t = npz(&dir.path().join("sr.npz"));
    let std = t.iter().find(|(n, _)| n == "std").unwrap().1.to_f32_vec();
    assert_eq!(std.len(), 3 * 24 * 24);
    assert!(std.iter().all(|v| v.is_finite() && *v >= 0.0));
    // A .npy input [n, 16, 16] (no channel axis) works for a one-channel model.
    let x = pno_data::open_any(Path::new(&data))
        .unwrap()
        .tensor("x")
        .unwrap()
        .to_f32_vec();
    let npy = dir.path().join("x.npy");
    pno_data::write_npy(&npy, &[20, 16, 16], &pno_data::NpyData::F32(&x)).unwrap();
    p("1", "npy.npz", npy.to_str().unwrap());
}

#[test]
fn kill_dash_nine_then_resume_matches_the_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = darcy(&dir.path().join("d16"), 16, 48, 1);
    let sets = ["train.epochs=8", "data.n_test=8"];
    let full = dir.path().join("full").display().to_string();
    tiny_train("darcy16_fno.toml", &data, &full, &sets);
    let run = dir.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pno"))
        .args(train_args(
            "darcy16_fno.toml",
            &data,
            run.to_str().unwrap(),
            &sets,
        ))
        .spawn()
        .unwrap();
    // Kill as soon as the first checkpoint is indexed.
    let t0 = Instant::now();
    while !run.join("checkpoints/index.json").exists() && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let out = pno_ok(&[
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--data",
        &data,
        "--json",
    ]);
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["epochs"], 8);
    // Compare the weights tensor by tensor through safetensors.
    let load = |p: &Path| {
        let bytes = std::fs::read(p.join("weights.safetensors")).unwrap();
        pno_run::from_safetensors(&bytes, p).unwrap().0
    };
    let (a, b) = (load(Path::new(&full)), load(&run));
    let mut worst = 0.0f32;
    for (k, t) in &a {
        for (x, y) in t.values.iter().zip(&b[k].values) {
            worst = worst.max((x - y).abs());
        }
    }
    assert!(worst <= 1e-6, "resumed weights differ by {worst}");
}

#[test]
fn train_errors_name_the_key_or_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = darcy(&dir.path().join("d16"), 16, 12, 1);
    let run = dir.path().join("r").display().to_string();
    let cfg = config("darcy16_fno.toml");
    let (cfg, data, run) = (cfg.as_str(), data.as_str(), run.as_str());
    let train = ["train", "--config", cfg, "--data", data, "--out", run];
    let set = |kv: &'static str| [train.as_slice(), &["--set", kv]].concat();
    assert_errors_name(&[
        (&set("model.widht=3"), &["widht"]),
        (&set("model.n_modes=[40,40]"), &["model.n_modes"]),
        (
            &[
                "train",
                "--config",
                cfg,
                "--data",
                "/nonexistent/x.pt",
                "--out",
                run,
            ],
            &["/nonexistent/x.pt"],
        ),
        (
            &[
                "predict",
                "--run",
                "/nonexistent/run",
                "--input",
                data,
                "--out",
                "p.npz",
            ],
            &["/nonexistent/run"],
        ),
        (
            &[train.as_slice(), &["--devices", "cpu,tpu:3"]].concat(),
            &["--devices", "tpu:3"],
        ),
        (
            &[
                train.as_slice(),
                &["--device", "cpu", "--devices", "cpu,cpu"],
            ]
            .concat(),
            &["--device", "--devices"],
        ),
    ]);
}

/// `--devices cpu,cpu`: the data-parallel path from the command line (two replicas on two
/// threads of the CPU backend) trains the run a single device trains, to float rounding.
#[test]
fn data_parallel_training_from_the_cli_matches_one_device() {
    let dir = tempfile::tempdir().unwrap();
    let data = darcy(&dir.path().join("d16"), 16, 24, 1);
    let sets = [
        "train.epochs=2",
        "train.batch_size=7",
        "model.hidden_channels=8",
        "model.n_layers=2",
    ];
    let weights = |extra: &[&str]| {
        let run = dir.path().join(format!("r{}", extra.len()));
        let mut args = train_args("darcy16_pno_d.toml", &data, run.to_str().unwrap(), &sets);
        args.extend(extra.iter().map(|s| s.to_string()));
        pno_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let bytes = std::fs::read(run.join("weights.safetensors")).unwrap();
        pno_run::from_safetensors(&bytes, &run).unwrap().0
    };
    let one = weights(&[]);
    let two = weights(&["--devices", "cpu,cpu"]);
    let log = std::fs::read_to_string(dir.path().join("r2/log.jsonl")).unwrap();
    assert!(log.contains("data-parallel training on 2 devices"), "{log}");
    let mut max = 0.0f32;
    for (k, t) in &one {
        for (a, b) in t.values.iter().zip(&two[k].values) {
            max = max.max((a - b).abs());
        }
    }
    assert!(max <= 2e-5, "weights differ by {max}");
}

#[test]
fn eval_reports_every_metric_on_the_recorded_test_split() {
    let dir = tempfile::tempdir().unwrap();
    let data = darcy(&dir.path().join("d16"), 16, 30, 1);
    let run = dir.path().join("run").display().to_string();
    tiny_train(
        "darcy16_pno_r.toml",
        &data,
        &run,
        &["train.epochs=2", "data.n_test=6"],
    );
    let save = dir.path().join("pred.npz");
    let out = pno_ok(&[
        "eval",
        "--run",
        &run,
        "--data",
        &data,
        "--samples",
        "16",
        "--json",
        "--save-predictions",
        save.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for k in [
        "rel_l2",
        "l2_abs",
        "rmse",
        "nll",
        "crps",
        "crps_fair",
        "energy_score",
        "coverage_50",
        "coverage_80",
        "coverage_90",
        "coverage_95",
        "coverage_99",
        "interval_width_90",
        "interval_score_90",
        "calibration_error",
        "sharpness",
        "spread_skill",
    ] {
        assert!(v[k].as_f64().is_some_and(f64::is_finite), "{k}: {}", v[k]);
    }
    assert_eq!(v["n"], 6);
    assert_eq!(v["split"], "test");
    // PNO_R separates data noise: the law of total variance splits the predictive variance.
    let (tot, alea, epi) = (
        v["total_var"].as_f64().unwrap(),
        v["aleatoric_var"].as_f64().unwrap(),
        v["epistemic_var"].as_f64().unwrap(),
    );
    assert!(tot > 0.0 && alea > 0.0 && epi >= 0.0, "{v}");
    assert!(
        (alea + epi - tot).abs() <= 1e-6 * tot.max(1e-30) + 1e-12 || alea + epi >= tot,
        "{v}"
    );
    assert!((0.0..=1.0).contains(&v["aleatoric_fraction"].as_f64().unwrap()));
    assert_eq!(
        v["curves"]["coverage"]["expected"]
            .as_array()
            .unwrap()
            .len(),
        21
    );
    let c: Vec<f64> = [
        "coverage_50",
        "coverage_80",
        "coverage_90",
        "coverage_95",
        "coverage_99",
    ]
    .iter()
    .map(|k| v[*k].as_f64().unwrap())
    .collect();
    assert!(
        c.windows(2).all(|w| w[0] <= w[1]) && c.iter().all(|x| (0.0..=1.0).contains(x)),
        "{c:?}"
    );
    let t = npz(&save);
    assert_eq!(
        t.iter().find(|(n, _)| n == "target").unwrap().1.shape(),
        &[6, 1, 16, 16]
    );
    // Another file: every sample; a split that only exists on the training data is refused.
    let other = darcy(&dir.path().join("other"), 24, 4, 1);
    let v: serde_json::Value = serde_json::from_str(
        pno_ok(&[
            "eval",
            "--run",
            &run,
            "--data",
            &other,
            "--samples",
            "4",
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    assert_eq!(
        (v["n"].as_u64(), v["split"].as_str()),
        (Some(4), Some("all"))
    );
    assert_eq!(v["resolution"], serde_json::json!([24, 24]));
    let (run, data, other) = (run.as_str(), data.as_str(), other.as_str());
    assert_errors_name(&[
        (
            &["eval", "--run", run, "--data", other, "--split", "val"],
            &["--split val"],
        ),
        (
            &["eval", "--run", run, "--data", data, "--device", "cuda"],
            &["cuda"],
        ),
    ]);
}
