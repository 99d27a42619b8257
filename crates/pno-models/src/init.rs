//! Deterministic parameter initialisation from a seed (host-side ChaCha8, then uploaded), so a
//! model built from the same config and seed has bit-identical weights on every backend.

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use pno_core::seed::{mix, salt};

/// Source of initial parameter values; each call draws from a fresh stream keyed by a name.
#[derive(Debug, Clone)]
pub struct Init {
    seed: u64,
    counter: u64,
}

impl Init {
    /// Initialiser for `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed, counter: 0 }
    }

    fn rng(&mut self) -> ChaCha8Rng {
        self.counter += 1;
        ChaCha8Rng::seed_from_u64(mix(&[self.seed, self.counter, salt::INIT]))
    }

    /// A parameter with entries uniform on `[-bound, bound]`.
    pub fn uniform<const D: usize>(
        &mut self,
        dims: [usize; D],
        bound: f64,
        device: &Device,
    ) -> Param<Tensor<D>> {
        let n: usize = dims.iter().product();
        let mut rng = self.rng();
        let v: Vec<f32> = (0..n)
            .map(|_| (rng.random::<f64>() * 2.0 - 1.0) as f32 * bound as f32)
            .collect();
        Param::from_tensor(Tensor::from_data(TensorData::new(v, dims), device))
    }

    /// A parameter with every entry equal to `value`.
    pub fn constant<const D: usize>(
        &mut self,
        dims: [usize; D],
        value: f64,
        device: &Device,
    ) -> Param<Tensor<D>> {
        Param::from_tensor(Tensor::full(dims, value, device))
    }
}
