//! Loading training fields from any format of the data engine, with provenance and splits.

use std::path::Path;

use pno_data::{CheckOptions, Format, LeakageSplits, Tensor, open_any};
use pno_run::{DataSpec, Provenance, Window, WindowLayout};

use crate::error::{Result, TrainError};

/// Input/target pairs in memory, channels-first, spatial axes flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct Fields {
    /// Inputs `[n, cin, points]`.
    pub x: Vec<f32>,
    /// Targets `[n, cout, points]`.
    pub y: Vec<f32>,
    /// Samples.
    pub n: usize,
    /// Input channels.
    pub cin: usize,
    /// Target channels.
    pub cout: usize,
    /// Spatial grid.
    pub grid: Vec<usize>,
}

impl Fields {
    /// Points per channel.
    pub fn points(&self) -> usize {
        self.grid.iter().product()
    }

    /// Gather samples `idx` as `(x, y)` host batches.
    pub fn gather(&self, idx: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let (dx, dy) = (self.cin * self.points(), self.cout * self.points());
        let mut x = Vec::with_capacity(idx.len() * dx);
        let mut y = Vec::with_capacity(idx.len() * dy);
        for &i in idx {
            x.extend_from_slice(&self.x[i * dx..(i + 1) * dx]);
            y.extend_from_slice(&self.y[i * dy..(i + 1) * dy]);
        }
        (x, y)
    }
}

fn shape_err(
    path: &Path,
    field: &str,
    expected: impl Into<String>,
    got: impl Into<String>,
) -> TrainError {
    TrainError::DataShape {
        path: path.to_path_buf(),
        field: field.to_string(),
        expected: expected.into(),
        got: got.into(),
    }
}

/// Interpret a tensor as `[n, c, spatial…]` (1 or 2 spatial axes). A 3-D tensor whose last
/// two axes are equal and ≥ 8 from a non-pno file is read as `[n, h, w]` with one channel.
fn as_fields(
    t: &Tensor,
    name: &str,
    path: &Path,
    format: Format,
) -> Result<(usize, usize, Vec<usize>)> {
    let s = t.shape();
    match s.len() {
        3 if format != Format::Pno && s[1] == s[2] && s[1] >= 8 => Ok((s[0], 1, vec![s[1], s[2]])),
        3 => Ok((s[0], s[1], vec![s[2]])),
        4 => Ok((s[0], s[1], vec![s[2], s[3]])),
        _ => Err(shape_err(
            path,
            name,
            "[n, channels, x] or [n, channels, x, y]",
            format!("shape {s:?}"),
        )),
    }
}

/// Every `stride`-th point per spatial axis of `n · c` fields on `grid` (1-D or 2-D): the
/// values and the new grid.
pub fn subsample(
    v: &[f32],
    n: usize,
    c: usize,
    grid: &[usize],
    stride: usize,
) -> (Vec<f32>, Vec<usize>) {
    if stride == 1 {
        return (v.to_vec(), grid.to_vec());
    }
    let new: Vec<usize> = grid.iter().map(|&g| g.div_ceil(stride)).collect();
    let p: usize = grid.iter().product();
    let mut out = Vec::with_capacity(n * c * new.iter().product::<usize>());
    for k in 0..n * c {
        let f = &v[k * p..(k + 1) * p];
        match grid {
            [m] => out.extend((0..*m).step_by(stride).map(|i| f[i])),
            [h, w] => {
                for i in (0..*h).step_by(stride) {
                    out.extend((0..*w).step_by(stride).map(|j| f[i * w + j]));
                }
            }
            _ => {}
        }
    }
    (out, new)
}

fn quality_gate(path: &Path, spec: &DataSpec, splits: &LeakageSplits) -> Result<()> {
    if !spec.check {
        return Ok(());
    }
    let report = pno_data::check(
        path,
        &CheckOptions {
            splits: splits.clone(),
            write_stats: false,
            ..CheckOptions::default()
        },
    )?;
    if !report.passed() {
        let failures: Vec<String> = report.failures().iter().map(|f| f.name.clone()).collect();
        return Err(TrainError::DataCheck {
            path: path.to_path_buf(),
            failures: failures.join(", "),
        });
    }
    Ok(())
}

fn find_tensor<'a>(set: &'a pno_data::SampleSet, name: &str, path: &Path) -> Result<&'a Tensor> {
    set.tensors
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .ok_or_else(|| {
            let names: Vec<&str> = set.tensors.iter().map(|(n, _)| n.as_str()).collect();
            shape_err(
                path,
                name,
                format!("a tensor named {name:?} (set data.x / data.y)"),
                format!("tensors {names:?}"),
            )
        })
}

fn check_values(path: &Path, name: &str, v: &[f32], per: usize, grid: &[usize]) -> Result<()> {
    if let Some(i) = v.iter().position(|a| !a.is_finite()) {
        return Err(shape_err(
            path,
            name,
            "finite values",
            format!("{} in sample {}", v[i], i / per.max(1)),
        ));
    }
    if grid.iter().any(|&g| g < 4) {
        return Err(shape_err(
            path,
            name,
            "at least 4 points per axis after subsampling",
            format!("{grid:?}"),
        ));
    }
    Ok(())
}

fn provenance(
    path: &Path,
    format: Format,
    spec: &DataSpec,
    n: usize,
    grid: &[usize],
) -> Result<Provenance> {
    let sha256 = match format {
        Format::Pno => {
            let m = if path.is_dir() {
                path.join("manifest.json")
            } else {
                path.to_path_buf()
            };
            pno_data::sha256_file(&m)?
        }
        _ => pno_data::sha256_file(path)?,
    };
    Ok(Provenance {
        path: path.to_path_buf(),
        format: format.name().to_string(),
        sha256,
        n_samples: n,
        tensors: [spec.x.clone(), spec.y.clone()],
        grid: grid.to_vec(),
    })
}

/// Read `spec.x`/`spec.y` from any supported dataset at `path`, running the quality gate first
/// when `spec.check` (its leakage check compares `splits`: training passes the plan it carves,
/// so the gate tests the splits training really uses). With `spec.window`, the pairs are
/// windows cut from the trajectories of `spec.x` (see [`Series::fields`]).
pub fn load_fields(
    path: &Path,
    spec: &DataSpec,
    splits: &LeakageSplits,
) -> Result<(Fields, Provenance)> {
    if let Some(w) = &spec.window {
        let (series, prov) = load_series(path, spec, splits)?;
        return Ok((series.fields(w, 1, path, &spec.x)?, prov));
    }
    quality_gate(path, spec, splits)?;
    let source = open_any(path)?;
    let set = source.to_samples()?;
    let (tx, ty) = (
        find_tensor(&set, &spec.x, path)?,
        find_tensor(&set, &spec.y, path)?,
    );
    let (nx, cin, gx) = as_fields(tx, &spec.x, path, source.format)?;
    let (ny, cout, gy) = as_fields(ty, &spec.y, path, source.format)?;
    if nx != ny {
        return Err(shape_err(
            path,
            &spec.y,
            format!("{nx} samples like {}", spec.x),
            format!("{ny}"),
        ));
    }
    if gx != gy {
        return Err(shape_err(
            path,
            &spec.y,
            format!("grid {gx:?} like {}", spec.x),
            format!("{gy:?}"),
        ));
    }
    let (x, grid) = subsample(&tx.to_f32_vec(), nx, cin, &gx, spec.subsample);
    let (y, _) = subsample(&ty.to_f32_vec(), ny, cout, &gy, spec.subsample);
    let p: usize = grid.iter().product();
    check_values(path, &spec.x, &x, cin * p, &grid)?;
    check_values(path, &spec.y, &y, cout * p, &grid)?;
    let prov = provenance(path, source.format, spec, nx, &grid)?;
    Ok((
        Fields {
            x,
            y,
            n: nx,
            cin,
            cout,
            grid,
        },
        prov,
    ))
}

/// Trajectories of a time-series tensor, `[n, frames, c, points]` (spatial axes flattened).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Values `[n, frames, c, points]`.
    pub u: Vec<f32>,
    /// Trajectories.
    pub n: usize,
    /// Stored frames per trajectory.
    pub frames: usize,
    /// Channels per frame.
    pub c: usize,
    /// Spatial grid.
    pub grid: Vec<usize>,
}

impl Series {
    /// Points per channel.
    pub fn points(&self) -> usize {
        self.grid.iter().product()
    }

    /// Frames `frames` of trajectory `i`, frame-major: `[frames.len() · c, points]`.
    pub fn window(&self, i: usize, frames: &[usize]) -> Vec<f32> {
        let per = self.c * self.points();
        let base = i * self.frames * per;
        let mut out = Vec::with_capacity(frames.len() * per);
        for &f in frames {
            out.extend_from_slice(&self.u[base + f * per..base + (f + 1) * per]);
        }
        out
    }

    /// Model channels in and out and the model grid for window `w` (see [`WindowLayout`]).
    pub fn model_shape(
        &self,
        w: &Window,
        path: &Path,
        name: &str,
    ) -> Result<(usize, usize, Vec<usize>)> {
        match w.layout {
            WindowLayout::Channels => Ok((w.t_in * self.c, w.t_out * self.c, self.grid.clone())),
            WindowLayout::Field => {
                if self.c != 1 || self.grid.len() != 1 {
                    return Err(shape_err(
                        path,
                        name,
                        "one channel on a 1-D grid for data.window.layout = \"field\"",
                        format!("{} channel(s) on grid {:?}", self.c, self.grid),
                    ));
                }
                Ok((1, 1, vec![w.t_in, self.grid[0]]))
            }
        }
    }

    /// Input/target pairs: for each trajectory, the input window and the `steps`-th predicted
    /// window after it (`steps = 1`: the frames right after the input).
    pub fn fields(&self, w: &Window, steps: usize, path: &Path, name: &str) -> Result<Fields> {
        let need = w.frames_needed(steps);
        if need > self.frames {
            return Err(shape_err(
                path,
                name,
                format!(
                    "at least {need} frames per trajectory for data.window (start {}, t_in {}, t_out {}, stride {}) and {steps} step(s)",
                    w.start, w.t_in, w.t_out, w.stride
                ),
                format!("{} frames", self.frames),
            ));
        }
        let (cin, cout, grid) = self.model_shape(w, path, name)?;
        let (fx, fy) = (w.frames(0), w.frames(steps));
        let mut x = Vec::with_capacity(self.n * fx.len() * self.c * self.points());
        let mut y = Vec::with_capacity(self.n * fy.len() * self.c * self.points());
        for i in 0..self.n {
            x.extend(self.window(i, &fx));
            y.extend(self.window(i, &fy));
        }
        Ok(Fields {
            x,
            y,
            n: self.n,
            cin,
            cout,
            grid,
        })
    }
}

/// Read the trajectory tensor `spec.x` — `[n, frames, x]`, `[n, frames, c, x]` or
/// `[n, frames, c, h, w]` — from any supported dataset (quality gate first when `spec.check`),
/// subsampled in space by `spec.subsample`.
pub fn load_series(
    path: &Path,
    spec: &DataSpec,
    splits: &LeakageSplits,
) -> Result<(Series, Provenance)> {
    quality_gate(path, spec, splits)?;
    let source = open_any(path)?;
    let set = source.to_samples()?;
    let t = find_tensor(&set, &spec.x, path)?;
    let s = t.shape();
    let (n, frames, c, grid) = match s.len() {
        3 => (s[0], s[1], 1, vec![s[2]]),
        4 => (s[0], s[1], s[2], vec![s[3]]),
        5 => (s[0], s[1], s[2], vec![s[3], s[4]]),
        _ => {
            return Err(shape_err(
                path,
                &spec.x,
                "a trajectory tensor [n, frames, x], [n, frames, c, x] or [n, frames, c, h, w] for [data.window]",
                format!("shape {s:?}"),
            ));
        }
    };
    let (u, grid) = subsample(&t.to_f32_vec(), n * frames, c, &grid, spec.subsample);
    let p: usize = grid.iter().product();
    check_values(path, &spec.x, &u, frames * c * p, &grid)?;
    let prov = provenance(path, source.format, spec, n, &grid)?;
    Ok((
        Series {
            u,
            n,
            frames,
            c,
            grid,
        },
        prov,
    ))
}
