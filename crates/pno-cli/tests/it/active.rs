//! `pno active` end to end: the loop through the real binary, growth by batches, top-B choice,
//! seeded random acquisition, kill -9 and resume with identical curves, bad input refused.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{assert_errors_name, config, pno_bin, pno_ok};

/// `pno active` on 16x16 Darcy with a tiny PNO_D: initial 6, budget 14, batches of 4, pool 20;
/// `extra` overrides or adds flags.
fn args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "active",
        "--config",
        &config("darcy16_pno_d.toml"),
        "--pde",
        "darcy",
        "--resolution",
        "16",
        "--initial",
        "6",
        "--budget",
        "14",
        "--batch",
        "4",
        "--pool",
        "20",
        "--test",
        "8",
        "--draws",
        "4",
        "--eval-samples",
        "8",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    for s in [
        "train.epochs=3",
        "train.batch_size=4",
        "model.hidden_channels=8",
        "model.n_layers=2",
        "model.n_modes=[4,4]",
        "model.lifting_channels=16",
        "model.projection_channels=16",
    ] {
        a.extend(["--set".to_string(), s.to_string()]);
    }
    // A flag of `extra` already set above replaces its value; anything else is appended.
    let mut i = 0;
    while i < extra.len() {
        let flag = extra[i];
        match a.iter().position(|x| x == flag) {
            Some(k) if flag != "--set" && i + 1 < extra.len() => {
                a[k + 1] = extra[i + 1].to_string();
                i += 2;
            }
            _ => {
                a.push(flag.to_string());
                i += 1;
            }
        }
    }
    a
}

fn run_ok(a: &[String]) -> String {
    pno_ok(&a.iter().map(String::as_str).collect::<Vec<_>>())
}

fn json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// The state of an arm without the timings (which differ between runs).
fn state(out: &Path, arm: &str) -> Value {
    let mut s = json(&out.join("arms").join(arm).join("state.json"));
    for r in s["rounds"].as_array_mut().unwrap() {
        r.as_object_mut().unwrap().remove("seconds");
    }
    s
}

const ARMS: [&str; 4] = [
    "variance-seed0",
    "random-seed0",
    "variance-seed1",
    "random-seed1",
];

#[test]
fn active_learning_loop_grows_by_batches_chooses_top_scores_and_resumes_identically() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let extra = ["--acquisition", "variance", "--seeds", "0,1"];
    let table = run_ok(&args(&a, &extra));
    assert!(
        table.contains("rel-L2 variance") && table.contains("rel-L2 random"),
        "{table}"
    );
    for f in [
        "curve.csv",
        "curve.json",
        "table.md",
        "curve.svg",
        "curve.png",
    ] {
        assert!(a.join(f).is_file(), "{f}");
    }
    let curve = json(&a.join("curve.json"));
    assert_eq!(curve["rows"].as_array().unwrap().len(), 4 * 3);
    assert!(!curve["labels_to_target"].as_array().unwrap().is_empty());

    for arm in ARMS {
        let s = state(&a, arm);
        let rounds = s["rounds"].as_array().unwrap();
        let labels: Vec<u64> = rounds
            .iter()
            .map(|r| r["n_labels"].as_u64().unwrap())
            .collect();
        assert_eq!(labels, vec![6, 10, 14], "{arm}");
        assert_eq!(s["finished"], true);
        let labelled: Vec<u64> = s["labelled"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(labelled.len(), 14);
        let mut distinct = labelled.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 14, "{arm}: a sample labelled twice");
        // Test set 0..8; seed s's block starts at 8 + s * (6 + 20).
        let seed = if arm.ends_with('1') { 1 } else { 0 };
        let block = 8 + seed * 26;
        assert_eq!(labelled[..6], (block..block + 6).collect::<Vec<_>>()[..]);
        assert!(
            labelled[6..]
                .iter()
                .all(|&i| i >= block + 6 && i < block + 26)
        );
        assert_eq!(s["pool"].as_array().unwrap().len(), 20 - 8);
        for (k, r) in rounds.iter().enumerate().take(2) {
            let chosen: Vec<u64> = r["next"]["chosen"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            assert_eq!(chosen, labelled[6 + 4 * k..10 + 4 * k]);
            // The labelled dataset of the next round holds exactly the labelled samples.
            let m = json(
                &a.join("arms")
                    .join(arm)
                    .join(format!("round-{:03}/data/manifest.json", k + 1)),
            );
            assert_eq!(m["n_samples"], 10 + 4 * k as u64);
            if arm.starts_with("random") {
                continue;
            }
            // Top 4 of the recorded scores, ties to the smaller index.
            let sc = json(
                &a.join("arms")
                    .join(arm)
                    .join(format!("round-{k:03}/scores.json")),
            );
            let pool: Vec<u64> = sc["pool"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            let scores: Vec<f64> = sc["scores"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let mut order: Vec<usize> = (0..pool.len()).collect();
            order.sort_by(|&x, &y| scores[y].total_cmp(&scores[x]).then(pool[x].cmp(&pool[y])));
            let top: Vec<u64> = order[..4].iter().map(|&p| pool[p]).collect();
            assert_eq!(chosen, top, "{arm} round {k}");
        }
    }
    // Same seed, same initial set: round 0 is the same model for both acquisitions.
    assert_eq!(
        state(&a, "variance-seed0")["rounds"][0]["metrics"],
        state(&a, "random-seed0")["rounds"][0]["metrics"]
    );
    // Random acquisition: different seeds draw differently; the same seed in another
    // invocation (random alone) draws the same.
    let r0 = state(&a, "random-seed0");
    let b = dir.path().join("b");
    run_ok(&args(
        &b,
        &[
            "--acquisition",
            "random",
            "--compare",
            "none",
            "--seeds",
            "0",
        ],
    ));
    assert_eq!(state(&b, "random-seed0"), r0);
    assert!(!b.join("arms/variance-seed0").exists());

    // kill -9 in the middle (training of a later round), then the same command continues.
    let c = dir.path().join("c");
    let argv = args(&c, &extra);
    let mut killed_at = None;
    for attempt in 0..3 {
        if c.exists() {
            std::fs::remove_dir_all(&c).unwrap();
        }
        let mut child = Command::new(pno_bin()).args(&argv).spawn().unwrap();
        let probe = c.join("arms/variance-seed1/round-001/run/checkpoints");
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(120) {
            if probe.is_dir() || child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        if !status.success() {
            killed_at = Some(attempt);
            break;
        }
    }
    let attempt = killed_at.expect("the run was killed before it finished");
    eprintln!("killed on attempt {attempt}");
    assert!(!c.join("curve.json").exists());
    run_ok(&argv);
    for arm in ARMS {
        assert_eq!(
            state(&c, arm),
            state(&a, arm),
            "{arm} after kill -9 and resume"
        );
    }
    assert_eq!(json(&c.join("curve.json")), curve);
    // Re-running a finished run only rewrites the report.
    run_ok(&argv);
    assert_eq!(json(&c.join("curve.json")), curve);
}

#[test]
fn active_learns_a_time_dependent_pde_from_initial_conditions() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("heat");
    let o = out.to_str().unwrap();
    let cfg = config("heat32_pno_d.toml");
    pno_ok(&[
        "active",
        "--config",
        &cfg,
        "--pde",
        "heat",
        "--resolution",
        "8",
        "--data-set",
        "n_times=3",
        "--data-set",
        "dt_record=0.1",
        "--set",
        "data.window.stride=2",
        "--set",
        "train.epochs=2",
        "--set",
        "model.hidden_channels=8",
        "--set",
        "model.n_layers=2",
        "--set",
        "model.n_modes=[4,4]",
        "--set",
        "model.lifting_channels=8",
        "--set",
        "model.projection_channels=8",
        "--initial",
        "4",
        "--budget",
        "8",
        "--batch",
        "2",
        "--pool",
        "10",
        "--test",
        "4",
        "--draws",
        "3",
        "--eval-samples",
        "4",
        "--acquisition",
        "energy,bald",
        "--warm-start",
        "--out",
        o,
        "--quiet",
    ]);
    for arm in ["energy-seed0", "bald-seed0", "random-seed0"] {
        let s = state(&out, arm);
        let labels: Vec<u64> = s["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["n_labels"].as_u64().unwrap())
            .collect();
        assert_eq!(labels, vec![4, 6, 8], "{arm}");
    }
    // bald on purely epistemic draws records the noise variance it used.
    let b = state(&out, "bald-seed0");
    assert!(b["rounds"][0]["next"]["noise_var"].as_f64().unwrap() > 0.0);
    // The labelled data are whole trajectories solved for exactly the chosen indices.
    let m = json(&out.join("arms/energy-seed0/round-002/data/manifest.json"));
    assert_eq!(m["n_samples"], 8);
    assert_eq!(m["tensors"][0]["shape"], serde_json::json!([3, 1, 8, 8]));
}

#[test]
fn active_refuses_bad_flags_and_configs_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let base = |extra: &[&str]| -> Vec<String> { args(&out, extra) };
    let owned: Vec<(Vec<String>, &[&str])> = vec![
        (
            base(&["--acquisition", "variance", "--budget", "5"]),
            &["--budget", "--initial"],
        ),
        (
            base(&["--acquisition", "variance", "--batch", "0"]),
            &["--batch", "at least 1"],
        ),
        (
            base(&["--acquisition", "entropy"]),
            &[
                "--acquisition",
                "entropy",
                "variance, energy, bald or random",
            ],
        ),
        (
            base(&["--acquisition", "variance", "--compare", "best"]),
            &["--compare", "best"],
        ),
        (
            base(&["--acquisition", "variance", "--pool", "3"]),
            &["--pool", "at least"],
        ),
        (
            base(&["--acquisition", "variance", "--seeds", "1,1"]),
            &["--seeds", "distinct"],
        ),
        (
            base(&["--acquisition", "variance", "--draws", "1"]),
            &["--draws"],
        ),
        (
            base(&["--acquisition", "variance", "--set", "data.n_test=4"]),
            &["data.n_test", "--test"],
        ),
        (
            base(&["--acquisition", "variance", "--set", "model.kind=wizard"]),
            &["model.kind"],
        ),
        (
            base(&["--acquisition", "variance", "--target-rel-l2=-1"]),
            &["--target-rel-l2"],
        ),
        (
            base(&["--acquisition", "variance", "--pde", "heat"]),
            &["data.window", "heat"],
        ),
        (
            base(&["--acquisition", "variance", "--pde", "maxwell"]),
            &["--pde", "maxwell"],
        ),
        (
            base(&["--acquisition", "variance", "--device", "tpu"]),
            &["--device"],
        ),
        (
            base(&["--acquisition", "variance", "--batch-rule", "diverse"]),
            &["--batch-rule", "diverse", "greedy", "power"],
        ),
        (
            base(&["--acquisition", "variance", "--power-beta", "2"]),
            &["--power-beta", "--batch-rule power"],
        ),
        (
            base(&[
                "--acquisition",
                "variance",
                "--batch-rule",
                "power",
                "--power-beta=-1",
            ]),
            &["--power-beta", "positive"],
        ),
    ];
    let cases: Vec<(Vec<&str>, &[&str])> = owned
        .iter()
        .map(|(a, n)| (a.iter().map(String::as_str).collect(), *n))
        .collect();
    let cases: Vec<(&[&str], &[&str])> = cases.iter().map(|(a, n)| (a.as_slice(), *n)).collect();
    assert_errors_name(&cases);
    assert!(!out.join("arms").exists(), "nothing ran");
    // A folder that is not an active-learning run is not overwritten.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "x").unwrap();
    let a = base(&["--acquisition", "variance"]);
    assert_errors_name(&[(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        &["--out", "not empty"],
    )]);
    // A re-run with other settings is refused naming the flag.
    let run = dir.path().join("run");
    let first = args(
        &run,
        &[
            "--acquisition",
            "random",
            "--compare",
            "none",
            "--budget",
            "10",
        ],
    );
    run_ok(&first);
    let other = args(
        &run,
        &[
            "--acquisition",
            "random",
            "--compare",
            "none",
            "--budget",
            "14",
        ],
    );
    assert_errors_name(&[(
        &other.iter().map(String::as_str).collect::<Vec<_>>(),
        &["--budget", "expected 10", "active.json", "got 14"],
    )]);
    let mut power = first;
    power.extend(["--batch-rule".to_string(), "power".to_string()]);
    assert_errors_name(&[(
        &power.iter().map(String::as_str).collect::<Vec<_>>(),
        &["--batch-rule", "active.json", "greedy", "power"],
    )]);
}
