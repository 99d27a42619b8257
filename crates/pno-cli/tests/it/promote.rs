//! `pno eval --gate` and `pno promote` end to end with real training: a version trained on data
//! whose coefficient fields were corrupted (the files are valid, the checksums pass) is refused
//! with its failing metrics named; a better-trained version is promoted atomically with its
//! gate record; nothing is written on refusal.

use std::path::Path;

use crate::{darcy, pno, pno_err, pno_ok};

/// The training data with each input replaced by another sample's (targets kept): valid files
/// that teach the model nothing about the operator.
fn corrupted(dir: &Path, clean: &str) -> String {
    let out = dir.join("corrupt.npz");
    let ds = pno_data::Dataset::open(Path::new(clean)).unwrap();
    let x = ds.read_tensor("x").unwrap();
    let y = ds.read_tensor("y").unwrap();
    let shape = x.shape().to_vec();
    let per: usize = shape[1..].iter().product();
    let xs = x.to_f32_vec();
    let n = shape[0];
    let mut shuffled = vec![0.0f32; xs.len()];
    for i in 0..n {
        let j = (i * 7 + 3) % n;
        shuffled[i * per..(i + 1) * per].copy_from_slice(&xs[j * per..(j + 1) * per]);
    }
    let ys = y.to_f32_vec();
    pno_data::write_npz(
        &out,
        &[
            ("x", &shape, pno_data::NpyData::F32(&shuffled)),
            ("y", y.shape(), pno_data::NpyData::F32(&ys)),
        ],
    )
    .unwrap();
    out.display().to_string()
}

fn train(data: &str, out: &Path, epochs: usize) -> String {
    let run = out.display().to_string();
    pno_ok(&[
        "train",
        "--data",
        data,
        "--out",
        &run,
        "--quiet",
        "--set",
        "model.kind=\"mc_dropout\"",
        "--set",
        "model.hidden_channels=8",
        "--set",
        "model.n_layers=2",
        "--set",
        "model.n_modes=[6, 6]",
        "--set",
        "model.lifting_channels=16",
        "--set",
        "model.projection_channels=16",
        "--set",
        &format!("train.epochs={epochs}"),
        "--set",
        "train.batch_size=8",
        "--set",
        "train.lr=0.005",
        "--set",
        "data.n_test=8",
    ]);
    run
}

const GATE: &str = r#"
[absolute]
rel_l2 = { max = 0.6 }

[relative]
rel_l2 = { rel_margin = 0.1 }
crps = { rel_margin = 0.25 }
"#;

#[test]
fn promote_refuses_a_corrupted_challenger_and_publishes_a_better_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let clean = darcy(&d.join("clean"), 16, 64, 1);
    let heldout = darcy(&d.join("heldout"), 16, 16, 2);
    let gate = d.join("gate.toml");
    std::fs::write(&gate, GATE).unwrap();
    let gate = gate.to_str().unwrap();
    let repo = d.join("repo");
    let repo_s = repo.to_str().unwrap();
    let promote = |run: &str| {
        pno(&[
            "promote",
            "--run",
            run,
            "--repository",
            repo_s,
            "--model",
            "darcy",
            "--gate",
            gate,
            "--data",
            &heldout,
            "--samples",
            "8",
            "--json",
        ])
    };

    // v1: the first version has no champion; only the absolute checks apply.
    let v1 = train(&clean, &d.join("v1"), 4);
    let out = promote(&v1);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], 1, "{v}");
    assert!(v["record"]["champion"].is_null());
    let record: pno_run::GateRecord =
        serde_json::from_slice(&std::fs::read(repo.join("darcy/1/gate.json")).unwrap()).unwrap();
    assert!(record.passed);
    assert_eq!(record.gate_sha256, pno_core::sha256_hex(GATE.as_bytes()));
    assert_eq!(record.n_functions, 16, "every sample of the held-out file");
    assert!(
        pno_run::load_trained(
            &repo.join("darcy/1"),
            &pno_models::burn::tensor::Device::flex()
        )
        .is_ok()
    );

    // A challenger trained on corrupted inputs: refused, failing metric named, nothing written.
    let bad = train(&corrupted(d, &clean), &d.join("bad"), 4);
    let out = promote(&bad);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused") && err.contains("rel_l2"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["promoted"], false);
    let bad_rel_l2 = v["record"]["metrics"]["rel_l2"].as_f64().unwrap();
    assert_eq!(v["record"]["champion"]["version"], 1);
    assert!(!repo.join("darcy/2").exists(), "nothing written on refusal");
    let leftovers: Vec<_> = std::fs::read_dir(repo.join("darcy")).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no staging folder left behind");

    // `pno eval --gate` gives the same verdict with the champion as the reference.
    let e = pno(&[
        "eval",
        "--run",
        &bad,
        "--data",
        &heldout,
        "--samples",
        "8",
        "--gate",
        gate,
        "--champion",
        repo.join("darcy/1").to_str().unwrap(),
    ]);
    assert_eq!(e.status.code(), Some(2));
    let table = String::from_utf8_lossy(&e.stdout);
    assert!(
        table.contains("FAIL") && table.contains("verdict: FAIL"),
        "{table}"
    );

    // A better-trained challenger: promoted as version 2 against champion 1.
    let good = train(&clean, &d.join("good"), 16);
    let out = promote(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], 2, "{v}");
    let record: pno_run::GateRecord =
        serde_json::from_slice(&std::fs::read(repo.join("darcy/2/gate.json")).unwrap()).unwrap();
    let champ = record.champion.as_ref().unwrap();
    assert_eq!(champ.version, 1);
    eprintln!(
        "promotion on held-out Darcy 16² (16 functions, 8 draws): v1 rel_l2 {:.4} crps {:.4}; corrupted challenger rel_l2 {bad_rel_l2:.4}, refused; v2 rel_l2 {:.4} crps {:.4}, promoted",
        champ.metrics["rel_l2"],
        champ.metrics["crps"],
        record.metrics["rel_l2"],
        record.metrics["crps"],
    );
    assert!(record.metrics["rel_l2"] <= champ.metrics["rel_l2"] * 1.1);
    assert!(
        record
            .rows
            .iter()
            .any(|r| r.check.contains("not worse than the champion"))
    );
}

#[test]
fn bad_gate_files_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[absolute]\nrel_l3 = { max = 1 }\n", "absolute.rel_l3"),
        (
            "[absolute]\nrel_l2 = { max = 0.1, min = 0.2 }\n",
            "min <= max",
        ),
        ("[absolute]\nrel_l2 = { maximum = 0.1 }\n", "maximum"),
        ("[coverage]\nlevel = 0.85\n", "coverage.level"),
        (
            "[relative]\ncoverage_90 = { rel_margin = 0.1 }\n",
            "relative.coverage_90",
        ),
        (
            "[relative]\nnll = { rel_margin = 0.1, abs_margin = 0.2 }\n",
            "both",
        ),
        (
            "[performance]\nbatch = 0\np99_predict_ms = { max = 1 }\n",
            "performance.batch",
        ),
        ("[gates]\n", "gates"),
    ];
    for (text, want) in cases {
        let p = dir.path().join("g.toml");
        std::fs::write(&p, text).unwrap();
        let e = pno_err(&[
            "promote",
            "--run",
            "nope",
            "--repository",
            "r",
            "--model",
            "m",
            "--gate",
            p.to_str().unwrap(),
        ]);
        assert!(e.contains("gate file") && e.contains(want), "{text}: {e}");
    }
}
