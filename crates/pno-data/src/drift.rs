//! [`drift_features`]: the per-sample features of a dataset's input fields that drift detection
//! compares (`pno data drift`, the tests themselves live in `pno-metrics`).
//!
//! Per channel of the input tensor, per sample:
//! - `mean` and `std` (population) of the field;
//! - **spectral band energies**: the share of the field's (mean-removed) power spectrum in a few
//!   log-spaced bands of the radial wavenumber `|k|` (integer mode indices, `|k| = √(kx² + ky²)`
//!   in 2-D). A changed correlation length or smoothness of the input shows up here before it
//!   moves the mean or std (research/serving-anchors.md §3.2: neural operators are spectral).
//!
//! Band edges, for `k_max = ⌊min(axis length)/2⌋` and `B` requested bands: `round(k_max^(b/B))`,
//! `b = 0..B`, duplicates removed; the last band also takes the corner modes above `k_max`. A
//! 16² grid (`k_max` 8) with 4 bands gives `k1`, `k2`, `k3-4`, `k5+`; a 32² grid `k1`, `k2-3`,
//! `k4-7`, `k8+`.

use std::path::Path;

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::source::open_any;
use crate::tensor::Tensor;

/// Default number of spectral bands per channel.
pub const DEFAULT_BANDS: usize = 4;

/// Per-sample drift features of one tensor: a table `[n_samples, names.len()]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftFeatures {
    /// The tensor the features were computed from.
    pub tensor: String,
    /// Per-sample shape of the field, `[c, x(, y)]` (after taking the first time step).
    pub field_shape: Vec<usize>,
    /// Whether the tensor was a trajectory `[n, t, c, ...]` of which time step 0 was used.
    pub first_time_step: bool,
    /// Number of samples (rows).
    pub n_samples: usize,
    /// Feature names (columns): `x[0].mean`, `x[0].std`, `x[0].k1`, `x[0].k2-3`, ...
    pub names: Vec<String>,
    /// Row-major values `[n_samples, names.len()]`.
    pub values: Vec<f64>,
}

/// Reads the dataset at `path` ([`open_any`]: our folders, `.npy`, `.npz`, `.pt`, HDF5) and
/// computes the drift features of one tensor of its sample view ([`crate::Source::to_samples`]).
///
/// `tensor`: the tensor to use; default `x` when present, else the first (input) tensor. A
/// trajectory dataset (one with output times) contributes its first time step, the model input.
pub fn drift_features(path: &Path, tensor: Option<&str>, bands: usize) -> Result<DriftFeatures> {
    let src = open_any(path)?;
    let samples = src.to_samples()?;
    let available = || {
        samples
            .tensors
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (name, t) = match tensor {
        Some(want) => samples
            .tensors
            .iter()
            .find(|(n, _)| n == want)
            .ok_or_else(|| {
                Error::format(
                    path,
                    "tensor",
                    format!("one of: {}", available()),
                    format!("`{want}`"),
                )
            })?,
        None => samples
            .tensors
            .iter()
            .find(|(n, _)| n == "x")
            .or_else(|| samples.tensors.first())
            .ok_or_else(|| Error::format(path, "tensors", "at least one sample tensor", "none"))?,
    };
    let trajectory = samples.times.is_some() && t.shape().len() >= 4;
    let field = if trajectory {
        first_time_step(t)?
    } else {
        t.clone()
    };
    let mut features = field_features(&field, name, bands).map_err(|e| match e {
        Error::Invalid {
            field,
            expected,
            got,
        } => Error::format(path, format!("{name}: {field}"), expected, got),
        other => other,
    })?;
    features.first_time_step = trajectory;
    Ok(features)
}

/// `t[:, 0]` of a trajectory tensor `[n, t, ...]`.
fn first_time_step(t: &Tensor) -> Result<Tensor> {
    let shape = t.shape();
    let (n, steps) = (shape[0], shape[1]);
    let inner: usize = shape[2..].iter().product();
    let all = t.to_f64_vec();
    let mut out = Vec::with_capacity(n * inner);
    for s in 0..n {
        let start = s * steps * inner;
        out.extend_from_slice(&all[start..start + inner]);
    }
    let mut out_shape = vec![n];
    out_shape.extend_from_slice(&shape[2..]);
    Tensor::new(out_shape, crate::tensor::TensorData::F64(out))
}

/// Spectral band edges for a grid whose shortest axis has `k_max` positive modes.
fn band_edges(k_max: usize, bands: usize) -> Vec<usize> {
    if k_max == 0 || bands == 0 {
        return Vec::new();
    }
    let mut edges: Vec<usize> = (0..bands)
        .map(|b| (k_max as f64).powf(b as f64 / bands as f64).round() as usize)
        .collect();
    edges.dedup();
    edges
}

fn band_name(edges: &[usize], b: usize) -> String {
    match edges.get(b + 1) {
        None => format!("k{}+", edges[b]),
        Some(&hi) if hi == edges[b] + 1 => format!("k{}", edges[b]),
        Some(&hi) => format!("k{}-{}", edges[b], hi - 1),
    }
}

/// Signed mode index of FFT bin `i` of an axis of length `n`.
fn mode(i: usize, n: usize) -> f64 {
    if i <= n / 2 {
        i as f64
    } else {
        i as f64 - n as f64
    }
}

/// Drift features of a field tensor `[n, c, x]`, `[n, c, x, y]` or `[n, x]` (one channel),
/// named `{name}[{c}].{feature}`; `bands` spectral bands per channel (0: mean and std only).
pub fn field_features(field: &Tensor, name: &str, bands: usize) -> Result<DriftFeatures> {
    let shape = field.shape();
    let (n, c, spatial): (usize, usize, Vec<usize>) = match shape.len() {
        2 => (shape[0], 1, vec![shape[1]]),
        3 | 4 => (shape[0], shape[1], shape[2..].to_vec()),
        _ => {
            return Err(Error::invalid(
                "shape",
                "[n, c, x] or [n, c, x, y] (or [n, x]); trajectories [n, t, c, ...] with times",
                format!("{shape:?}"),
            ));
        }
    };
    if n == 0 || c == 0 || spatial.contains(&0) {
        return Err(Error::invalid(
            "shape",
            "at least one sample, channel and grid point",
            format!("{shape:?}"),
        ));
    }
    let points: usize = spatial.iter().product();
    let k_max = spatial.iter().map(|&s| s / 2).min().unwrap_or(0);
    let edges = band_edges(k_max, bands);
    // band of every grid mode (None: the mean mode)
    let band_of: Vec<Option<usize>> = (0..points)
        .map(|p| {
            let k2: f64 = match spatial.as_slice() {
                [nx] => mode(p, *nx).powi(2),
                [nx, ny] => mode(p / ny, *nx).powi(2) + mode(p % ny, *ny).powi(2),
                _ => 0.0,
            };
            let k = k2.sqrt();
            (k > 0.0).then(|| edges.partition_point(|&e| e as f64 <= k + 1e-9).max(1) - 1)
        })
        .collect();

    let mut names = Vec::new();
    for ch in 0..c {
        names.push(format!("{name}[{ch}].mean"));
        names.push(format!("{name}[{ch}].std"));
        for b in 0..edges.len() {
            names.push(format!("{name}[{ch}].{}", band_name(&edges, b)));
        }
    }
    let per_channel = 2 + edges.len();
    let data = field.to_f64_vec();
    let mut planner = FftPlanner::<f64>::new();
    let ffts: Vec<_> = spatial
        .iter()
        .map(|&s| planner.plan_fft_forward(s))
        .collect();
    let mut buf = vec![Complex::new(0.0, 0.0); points];
    let mut column = Vec::new();
    let mut values = Vec::with_capacity(n * c * per_channel);
    for (index, f) in data.chunks_exact(points).enumerate() {
        if let Some(bad) = f.iter().find(|v| !v.is_finite()) {
            return Err(Error::invalid(
                "values",
                "finite values only (see `pno data check`)",
                format!("{bad} in sample {}, channel {}", index / c, index % c),
            ));
        }
        let mean = f.iter().sum::<f64>() / points as f64;
        let var = f.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / points as f64;
        let std = var.sqrt();
        values.push(mean);
        values.push(std);
        if edges.is_empty() {
            continue;
        }
        if std <= 1e-12 * mean.abs() {
            values.extend(std::iter::repeat_n(0.0, edges.len()));
            continue;
        }
        for (b, v) in buf.iter_mut().zip(f) {
            *b = Complex::new(v - mean, 0.0);
        }
        match spatial.as_slice() {
            [_] => ffts[0].process(&mut buf),
            [nx, ny] => {
                for row in buf.chunks_exact_mut(*ny) {
                    ffts[1].process(row);
                }
                for j in 0..*ny {
                    column.clear();
                    column.extend((0..*nx).map(|i| buf[i * ny + j]));
                    ffts[0].process(&mut column);
                    for (i, v) in column.iter().enumerate() {
                        buf[i * ny + j] = *v;
                    }
                }
            }
            _ => {}
        }
        let mut energy = vec![0.0; edges.len()];
        let mut total = 0.0;
        for (v, b) in buf.iter().zip(&band_of) {
            if let Some(b) = b {
                let p = v.norm_sqr();
                energy[*b] += p;
                total += p;
            }
        }
        values.extend(
            energy
                .iter()
                .map(|e| if total > 0.0 { e / total } else { 0.0 }),
        );
    }
    // `values` is [n, c, per_channel] = [n, c·per_channel] row-major, as named.
    let mut field_shape = vec![c];
    field_shape.extend_from_slice(&spatial);
    Ok(DriftFeatures {
        tensor: name.to_string(),
        field_shape,
        first_time_step: false,
        n_samples: n,
        names,
        values,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn band_edges_are_log_spaced_integers() {
        assert_eq!(band_edges(8, 4), vec![1, 2, 3, 5]);
        assert_eq!(band_edges(16, 4), vec![1, 2, 4, 8]);
        assert_eq!(band_edges(2, 4), vec![1, 2]);
        assert!(band_edges(0, 4).is_empty());
        let e = band_edges(16, 4);
        let names: Vec<String> = (0..e.len()).map(|b| band_name(&e, b)).collect();
        assert_eq!(names, ["k1", "k2-3", "k4-7", "k8+"]);
    }

    /// A pure mode puts all its energy in the band of its wavenumber (Parseval), and mean/std
    /// are the field's moments.
    #[test]
    fn single_cosine_lands_in_its_band() {
        let (nx, ny) = (16, 16);
        let mut data = Vec::new();
        for kx in [1usize, 5] {
            for i in 0..nx {
                for _j in 0..ny {
                    let x = i as f64 / nx as f64;
                    data.push(2.0 + (2.0 * std::f64::consts::PI * kx as f64 * x).cos());
                }
            }
        }
        let t = Tensor::new(vec![2, 1, nx, ny], crate::tensor::TensorData::F64(data)).unwrap();
        let f = field_features(&t, "a", 4).unwrap();
        assert_eq!(
            f.names,
            [
                "a[0].mean",
                "a[0].std",
                "a[0].k1",
                "a[0].k2",
                "a[0].k3-4",
                "a[0].k5+"
            ]
        );
        let row = |s: usize| &f.values[s * 6..(s + 1) * 6];
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(row(0)[0], 2.0) && close(row(0)[1], 0.5f64.sqrt()));
        assert!(close(row(0)[2], 1.0) && close(row(0)[3], 0.0));
        assert!(close(row(1)[5], 1.0) && close(row(1)[2], 0.0));
    }

    #[test]
    fn constant_field_has_zero_band_energy() {
        let t = Tensor::new(vec![1, 1, 8], crate::tensor::TensorData::F64(vec![0.1; 8])).unwrap();
        let f = field_features(&t, "u", 2).unwrap();
        assert_eq!(f.names.len(), 4);
        assert_eq!(&f.values[2..], &[0.0, 0.0]);
    }

    #[test]
    fn unsupported_rank_is_an_error() {
        let t = Tensor::new(
            vec![1, 1, 2, 2, 2],
            crate::tensor::TensorData::F64(vec![0.0; 8]),
        )
        .unwrap();
        assert!(matches!(
            field_features(&t, "u", 2),
            Err(Error::Invalid { .. })
        ));
    }

    #[test]
    fn dataset_features_pick_x_and_name_missing_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.npz");
        let y: Vec<f32> = (0..3 * 8).map(|i| i as f32).collect();
        let x: Vec<f32> = (0..3 * 8).map(|i| ((i * 7) % 5) as f32).collect();
        crate::write_npz(
            &p,
            &[
                ("y", &[3, 1, 8], crate::NpyData::F32(&y)),
                ("x", &[3, 1, 8], crate::NpyData::F32(&x)),
            ],
        )
        .unwrap();
        let f = drift_features(&p, None, 2).unwrap();
        assert_eq!((f.tensor.as_str(), f.n_samples), ("x", 3));
        assert_eq!(f.field_shape, [1, 8]);
        assert_eq!(f.values.len(), 3 * f.names.len());
        let err = drift_features(&p, Some("u"), 2).unwrap_err().to_string();
        assert!(
            err.contains("d.npz") && err.contains("`u`") && err.contains("y, x"),
            "{err}"
        );
    }
}
