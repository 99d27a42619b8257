//! `pno calibrate`, `pno eval --rollout` and `pno bench` as a user runs them.

use crate::{config, pno_err, pno_ok};

#[test]
fn calibrate_stores_the_scale_that_eval_then_applies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d16").display().to_string();
    pno_ok(&[
        "generate",
        "darcy",
        "--resolution",
        "16",
        "--n",
        "48",
        "--seed",
        "2",
        "--out",
        &data,
        "--quiet",
    ]);
    let run = dir.path().join("run").display().to_string();
    pno_ok(&[
        "train",
        "--config",
        &config("darcy16_mc_dropout.toml"),
        "--data",
        &data,
        "--out",
        &run,
        "--quiet",
        "--set",
        "train.epochs=2",
        "--set",
        "data.n_test=8",
        "--set",
        "data.n_calibration=12",
    ]);
    let eval = |extra: &[&str]| -> serde_json::Value {
        let mut a = vec![
            "eval",
            "--run",
            &run,
            "--data",
            &data,
            "--samples",
            "16",
            "--json",
        ];
        a.extend(extra);
        serde_json::from_str(pno_ok(&a).trim()).unwrap()
    };
    let before = eval(&[]);
    let rec: serde_json::Value = serde_json::from_str(
        pno_ok(&[
            "calibrate",
            "--run",
            &run,
            "--data",
            &data,
            "--samples",
            "16",
            "--level",
            "0.8",
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    assert_eq!(rec["split"], "calibration");
    assert_eq!(rec["n_functions"], 12);
    assert_eq!(rec["mode"], "pointwise");
    let k = rec["spread_scale"].as_f64().unwrap();
    assert!(k > 0.0 && k.is_finite(), "{rec}");
    assert!(rec["coverage_after"].as_f64().unwrap() >= 0.8, "{rec}");
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("run/model.json")).unwrap()).unwrap();
    assert_eq!(model["spread_scale"].as_f64(), Some(k));
    assert_eq!(model["calibration"]["level"], 0.8);
    let after = eval(&[]);
    let ratio = after["sharpness"].as_f64().unwrap() / before["sharpness"].as_f64().unwrap();
    assert!((ratio / k - 1.0).abs() < 1e-3, "{ratio} vs {k}");
    let (a, b) = (
        after["rel_l2"].as_f64().unwrap(),
        before["rel_l2"].as_f64().unwrap(),
    );
    assert!((a - b).abs() <= 1e-6 * b, "{a} vs {b}");
    // Calibration samples must exist, options must make sense, rollouts need windows.
    let e = pno_err(&[
        "calibrate",
        "--run",
        &run,
        "--data",
        &data,
        "--level",
        "1.5",
    ]);
    assert!(e.contains("--level"), "{e}");
    let e = pno_err(&[
        "calibrate",
        "--run",
        &run,
        "--data",
        &data,
        "--mode",
        "loose",
    ]);
    assert!(e.contains("--mode"), "{e}");
    let e = pno_err(&["eval", "--run", &run, "--data", &data, "--rollout", "2"]);
    assert!(e.contains("--rollout") && e.contains("data.window"), "{e}");
    let e = pno_err(&["eval", "--run", &run, "--data", &data, "--split", "nope"]);
    assert!(e.contains("--split"), "{e}");
}

#[test]
fn bench_validates_suites_and_lists_their_cells() {
    let v: serde_json::Value = serde_json::from_str(
        pno_ok(&[
            "bench",
            "--suite",
            &config("suite_smoke.toml"),
            "--out",
            "unused",
            "--dry-run",
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    let cells = v["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2 * 2 * 4);
    assert_eq!(cells[0], "darcy32/fno/seed0");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[suite]\nname = \"x\"\nseeds = [0]\nsamlpes = 3\n").unwrap();
    let e = pno_err(&["bench", "--suite", bad.to_str().unwrap(), "--out", "unused"]);
    assert!(e.contains("samlpes"), "{e}");
    assert!(!std::path::Path::new("unused").exists());
}
