//! Neural operators and probabilistic neural operators on burn.
//!
//! - [`spectral::SpectralConv`]: truncated-DFT spectral convolution (any resolution).
//! - [`fno::Fno`] and [`deeponet::DeepOnet`]: the networks.
//! - [`config::ModelConfig`] → [`config::ModelSpec`] → [`model::Model`]: a validated TOML
//!   table becomes a model of one of eight kinds (`fno`, `deeponet`, `mc_dropout`,
//!   `ensemble`, `laplace`, `pno_d`, `pno_r`, `vi_pno`), all answering
//!   [`model::Model::predict`] with draws, mean, std and quantiles.
//! - [`losses`]: differentiable L², H¹, Gaussian NLL, CRPS, energy score and ELBO.
//! - [`weights`]: parameters by name, for safetensors files and checkpoints.
//!
//! ```
//! use pno_models::burn::tensor::Device;
//! use pno_models::config::ModelConfig;
//! let cfg = ModelConfig { kind: Some("fno".into()), hidden_channels: Some(32), n_modes: Some(vec![12, 12]),
//!     lifting_channels: Some(256), projection_channels: Some(256), ..Default::default() };
//! let spec = cfg.validate(1, 1, &[64, 64]).unwrap();
//! let model = spec.init(0, &Device::flex());
//! // The PNO paper's Darcy FNO has 710,305 parameters.
//! assert_eq!(pno_models::num_params(&model), 710_305);
//! ```

pub mod config;
pub mod deeponet;
pub mod error;
pub mod factorized;
pub mod fno;
pub mod fused;
pub mod init;
pub mod laplace;
pub mod layers;
pub mod losses;
pub mod model;
pub mod noise;
pub mod spectral;
pub mod weights;

pub use burn;
pub use config::{Kind, ModelConfig, ModelSpec};
pub use error::{ModelError, Result};
pub use model::{Model, Predictive};

/// Number of scalar parameters of a module.
pub fn num_params<M: burn::module::Module>(module: &M) -> usize {
    module.num_params()
}
