//! Name → generator dispatch.

use crate::error::{Error, Result};
use crate::generator::Generator;

/// Canonical PDE names accepted by [`build`].
pub const PDES: &[&str] = &["darcy", "burgers", "navier_stokes", "ks", "heat", "wave"];

/// Maps aliases (`ns`, `navier-stokes`, `kuramoto_sivashinsky`, …) to canonical names.
pub fn canonical_pde(name: &str) -> Result<&'static str> {
    let n = name.to_ascii_lowercase().replace('-', "_");
    let c = match n.as_str() {
        "darcy" => "darcy",
        "burgers" => "burgers",
        "navier_stokes" | "ns" => "navier_stokes",
        "ks" | "kuramoto_sivashinsky" => "ks",
        "heat" => "heat",
        "wave" => "wave",
        _ => {
            return Err(Error::UnknownPde {
                expected: PDES.join(", "),
                got: name.to_string(),
            });
        }
    };
    Ok(c)
}

/// Builds a validated generator for `pde` from a raw config object (keys as in `configs/*.toml`).
///
/// Unknown keys, wrong types and out-of-range values are rejected with the key named.
pub fn build(pde: &str, config: serde_json::Value) -> Result<Box<dyn Generator>> {
    match canonical_pde(pde)? {
        "darcy" => crate::darcy::build(config),
        "burgers" => crate::burgers::build(config),
        "navier_stokes" => crate::navier_stokes::build(config),
        "ks" => crate::ks::build(config),
        "heat" => crate::heat::build(config),
        _ => crate::wave::build(config),
    }
}
