//! [`info`]: what a dataset holds — tensors, shapes, dtypes, statistics, provenance.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::dataset::Dataset;
use crate::error::Result;
use crate::source::{Format, open_any};
use crate::stats::Moments;
use crate::tensor::DType;

/// One tensor of an [`Info`].
#[derive(Debug, Clone, Serialize)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Element type as stored.
    pub dtype: DType,
    /// Full shape (sample axis first where there is one).
    pub shape: Vec<usize>,
    /// Statistics of the finite values and NaN/Inf counts.
    pub stats: Moments,
}

/// Summary of a dataset, printable ([`fmt::Display`]) and serialisable.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    /// The path inspected.
    pub path: String,
    /// Its format.
    pub format: Format,
    /// Samples (our format: from the manifest; others: leading axis of the first tensor).
    pub n_samples: Option<usize>,
    /// Tensors.
    pub tensors: Vec<TensorInfo>,
    /// Attributes and scalar values of external files.
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// Manifest header (pde, recipe, solver, parameters, seed, ...) for our format.
    pub provenance: Option<serde_json::Value>,
}

/// Summarises the dataset at `path` (any format [`open_any`] reads; our format is streamed file by file).
pub fn info(path: &Path) -> Result<Info> {
    let is_pno = path.is_dir()
        || path
            .file_name()
            .is_some_and(|n| n == crate::manifest::MANIFEST_FILE);
    if is_pno {
        let dir = if path.is_dir() {
            path
        } else {
            path.parent().unwrap_or(Path::new("."))
        };
        let ds = Dataset::open(dir)?;
        let m = ds.manifest();
        let mut stats = vec![Moments::default(); m.tensors.len()];
        for i in 0..m.files.len() {
            for (s, (_, t)) in stats.iter_mut().zip(ds.read_file(i)?) {
                s.extend(t.to_f64_vec());
            }
        }
        let tensors = m
            .tensors
            .iter()
            .zip(stats)
            .map(|(t, s)| {
                let mut shape = vec![m.n_samples];
                shape.extend_from_slice(&t.shape);
                TensorInfo {
                    name: t.name.clone(),
                    dtype: DType::F32,
                    shape,
                    stats: s,
                }
            })
            .collect();
        let provenance = serde_json::json!({
            "pde": m.pde, "recipe": m.recipe, "solver": m.solver, "parameters": m.parameters,
            "seed": m.seed, "resolution": m.resolution, "times": m.times, "generator": m.generator,
            "writer": m.writer, "files": m.files.len(),
        });
        return Ok(Info {
            path: path.display().to_string(),
            format: Format::Pno,
            n_samples: Some(m.n_samples),
            tensors,
            attributes: serde_json::Map::new(),
            provenance: Some(provenance),
        });
    }
    let src = open_any(path)?;
    let tensors: Vec<TensorInfo> = src
        .tensors
        .iter()
        .map(|(name, t)| {
            let mut s = Moments::default();
            s.extend(t.to_f64_vec());
            TensorInfo {
                name: name.clone(),
                dtype: t.dtype(),
                shape: t.shape().to_vec(),
                stats: s,
            }
        })
        .collect();
    Ok(Info {
        path: path.display().to_string(),
        format: src.format,
        n_samples: src.to_samples().ok().map(|s| s.n_samples),
        tensors,
        attributes: src.attributes,
        provenance: None,
    })
}

impl fmt::Display for Info {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} ({})", self.path, self.format)?;
        if let Some(n) = self.n_samples {
            writeln!(f, "samples: {n}")?;
        }
        if let Some(p) = &self.provenance {
            for key in ["pde", "recipe", "solver", "seed", "resolution", "generator"] {
                if let Some(v) = p.get(key) {
                    writeln!(f, "{key}: {v}")?;
                }
            }
        }
        writeln!(
            f,
            "{:<16} {:<5} {:<22} {:>12} {:>12} {:>12} {:>12} {:>6} {:>6}",
            "tensor", "dtype", "shape", "min", "max", "mean", "std", "nan", "inf"
        )?;
        for t in &self.tensors {
            let s = &t.stats;
            writeln!(
                f,
                "{:<16} {:<5} {:<22} {:>12.5e} {:>12.5e} {:>12.5e} {:>12.5e} {:>6} {:>6}",
                t.name,
                t.dtype.name(),
                format!("{:?}", t.shape),
                s.min,
                s.max,
                s.mean,
                s.std,
                s.nan,
                s.inf
            )?;
        }
        for (k, v) in &self.attributes {
            writeln!(f, "attribute {k}: {v}")?;
        }
        Ok(())
    }
}
