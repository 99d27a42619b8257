//! The common interface of every dataset generator.

use serde::Serialize;

use crate::error::{Error, Result};

/// Name and per-sample shape of one generated tensor (channels-first).
///
/// Input/target pairs are `x` and `y` shaped `[c, spatial…]`; trajectories are `u` shaped
/// `[t, c, spatial…]` with the snapshot times given by [`Generator::times`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorLayout {
    /// Tensor name (`x`, `y` or `u`).
    pub name: String,
    /// Per-sample shape.
    pub shape: Vec<usize>,
}

impl TensorLayout {
    /// A named layout.
    pub fn new(name: &str, shape: &[usize]) -> Self {
        Self {
            name: name.to_string(),
            shape: shape.to_vec(),
        }
    }

    /// Number of values per sample.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the tensor holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A configured, validated generator of independent samples.
///
/// Sample `index` depends only on `(seed, index)` (see [`crate::sample_rng`]), so samples can
/// be computed in any order, on any thread, in any shard, and give identical values.
pub trait Generator: Send + Sync {
    /// PDE name, e.g. `darcy`.
    fn pde(&self) -> &'static str;
    /// Recipe name within the PDE, e.g. `fno` or `pdebench`.
    fn recipe(&self) -> &str;
    /// One-line description of the numerical method.
    fn solver(&self) -> String;
    /// The tensors of one sample, in the order [`Generator::sample`] returns them.
    fn layout(&self) -> Vec<TensorLayout>;
    /// Snapshot times of trajectory outputs (`None` for input/target pairs).
    fn times(&self) -> Option<Vec<f64>>;
    /// Spatial output resolution, e.g. `[64, 64]`.
    fn resolution(&self) -> Vec<usize>;
    /// Every physical and numerical parameter, for the dataset manifest.
    fn parameters(&self) -> serde_json::Value;
    /// Computes sample `index`: one flat row-major `f64` vector per tensor of [`Generator::layout`].
    fn sample(&self, seed: u64, index: u64) -> Result<Vec<Vec<f64>>>;
    /// The inputs of sample `index` alone, laid out as [`input_layout`] says: for input/target
    /// generators every tensor but the target `y`; for trajectory generators the initial frame
    /// of each trajectory (`[1, c, spatial…]`). The values equal the corresponding values of
    /// [`Generator::sample`] bit for bit. Active learning draws candidate inputs with this and
    /// runs the solver only for the chosen ones.
    ///
    /// The default computes the whole sample and cuts it; generators whose input is cheap
    /// (Darcy's coefficient, heat's initial condition) override it to skip the solve.
    fn input(&self, seed: u64, index: u64) -> Result<Vec<Vec<f64>>> {
        let trajectory = self.times().is_some();
        let sample = self.sample(seed, index)?;
        Ok(self
            .layout()
            .iter()
            .zip(sample)
            .filter_map(|(t, mut v)| {
                if trajectory {
                    v.truncate(t.len() / t.shape.first().copied().unwrap_or(1).max(1));
                    Some(v)
                } else {
                    (t.name != TARGET).then_some(v)
                }
            })
            .collect())
    }
}

/// Name of the target tensor of input/target generators.
const TARGET: &str = "y";

/// The tensors [`Generator::input`] returns: every tensor but the target `y` of an input/target
/// generator, or the first frame (`[1, c, spatial…]`) of each trajectory tensor.
pub fn input_layout(g: &dyn Generator) -> Vec<TensorLayout> {
    let trajectory = g.times().is_some();
    g.layout()
        .into_iter()
        .filter(|t| trajectory || t.name != TARGET)
        .map(|mut t| {
            if trajectory && let Some(frames) = t.shape.first_mut() {
                *frames = 1;
            }
            t
        })
        .collect()
}

/// Whether every value is finite (no NaN, no ±∞); same answer as
/// `v.iter().all(|x| x.is_finite())`. `x·0` is `0` for finite `x` and NaN otherwise, so lane-wise
/// sums of `x·0` stay `0` exactly when all values are finite; the fixed lanes let it vectorise.
pub(crate) fn all_finite(v: &[f64]) -> bool {
    let mut acc = [0.0f64; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x * 0.0;
        }
    }
    acc.iter().all(|a| *a == 0.0) && chunks.remainder().iter().all(|x| x.is_finite())
}

/// Deserialises a PDE config, mapping serde's message (which names the key) into [`Error`].
pub(crate) fn parse_config<T: serde::de::DeserializeOwned>(
    pde: &str,
    config: serde_json::Value,
) -> Result<T> {
    serde_json::from_value(config).map_err(|source| Error::Deserialize {
        pde: pde.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::all_finite;

    #[test]
    fn all_finite_matches_is_finite_everywhere() {
        for len in [0, 1, 7, 8, 9, 17, 64] {
            let v: Vec<f64> = (0..len).map(|i| i as f64 - 3.5).collect();
            assert!(all_finite(&v));
            for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                for pos in 0..len {
                    let mut w = v.clone();
                    w[pos] = bad;
                    assert!(!all_finite(&w), "len {len} pos {pos} {bad}");
                }
            }
        }
        assert!(all_finite(&[f64::MAX, f64::MIN, f64::MIN_POSITIVE, -0.0]));
    }
}
