//! `pno calibrate`, `pno eval --rollout` and `pno bench` as a user runs them.

use crate::{assert_errors_name, config, darcy, pno_err, pno_ok, tiny_train};

#[test]
fn calibrate_stores_the_scale_that_eval_then_applies() {
    let dir = tempfile::tempdir().unwrap();
    let data = darcy(&dir.path().join("d16"), 16, 48, 2);
    let run = dir.path().join("run").display().to_string();
    tiny_train(
        "darcy16_mc_dropout.toml",
        &data,
        &run,
        &["train.epochs=2", "data.n_test=8", "data.n_calibration=12"],
    );
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
    let (run, data) = (run.as_str(), data.as_str());
    let calibrate_args = ["calibrate", "--run", run, "--data", data];
    let eval_args = ["eval", "--run", run, "--data", data];
    assert_errors_name(&[
        (
            &[&calibrate_args[..], &["--level", "1.5"]].concat(),
            &["--level"],
        ),
        (
            &[&calibrate_args[..], &["--mode", "loose"]].concat(),
            &["--mode"],
        ),
        (
            &[&eval_args[..], &["--rollout", "2"]].concat(),
            &["--rollout", "data.window"],
        ),
        (
            &[&eval_args[..], &["--split", "nope"]].concat(),
            &["--split"],
        ),
    ]);
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

#[test]
fn a_killed_suite_resumes_to_the_uninterrupted_results() {
    use std::process::Command;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("darcy.toml"),
        "pde = \"darcy\"\nn = 40\nseed = 3\nresolution = 16\n",
    )
    .unwrap();
    let suite = dir.path().join("s.toml");
    std::fs::write(
        &suite,
        r#"[suite]
name = "k"
seeds = [0]
samples = 4
[[pde]]
name = "d"
generator = "darcy.toml"
data = { n_test = 8, check = false }
model = { hidden_channels = 6, n_layers = 2, n_modes = [4, 4], lifting_channels = 8, projection_channels = 8 }
train = { epochs = 40, batch_size = 4, lr = 0.003 }
[[method]]
name = "fno"
model = { kind = "fno" }
[[method]]
name = "pno_d"
model = { kind = "pno_d", dropout = 0.1 }
"#,
    )
    .unwrap();
    let s = suite.to_str().unwrap();
    let full = dir.path().join("full");
    pno_ok(&[
        "bench",
        "--suite",
        s,
        "--out",
        full.to_str().unwrap(),
        "--quiet",
    ]);
    let killed = dir.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pno"))
        .args([
            "bench",
            "--suite",
            s,
            "--out",
            killed.to_str().unwrap(),
            "--quiet",
        ])
        .spawn()
        .unwrap();
    // Kill -9 while the second cell trains (its first checkpoint is indexed).
    let ckpt = killed.join("cells/d/pno_d/seed0/run/checkpoints/index.json");
    let t0 = Instant::now();
    while !ckpt.exists() && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pno"))
        .args(["bench", "--suite", s, "--out", killed.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("d/fno/seed0: done earlier, kept"), "{log}");
    for m in ["fno", "pno_d"] {
        let read = |root: &std::path::Path| -> serde_json::Value {
            let p = root.join(format!("cells/d/{m}/seed0/cell.json"));
            serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
        };
        let (a, b) = (read(&full), read(&killed));
        for (k, v) in a["metrics"].as_object().unwrap() {
            let (x, y) = (v.as_f64().unwrap(), b["metrics"][k].as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-9 * x.abs().max(1e-300),
                "{m} {k}: {x} vs {y}"
            );
        }
    }
    assert!(killed.join("index.html").exists());
}
