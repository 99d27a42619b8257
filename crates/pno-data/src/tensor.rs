//! In-memory tensors: a dtype, a row-major shape and contiguous data.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Element types the readers understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// Booleans (one byte each on disk).
    Bool,
    /// Unsigned bytes.
    U8,
    /// 32-bit signed integers.
    I32,
    /// 64-bit signed integers.
    I64,
    /// IEEE half precision (kept as raw bits, converted on demand).
    F16,
    /// IEEE single precision.
    F32,
    /// IEEE double precision.
    F64,
}

impl DType {
    /// Bytes per element.
    pub fn size(&self) -> usize {
        match self {
            DType::Bool | DType::U8 => 1,
            DType::F16 => 2,
            DType::I32 | DType::F32 => 4,
            DType::I64 | DType::F64 => 8,
        }
    }

    /// The lowercase name (`f32`, `bool`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::U8 => "u8",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::F16 => "f16",
            DType::F32 => "f32",
            DType::F64 => "f64",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The elements of a [`Tensor`], row-major and contiguous.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Booleans.
    Bool(Vec<bool>),
    /// Unsigned bytes.
    U8(Vec<u8>),
    /// 32-bit integers.
    I32(Vec<i32>),
    /// 64-bit integers.
    I64(Vec<i64>),
    /// Half-precision floats as raw IEEE bits.
    F16(Vec<u16>),
    /// Single-precision floats.
    F32(Vec<f32>),
    /// Double-precision floats.
    F64(Vec<f64>),
}

macro_rules! each_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::U8($v) => $body,
            TensorData::I32($v) => $body,
            TensorData::I64($v) => $body,
            TensorData::F16($v) => $body,
            TensorData::F32($v) => $body,
            TensorData::F64($v) => $body,
        }
    };
}

macro_rules! map_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => TensorData::Bool($body),
            TensorData::U8($v) => TensorData::U8($body),
            TensorData::I32($v) => TensorData::I32($body),
            TensorData::I64($v) => TensorData::I64($body),
            TensorData::F16($v) => TensorData::F16($body),
            TensorData::F32($v) => TensorData::F32($body),
            TensorData::F64($v) => TensorData::F64($body),
        }
    };
}

impl TensorData {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::Bool(_) => DType::Bool,
            TensorData::U8(_) => DType::U8,
            TensorData::I32(_) => DType::I32,
            TensorData::I64(_) => DType::I64,
            TensorData::F16(_) => DType::F16,
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        each_variant!(self, v => v.len())
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decodes little-endian bytes; `None` unless `bytes.len()` is a multiple of the element size.
    pub fn from_le_bytes(dtype: DType, bytes: &[u8]) -> Option<Self> {
        Self::from_bytes(dtype, bytes, false)
    }

    /// Decodes little- or big-endian bytes; `None` unless the length fits the element size.
    pub(crate) fn from_bytes(dtype: DType, bytes: &[u8], big_endian: bool) -> Option<Self> {
        if !bytes.len().is_multiple_of(dtype.size()) {
            return None;
        }
        macro_rules! decode {
            ($t:ty, $n:expr) => {
                bytes
                    .chunks_exact($n)
                    .map(|c| {
                        let mut a = [0u8; $n];
                        a.copy_from_slice(c);
                        if big_endian {
                            <$t>::from_be_bytes(a)
                        } else {
                            <$t>::from_le_bytes(a)
                        }
                    })
                    .collect()
            };
        }
        Some(match dtype {
            DType::Bool => TensorData::Bool(bytes.iter().map(|b| *b != 0).collect()),
            DType::U8 => TensorData::U8(bytes.to_vec()),
            DType::I32 => TensorData::I32(decode!(i32, 4)),
            DType::I64 => TensorData::I64(decode!(i64, 8)),
            DType::F16 => TensorData::F16(decode!(u16, 2)),
            DType::F32 => TensorData::F32(decode!(f32, 4)),
            DType::F64 => TensorData::F64(decode!(f64, 8)),
        })
    }

    /// Element `i` as `f64` (bool → 0/1); `None` when out of range.
    pub fn get_f64(&self, i: usize) -> Option<f64> {
        Some(match self {
            TensorData::Bool(v) => f64::from(u8::from(*v.get(i)?)),
            TensorData::U8(v) => f64::from(*v.get(i)?),
            TensorData::I32(v) => f64::from(*v.get(i)?),
            TensorData::I64(v) => *v.get(i)? as f64,
            TensorData::F16(v) => f64::from(f16_to_f32(*v.get(i)?)),
            TensorData::F32(v) => f64::from(*v.get(i)?),
            TensorData::F64(v) => *v.get(i)?,
        })
    }

    /// The elements `idx` picks, in that order; `None` if an index is out of range.
    pub(crate) fn gather(&self, idx: &[usize]) -> Option<TensorData> {
        Some(map_variant!(self, v => {
            let mut out = Vec::with_capacity(idx.len());
            for &i in idx {
                out.push(*v.get(i)?);
            }
            out
        }))
    }

    /// A copy of the elements in `range` (clamped to the data).
    fn slice(&self, start: usize, end: usize) -> TensorData {
        map_variant!(self, v => {
            let end = end.min(v.len());
            v.get(start.min(end)..end).unwrap_or_default().to_vec()
        })
    }
}

/// Converts IEEE half-precision bits to `f32`.
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exp = u32::from((bits >> 10) & 0x1f);
    let frac = u32::from(bits & 0x3ff);
    let out = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: value = f · 2^-24.
            let v = f as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, f) => sign | 0x7fc0_0000 | (f << 13),
        (e, f) => sign | ((e + 112) << 23) | (f << 13),
    };
    f32::from_bits(out)
}

/// A named-dtype n-dimensional array, row-major and contiguous.
///
/// Readers materialise strided or Fortran-ordered storage into this layout, so
/// `data[i]` is the element whose multi-index is the row-major unravelling of `i`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

/// The number of elements of `shape`, or `None` on overflow.
pub(crate) fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl Tensor {
    /// A tensor of `shape` holding `data`; errors unless the element count matches.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Self> {
        match numel(&shape) {
            Some(n) if n == data.len() => Ok(Self { shape, data }),
            n => Err(Error::invalid(
                "tensor data",
                format!(
                    "{} elements for shape {shape:?}",
                    n.map_or("overflowing".to_string(), |n| n.to_string())
                ),
                data.len().to_string(),
            )),
        }
    }

    /// An `f32` tensor.
    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        Self::new(shape, TensorData::F32(data))
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// The shape (row-major).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// Takes the elements out.
    pub fn into_data(self) -> TensorData {
        self.data
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// All elements as `f32` (bool → 0/1, integers and f64 rounded).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::F16(v) => v.iter().map(|b| f16_to_f32(*b)).collect(),
            TensorData::F64(v) => v.iter().map(|x| *x as f32).collect(),
            TensorData::Bool(v) => v.iter().map(|b| f32::from(u8::from(*b))).collect(),
            TensorData::U8(v) => v.iter().map(|x| f32::from(*x)).collect(),
            TensorData::I32(v) => v.iter().map(|x| *x as f32).collect(),
            TensorData::I64(v) => v.iter().map(|x| *x as f32).collect(),
        }
    }

    /// All elements as `f64` (bool → 0/1).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            TensorData::F64(v) => v.clone(),
            TensorData::F32(v) => v.iter().map(|x| f64::from(*x)).collect(),
            TensorData::F16(v) => v.iter().map(|b| f64::from(f16_to_f32(*b))).collect(),
            TensorData::Bool(v) => v.iter().map(|b| f64::from(u8::from(*b))).collect(),
            TensorData::U8(v) => v.iter().map(|x| f64::from(*x)).collect(),
            TensorData::I32(v) => v.iter().map(|x| f64::from(*x)).collect(),
            TensorData::I64(v) => v.iter().map(|x| *x as f64).collect(),
        }
    }

    /// The same elements under another shape with the same element count.
    pub fn reshape(self, shape: Vec<usize>) -> Result<Self> {
        Self::new(shape, self.data)
    }

    /// Samples `start..end` along the leading axis.
    pub fn slice_leading(&self, start: usize, end: usize) -> Result<Self> {
        let Some((&n, rest)) = self.shape.split_first() else {
            return Err(Error::invalid("tensor rank", ">= 1", "0"));
        };
        if start > end || end > n {
            return Err(Error::invalid(
                "sample range",
                format!("within 0..{n}"),
                format!("{start}..{end}"),
            ));
        }
        let per = numel(rest).unwrap_or(0);
        let mut shape = self.shape.clone();
        shape[0] = end - start;
        Self::new(shape, self.data.slice(start * per, end * per))
    }

    /// Reorders the axes: output axis `k` is input axis `perm[k]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Self> {
        let rank = self.shape.len();
        let mut seen = vec![false; rank];
        if perm.len() != rank
            || perm
                .iter()
                .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::invalid(
                "permutation",
                format!("a permutation of 0..{rank}"),
                format!("{perm:?}"),
            ));
        }
        let strides = row_major_strides(&self.shape);
        let shape: Vec<usize> = perm.iter().map(|&p| self.shape[p]).collect();
        let pstrides: Vec<usize> = perm.iter().map(|&p| strides[p]).collect();
        let idx = strided_indices(0, &shape, &pstrides).ok_or_else(|| {
            Error::invalid(
                "tensor",
                "a tensor small enough to permute",
                format!("{:?}", self.shape),
            )
        })?;
        let data = self
            .data
            .gather(&idx)
            .ok_or_else(|| Error::invalid("permutation", "indices in range", "out of range"))?;
        Self::new(shape, data)
    }
}

/// Row-major (C-order) strides in elements.
pub(crate) fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        strides[k] = strides[k + 1].saturating_mul(shape[k + 1]);
    }
    strides
}

/// Column-major (Fortran-order) strides in elements.
pub(crate) fn col_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        strides[k] = strides[k - 1].saturating_mul(shape[k - 1]);
    }
    strides
}

/// Storage indices `offset + Σ i_k·stride_k` for every multi-index of `shape` in row-major order.
///
/// `None` on arithmetic overflow. Callers check the largest index against their storage.
pub(crate) fn strided_indices(
    offset: usize,
    shape: &[usize],
    strides: &[usize],
) -> Option<Vec<usize>> {
    let n = numel(shape)?;
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return Some(out);
    }
    let rank = shape.len();
    let mut index = vec![0usize; rank];
    let mut pos = offset;
    for _ in 0..n {
        out.push(pos);
        // Increment the multi-index, last axis fastest.
        for k in (0..rank).rev() {
            index[k] += 1;
            pos = pos.checked_add(strides[k])?;
            if index[k] < shape[k] {
                break;
            }
            pos = pos.checked_sub(strides[k].checked_mul(shape[k])?)?;
            index[k] = 0;
        }
    }
    Some(out)
}

/// The largest storage index a strided view touches, or `None` for an empty view / overflow.
pub(crate) fn max_strided_index(
    offset: usize,
    shape: &[usize],
    strides: &[usize],
) -> Option<usize> {
    if shape.contains(&0) {
        return None;
    }
    shape.iter().zip(strides).try_fold(offset, |acc, (&d, &s)| {
        acc.checked_add((d - 1).checked_mul(s)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_new_mismatched_len_errors() {
        assert!(Tensor::from_f32(vec![2, 3], vec![0.0; 5]).is_err());
        assert!(Tensor::from_f32(vec![usize::MAX, 3], vec![]).is_err());
    }

    #[test]
    fn tensor_bool_to_f32_gives_zero_one() {
        let t = Tensor::new(vec![3], TensorData::Bool(vec![true, false, true])).unwrap();
        assert_eq!(t.to_f32_vec(), vec![1.0, 0.0, 1.0]);
        assert_eq!(t.to_f64_vec(), vec![1.0, 0.0, 1.0]);
    }

    #[test]
    fn f16_to_f32_known_values_match() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
    }

    #[test]
    fn permute_transposes_matrix() {
        let t = Tensor::from_f32(vec![2, 3], vec![0., 1., 2., 3., 4., 5.]).unwrap();
        let p = t.permute(&[1, 0]).unwrap();
        assert_eq!(p.shape(), &[3, 2]);
        assert_eq!(p.to_f32_vec(), vec![0., 3., 1., 4., 2., 5.]);
        assert!(t.permute(&[0, 0]).is_err());
    }

    #[test]
    fn strided_indices_fortran_order_matches() {
        let idx = strided_indices(0, &[2, 3], &col_major_strides(&[2, 3])).unwrap();
        assert_eq!(idx, vec![0, 2, 4, 1, 3, 5]);
        assert_eq!(max_strided_index(1, &[2, 3], &[1, 2]), Some(6));
    }

    #[test]
    fn slice_leading_takes_samples() {
        let t = Tensor::from_f32(vec![3, 2], vec![0., 1., 2., 3., 4., 5.]).unwrap();
        let s = t.slice_leading(1, 3).unwrap();
        assert_eq!(s.shape(), &[2, 2]);
        assert_eq!(s.to_f32_vec(), vec![2., 3., 4., 5.]);
        assert!(t.slice_leading(2, 4).is_err());
    }
}
