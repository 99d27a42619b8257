//! neuraloperator `.pt` files: the `torch.save` zip container with a pickled dict of tensors.
//!
//! Strides and storage offsets are honoured (neuraloperator's Darcy `x` has strides
//! `(1, n, n·h)`); legacy (pre-1.6, non-zip) files are rejected with a clear error.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::npz::read_zip_entries;
use crate::pickle::{TensorRef, Value, unpickle};
use crate::tensor::{DType, Tensor, TensorData, max_strided_index, numel, strided_indices};

/// What a `.pt` file held: tensors by key, scalar values, and skipped keys.
#[derive(Debug, Clone, Default)]
pub struct PtContents {
    /// Tensors, in pickle order.
    pub tensors: Vec<(String, Tensor)>,
    /// Float, integer and boolean values (e.g. Burgers' `visc`).
    pub scalars: Vec<(String, serde_json::Value)>,
    /// Keys whose values are neither tensors nor scalars (nested lists, objects).
    pub skipped: Vec<String>,
}

fn storage_dtype(class: &str) -> Option<DType> {
    Some(match class {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BoolStorage" => DType::Bool,
        "ByteStorage" => DType::U8,
        "IntStorage" => DType::I32,
        "LongStorage" => DType::I64,
        _ => return None,
    })
}

/// Reads a neuraloperator-style `.pt` file.
pub fn read_pt(path: &Path) -> Result<PtContents> {
    let bytes = std::fs::read(path).map_err(Error::io("read", path))?;
    if !bytes.starts_with(b"PK") {
        if bytes.first() == Some(&0x80) {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                field: "torch serialisation".into(),
                got: "legacy (pre-1.6, non-zip) torch.save format".into(),
                hint: "re-save it with torch >= 1.6: torch.save(torch.load(p), p)".into(),
            });
        }
        return Err(Error::format(
            path,
            "container",
            "a torch.save zip archive (starts with PK)",
            "other bytes",
        ));
    }
    let entries: HashMap<String, Vec<u8>> = read_zip_entries(path, &bytes)?.into_iter().collect();
    let pkl_name = entries
        .keys()
        .filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .min_by_key(|n| n.len())
        .cloned()
        .ok_or_else(|| Error::format(path, "data.pkl", "an entry <prefix>/data.pkl", "none"))?;
    let prefix = pkl_name
        .strip_suffix("data.pkl")
        .unwrap_or_default()
        .to_string();
    if let Some(order) = entries.get(&format!("{prefix}byteorder"))
        && order.as_slice() != b"little"
    {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            field: "byteorder".into(),
            got: String::from_utf8_lossy(order).into_owned(),
            hint: "only little-endian archives are read".into(),
        });
    }
    let pkl = entries
        .get(&pkl_name)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let top = unpickle(pkl, &path.join(&pkl_name))?;
    let Value::Dict(items) = top else {
        return Err(Error::format(
            path,
            "data.pkl",
            "a dict of tensors",
            "another value",
        ));
    };
    let mut out = PtContents::default();
    for (k, v) in items.iter() {
        let Value::Str(key) = k else {
            return Err(Error::format(
                path,
                "data.pkl",
                "string keys",
                format!("{k:?}"),
            ));
        };
        match v {
            Value::Tensor(t) => {
                let tensor = materialise(path, &prefix, key, t, &entries)?;
                out.tensors.push((key.clone(), tensor));
            }
            Value::Float(f) => out.scalars.push((key.clone(), serde_json::json!(f))),
            Value::Int(i) => out.scalars.push((key.clone(), serde_json::json!(i))),
            Value::Bool(b) => out.scalars.push((key.clone(), serde_json::json!(b))),
            _ => out.skipped.push(key.clone()),
        }
    }
    Ok(out)
}

fn materialise(
    path: &Path,
    prefix: &str,
    key: &str,
    t: &TensorRef,
    entries: &HashMap<String, Vec<u8>>,
) -> Result<Tensor> {
    let field = |f: &str| format!("tensor {key} {f}");
    let dtype = storage_dtype(&t.storage).ok_or_else(|| {
        Error::format(
            path,
            field("storage"),
            "Float/Double/Half/Bool/Byte/Int/LongStorage",
            t.storage.clone(),
        )
    })?;
    let entry = format!("{prefix}data/{}", t.key);
    let raw = entries.get(&entry).ok_or_else(|| {
        Error::format(path, field("storage"), format!("an entry {entry}"), "none")
    })?;
    let need = t.numel.checked_mul(dtype.size());
    if need != Some(raw.len()) {
        return Err(Error::format(
            path,
            field("storage"),
            format!("{} elements of {dtype} in {entry}", t.numel),
            format!("{} bytes", raw.len()),
        ));
    }
    let storage = TensorData::from_le_bytes(dtype, raw).ok_or_else(|| {
        Error::format(
            path,
            field("storage"),
            "whole elements",
            "a partial element",
        )
    })?;
    let n = numel(&t.size).ok_or_else(|| {
        Error::format(
            path,
            field("size"),
            "a size that fits in memory",
            format!("{:?}", t.size),
        )
    })?;
    // A view cannot reasonably be much larger than its storage (only stride-0 broadcasts are).
    if n > t.numel && (n > t.numel.max(1).saturating_mul(64) || n > 1 << 28) {
        return Err(Error::format(
            path,
            field("size"),
            format!(
                "a view no larger than its {}-element storage (or a small broadcast of it)",
                t.numel
            ),
            format!("{:?}", t.size),
        ));
    }
    if let Some(max) = max_strided_index(t.offset, &t.size, &t.stride)
        && max >= t.numel
    {
        return Err(Error::format(
            path,
            field("stride"),
            format!("a view inside the {}-element storage", t.numel),
            format!(
                "offset {} size {:?} stride {:?} reaching element {max}",
                t.offset, t.size, t.stride
            ),
        ));
    }
    let idx = strided_indices(t.offset, &t.size, &t.stride).ok_or_else(|| {
        Error::format(
            path,
            field("stride"),
            "strides that fit",
            format!("{:?}", t.stride),
        )
    })?;
    let data = storage.gather(&idx).ok_or_else(|| {
        Error::format(
            path,
            field("stride"),
            "indices inside the storage",
            "out of range",
        )
    })?;
    Tensor::new(t.size.clone(), data)
        .map_err(|e| Error::format(path, field("data"), "data matching the size", e.to_string()))
}
