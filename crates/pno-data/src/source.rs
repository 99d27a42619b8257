//! [`open_any`]: one entry point for every supported format, and the canonical sample view.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::dataset::{Dataset, is_dataset_dir};
use crate::error::{Error, Result};
use crate::hdf5::{HDF5_MAGIC, read_hdf5};
use crate::manifest::Manifest;
use crate::npy::{is_npy, read_npy};
use crate::npz::read_npz;
use crate::pt::read_pt;
use crate::tensor::Tensor;

/// The formats [`open_any`] reads.
pub const SUPPORTED_FORMATS: &str = "pno dataset folder (manifest.json + safetensors), .npy, .npz, \
     neuraloperator .pt (torch.save zip), PDEBench HDF5 (.h5/.hdf5)";

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Our dataset folder.
    Pno,
    /// NumPy `.npy`.
    Npy,
    /// NumPy `.npz`.
    Npz,
    /// neuraloperator / `torch.save` `.pt`.
    Pt,
    /// PDEBench HDF5.
    Hdf5,
}

impl Format {
    /// The lowercase name.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Pno => "pno",
            Format::Npy => "npy",
            Format::Npz => "npz",
            Format::Pt => "pt",
            Format::Hdf5 => "hdf5",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A dataset read into memory from any supported format, with its provenance.
#[derive(Debug, Clone)]
pub struct Source {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// Every tensor, by name, as stored (no channel axis added).
    pub tensors: Vec<(String, Tensor)>,
    /// Scalar values and attributes (HDF5 attrs, `.pt` scalars such as `visc`).
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// Entries that were not read (non-numeric values).
    pub skipped: Vec<String>,
    /// The manifest, for our own format.
    pub manifest: Option<Manifest>,
}

/// Samples in our canonical layout: every tensor has the sample axis first, channels next
/// (trajectories: `[n, t, c, x(, y)]`).
#[derive(Debug, Clone)]
pub struct SampleSet {
    /// Tensors, each `[n, ...]`, inputs first.
    pub tensors: Vec<(String, Tensor)>,
    /// Output times, for trajectories.
    pub times: Option<Vec<f64>>,
    /// Number of samples.
    pub n_samples: usize,
    /// Tensors of the source left out of the sample view (coordinates, scalars), by name.
    pub left_out: Vec<String>,
}

fn detect(path: &Path) -> Result<Format> {
    if path.is_dir() {
        return if is_dataset_dir(path) {
            Ok(Format::Pno)
        } else {
            Err(Error::UnknownFormat {
                path: path.to_path_buf(),
                supported: SUPPORTED_FORMATS,
            })
        };
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("npy") => return Ok(Format::Npy),
        Some("npz") => return Ok(Format::Npz),
        Some("pt" | "pth") => return Ok(Format::Pt),
        Some("h5" | "hdf5" | "hdf") => return Ok(Format::Hdf5),
        _ => {}
    }
    if path
        .file_name()
        .is_some_and(|n| n == crate::manifest::MANIFEST_FILE)
    {
        return Ok(Format::Pno);
    }
    // Unknown extension: sniff the magic bytes.
    let mut head = [0u8; 8];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(Error::io("open", path))?;
        f.read(&mut head).map_err(Error::io("read", path))?
    };
    let head = head.get(..n).unwrap_or_default();
    if is_npy(head) {
        Ok(Format::Npy)
    } else if head.starts_with(HDF5_MAGIC) {
        Ok(Format::Hdf5)
    } else {
        Err(Error::UnknownFormat {
            path: path.to_path_buf(),
            supported: SUPPORTED_FORMATS,
        })
    }
}

/// Opens any supported dataset: a folder of our format (or its `manifest.json`), `.npy`, `.npz`,
/// `.pt` or PDEBench HDF5. Unknown inputs give an error listing the supported formats.
pub fn open_any(path: &Path) -> Result<Source> {
    if !path.exists() {
        return Err(Error::Io {
            op: "open",
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        });
    }
    let format = detect(path)?;
    let mut src = Source {
        path: path.to_path_buf(),
        format,
        tensors: Vec::new(),
        attributes: serde_json::Map::new(),
        skipped: Vec::new(),
        manifest: None,
    };
    match format {
        Format::Pno => {
            let dir = if path.is_dir() {
                path
            } else {
                path.parent().unwrap_or(Path::new("."))
            };
            let ds = Dataset::open(dir)?;
            src.tensors = ds.read_samples(0..ds.n_samples())?;
            src.manifest = Some(ds.manifest().clone());
        }
        Format::Npy => src.tensors = vec![("x".to_string(), read_npy(path)?)],
        Format::Npz => src.tensors = read_npz(path)?,
        Format::Pt => {
            let c = read_pt(path)?;
            src.tensors = c.tensors;
            src.attributes = c.scalars.into_iter().collect();
            src.skipped = c.skipped;
        }
        Format::Hdf5 => {
            let c = read_hdf5(path)?;
            src.tensors = c.tensors;
            src.attributes = c.attributes;
            src.skipped = c.skipped;
        }
    }
    Ok(src)
}

/// `t` with a length-1 axis inserted at `axis`.
fn insert_axis(t: Tensor, axis: usize) -> Result<Tensor> {
    let mut shape = t.shape().to_vec();
    shape.insert(axis.min(shape.len()), 1);
    t.reshape(shape)
}

impl Source {
    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    fn fmt_err(&self, field: &str, expected: &str, got: String) -> Error {
        Error::format(&self.path, field, expected, got)
    }

    /// The canonical sample view used by `convert` and `check`:
    /// - ours: as stored;
    /// - `.npy`: `x` as stored; `.npz`: every entry sharing the first entry's leading axis;
    /// - `.pt`: `x`, `y` with a channel axis inserted at dim 1 (`[n,16,16]` → `[n,1,16,16]`),
    ///   other tensors with the same leading axis as stored;
    /// - PDEBench flat: `tensor` `(N, nt, nx[, ny])` → `u` `[N, nt, 1, nx(, ny)]` with times from
    ///   `t-coordinate` (trimmed to `nt`); Darcy `nu` → `x` `[N,1,..]`, `tensor` → `y`;
    /// - PDEBench grouped: every group's `data` `(nt, nx[, ny], nc)` → `u` `[N, nt, nc, nx(, ny)]`,
    ///   times from the first group's `grid/t`.
    pub fn to_samples(&self) -> Result<SampleSet> {
        let mut times = None;
        let mut left_out = Vec::new();
        let mut tensors: Vec<(String, Tensor)> = match self.format {
            Format::Pno => {
                times = self.manifest.as_ref().and_then(|m| m.times.clone());
                self.tensors.clone()
            }
            Format::Npy | Format::Npz => self.tensors.clone(),
            Format::Pt => {
                let mut out = Vec::new();
                for (name, t) in &self.tensors {
                    if (name == "x" || name == "y") && t.shape().len() >= 2 {
                        out.push((name.clone(), insert_axis(t.clone(), 1)?));
                    } else {
                        out.push((name.clone(), t.clone()));
                    }
                }
                out.sort_by_key(|(n, _)| match n.as_str() {
                    "x" => 0,
                    "y" => 1,
                    _ => 2,
                });
                out
            }
            Format::Hdf5 => self.hdf5_samples(&mut times, &mut left_out)?,
        };
        let n = tensors
            .first()
            .and_then(|(_, t)| t.shape().first().copied())
            .ok_or_else(|| {
                self.fmt_err(
                    "tensors",
                    "at least one tensor with a sample axis",
                    "none".into(),
                )
            })?;
        tensors.retain(|(name, t)| {
            let keep = t.shape().first() == Some(&n) && t.shape().len() >= 2;
            if !keep {
                left_out.push(name.clone());
            }
            keep
        });
        if self.format == Format::Pt {
            left_out.extend(self.attributes.keys().cloned());
        }
        let tensors = tensors
            .into_iter()
            .map(|(name, t)| {
                let clean: String = name
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                (clean.trim_start_matches('.').to_string(), t)
            })
            .collect();
        Ok(SampleSet {
            tensors,
            times,
            n_samples: n,
            left_out,
        })
    }

    fn hdf5_samples(
        &self,
        times: &mut Option<Vec<f64>>,
        left_out: &mut Vec<String>,
    ) -> Result<Vec<(String, Tensor)>> {
        let groups: Vec<&(String, Tensor)> = self
            .tensors
            .iter()
            .filter(|(n, _)| n.ends_with("/data") && n.matches('/').count() == 1)
            .collect();
        if !groups.is_empty() {
            let first_name = &groups[0].0;
            let shape = groups[0].1.shape().to_vec();
            if shape.len() < 3 {
                return Err(self.fmt_err(
                    first_name,
                    "data of shape (nt, nx[, ny], nc)",
                    format!("{shape:?}"),
                ));
            }
            let rank = shape.len();
            // (nt, x.., nc) -> (nt, nc, x..)
            let mut perm = vec![0, rank - 1];
            perm.extend(1..rank - 1);
            let mut flat = Vec::new();
            for (name, t) in &groups {
                if t.shape() != shape.as_slice() {
                    return Err(self.fmt_err(
                        name,
                        &format!("shape {shape:?} (as {first_name})"),
                        format!("{:?}", t.shape()),
                    ));
                }
                flat.extend(t.permute(&perm)?.to_f32_vec());
            }
            let mut out_shape = vec![groups.len()];
            out_shape.extend(perm.iter().map(|&p| shape[p]));
            let group = first_name.trim_end_matches("/data");
            if let Some(t) = self.tensor(&format!("{group}/grid/t")) {
                *times = Some(t.to_f64_vec().into_iter().take(shape[0]).collect());
            }
            left_out.extend(
                self.tensors
                    .iter()
                    .filter(|(n, _)| !n.ends_with("/data"))
                    .map(|(n, _)| n.clone()),
            );
            return Ok(vec![("u".to_string(), Tensor::from_f32(out_shape, flat)?)]);
        }
        let get = |n: &str| self.tensor(n).cloned();
        if let (Some(nu), Some(sol)) = (get("nu"), get("tensor")) {
            let x = if nu.shape().len() == 3 {
                insert_axis(nu, 1)?
            } else {
                nu
            };
            left_out.extend(
                self.tensors
                    .iter()
                    .filter(|(n, _)| n != "nu" && n != "tensor")
                    .map(|(n, _)| n.clone()),
            );
            return Ok(vec![("x".to_string(), x), ("y".to_string(), sol)]);
        }
        if let Some(u) = get("tensor") {
            let shape = u.shape().to_vec();
            if shape.len() < 3 {
                return Err(self.fmt_err(
                    "tensor",
                    "shape (N, nt, nx[, ny])",
                    format!("{shape:?}"),
                ));
            }
            if let Some(t) = self.tensor("t-coordinate") {
                *times = Some(t.to_f64_vec().into_iter().take(shape[1]).collect());
            }
            left_out.extend(
                self.tensors
                    .iter()
                    .filter(|(n, _)| n != "tensor")
                    .map(|(n, _)| n.clone()),
            );
            return Ok(vec![("u".to_string(), insert_axis(u, 2)?)]);
        }
        // CFD files: density, Vx, (Vy, Vz), pressure, each (N, nt, x..) -> u[N, nt, c, x..].
        let fields: Vec<&str> = ["density", "Vx", "Vy", "Vz", "pressure"]
            .into_iter()
            .filter(|f| self.tensor(f).is_some())
            .collect();
        if fields.len() >= 2 {
            let shape = self
                .tensor(fields[0])
                .map(|t| t.shape().to_vec())
                .unwrap_or_default();
            if shape.len() < 3 {
                return Err(self.fmt_err(
                    fields[0],
                    "shape (N, nt, nx[, ny[, nz]])",
                    format!("{shape:?}"),
                ));
            }
            let mut parts = Vec::new();
            for f in &fields {
                let t = self.tensor(f).map(|t| t.to_f32_vec()).unwrap_or_default();
                if self.tensor(f).map(|t| t.shape()) != Some(shape.as_slice()) {
                    return Err(self.fmt_err(
                        f,
                        &format!("shape {shape:?}"),
                        format!("{:?}", self.tensor(f).map(|t| t.shape().to_vec())),
                    ));
                }
                parts.push(t);
            }
            let (n, nt) = (shape[0], shape[1]);
            let inner: usize = shape[2..].iter().product();
            let c = fields.len();
            let mut flat = vec![0f32; n * nt * c * inner];
            for (ci, p) in parts.iter().enumerate() {
                for s in 0..n * nt {
                    let dst = (s * c + ci) * inner;
                    if let (Some(d), Some(src)) = (
                        flat.get_mut(dst..dst + inner),
                        p.get(s * inner..(s + 1) * inner),
                    ) {
                        d.copy_from_slice(src);
                    }
                }
            }
            let mut out_shape = vec![n, nt, c];
            out_shape.extend_from_slice(&shape[2..]);
            if let Some(t) = self.tensor("t-coordinate") {
                *times = Some(t.to_f64_vec().into_iter().take(nt).collect());
            }
            left_out.extend(
                self.tensors
                    .iter()
                    .filter(|(n, _)| !fields.contains(&n.as_str()))
                    .map(|(n, _)| n.clone()),
            );
            return Ok(vec![("u".to_string(), Tensor::from_f32(out_shape, flat)?)]);
        }
        Ok(self.tensors.clone())
    }
}
