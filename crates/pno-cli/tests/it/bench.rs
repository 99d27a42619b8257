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

/// A two-PDE suite small enough to run several times in a test: 2 PDEs × 3 methods (one
/// derived, conformal) × 2 seeds.
fn part_suite(dir: &std::path::Path) -> String {
    std::fs::write(
        dir.join("darcy.toml"),
        "pde = \"darcy\"\nn = 40\nseed = 3\nresolution = 16\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("heat.toml"),
        "pde = \"heat\"\nn = 40\nseed = 5\nresolution = 16\n",
    )
    .unwrap();
    let suite = dir.join("s.toml");
    std::fs::write(
        &suite,
        r#"[suite]
name = "parts"
seeds = [0, 1]
samples = 4
[[pde]]
name = "d"
generator = "darcy.toml"
data = { n_test = 8, n_calibration = 6, check = false }
model = { hidden_channels = 6, n_layers = 1, n_modes = [4, 4], lifting_channels = 8, projection_channels = 8 }
train = { epochs = 2, batch_size = 8, lr = 0.003 }
[[pde]]
name = "h"
generator = "heat.toml"
data = { n_test = 8, n_calibration = 6, check = false, x = "u", y = "u", window = { t_in = 1, t_out = 1 } }
model = { hidden_channels = 6, n_layers = 1, n_modes = [4, 4], lifting_channels = 8, projection_channels = 8 }
train = { epochs = 2, batch_size = 8, lr = 0.003 }
[[method]]
name = "fno"
model = { kind = "fno" }
[[method]]
name = "mc"
model = { kind = "mc_dropout" }
[[method]]
name = "mc+conformal"
base = "mc"
conformal = { level = 0.9 }
"#,
    )
    .unwrap();
    suite.display().to_string()
}

fn metrics(results: &std::path::Path) -> std::collections::BTreeMap<String, serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join("results.json")).unwrap()).unwrap();
    v["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                format!("{}/{}/{}", c["pde"], c["method"], c["seed"]),
                c["metrics"].clone(),
            )
        })
        .collect()
}

#[test]
fn a_suite_run_as_three_parts_merges_to_the_single_run() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let s = part_suite(dir.path());
    let whole = dir.path().join("whole");
    pno_ok(&[
        "bench",
        "--suite",
        &s,
        "--out",
        whole.to_str().unwrap(),
        "--quiet",
    ]);
    // Three processes at once sharing one output folder (racing to generate the data), their
    // parts given as a Kubernetes Indexed Job gives them; and three parts in their own folders.
    let shared = dir.path().join("shared");
    let spawned: Vec<_> = (0..3)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_pno"))
                .args([
                    "bench",
                    "--suite",
                    &s,
                    "--out",
                    shared.to_str().unwrap(),
                    "--quiet",
                ])
                .env("JOB_COMPLETION_INDEX", i.to_string())
                .env("PNO_CELLS_COUNT", "3")
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in spawned {
        assert!(c.wait().unwrap().success());
    }
    let own: Vec<String> = (0..3)
        .map(|i| {
            let out = dir.path().join(format!("p{i}")).display().to_string();
            pno_ok(&[
                "bench",
                "--suite",
                &s,
                "--out",
                &out,
                "--cells",
                &format!("{i}/3"),
                "--quiet",
            ]);
            out
        })
        .collect();
    let merges: [(Vec<&str>, &str); 2] = [
        (vec![shared.to_str().unwrap()], "merged_shared"),
        (own.iter().map(String::as_str).collect(), "merged_own"),
    ];
    for (parts, name) in merges {
        let out = dir.path().join(name);
        let mut args = vec!["bench", "merge"];
        args.extend(parts);
        args.extend(["--suite", &s, "--out", out.to_str().unwrap()]);
        let o = pno_ok(&args);
        assert!(o.contains("merged 12 cells"), "{o}");
        let (a, b) = (metrics(&whole), metrics(&out));
        assert_eq!(a.len(), 12);
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (cell, ma) in &a {
            for (k, v) in ma.as_object().unwrap() {
                let (x, y) = (v.as_f64().unwrap(), b[cell][k].as_f64().unwrap());
                assert!(
                    (x - y).abs() <= 1e-9 * x.abs().max(1e-300),
                    "{name} {cell} {k}: {x} vs {y}"
                );
            }
        }
    }
    // Each part ran a disjoint share, and the listing says which.
    let list: serde_json::Value = serde_json::from_str(&pno_ok(&[
        "bench",
        "--suite",
        &s,
        "--list-cells",
        "--cells",
        "1/3",
        "--json",
    ]))
    .unwrap();
    let selected = list["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["selected"] == true)
        .count();
    assert!(selected > 0 && selected < 12, "{list}");
    // Derived methods run with their base.
    for c in list["details"].as_array().unwrap() {
        if c["cell"].as_str().unwrap().contains("mc+conformal") {
            let base = c["cell"].as_str().unwrap().replace("mc+conformal", "mc");
            let b = list["details"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["cell"] == base.as_str())
                .unwrap();
            assert_eq!(c["part"], b["part"]);
        }
    }
}

#[test]
fn merge_names_missing_and_foreign_cells_and_bad_parts() {
    let dir = tempfile::tempdir().unwrap();
    let s = part_suite(dir.path());
    let p0 = dir.path().join("p0");
    pno_ok(&[
        "bench",
        "--suite",
        &s,
        "--out",
        p0.to_str().unwrap(),
        "--cells",
        "0/3",
        "--quiet",
    ]);
    let e = pno_err(&[
        "bench",
        "merge",
        p0.to_str().unwrap(),
        "--suite",
        &s,
        "--out",
        "unused",
    ]);
    assert!(e.contains("missing") && e.contains("seed"), "{e}");
    // The same part twice from two folders: a duplicate, naming both.
    let copy = dir.path().join("p0copy");
    copy_tree(&p0, &copy);
    let e = pno_err(&[
        "bench",
        "merge",
        p0.to_str().unwrap(),
        copy.to_str().unwrap(),
        "--suite",
        &s,
        "--out",
        "unused",
    ]);
    assert!(e.contains("twice") && e.contains("p0copy"), "{e}");
    // Another version of the suite (one more epoch) does not merge with these cells.
    let text = std::fs::read_to_string(&s)
        .unwrap()
        .replacen("epochs = 2", "epochs = 3", 1);
    let s2 = dir.path().join("s2.toml");
    std::fs::write(&s2, text).unwrap();
    let e = pno_err(&[
        "bench",
        "merge",
        p0.to_str().unwrap(),
        "--suite",
        s2.to_str().unwrap(),
        "--out",
        "unused",
    ]);
    assert!(e.contains("another version of the suite"), "{e}");
    for bad in ["3/3", "1", "a/b", "0/0"] {
        let e = pno_err(&["bench", "--suite", &s, "--out", "unused", "--cells", bad]);
        assert!(e.contains("--cells"), "{bad}: {e}");
    }
    assert!(!std::path::Path::new("unused").exists());
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
