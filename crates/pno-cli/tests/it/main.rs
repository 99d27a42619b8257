//! Integration tests of the `pno` binary: real processes, real files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod active;
mod anomaly_webhook;
mod audit;
mod bench;
mod data;
mod drift;
mod generate;
mod lifecycle;
mod preflight;
mod promote;
mod serve;
mod train;

use std::path::Path;
use std::process::{Command, Output};

/// The `pno` binary under test: this build's, or `PNO_TEST_BIN` (a copy kept apart for a long
/// measurement while the target folder is rebuilt).
pub(crate) fn pno_bin() -> String {
    std::env::var("PNO_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_pno").to_string())
}

/// Runs `pno` with `args` and returns its output.
pub(crate) fn pno(args: &[&str]) -> Output {
    Command::new(pno_bin())
        .args(args)
        .output()
        .expect("pno runs")
}

/// Runs `pno` and asserts success, returning stdout.
pub(crate) fn pno_ok(args: &[&str]) -> String {
    let out = pno(args);
    assert!(
        out.status.success(),
        "pno {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `pno keys create --role ROLE --keys KEYS`: the new key.
pub(crate) fn new_key(keys: &Path, role: &str) -> String {
    pno_ok(&[
        "keys",
        "create",
        "--role",
        role,
        "--keys",
        keys.to_str().unwrap(),
    ])
    .trim()
    .to_string()
}

/// Runs `pno`, asserts failure, returns stderr.
pub(crate) fn pno_err(args: &[&str]) -> String {
    let out = pno(args);
    assert!(
        !out.status.success(),
        "pno {args:?} unexpectedly succeeded:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Path of a file in the repository's `configs/` folder.
pub(crate) fn config(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs")
        .join(name)
        .display()
        .to_string()
}

/// Generates `n` Darcy samples at `res`×`res` with `seed` into the new dataset folder `out` and
/// returns `out` as an argument.
pub(crate) fn darcy(out: &Path, res: usize, n: usize, seed: u64) -> String {
    let out = out.display().to_string();
    pno_ok(&[
        "generate",
        "darcy",
        "--resolution",
        &res.to_string(),
        "--n",
        &n.to_string(),
        "--seed",
        &seed.to_string(),
        "--out",
        &out,
        "--quiet",
    ]);
    out
}

/// Arguments of `pno train --config configs/<config> --data <data> --out <out> --quiet` with one
/// `--set` per entry of `sets` (`"train.epochs=1"`, ...).
pub(crate) fn train_args(config_name: &str, data: &str, out: &str, sets: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["train", "--config", &config(config_name), "--data", data]
        .into_iter()
        .chain(["--out", out, "--quiet"])
        .map(str::to_string)
        .collect();
    for s in sets {
        args.extend(["--set".to_string(), (*s).to_string()]);
    }
    args
}

/// Trains `configs/<config>` on `data` into `out`, shrunk by the `--set` overrides `sets`, and
/// asserts success.
pub(crate) fn tiny_train(config_name: &str, data: &str, out: &str, sets: &[&str]) {
    let args = train_args(config_name, data, out, sets);
    pno_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// One row per error case: `pno <args>` fails and its stderr names every needle.
pub(crate) fn assert_errors_name(cases: &[(&[&str], &[&str])]) {
    for (args, needles) in cases {
        let err = pno_err(args);
        assert!(
            needles.iter().all(|n| err.contains(n)),
            "pno {args:?}: stderr must name {needles:?}:\n{err}"
        );
    }
}
