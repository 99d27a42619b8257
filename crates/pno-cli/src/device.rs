//! Backend selection: the one place that knows which GPU backends this binary was built with.

use anyhow::{Result, bail};
use pno_models::burn::tensor::Device;

/// `cpu` (burn's flex backend; default) or, in a build with `--features cuda`, `cuda` /
/// `cuda:N`.
pub(crate) fn select_device(name: &str) -> Result<Device> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        s if s == "cuda" || s.starts_with("cuda:") => cuda(s),
        other => bail!("--device: expected cpu, cuda or cuda:N, got {other:?}"),
    }
}

#[cfg(feature = "cuda")]
fn cuda(s: &str) -> Result<Device> {
    let index: usize = match s.strip_prefix("cuda:") {
        Some(i) => i.parse().map_err(|_| {
            anyhow::anyhow!("--device: expected cuda:N with N an integer, got {s:?}")
        })?,
        None => 0,
    };
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(s: &str) -> Result<Device> {
    bail!(
        "--device {s}: this pno was built without CUDA; rebuild with `cargo build --release -p pno-cli --features cuda`"
    )
}
