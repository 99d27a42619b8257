//! [`convert`]: any supported input → our dataset format.

use std::path::Path;

use pno_core::ShardSpec;

use crate::error::{Error, Result};
use crate::manifest::{DatasetHeader, MANIFEST_FILE, Manifest, TensorSpec};
use crate::source::{Format, open_any};
use crate::writer::DatasetWriter;
use pno_core::sha256_file;

/// Target size of one safetensors file written by [`convert`].
const FILE_BYTES: usize = 64 << 20;

/// Converts `input` (any format [`open_any`] reads) into a dataset folder `out_dir`.
///
/// Tensors follow [`crate::Source::to_samples`]; everything is stored as `f32`. The source
/// path, format and SHA-256, its attributes and what was left out go into the manifest's
/// `parameters.source`. Atomic: on failure nothing is left in `out_dir`.
pub fn convert(input: &Path, out_dir: &Path) -> Result<Manifest> {
    let src = open_any(input)?;
    let samples = src.to_samples()?;
    let sha = if src.format == Format::Pno {
        let dir = if input.is_dir() {
            input.to_path_buf()
        } else {
            input.parent().unwrap_or(Path::new(".")).to_path_buf()
        };
        let m = dir.join(MANIFEST_FILE);
        if m.is_file() {
            sha256_file(&m)?
        } else {
            String::new()
        }
    } else {
        sha256_file(input)?
    };
    let provenance = serde_json::json!({
        "path": input.display().to_string(),
        "format": src.format.name(),
        "sha256": sha,
        "attributes": src.attributes,
        "left_out": samples.left_out,
        "skipped": src.skipped,
    });
    let (pde, recipe, solver, seed, parameters) = match &src.manifest {
        Some(m) => (
            m.pde.clone(),
            m.recipe.clone(),
            m.solver.clone(),
            m.seed,
            serde_json::json!({"source": provenance, "original": m.parameters}),
        ),
        None => (
            "unknown".to_string(),
            "converted".to_string(),
            format!("external:{}", src.format.name()),
            0,
            serde_json::json!({"source": provenance}),
        ),
    };
    let n = samples.n_samples;
    let mut specs = Vec::new();
    let mut flats = Vec::new();
    let mut per_sample = Vec::new();
    for (name, t) in &samples.tensors {
        let shape = t.shape().get(1..).unwrap_or_default().to_vec();
        let per: usize = shape.iter().product();
        if per == 0 {
            return Err(Error::format(
                input,
                format!("tensor {name}"),
                "a non-empty per-sample shape",
                format!("{:?}", t.shape()),
            ));
        }
        specs.push(TensorSpec {
            name: name.clone(),
            shape,
        });
        flats.push(t.to_f32_vec());
        per_sample.push(per);
    }
    if n == 0 {
        return Err(Error::format(input, "samples", "at least one sample", "0"));
    }
    let header = DatasetHeader {
        pde,
        recipe,
        solver,
        parameters,
        seed,
        n_samples: n,
        tensors: specs,
        times: samples.times,
        shard: ShardSpec::WHOLE,
        generator: concat!("pno-data ", env!("CARGO_PKG_VERSION"), " convert").to_string(),
    };
    let bytes_per_sample = per_sample.iter().sum::<usize>() * 4;
    let per_file = (FILE_BYTES / bytes_per_sample.max(1)).max(1);
    let mut w = DatasetWriter::create(out_dir, header, per_file)?;
    for i in 0..n {
        let sample: Vec<Vec<f32>> = flats
            .iter()
            .zip(&per_sample)
            .map(|(f, &p)| f.get(i * p..(i + 1) * p).unwrap_or_default().to_vec())
            .collect();
        w.push(&sample)?;
    }
    w.finish()
}
