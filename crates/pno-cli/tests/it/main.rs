//! Integration tests of the `pno` binary: real processes, real files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench;
mod data;
mod drift;
mod generate;
mod serve;
mod train;

use std::path::Path;
use std::process::{Command, Output};

/// Runs `pno` with `args` and returns its output.
pub(crate) fn pno(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pno"))
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
