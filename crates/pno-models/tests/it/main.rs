//! Integration tests of the model crate (CPU, small grids).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fused;
mod losses;
mod models;
mod spectral;

use pno_models::burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub(crate) fn device() -> Device {
    Device::flex()
}

pub(crate) fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| r.random::<f32>() * 2.0 - 1.0).collect()
}

pub(crate) fn t3(v: Vec<f32>, d: [usize; 3]) -> Tensor<3> {
    Tensor::from_data(TensorData::new(v, d), &device())
}

pub(crate) fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}
