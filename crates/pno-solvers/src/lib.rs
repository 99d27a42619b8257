//! Seeded PDE solvers and random-field samplers that generate neural-operator benchmark data.
//!
//! Every generator follows a published recipe (see `docs/pde-specs.md`), computes in
//! `f64`, and draws each sample from its own random stream ([`sample_rng`]) so the output is
//! identical whatever the thread count, order or shard. [`build`] turns a PDE name and a raw
//! config into a validated [`Generator`].
//!
//! ```
//! let g = pno_solvers::build("heat", serde_json::json!({"resolution": 16})).unwrap();
//! let sample = g.sample(0, 0).unwrap();
//! assert_eq!(sample.len(), g.layout().len());
//! ```

pub mod burgers;
pub mod darcy;
mod error;
pub mod etdrk4;
pub mod fft2;
mod generator;
pub mod grf;
pub mod heat;
pub mod ks;
pub mod navier_stokes;
mod registry;
mod rng;
pub mod samples;
pub mod wave;

pub use error::{Error, Result};
pub use generator::{Generator, TensorLayout, input_layout};
pub use registry::{PDES, build, canonical_pde};
pub use rng::sample_rng;
