//! NumPy `.npy` files: magic, version 1/2/3 header dict, little- or big-endian data, C or
//! Fortran order (materialised to C order).

use std::path::Path;

use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor, TensorData, col_major_strides, numel, strided_indices};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Whether `bytes` start with the `.npy` magic.
pub(crate) fn is_npy(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Reads a `.npy` file.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(Error::io("read", path))?;
    parse_npy(&bytes, path)
}

/// Parses `.npy` bytes; `origin` names the file (or archive entry) in errors.
pub fn parse_npy(bytes: &[u8], origin: &Path) -> Result<Tensor> {
    let err =
        |field: &str, expected: &str, got: String| Error::format(origin, field, expected, got);
    if !is_npy(bytes) {
        let head = bytes.get(..6.min(bytes.len())).unwrap_or_default();
        return Err(err("magic", "\\x93NUMPY", format!("{head:?}")));
    }
    let (major, minor) = match (bytes.get(6), bytes.get(7)) {
        (Some(&a), Some(&b)) => (a, b),
        _ => return Err(err("version", "2 bytes", "end of file".into())),
    };
    let (header_len, start) = match major {
        1 => {
            let b = bytes
                .get(8..10)
                .ok_or_else(|| err("header length", "2 bytes", "end of file".into()))?;
            (usize::from(u16::from_le_bytes([b[0], b[1]])), 10usize)
        }
        2 | 3 => {
            let b = bytes
                .get(8..12)
                .ok_or_else(|| err("header length", "4 bytes", "end of file".into()))?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        _ => {
            return Err(err(
                "version",
                "1.0, 2.0 or 3.0",
                format!("{major}.{minor}"),
            ));
        }
    };
    let header_bytes = bytes
        .get(start..start.saturating_add(header_len))
        .ok_or_else(|| {
            err(
                "header",
                &format!("{header_len} header bytes"),
                format!("{} bytes", bytes.len().saturating_sub(start)),
            )
        })?;
    let header = std::str::from_utf8(header_bytes)
        .map_err(|e| err("header", "UTF-8/ASCII text", e.to_string()))?;
    let descr = dict_value(header, "descr")
        .ok_or_else(|| err("header.descr", "a 'descr' key", header.trim().to_string()))?;
    let descr = unquote(descr)
        .ok_or_else(|| err("header.descr", "a quoted dtype string", descr.to_string()))?;
    let fortran = match dict_value(header, "fortran_order").map(str::trim) {
        Some("True") => true,
        Some("False") => false,
        other => {
            return Err(err(
                "header.fortran_order",
                "True or False",
                format!("{other:?}"),
            ));
        }
    };
    let shape_s = dict_value(header, "shape")
        .ok_or_else(|| err("header.shape", "a 'shape' key", header.trim().to_string()))?;
    let shape = parse_shape(shape_s).ok_or_else(|| {
        err(
            "header.shape",
            "a tuple of non-negative integers",
            shape_s.to_string(),
        )
    })?;
    let (dtype, big) = parse_descr(descr).ok_or_else(|| {
        err(
            "header.descr",
            "one of <f2 <f4 <f8 <i4 <i8 |b1 |u1 (or big-endian >)",
            descr.to_string(),
        )
    })?;
    let n = numel(&shape).ok_or_else(|| {
        err(
            "header.shape",
            "a shape whose size fits in memory",
            format!("{shape:?}"),
        )
    })?;
    let data_start = start + header_len;
    let need = n
        .checked_mul(dtype.size())
        .ok_or_else(|| err("header.shape", "a smaller shape", format!("{shape:?}")))?;
    let data = bytes.get(data_start..).unwrap_or_default();
    if data.len() != need {
        return Err(err(
            "data",
            &format!("{need} bytes for shape {shape:?} of {descr}"),
            format!("{} bytes", data.len()),
        ));
    }
    let decoded = TensorData::from_bytes(dtype, data, big)
        .ok_or_else(|| err("data", "whole elements", "a partial element".into()))?;
    let decoded = if fortran && shape.len() > 1 {
        let idx = strided_indices(0, &shape, &col_major_strides(&shape)).ok_or_else(|| {
            err(
                "header.shape",
                "a shape whose strides fit",
                format!("{shape:?}"),
            )
        })?;
        decoded
            .gather(&idx)
            .ok_or_else(|| err("data", "in-range Fortran strides", "out of range".into()))?
    } else {
        decoded
    };
    Tensor::new(shape, decoded).map_err(|e| err("data", "data matching the shape", e.to_string()))
}

/// The raw text of `key`'s value in a Python dict literal (up to the next top-level comma).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pos = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = header.get(pos + key.len() + 2..)?;
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0i32;
    let mut in_str: Option<char> = None;
    for (i, c) in rest.char_indices() {
        match (in_str, c) {
            (Some(q), c) if c == q => in_str = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => in_str = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']') => depth -= 1,
            (None, '}') if depth == 0 => return rest.get(..i),
            (None, '}') => depth -= 1,
            (None, ',') if depth == 0 => return rest.get(..i),
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<&str> {
    let s = s.trim();
    s.strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
}

fn parse_shape(s: &str) -> Option<Vec<usize>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.trim_end_matches('L').parse().ok())
        .collect()
}

/// Maps a dtype descriptor to `(dtype, big_endian)`.
fn parse_descr(d: &str) -> Option<(DType, bool)> {
    let (order, code) = d.split_at_checked(1)?;
    let big = match order {
        "<" | "|" | "=" => false,
        ">" => true,
        _ => return None,
    };
    let dtype = match code {
        "f2" => DType::F16,
        "f4" => DType::F32,
        "f8" => DType::F64,
        "i4" => DType::I32,
        "i8" => DType::I64,
        "b1" => DType::Bool,
        "u1" => DType::U8,
        _ => return None,
    };
    Some((dtype, big))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend([1, 0]);
        out.extend((h.len() as u16).to_le_bytes());
        out.extend(h.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn parse_npy_scalar_shape_reads_one_value() {
        let b = npy("<f8", false, "()", &2.5f64.to_le_bytes());
        let t = parse_npy(&b, Path::new("t.npy")).unwrap();
        assert_eq!(t.shape(), &[] as &[usize]);
        assert_eq!(t.to_f64_vec(), vec![2.5]);
    }

    #[test]
    fn parse_npy_one_dim_tuple_reads() {
        let b = npy("<i4", false, "(2,)", &[1, 0, 0, 0, 2, 0, 0, 0]);
        let t = parse_npy(&b, Path::new("t.npy")).unwrap();
        assert_eq!(t.to_f64_vec(), vec![1.0, 2.0]);
    }

    #[test]
    fn parse_npy_unknown_dtype_errors_naming_descr() {
        let b = npy("<c16", false, "(1,)", &[0; 16]);
        let e = parse_npy(&b, Path::new("t.npy")).unwrap_err().to_string();
        assert!(e.contains("descr") && e.contains("<c16"), "{e}");
    }

    #[test]
    fn parse_npy_short_data_errors() {
        let b = npy("<f4", false, "(3,)", &[0; 8]);
        let e = parse_npy(&b, Path::new("t.npy")).unwrap_err().to_string();
        assert!(e.contains("12 bytes") && e.contains("8 bytes"), "{e}");
    }
}
