//! Records the git commit the binary was built from (`PNO_GIT_COMMIT`, "unknown" outside a git
//! checkout), so every benchmark cell says which code produced it.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PNO_GIT_COMMIT={commit}");
    for (flag, file) in [("--git-dir", "HEAD"), ("--git-common-dir", "refs/heads")] {
        if let Some(dir) = git(&["rev-parse", flag]) {
            println!("cargo:rerun-if-changed={dir}/{file}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
