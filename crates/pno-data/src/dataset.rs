//! [`Dataset`]: reads a dataset folder in our format, complete or assembled from shard parts.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use pno_core::ShardSpec;
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::manifest::{FileEntry, MANIFEST_FILE, Manifest};
use crate::tensor::{Tensor, TensorData, numel};
use pno_core::sha256_file;

/// A dataset folder in our format, presented as one dataset in sample order.
#[derive(Debug, Clone)]
pub struct Dataset {
    dir: PathBuf,
    manifest: Manifest,
}

/// Parses `manifest.part-I-of-K.json` into `(I, K)`.
fn parse_part_name(name: &str) -> Option<(usize, usize)> {
    let rest = name.strip_prefix("manifest.part-")?.strip_suffix(".json")?;
    let (i, k) = rest.split_once("-of-")?;
    Some((i.parse().ok()?, k.parse().ok()?))
}

/// The part manifests found in `dir`, by `(index, count)`.
fn find_parts(dir: &Path) -> Result<BTreeMap<(usize, usize), PathBuf>> {
    let mut parts = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(Error::io("list", dir))? {
        let entry = entry.map_err(Error::io("list", dir))?;
        if let Some(key) = entry.file_name().to_str().and_then(parse_part_name) {
            parts.insert(key, entry.path());
        }
    }
    Ok(parts)
}

/// Whether `dir` looks like a dataset folder of our format.
pub(crate) fn is_dataset_dir(dir: &Path) -> bool {
    dir.is_dir()
        && (dir.join(MANIFEST_FILE).is_file() || find_parts(dir).is_ok_and(|p| !p.is_empty()))
}

/// The header of a part manifest with the per-part fields blanked, for consistency checks.
fn header_key(m: &Manifest) -> Manifest {
    let mut k = m.clone();
    k.shard = ShardSpec::WHOLE;
    k.files.clear();
    for t in &mut k.tensors {
        t.stats = Default::default();
    }
    k
}

/// Combines part manifests (sorted by index) into one; the result is not validated.
fn combine(dir: &Path, parts: &[(PathBuf, Manifest)]) -> Result<Manifest> {
    let Some((first_path, first)) = parts.first() else {
        return Err(Error::format(
            dir,
            "manifest",
            "manifest.json or manifest.part-I-of-K.json",
            "none",
        ));
    };
    let key = header_key(first);
    let mut out = first.clone();
    out.shard = ShardSpec::WHOLE;
    out.files.clear();
    for t in &mut out.tensors {
        t.stats = Default::default();
    }
    for (path, m) in parts {
        if header_key(m) != key {
            return Err(Error::format(
                path,
                "header",
                format!(
                    "the same header as {} (apart from shard, files and stats)",
                    first_path.display()
                ),
                "a different pde/recipe/solver/parameters/seed/n_samples/tensors/times/generator",
            ));
        }
        out.files.extend(m.files.iter().cloned());
        for (o, t) in out.tensors.iter_mut().zip(&m.tensors) {
            o.stats = o.stats.merge(&t.stats);
        }
    }
    Ok(out)
}

impl Dataset {
    /// Opens `dir`: its `manifest.json`, or else all of its `manifest.part-I-of-K.json`
    /// (which must all be present and consistent).
    pub fn open(dir: &Path) -> Result<Dataset> {
        let (ds, count, missing) = Self::open_lenient(dir)?;
        if !missing.is_empty() {
            return Err(Error::MissingParts {
                dir: dir.to_path_buf(),
                count,
                missing,
            });
        }
        ds.manifest.validate(&ds.manifest_path())?;
        Ok(ds)
    }

    /// Like [`Dataset::open`] but tolerates missing parts: returns the part count and the
    /// indices of the missing parts instead, and does not validate file coverage.
    pub(crate) fn open_lenient(dir: &Path) -> Result<(Dataset, usize, Vec<usize>)> {
        let whole = dir.join(MANIFEST_FILE);
        if whole.is_file() {
            let manifest = Manifest::read(&whole)?;
            if manifest.shard != ShardSpec::WHOLE {
                return Err(Error::format(
                    &whole,
                    "shard",
                    "0/1 in manifest.json",
                    manifest.shard.to_string(),
                ));
            }
            return Ok((
                Dataset {
                    dir: dir.to_path_buf(),
                    manifest,
                },
                1,
                Vec::new(),
            ));
        }
        if !dir.is_dir() {
            return Err(Error::format(
                dir,
                "dataset",
                "a folder with manifest.json",
                "not a folder",
            ));
        }
        let found = find_parts(dir)?;
        let Some(&(_, count)) = found.keys().next() else {
            return Err(Error::format(
                dir,
                "manifest",
                "manifest.json or manifest.part-I-of-K.json",
                "neither",
            ));
        };
        let mut parts = Vec::new();
        for (&(i, k), path) in &found {
            if k != count {
                return Err(Error::format(
                    path,
                    "part count",
                    format!("{count} (as the other parts)"),
                    k.to_string(),
                ));
            }
            let m = Manifest::read(path)?;
            if m.shard != (ShardSpec { index: i, count: k }) {
                return Err(Error::format(
                    path,
                    "shard",
                    format!("{i}/{k} (as the file name)"),
                    m.shard.to_string(),
                ));
            }
            parts.push((path.clone(), m));
        }
        let missing: Vec<usize> = (0..count)
            .filter(|i| !found.contains_key(&(*i, count)))
            .collect();
        let manifest = combine(dir, &parts)?;
        Ok((
            Dataset {
                dir: dir.to_path_buf(),
                manifest,
            },
            count,
            missing,
        ))
    }

    fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST_FILE)
    }

    /// The dataset folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The (combined) manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Total number of samples.
    pub fn n_samples(&self) -> usize {
        self.manifest.n_samples
    }

    /// Names of the stored tensors, in manifest order.
    pub fn tensor_names(&self) -> Vec<&str> {
        self.manifest
            .tensors
            .iter()
            .map(|t| t.name.as_str())
            .collect()
    }

    /// Path of file number `i`.
    pub fn file_path(&self, i: usize) -> Option<PathBuf> {
        self.manifest.files.get(i).map(|e| self.dir.join(&e.path))
    }

    /// The manifest entry of file number `i`, or an error naming the valid range.
    fn file_entry(&self, i: usize) -> Result<&FileEntry> {
        self.manifest.files.get(i).ok_or_else(|| {
            Error::invalid(
                "file index",
                format!("< {}", self.manifest.files.len()),
                i.to_string(),
            )
        })
    }

    /// Verifies the SHA-256 of file number `i` against the manifest.
    pub fn verify_file(&self, i: usize) -> Result<()> {
        let entry = self.file_entry(i)?;
        let path = self.dir.join(&entry.path);
        let got = sha256_file(&path)?;
        if got != entry.sha256 {
            return Err(Error::Checksum {
                path,
                expected: entry.sha256.clone(),
                got,
            });
        }
        Ok(())
    }

    /// Reads file number `i`: every tensor of the manifest, each `[n_file, ...spec]`.
    pub fn read_file(&self, i: usize) -> Result<Vec<(String, Tensor)>> {
        let entry = self.file_entry(i)?;
        let path = self.dir.join(&entry.path);
        let bytes = std::fs::read(&path).map_err(Error::io("read", &path))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| {
            Error::format(
                &path,
                "safetensors",
                "a valid safetensors file",
                e.to_string(),
            )
        })?;
        let mut out = Vec::with_capacity(self.manifest.tensors.len());
        for spec in &self.manifest.tensors {
            let view = st.tensor(&spec.name).map_err(|e| {
                Error::format(
                    &path,
                    format!("tensor {}", spec.name),
                    "present",
                    e.to_string(),
                )
            })?;
            if view.dtype() != Dtype::F32 {
                return Err(Error::format(
                    &path,
                    format!("tensor {} dtype", spec.name),
                    "F32",
                    format!("{:?}", view.dtype()),
                ));
            }
            let mut shape = vec![entry.n_samples];
            shape.extend_from_slice(&spec.shape);
            if view.shape() != shape.as_slice() {
                return Err(Error::format(
                    &path,
                    format!("tensor {} shape", spec.name),
                    format!("{shape:?}"),
                    format!("{:?}", view.shape()),
                ));
            }
            let data = TensorData::from_le_bytes(crate::tensor::DType::F32, view.data())
                .ok_or_else(|| {
                    Error::format(
                        &path,
                        format!("tensor {} data", spec.name),
                        "whole f32 values",
                        "a partial value",
                    )
                })?;
            let t = Tensor::new(shape, data).map_err(|e| {
                Error::format(
                    &path,
                    format!("tensor {} data", spec.name),
                    "data matching the shape",
                    e.to_string(),
                )
            })?;
            out.push((spec.name.clone(), t));
        }
        Ok(out)
    }

    /// Reads the samples in `range` (global indices) of every tensor.
    pub fn read_samples(&self, range: Range<usize>) -> Result<Vec<(String, Tensor)>> {
        if range.start > range.end || range.end > self.n_samples() {
            return Err(Error::invalid(
                "sample range",
                format!("within 0..{}", self.n_samples()),
                format!("{}..{}", range.start, range.end),
            ));
        }
        let mut acc: Vec<(String, Vec<f32>)> = self
            .manifest
            .tensors
            .iter()
            .map(|t| (t.name.clone(), Vec::new()))
            .collect();
        for (i, e) in self.manifest.files.iter().enumerate() {
            let (lo, hi) = (e.first_sample, e.first_sample + e.n_samples);
            if hi <= range.start || lo >= range.end {
                continue;
            }
            let tensors = self.read_file(i)?;
            let (a, b) = (range.start.max(lo) - lo, range.end.min(hi) - lo);
            for ((_, buf), (_, t)) in acc.iter_mut().zip(tensors) {
                buf.extend(t.slice_leading(a, b)?.to_f32_vec());
            }
        }
        let mut out = Vec::with_capacity(acc.len());
        for ((name, data), spec) in acc.into_iter().zip(&self.manifest.tensors) {
            let mut shape = vec![range.len()];
            shape.extend_from_slice(&spec.shape);
            if numel(&shape) != Some(data.len()) {
                return Err(Error::format(
                    &self.dir,
                    "files",
                    format!("files covering samples {}..{}", range.start, range.end),
                    "gaps",
                ));
            }
            out.push((name, Tensor::from_f32(shape, data)?));
        }
        Ok(out)
    }

    /// Reads one whole tensor, `[n, ...spec]`.
    pub fn read_tensor(&self, name: &str) -> Result<Tensor> {
        let idx = self
            .manifest
            .tensors
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| {
                Error::invalid(
                    "tensor name",
                    format!("one of {:?}", self.tensor_names()),
                    name,
                )
            })?;
        let all = self.read_samples(0..self.n_samples())?;
        all.into_iter()
            .nth(idx)
            .map(|(_, t)| t)
            .ok_or_else(|| Error::invalid("tensor name", "a stored tensor", name))
    }
}

/// Writes a combined `manifest.json` from all `manifest.part-I-of-K.json` of `dir`.
///
/// Errors if parts are missing or inconsistent, or if `manifest.json` already exists.
pub fn merge(dir: &Path) -> Result<Manifest> {
    let whole = dir.join(MANIFEST_FILE);
    if whole.exists() {
        return Err(Error::Exists { path: whole });
    }
    let ds = Dataset::open(dir)?;
    pno_core::atomic_write(&whole, &ds.manifest.to_json_bytes())?;
    Ok(ds.manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_part_name_valid_and_invalid() {
        assert_eq!(parse_part_name("manifest.part-2-of-4.json"), Some((2, 4)));
        assert_eq!(parse_part_name("manifest.json"), None);
        assert_eq!(parse_part_name("manifest.part-x-of-4.json"), None);
    }
}
