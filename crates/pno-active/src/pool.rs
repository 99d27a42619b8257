//! Candidate inputs and labels: model inputs drawn from a generator without solving
//! ([`pno_solvers::Generator::input`]), and the labelled dataset of a round, solved by the
//! generator for exactly the chosen sample indices.

use std::path::Path;

use rayon::prelude::*;

use pno_data::{Dataset, DatasetHeader, DatasetWriter, TensorSpec};
use pno_run::{DataSpec, WindowLayout};
use pno_solvers::{Generator, input_layout};

use crate::error::{Result, config_err, io_err};

/// How a generator's input tensor becomes a model input `[in_channels, points]`: which tensor,
/// its channels and grid, and the run's spatial subsampling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputMap {
    /// Position of the input tensor in [`input_layout`].
    tensor: usize,
    /// Channels of one input.
    pub channels: usize,
    /// Channels of one target (what the model predicts).
    pub out_channels: usize,
    /// The generator's spatial grid.
    grid: Vec<usize>,
    /// `data.subsample`.
    stride: usize,
    /// The model's grid (after subsampling).
    pub model_grid: Vec<usize>,
}

impl InputMap {
    /// Checks that the run's `[data]` fits the generator: input/target pairs need `data.x` and
    /// `data.y` among its tensors; trajectories need a window whose input is the initial
    /// condition (`start = 0`, `t_in = 1`, `layout = "channels"`), so candidates are drawn
    /// without solving.
    pub fn new(spec: &DataSpec, g: &dyn Generator) -> Result<Self> {
        let pde = g.pde();
        let layout = g.layout();
        let trajectory = g.times().is_some();
        let names: Vec<&str> = layout.iter().map(|t| t.name.as_str()).collect();
        match (&spec.window, trajectory) {
            (Some(_), false) => {
                return Err(config_err(
                    "data.window",
                    format!("no window: {pde} gives input/target pairs {names:?}"),
                    "a [data.window] table",
                ));
            }
            (None, true) => {
                return Err(config_err(
                    "data.window",
                    format!(
                        "a window with start = 0 and t_in = 1 ({pde} gives trajectories; the pool holds their initial conditions)"
                    ),
                    "no [data.window]",
                ));
            }
            (Some(w), true) => {
                if w.start != 0 || w.t_in != 1 || w.layout != WindowLayout::Channels {
                    return Err(config_err(
                        "data.window",
                        "start = 0, t_in = 1, layout = \"channels\" (the pool holds initial conditions, drawn without solving)",
                        format!(
                            "start = {}, t_in = {}, layout = {:?}",
                            w.start, w.t_in, w.layout
                        ),
                    ));
                }
            }
            (None, false) => {
                if !names.contains(&spec.y.as_str()) {
                    return Err(config_err(
                        "data.y",
                        format!("one of {pde}'s tensors {names:?}"),
                        format!("{:?}", spec.y),
                    ));
                }
            }
        }
        let inputs = input_layout(g);
        let tensor = inputs
            .iter()
            .position(|t| t.name == spec.x)
            .ok_or_else(|| {
                config_err(
                    "data.x",
                    format!(
                        "one of {pde}'s input tensors {:?}",
                        inputs.iter().map(|t| t.name.as_str()).collect::<Vec<_>>()
                    ),
                    format!("{:?}", spec.x),
                )
            })?;
        let shape = &inputs[tensor].shape;
        let skip = usize::from(trajectory); // the frame axis of [1, c, spatial…]
        let channels = shape.get(skip).copied().unwrap_or(1);
        let grid = shape.get(skip + 1..).unwrap_or(&[]).to_vec();
        if !(1..=2).contains(&grid.len()) {
            return Err(config_err(
                "data.x",
                "a field on a 1-D or 2-D grid",
                format!("shape {shape:?}"),
            ));
        }
        let out_channels = match &spec.window {
            Some(w) => w.t_out * channels,
            None => layout
                .iter()
                .find(|t| t.name == spec.y)
                .and_then(|t| t.shape.first().copied())
                .unwrap_or(1),
        };
        let stride = spec.subsample.max(1);
        let model_grid = grid.iter().map(|g| g.div_ceil(stride)).collect();
        Ok(Self {
            tensor,
            channels,
            out_channels,
            grid,
            stride,
            model_grid,
        })
    }

    /// Values of one model input, `channels × points` of the model grid.
    pub fn per_input(&self) -> usize {
        self.channels * self.model_grid.iter().product::<usize>()
    }

    /// The model input of sample `index` (physical units, `[channels, points]`), computed
    /// without solving the PDE: the very values the trainer reads once the sample is labelled.
    pub fn model_input(&self, g: &dyn Generator, seed: u64, index: u64) -> Result<Vec<f32>> {
        let mut tensors = g.input(seed, index)?;
        let v: Vec<f32> = if self.tensor < tensors.len() {
            tensors.swap_remove(self.tensor)
        } else {
            Vec::new()
        }
        .into_iter()
        .map(|x| x as f32)
        .collect();
        let (x, _) = pno_train::data::subsample(&v, 1, self.channels, &self.grid, self.stride);
        Ok(x)
    }

    /// [`InputMap::model_input`] of several samples, concatenated (computed in parallel).
    pub fn model_inputs(&self, g: &dyn Generator, seed: u64, indices: &[u64]) -> Result<Vec<f32>> {
        let rows: Vec<Vec<f32>> = indices
            .par_iter()
            .map(|&i| self.model_input(g, seed, i))
            .collect::<Result<_>>()?;
        Ok(rows.concat())
    }
}

/// Writes the labelled dataset `dir` holding samples `labelled` (generator sample indices, in
/// this order) of seed `seed`. The first samples are copied from `previous` (a dataset of the
/// first `n` of them, the previous round's) when given; the rest are solved now, in parallel.
/// A complete dataset already in `dir` with as many samples is kept (a resumed round); a
/// partial one is replaced.
pub fn write_labelled(
    g: &dyn Generator,
    seed: u64,
    labelled: &[u64],
    previous: Option<(&Path, usize)>,
    dir: &Path,
) -> Result<()> {
    if dir.join("manifest.json").exists() {
        let ds = Dataset::open(dir)?;
        if ds.n_samples() == labelled.len() {
            return Ok(());
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io_err("remove the partial dataset", dir))?;
    }
    let layout = g.layout();
    let header = DatasetHeader {
        pde: g.pde().to_string(),
        recipe: g.recipe().to_string(),
        solver: g.solver(),
        parameters: g.parameters(),
        seed,
        n_samples: labelled.len(),
        tensors: layout
            .iter()
            .map(|t| TensorSpec {
                name: t.name.clone(),
                shape: t.shape.clone(),
            })
            .collect(),
        times: g.times(),
        shard: pno_core::ShardSpec::WHOLE,
        generator: format!(
            "pno-physics-bench {} (pno active)",
            env!("CARGO_PKG_VERSION")
        ),
    };
    let mut w = DatasetWriter::create(dir, header, 1024)?;
    let mut done = 0;
    if let Some((prev, n)) = previous {
        let ds = Dataset::open(prev)?;
        let values: Vec<Vec<f32>> = layout
            .iter()
            .map(|t| ds.read_tensor(&t.name).map(|v| v.to_f32_vec()))
            .collect::<std::result::Result<_, _>>()?;
        for i in 0..n.min(labelled.len()) {
            let sample: Vec<Vec<f32>> = layout
                .iter()
                .zip(&values)
                .map(|(t, v)| v[i * t.len()..(i + 1) * t.len()].to_vec())
                .collect();
            w.push(&sample)?;
        }
        done = n.min(labelled.len());
    }
    let solved: Vec<Vec<Vec<f64>>> = labelled[done..]
        .par_iter()
        .map(|&i| g.sample(seed, i))
        .collect::<std::result::Result<_, _>>()?;
    for s in solved {
        let s: Vec<Vec<f32>> = s
            .into_iter()
            .map(|v| v.into_iter().map(|x| x as f32).collect())
            .collect();
        w.push(&s)?;
    }
    w.finish()?;
    Ok(())
}
