//! PDEBench HDF5 files, read with the pure-Rust `hdf5-pure` crate.
//!
//! Both layouts are read into named tensors: the flat files of `Data_Merge.py` (`tensor`,
//! `nu`, `x-coordinate`, `t-coordinate`, ...) and the grouped files (`0000/data`,
//! `0000/grid/x`, ..., LZF-compressed). Attributes become JSON.

use std::collections::HashMap;
use std::path::Path;

use hdf5_pure::{AttrValue, DType as H5DType, File, Group};

use crate::error::{Error, Result};
use crate::tensor::{Tensor, TensorData};

/// The `\x89HDF\r\n\x1a\n` signature.
pub(crate) const HDF5_MAGIC: &[u8] = b"\x89HDF\r\n\x1a\n";

/// What an HDF5 file held.
#[derive(Debug, Clone, Default)]
pub struct Hdf5Contents {
    /// Every numeric dataset, by full path without the leading `/` (e.g. `0000/grid/x`).
    pub tensors: Vec<(String, Tensor)>,
    /// Attributes by object path (`""` for the root), as JSON.
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// Datasets of non-numeric types that were not read.
    pub skipped: Vec<String>,
}

fn attr_json(v: &AttrValue) -> serde_json::Value {
    if let Some(s) = v.as_str() {
        return serde_json::json!(s);
    }
    if let Some(s) = v.as_strings() {
        return serde_json::json!(s);
    }
    if let Some(i) = v.as_i64() {
        return serde_json::json!(i);
    }
    if let Some(f) = v.as_f64() {
        return serde_json::json!(f);
    }
    match v {
        AttrValue::F64Array(a) => serde_json::json!(a),
        AttrValue::F32Array(a) => serde_json::json!(a),
        AttrValue::I64Array(a) => serde_json::json!(a),
        AttrValue::I32Array(a) => serde_json::json!(a),
        other => serde_json::json!(format!("{other:?}").chars().take(200).collect::<String>()),
    }
}

fn attrs_json(map: HashMap<String, AttrValue>) -> serde_json::Value {
    let sorted: std::collections::BTreeMap<String, serde_json::Value> =
        map.into_iter().map(|(k, v)| (k, attr_json(&v))).collect();
    serde_json::json!(sorted)
}

/// Reads every numeric dataset and attribute of an HDF5 file.
pub fn read_hdf5(path: &Path) -> Result<Hdf5Contents> {
    let bytes = std::fs::read(path).map_err(Error::io("read", path))?;
    if !bytes.starts_with(HDF5_MAGIC) {
        return Err(Error::format(
            path,
            "signature",
            "the HDF5 signature \\x89HDF\\r\\n\\x1a\\n",
            "other bytes",
        ));
    }
    let h5 = |field: &str, e: hdf5_pure::Error| {
        Error::format(path, field, "a readable HDF5 object", e.to_string())
    };
    // hdf5-pure reports corrupt files as errors; guard against a panic in it all the same.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let file = File::from_bytes(bytes).map_err(|e| h5("file", e))?;
        let mut out = Hdf5Contents::default();
        walk(path, &file.root(), "", &mut out)?;
        Ok(out)
    }));
    result.unwrap_or_else(|_| {
        Err(Error::format(
            path,
            "file",
            "a well-formed HDF5 file",
            "a structure the HDF5 reader could not parse",
        ))
    })
}

const MAX_DEPTH: usize = 16;

fn walk(path: &Path, group: &Group, prefix: &str, out: &mut Hdf5Contents) -> Result<()> {
    if prefix.matches('/').count() > MAX_DEPTH {
        return Err(Error::format(
            path,
            prefix,
            format!("groups nested at most {MAX_DEPTH} deep"),
            "deeper",
        ));
    }
    let name_of = |n: &str| {
        if prefix.is_empty() {
            n.to_string()
        } else {
            format!("{prefix}/{n}")
        }
    };
    let h5 = |field: &str, e: hdf5_pure::Error| {
        Error::format(path, field, "a readable HDF5 object", e.to_string())
    };
    let attrs = group
        .attrs()
        .map_err(|e| h5(if prefix.is_empty() { "/" } else { prefix }, e))?;
    if !attrs.is_empty() {
        out.attributes.insert(prefix.to_string(), attrs_json(attrs));
    }
    let mut datasets = group.datasets().map_err(|e| h5(prefix, e))?;
    datasets.sort();
    for name in datasets {
        let full = name_of(&name);
        let ds = group.dataset(&name).map_err(|e| h5(&full, e))?;
        let shape: Vec<usize> = ds
            .shape()
            .map_err(|e| h5(&full, e))?
            .into_iter()
            .map(|d| {
                usize::try_from(d).map_err(|_| {
                    Error::format(path, &full, "a shape that fits in memory", d.to_string())
                })
            })
            .collect::<Result<_>>()?;
        let data = match ds.dtype().map_err(|e| h5(&full, e))? {
            H5DType::F32 => TensorData::F32(ds.read_f32().map_err(|e| h5(&full, e))?),
            H5DType::F64 => TensorData::F64(ds.read_f64().map_err(|e| h5(&full, e))?),
            H5DType::I8 | H5DType::I16 | H5DType::I32 | H5DType::U16 => {
                TensorData::I32(ds.read_i32().map_err(|e| h5(&full, e))?)
            }
            H5DType::I64 | H5DType::U32 | H5DType::U64 => {
                TensorData::I64(ds.read_i64().map_err(|e| h5(&full, e))?)
            }
            H5DType::U8 => TensorData::U8(ds.read_u8().map_err(|e| h5(&full, e))?),
            _ => {
                out.skipped.push(full);
                continue;
            }
        };
        let t = Tensor::new(shape, data).map_err(|e| {
            Error::format(path, &full, "data matching the dataspace", e.to_string())
        })?;
        if let Ok(a) = ds.attrs()
            && !a.is_empty()
        {
            out.attributes.insert(full.clone(), attrs_json(a));
        }
        out.tensors.push((full, t));
    }
    let mut groups = group.groups().map_err(|e| h5(prefix, e))?;
    groups.sort();
    for name in groups {
        let full = name_of(&name);
        let g = group.group(&name).map_err(|e| h5(&full, e))?;
        walk(path, &g, &full, out)?;
    }
    Ok(())
}
