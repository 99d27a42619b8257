//! `pno generate`: determinism, sharding, config validation, every shipped config.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::{assert_errors_name, config, pno_err, pno_ok};

/// All files of a folder (name → bytes), ignoring `stats.json` written by `data check`.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap(),
            )
        })
        .collect()
}

fn gen_args<'a>(pde: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["generate", pde, "--out", out, "--quiet"];
    v.extend_from_slice(extra);
    v
}

#[test]
fn generate_same_seed_any_thread_count_gives_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for (pde, extra) in [
        ("darcy", vec!["--resolution", "17", "--n", "6"]),
        (
            "burgers",
            vec!["--resolution", "64", "--n", "5", "--set", "t_final=0.1"],
        ),
    ] {
        let a = dir.path().join(format!("{pde}-a"));
        let b = dir.path().join(format!("{pde}-b"));
        let mut args_a = extra.clone();
        args_a.extend(["--threads", "1", "--seed", "5"]);
        let mut args_b = extra.clone();
        args_b.extend([
            "--threads",
            "2",
            "--seed",
            "5",
            "--samples-per-file",
            "1024",
        ]);
        pno_ok(&gen_args(pde, a.to_str().unwrap(), &args_a));
        pno_ok(&gen_args(pde, b.to_str().unwrap(), &args_b));
        let (fa, fb) = (files(&a), files(&b));
        assert!(!fa.is_empty());
        assert_eq!(fa, fb, "{pde}: outputs differ between 1 and 2 threads");
        // a different seed gives different data
        let c = dir.path().join(format!("{pde}-c"));
        let mut args_c = extra.clone();
        args_c.extend(["--seed", "6"]);
        pno_ok(&gen_args(pde, c.to_str().unwrap(), &args_c));
        assert_ne!(files(&c), fa);
    }
}

#[test]
fn generate_shards_together_equal_the_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let parts = dir.path().join("parts");
    let base = [
        "--resolution",
        "16",
        "--n",
        "7",
        "--seed",
        "11",
        "--set",
        "n_times=3",
    ];
    pno_ok(&gen_args("heat", whole.to_str().unwrap(), &base));
    for i in 0..3 {
        let shard = format!("{i}/3");
        let mut a = base.to_vec();
        a.extend(["--shard", shard.as_str()]);
        pno_ok(&gen_args("heat", parts.to_str().unwrap(), &a));
    }
    let whole_ds = pno_data::Dataset::open(&whole).unwrap();
    let parts_ds = pno_data::Dataset::open(&parts).unwrap();
    let u_whole = whole_ds.read_tensor("u").unwrap();
    let u_parts = parts_ds.read_tensor("u").unwrap();
    assert_eq!(u_whole.shape(), &[7, 3, 1, 16, 16]);
    assert_eq!(u_parts.shape(), u_whole.shape());
    assert_eq!(u_parts.to_f32_vec(), u_whole.to_f32_vec());
    // the quality gate accepts the assembled parts
    pno_ok(&["data", "check", parts.to_str().unwrap()]);
}

#[test]
fn generate_unknown_config_key_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bad");
    let err = pno_err(&gen_args(
        "darcy",
        out.to_str().unwrap(),
        &["--set", "viscosity=2"],
    ));
    assert!(err.contains("viscosity"), "{err}");
    assert!(!out.join("manifest.json").exists());
}

#[test]
fn generate_bad_values_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let out = out.to_str().unwrap();
    let missing = config("does-not-exist.toml");
    assert_errors_name(&[
        (&gen_args("maxwell", out, &[]), &["maxwell", "darcy"]),
        (
            &gen_args("darcy", out, &["--resolution", "1"]),
            &["resolution"],
        ),
        (&gen_args("darcy", out, &["--shard", "4/4"]), &["shard"]),
        (&gen_args("darcy", out, &["--n", "0"]), &["--n"]),
        (&gen_args("heat", out, &["--set", "nu=-1"]), &["nu"]),
        (
            &gen_args("heat", out, &["--config", missing.as_str()]),
            &["does-not-exist.toml"],
        ),
    ]);
}

#[test]
fn generate_every_shipped_config_runs_small() {
    // Each configs/<pde>*.toml is smoke-tested at tiny size; overrides shrink the expensive ones.
    let dir = tempfile::tempdir().unwrap();
    let cfg_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut seen = 0;
    for entry in fs::read_dir(&cfg_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        let Some(pde) = table.get("pde").and_then(|v| v.as_str()) else {
            continue; // not a generate config
        };
        let shrink: &[&str] = match pde {
            "darcy" if table.get("recipe").and_then(|v| v.as_str()) == Some("pdebench") => {
                &["--resolution", "32"]
            }
            "darcy" => &["--resolution", "9", "--set", "solve_resolution=17"],
            "burgers" => &[
                "--resolution",
                "32",
                "--set",
                "solve_resolution=64",
                "--set",
                "t_final=0.05",
            ],
            "navier_stokes" => &[
                "--resolution",
                "16",
                "--set",
                "solve_resolution=32",
                "--set",
                "t_final=0.02",
                "--set",
                "record_every=0.01",
                "--set",
                "dt=0.001",
            ],
            "ks" => &["--set", "t_final=2"],
            _ => &["--resolution", "16"],
        };
        let out = dir.path().join(&name);
        let mut args = vec!["--config", path.to_str().unwrap(), "--n", "2"];
        args.extend_from_slice(shrink);
        pno_ok(&gen_args(pde, out.to_str().unwrap(), &args));
        pno_ok(&[
            "data",
            "check",
            out.to_str().unwrap(),
            "--splits",
            "train=0.5,test=0.5",
        ]);
        seen += 1;
    }
    assert!(seen >= 6, "expected a config per PDE, found {seen}");
}

#[test]
fn generate_json_summary_reports_counts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w");
    let s = pno_ok(&[
        "--json",
        "generate",
        "wave",
        "--out",
        out.to_str().unwrap(),
        "--n",
        "3",
        "--resolution",
        "16",
        "--shard",
        "1/2",
    ]);
    let v: serde_json::Value = serde_json::from_str(s.trim()).unwrap();
    assert_eq!(v["samples"], 2);
    assert_eq!(v["first_sample"], 1);
    assert_eq!(v["pde"], "wave");
}

#[test]
fn generate_solver_failure_leaves_no_partial_output() {
    // A time step far beyond the advective CFL limit makes the Navier–Stokes solver stop with
    // an error on the first samples; nothing of the run may remain in the output folder.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ns");
    let err = pno_err(&gen_args(
        "ns",
        out.to_str().unwrap(),
        &[
            "--resolution",
            "16",
            "--n",
            "20",
            "--set",
            "dt=0.5",
            "--set",
            "t_final=5",
            "--set",
            "record_every=2.5",
            "--set",
            "forcing_amplitude=50",
        ],
    ));
    // "generating navier_stokes into <out>: navier_stokes sample <k> became non-finite at
    // t = <t>: advective CFL number ... exceeds 1 (dt = 5e-1, N = 16); reduce dt"
    let number_after = |key: &str| -> f64 {
        let at = err
            .find(key)
            .unwrap_or_else(|| panic!("no {key:?} in: {err}"))
            + key.len();
        let rest = &err[at..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | '-' | '+')))
            .unwrap_or(rest.len());
        rest[..end]
            .parse()
            .unwrap_or_else(|_| panic!("no number after {key:?} in: {err}"))
    };
    let sample = number_after("navier_stokes sample ");
    assert!(
        sample.fract() == 0.0 && (0.0..20.0).contains(&sample),
        "sample {sample} is not one of the 20: {err}"
    );
    let t = number_after("became non-finite at t = ");
    assert!(t > 0.0 && t <= 5.0, "time {t} outside (0, t_final]: {err}");
    for needle in [
        out.to_str().unwrap(),
        "CFL",
        "exceeds 1",
        "dt = 5e-1",
        "reduce dt",
    ] {
        assert!(err.contains(needle), "{needle:?} missing: {err}");
    }
    // The output folder is absent or empty, and nothing else (temporary files) was written.
    let names = |d: &Path| -> Vec<String> {
        fs::read_dir(d)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(names(&out).is_empty(), "left behind: {:?}", names(&out));
    let beside: Vec<String> = names(dir.path())
        .into_iter()
        .filter(|n| n != "ns")
        .collect();
    assert!(beside.is_empty(), "left beside the output: {beside:?}");
}
