//! NumPy `.npy` files.
//!
//! Reading: magic, version 1/2/3 header dict, little- or big-endian data, C or Fortran order
//! (materialised to C order). Writing: what `numpy.save` writes for a C-contiguous
//! little-endian array, byte for byte (format 1.0, or 2.0 when the header exceeds 65535 bytes;
//! header padded with spaces so the data starts at a multiple of 64 bytes).

use std::io::Write;
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

/// Borrowed, row-major (C order) elements to write as `.npy`: the writer's view of
/// [`TensorData`].
///
/// Build one from a slice (`NpyData::from(&v[..])`) or from a tensor's data
/// (`NpyData::from(tensor.data())`); half-precision bits need `NpyData::F16(..)` spelled out
/// (a `&[u16]` is not taken to be `f16`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NpyData<'a> {
    /// Booleans, written as `|b1` (one byte, 0 or 1).
    Bool(&'a [bool]),
    /// Unsigned bytes, written as `|u1`.
    U8(&'a [u8]),
    /// 32-bit integers, written as `<i4`.
    I32(&'a [i32]),
    /// 64-bit integers, written as `<i8`.
    I64(&'a [i64]),
    /// Half-precision floats as raw IEEE bits, written as `<f2`.
    F16(&'a [u16]),
    /// Single-precision floats, written as `<f4`.
    F32(&'a [f32]),
    /// Double-precision floats, written as `<f8`.
    F64(&'a [f64]),
}

impl NpyData<'_> {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            NpyData::Bool(_) => DType::Bool,
            NpyData::U8(_) => DType::U8,
            NpyData::I32(_) => DType::I32,
            NpyData::I64(_) => DType::I64,
            NpyData::F16(_) => DType::F16,
            NpyData::F32(_) => DType::F32,
            NpyData::F64(_) => DType::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            NpyData::Bool(v) => v.len(),
            NpyData::U8(v) => v.len(),
            NpyData::I32(v) => v.len(),
            NpyData::I64(v) => v.len(),
            NpyData::F16(v) => v.len(),
            NpyData::F32(v) => v.len(),
            NpyData::F64(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of element data (`len · dtype size`).
    pub(crate) fn byte_len(&self) -> usize {
        self.len().saturating_mul(self.dtype().size())
    }

    /// Writes the elements little-endian, in chunks (no copy of the whole array).
    pub(crate) fn write_le(&self, w: &mut dyn Write) -> std::io::Result<()> {
        /// Elements encoded per `write_all` call.
        const CHUNK: usize = 8192;
        macro_rules! put {
            ($v:expr, $enc:expr) => {{
                let mut buf = Vec::new();
                for chunk in $v.chunks(CHUNK) {
                    buf.clear();
                    for x in chunk {
                        buf.extend_from_slice(&$enc(x));
                    }
                    w.write_all(&buf)?;
                }
                Ok(())
            }};
        }
        match self {
            NpyData::Bool(v) => put!(v, |b: &bool| [u8::from(*b)]),
            NpyData::U8(v) => w.write_all(v),
            NpyData::I32(v) => put!(v, |x: &i32| x.to_le_bytes()),
            NpyData::I64(v) => put!(v, |x: &i64| x.to_le_bytes()),
            NpyData::F16(v) => put!(v, |x: &u16| x.to_le_bytes()),
            NpyData::F32(v) => put!(v, |x: &f32| x.to_le_bytes()),
            NpyData::F64(v) => put!(v, |x: &f64| x.to_le_bytes()),
        }
    }
}

impl<'a> From<&'a TensorData> for NpyData<'a> {
    fn from(d: &'a TensorData) -> Self {
        match d {
            TensorData::Bool(v) => NpyData::Bool(v),
            TensorData::U8(v) => NpyData::U8(v),
            TensorData::I32(v) => NpyData::I32(v),
            TensorData::I64(v) => NpyData::I64(v),
            TensorData::F16(v) => NpyData::F16(v),
            TensorData::F32(v) => NpyData::F32(v),
            TensorData::F64(v) => NpyData::F64(v),
        }
    }
}

macro_rules! npy_data_from_slice {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl<'a> From<&'a [$t]> for NpyData<'a> {
            fn from(v: &'a [$t]) -> Self {
                NpyData::$variant(v)
            }
        }
    )*};
}
npy_data_from_slice!(bool => Bool, u8 => U8, i32 => I32, i64 => I64, f32 => F32, f64 => F64);

/// The `descr` numpy writes for `dtype` in native little-endian order.
fn descr(dtype: DType) -> &'static str {
    match dtype {
        DType::Bool => "|b1",
        DType::U8 => "|u1",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::F16 => "<f2",
        DType::F32 => "<f4",
        DType::F64 => "<f8",
    }
}

/// Errors unless `data` holds exactly `numel(shape)` elements; `what` names the array.
pub(crate) fn check_len(what: &str, shape: &[usize], data: &NpyData<'_>) -> Result<()> {
    match numel(shape) {
        Some(n) if n == data.len() => Ok(()),
        n => Err(Error::invalid(
            what,
            format!(
                "{} elements for shape {shape:?}",
                n.map_or_else(|| "an overflowing number of".to_string(), |n| n.to_string())
            ),
            format!("{} elements of {}", data.len(), data.dtype()),
        )),
    }
}

/// The magic, version, header length and header dict (padded) that `numpy.save` writes
/// before the data of a C-order little-endian array of `dtype` and `shape`.
///
/// Mirrors `numpy.lib.format._write_array_header` / `_wrap_header` (numpy 2.x): keys sorted,
/// `repr` of the shape tuple, 21 − len(repr(shape[0])) spaces of growth room (none for 0-d),
/// then spaces and a newline so that the data offset is a multiple of 64 (a full 64 spaces
/// when already aligned, as numpy does). Version 1.0 (u16 length) unless that overflows,
/// then 2.0 (u32 length).
pub(crate) fn npy_header(shape: &[usize], dtype: DType) -> Result<Vec<u8>> {
    /// `numpy.lib.format.ARRAY_ALIGN`.
    const ALIGN: usize = 64;
    /// `numpy.lib.format.GROWTH_AXIS_MAX_DIGITS`.
    const GROWTH_DIGITS: usize = 21;
    let shape_repr = match shape {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
            format!("({})", dims.join(", "))
        }
    };
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_repr}, }}",
        descr(dtype)
    );
    if let Some(first) = shape.first() {
        let digits = first.to_string().len();
        dict.extend(std::iter::repeat_n(
            ' ',
            GROWTH_DIGITS.saturating_sub(digits),
        ));
    }
    let hlen = dict.len() + 1; // + the final newline
    // Magic, two version bytes and a `len_bytes`-wide header length precede the dict.
    let pad = |len_bytes: usize| ALIGN - (MAGIC.len() + 2 + len_bytes + hlen) % ALIGN;
    let mut out = MAGIC.to_vec();
    let pad_len = match u16::try_from(hlen + pad(2)) {
        Ok(total) => {
            out.extend([1, 0]);
            out.extend(total.to_le_bytes());
            pad(2)
        }
        Err(_) => {
            let total = u32::try_from(hlen + pad(4)).map_err(|_| {
                Error::invalid(
                    "npy shape",
                    "a header shorter than 4 GiB",
                    format!("{} dimensions", shape.len()),
                )
            })?;
            out.extend([2, 0]);
            out.extend(total.to_le_bytes());
            pad(4)
        }
    };
    out.extend(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad_len));
    out.push(b'\n');
    Ok(out)
}

/// The bytes of a `.npy` file holding `data` with `shape` (C order, little-endian), identical
/// to what `numpy.save` writes for the same array.
///
/// Errors ([`Error::Invalid`]) unless `data` has exactly as many elements as `shape` implies.
pub fn npy_bytes(shape: &[usize], data: &NpyData<'_>) -> Result<Vec<u8>> {
    check_len("npy data", shape, data)?;
    let mut out = npy_header(shape, data.dtype())?;
    out.reserve(data.byte_len());
    // Writing into a Vec cannot fail.
    data.write_le(&mut out)
        .map_err(|e| Error::invalid("npy data", "an in-memory write", e.to_string()))?;
    Ok(out)
}

/// Writes `data` with `shape` as a `.npy` file at `path` (the bytes of [`npy_bytes`]).
///
/// Atomic: the file is written to a temporary sibling, fsynced and renamed over `path`, so a
/// failure leaves no partial file and an existing file at `path` is either replaced whole or
/// untouched. The element count is checked before anything is written.
pub fn write_npy(path: &Path, shape: &[usize], data: &NpyData<'_>) -> Result<()> {
    check_len(&format!("data for {}", path.display()), shape, data)?;
    let header = npy_header(shape, data.dtype())?;
    pno_core::atomic_write_with(path, |w| {
        w.write_all(&header)?;
        data.write_le(w)
    })?;
    Ok(())
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
    fn npy_header_is_64_aligned_and_round_trips_for_many_shapes() {
        for shape in [
            vec![],
            vec![0],
            vec![7],
            vec![123_456, 0],
            vec![2, 3, 4, 5, 6, 7, 8, 9, 0],
        ] {
            for dtype in [DType::Bool, DType::I64, DType::F16] {
                let h = npy_header(&shape, dtype).unwrap();
                assert_eq!(h.len() % 64, 0, "{shape:?} {dtype}");
                assert_eq!((h[6], h[7]), (1, 0));
                assert_eq!(usize::from(u16::from_le_bytes([h[8], h[9]])), h.len() - 10);
                assert_eq!(h.last(), Some(&b'\n'));
            }
        }
        let t = parse_npy(
            &npy_bytes(&[2, 1], &NpyData::I32(&[-4, 9])).unwrap(),
            Path::new("t.npy"),
        )
        .unwrap();
        assert_eq!((t.shape(), t.to_f64_vec()), (&[2, 1][..], vec![-4.0, 9.0]));
    }

    #[test]
    fn npy_header_over_65535_bytes_uses_version_2() {
        // 30000 dimensions of size 1 ("1, " each): far beyond numpy's 64 dimensions, but the
        // format allows it and our reader reads it.
        let shape = vec![1usize; 30_000];
        let b = npy_bytes(&shape, &NpyData::F64(&[0.25])).unwrap();
        assert_eq!((b[6], b[7]), (2, 0));
        let hlen = u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize;
        assert!(hlen > 65_535, "{hlen}");
        assert_eq!((12 + hlen) % 64, 0);
        assert_eq!(b.len(), 12 + hlen + 8);
        let t = parse_npy(&b, Path::new("big.npy")).unwrap();
        assert_eq!((t.shape().len(), t.to_f64_vec()), (30_000, vec![0.25]));
    }

    #[test]
    fn parse_npy_short_data_errors() {
        let b = npy("<f4", false, "(3,)", &[0; 8]);
        let e = parse_npy(&b, Path::new("t.npy")).unwrap_err().to_string();
        assert!(e.contains("12 bytes") && e.contains("8 bytes"), "{e}");
    }
}
