//! Placeholder, being implemented.
use crate::{Error, Generator, Result};

/// Builds the generator from a raw config.
pub fn build(_config: serde_json::Value) -> Result<Box<dyn Generator>> {
    Err(Error::UnknownPde { expected: String::new(), got: "ks".into() })
}
