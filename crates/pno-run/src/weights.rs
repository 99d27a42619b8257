//! Weight files: named f32 tensors in safetensors, with string metadata. The names are module
//! paths, so `safetensors.numpy.load_file` (or PyTorch's loader) reads them by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};

use pno_models::weights::NamedTensor;

use crate::error::{Result, RunError};

/// Serialise named tensors (f32) with string metadata to safetensors bytes.
pub fn to_safetensors(
    tensors: &BTreeMap<String, NamedTensor>,
    metadata: BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                t.shape.clone(),
                t.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (k, shape, b) in &bytes {
        let view =
            TensorView::new(Dtype::F32, shape.clone(), b).map_err(|e| RunError::Corrupt {
                path: PathBuf::from(k),
                what: "tensor".into(),
                expected: "a consistent shape".into(),
                got: e.to_string(),
            })?;
        views.push((k.clone(), view));
    }
    let meta: std::collections::HashMap<String, String> = metadata.into_iter().collect();
    safetensors::serialize(views, Some(meta)).map_err(|e| RunError::Corrupt {
        path: PathBuf::new(),
        what: "safetensors serialisation".into(),
        expected: "success".into(),
        got: e.to_string(),
    })
}

/// Parse safetensors bytes into named f32 tensors and metadata.
pub fn from_safetensors(
    bytes: &[u8],
    path: &Path,
) -> Result<(BTreeMap<String, NamedTensor>, BTreeMap<String, String>)> {
    let corrupt = |what: &str, got: String| RunError::Corrupt {
        path: path.to_path_buf(),
        what: what.into(),
        expected: "a safetensors file written by pno".into(),
        got,
    };
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| corrupt("header", e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| corrupt("header", e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(corrupt(
                &format!("tensor {name}"),
                format!("dtype {:?}", view.dtype()),
            ));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(
            name,
            NamedTensor {
                shape: view.shape().to_vec(),
                values,
            },
        );
    }
    let metadata = meta
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok((out, metadata))
}
