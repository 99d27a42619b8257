//! Loading training fields from any format of the data engine, with provenance and splits.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use pno_data::{CheckOptions, Format, Tensor, open_any};

use crate::config::DataSpec;
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

/// Where the data came from (recorded in every run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Path as given.
    pub path: PathBuf,
    /// Format.
    pub format: String,
    /// SHA-256 of the file (or of the dataset's manifest).
    pub sha256: String,
    /// Samples in the file.
    pub n_samples: usize,
    /// Input and target tensor names.
    pub tensors: [String; 2],
    /// Grid after subsampling.
    pub grid: Vec<usize>,
}

/// Train/validation/test sample indices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Splits {
    /// Training samples.
    pub train: Vec<usize>,
    /// Validation samples.
    pub val: Vec<usize>,
    /// Test samples (the last `n_test`).
    pub test: Vec<usize>,
}

impl Splits {
    /// Carve the splits: the last `n_test` samples are the test split; a seeded permutation of
    /// the rest gives `round(val_fraction · rest)` validation samples and the training samples
    /// (optionally the first `n_train` of them), each sorted.
    pub fn carve(n: usize, spec: &DataSpec, seed: u64) -> Result<Self> {
        if spec.n_test >= n {
            return Err(crate::error::config_err(
                "data.n_test",
                format!("fewer than the {n} samples"),
                spec.n_test,
            ));
        }
        let pool = n - spec.n_test;
        let mut perm: Vec<usize> = (0..pool).collect();
        perm.shuffle(&mut ChaCha8Rng::seed_from_u64(pno_models::noise::mix_seed(
            &[seed, 0x5eed],
        )));
        let n_val = ((pool as f64) * spec.val_fraction).round() as usize;
        let mut val = perm[..n_val].to_vec();
        let mut train = perm[n_val..].to_vec();
        if let Some(k) = spec.n_train {
            train.truncate(k);
        }
        if train.is_empty() {
            return Err(crate::error::config_err(
                "data.val_fraction",
                "a split that leaves training samples",
                spec.val_fraction,
            ));
        }
        train.sort_unstable();
        val.sort_unstable();
        Ok(Self {
            train,
            val,
            test: (pool..n).collect(),
        })
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

fn subsample(
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

/// Read `spec.x`/`spec.y` from any supported dataset at `path` (running the quality gate first
/// when `spec.check`).
pub fn load_fields(path: &Path, spec: &DataSpec) -> Result<(Fields, Provenance)> {
    if spec.check {
        let report = pno_data::check(
            path,
            &CheckOptions {
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
    }
    let source = open_any(path)?;
    let set = source.to_samples()?;
    let find = |name: &str| {
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
    };
    let (tx, ty) = (find(&spec.x)?, find(&spec.y)?);
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
    for (name, v, c) in [(&spec.x, &x, cin), (&spec.y, &y, cout)] {
        if let Some(i) = v.iter().position(|a| !a.is_finite()) {
            let per = c * grid.iter().product::<usize>();
            return Err(shape_err(
                path,
                name,
                "finite values",
                format!("{} in sample {}", v[i], i / per),
            ));
        }
    }
    if grid.iter().any(|&g| g < 4) {
        return Err(shape_err(
            path,
            &spec.x,
            "at least 4 points per axis after subsampling",
            format!("{grid:?}"),
        ));
    }
    let sha256 = match source.format {
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
    let prov = Provenance {
        path: path.to_path_buf(),
        format: source.format.name().to_string(),
        sha256,
        n_samples: nx,
        tensors: [spec.x.clone(), spec.y.clone()],
        grid: grid.clone(),
    };
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
