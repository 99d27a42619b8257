//! The `manifest.json` of our dataset format: header, files with checksums, per-tensor stats.

use std::path::{Path, PathBuf};

use pno_core::ShardSpec;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::stats::Moments;
use crate::tensor::numel;

/// The `format` field of every manifest.
pub const FORMAT_NAME: &str = "pno-dataset";
/// The current `format_version`.
pub const FORMAT_VERSION: u32 = 1;
/// File name of a complete (unsharded or merged) manifest.
pub const MANIFEST_FILE: &str = "manifest.json";

/// File name of the manifest of part `shard` (`manifest.json` for the whole dataset).
pub fn manifest_file_name(shard: ShardSpec) -> String {
    if shard.count == 1 {
        MANIFEST_FILE.to_string()
    } else {
        format!("manifest.part-{}-of-{}.json", shard.index, shard.count)
    }
}

/// Name and per-sample shape of one stored tensor (channels first, e.g. `x: [1, 64, 64]`,
/// trajectories `u: [t, c, x(, y)]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Tensor name (`x`, `y`, `u`, ...).
    pub name: String,
    /// Shape of one sample.
    pub shape: Vec<usize>,
}

/// What a dataset is: everything a generator knows before writing the first sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetHeader {
    /// PDE name (`darcy`, `burgers`, ...).
    pub pde: String,
    /// Recipe name (e.g. `fno-darcy`).
    pub recipe: String,
    /// Solver name and settings summary.
    pub solver: String,
    /// Every physical and numerical parameter.
    pub parameters: serde_json::Value,
    /// Master seed.
    pub seed: u64,
    /// Number of samples of the whole (unsharded) dataset.
    pub n_samples: usize,
    /// Stored tensors, in the order samples are pushed.
    pub tensors: Vec<TensorSpec>,
    /// Output times of trajectories, if any.
    pub times: Option<Vec<f64>>,
    /// Which part of the dataset this run writes.
    pub shard: ShardSpec,
    /// Producer and version, e.g. `pno-physics-bench 0.1.0`.
    pub generator: String,
}

/// A stored tensor: name, dtype, per-sample shape and summary statistics of the data written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorEntry {
    /// Tensor name.
    pub name: String,
    /// Stored dtype (always `f32` for datasets written by this crate).
    pub dtype: String,
    /// Shape of one sample.
    pub shape: Vec<usize>,
    /// Statistics over every element written (in `f64`).
    pub stats: Moments,
}

/// One safetensors file: a contiguous run of samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// File name relative to the dataset folder.
    pub path: String,
    /// Global index of its first sample.
    pub first_sample: usize,
    /// Number of samples it holds.
    pub n_samples: usize,
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
}

/// The manifest of a dataset (or of one part of a sharded dataset).
///
/// Deliberately has no creation time: the same seed gives byte-identical manifests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// Format version, [`FORMAT_VERSION`].
    pub format_version: u32,
    /// PDE name.
    pub pde: String,
    /// Recipe name.
    pub recipe: String,
    /// Solver description.
    pub solver: String,
    /// Every physical and numerical parameter (and, for converted data, the provenance).
    pub parameters: serde_json::Value,
    /// Master seed.
    pub seed: u64,
    /// Samples in the whole dataset (all parts).
    pub n_samples: usize,
    /// Spatial shape of the first tensor (without channel and time axes).
    pub resolution: Vec<usize>,
    /// Stored tensors.
    pub tensors: Vec<TensorEntry>,
    /// Output times of trajectories.
    pub times: Option<Vec<f64>>,
    /// Which part this manifest describes (`0/1` for a complete dataset).
    pub shard: ShardSpec,
    /// Producer and version.
    pub generator: String,
    /// Version of `pno-data` that wrote the files.
    pub writer: String,
    /// The files, in sample order.
    pub files: Vec<FileEntry>,
}

/// Spatial shape of a per-sample shape: drops the time axis (when `trajectory`) and the channel axis.
pub(crate) fn resolution(shape: &[usize], trajectory: bool) -> Vec<usize> {
    let skip = if trajectory { 2 } else { 1 };
    shape.iter().skip(skip).copied().collect()
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn read(path: &Path) -> Result<Manifest> {
        let bytes = std::fs::read(path).map_err(Error::io("read", path))?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            Error::format(
                path,
                "manifest",
                "a pno-dataset manifest (JSON)",
                e.to_string(),
            )
        })?;
        m.validate(path)?;
        Ok(m)
    }

    /// The sample range this manifest's files cover.
    pub fn sample_range(&self) -> std::ops::Range<usize> {
        self.shard.range(self.n_samples)
    }

    /// Checks invariants a reader relies on; `path` names the manifest in errors.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let f = |field: &str, expected: String, got: String| {
            Err(Error::format(path, field, expected, got))
        };
        if self.format != FORMAT_NAME {
            return f("format", FORMAT_NAME.into(), self.format.clone());
        }
        if self.format_version != FORMAT_VERSION {
            return f(
                "format_version",
                FORMAT_VERSION.to_string(),
                self.format_version.to_string(),
            );
        }
        ShardSpec::new(self.shard.index, self.shard.count)
            .map_err(|_| Error::format(path, "shard", "I/K with I < K", self.shard.to_string()))?;
        if self.tensors.is_empty() {
            return f("tensors", "at least one tensor".into(), "none".into());
        }
        for (i, t) in self.tensors.iter().enumerate() {
            if t.dtype != "f32" {
                return f(
                    &format!("tensors[{i}].dtype"),
                    "f32".into(),
                    t.dtype.clone(),
                );
            }
            if !valid_name(&t.name) || self.tensors[..i].iter().any(|o| o.name == t.name) {
                return f(
                    &format!("tensors[{i}].name"),
                    "a unique name of [A-Za-z0-9_-.]".into(),
                    t.name.clone(),
                );
            }
            if numel(&t.shape).is_none_or(|n| n == 0 || n > 1 << 40) {
                return f(
                    &format!("tensors[{i}].shape"),
                    "a non-empty shape".into(),
                    format!("{:?}", t.shape),
                );
            }
        }
        if let Some(times) = &self.times
            && times.iter().any(|t| !t.is_finite())
        {
            return f("times", "finite values".into(), format!("{times:?}"));
        }
        let range = self.sample_range();
        let mut next = range.start;
        for (i, e) in self.files.iter().enumerate() {
            if !valid_name(&e.path) {
                return f(
                    &format!("files[{i}].path"),
                    "a plain file name inside the dataset folder".into(),
                    e.path.clone(),
                );
            }
            if e.first_sample != next || e.n_samples == 0 {
                return f(
                    &format!("files[{i}].first_sample"),
                    format!("{next} (files contiguous, non-empty, in sample order)"),
                    format!("{} (n_samples {})", e.first_sample, e.n_samples),
                );
            }
            next = e.first_sample.saturating_add(e.n_samples);
            if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return f(
                    &format!("files[{i}].sha256"),
                    "64 hex digits".into(),
                    e.sha256.clone(),
                );
            }
        }
        if next != range.end {
            return f(
                "files",
                format!("files covering samples {}..{}", range.start, range.end),
                format!("files covering {}..{next}", range.start),
            );
        }
        Ok(())
    }

    /// Per-sample specs of the stored tensors.
    pub fn tensor_specs(&self) -> Vec<TensorSpec> {
        self.tensors
            .iter()
            .map(|t| TensorSpec {
                name: t.name.clone(),
                shape: t.shape.clone(),
            })
            .collect()
    }

    /// Pretty JSON bytes with a trailing newline (the exact bytes written to disk).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// The path of file `entry` inside `dir`.
    pub fn file_path(dir: &Path, entry: &FileEntry) -> PathBuf {
        dir.join(&entry.path)
    }
}

/// A tensor or file name that is safe as a plain file name.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}
