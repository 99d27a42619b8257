//! Slice kernels of the fused channel MLP: `y[b] = W₂ · gelu((W₁ · x[b] + b₁) · mask) + b₂` over
//! `x[batch, in, points]`, `W₁[hidden, in]`, `W₂[out, hidden]`.
//!
//! The work is split like the pointwise layer's ([`pointwise`](mod@super::pointwise)): one task
//! per batch item and block of [`COLS`] points. A task runs the whole MLP on its block — first GEMM, bias,
//! dropout and GELU on the `[hidden, COLS]` block in a scratch buffer that stays in cache, second
//! GEMM into the output — so the hidden field (`hidden × points` per item, 67 MB for 32 draws of
//! a 64² field with 256 hidden channels) is never written to memory. Each block's values are
//! those of the unfused layers (the same GEMMs on the same operands, the same epilogue), so a
//! row's numbers depend neither on its batch nor on the thread count.
//!
//! For training, [`forward`] can also keep the hidden pre-activation `z = W₁ · x` (without the
//! bias): the only field the backward needs. [`backward`] recomputes the activation from it block
//! by block, makes each block's dropout mask again from its stream, and forms every gradient
//! there; the weight and bias gradients sum their per-task partials in task order
//! (deterministic).

use std::ops::Range;

use faer::{Accum, MatMut, MatRef};
use rayon::prelude::*;

use super::math;
use super::pointwise::{gemm, split_blocks};
use crate::noise::MaskStreams;

#[cfg(doc)]
use super::pointwise::COLS;

/// The shapes of one channel MLP.
#[derive(Clone, Copy, Debug)]
pub struct MlpDims {
    /// Batch `b`.
    pub batch: usize,
    /// Input channels `i`.
    pub d_in: usize,
    /// Hidden channels `h`.
    pub hidden: usize,
    /// Output channels `o`.
    pub d_out: usize,
    /// Points per channel `n`.
    pub points: usize,
}

/// The MLP's parameters the forward and backward both read, as contiguous slices: `w1 [h, i]`,
/// `b1 [h]`, `w2 [o, h]` (the second bias enters the forward alone).
#[derive(Clone, Copy, Debug)]
pub struct MlpWeights<'a> {
    /// First layer's weight `[h, i]`.
    pub w1: &'a [f32],
    /// First layer's bias `[h]`.
    pub b1: &'a [f32],
    /// Second layer's weight `[o, h]`.
    pub w2: &'a [f32],
}

/// The gradients of one channel MLP.
#[derive(Clone, Debug, Default)]
pub struct MlpGrads {
    /// Input `[b, i, n]`.
    pub dx: Vec<f32>,
    /// First weight `[h, i]`.
    pub dw1: Vec<f32>,
    /// First bias `[h]`.
    pub db1: Vec<f32>,
    /// Second weight `[o, h]`.
    pub dw2: Vec<f32>,
    /// Second bias `[o]`.
    pub db2: Vec<f32>,
}

impl MlpDims {
    fn w1<'a>(&self, w: &MlpWeights<'a>) -> MatRef<'a, f32> {
        MatRef::from_row_major_slice(w.w1, self.hidden, self.d_in)
    }

    fn w2<'a>(&self, w: &MlpWeights<'a>) -> MatRef<'a, f32> {
        MatRef::from_row_major_slice(w.w2, self.d_out, self.hidden)
    }

    fn check(&self, x: &[f32], w: &MlpWeights<'_>) {
        let (b, i, h, o, n) = (self.batch, self.d_in, self.hidden, self.d_out, self.points);
        assert!(
            i > 0 && h > 0 && o > 0 && n > 0,
            "channel_mlp: empty dimension in {self:?}"
        );
        assert!(
            x.len() == b * i * n && w.w1.len() == h * i && w.b1.len() == h && w.w2.len() == o * h,
            "channel_mlp: operand sizes x {}, w1 {}, b1 {}, w2 {} do not fit {self:?}",
            x.len(),
            w.w1.len(),
            w.b1.len(),
            w.w2.len()
        );
    }
}

/// Row `r` of a row-major view as a slice.
fn row(m: MatRef<'_, f32>, r: usize) -> &[f32] {
    m.row(r)
        .try_as_row_major()
        .expect("blocks of row-major matrices have contiguous rows")
        .as_slice()
}

/// Forward: `y` `[b, o, n]` and, when `keep_hidden`, the hidden pre-activation `z = W₁ · x`
/// `[b, h, n]` (the backward's input); `b2` is the second bias `[o]`.
pub fn forward(
    x: &[f32],
    w: MlpWeights<'_>,
    b2: &[f32],
    masks: Option<&MaskStreams>,
    d: MlpDims,
    keep_hidden: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    d.check(x, &w);
    assert_eq!(
        b2.len(),
        d.d_out,
        "channel_mlp: b2 of {} for {d:?}",
        b2.len()
    );
    let n = d.points;
    let mut y = vec![0.0f32; d.batch * d.d_out * n];
    let mut z = keep_hidden.then(|| vec![0.0f32; d.batch * d.hidden * n]);
    let z_items: Vec<Option<&mut [f32]>> = match z.as_mut() {
        Some(z) => z.chunks_mut(d.hidden * n).map(Some).collect(),
        None => (0..d.batch).map(|_| None).collect(),
    };
    y.par_chunks_mut(d.d_out * n)
        .zip(x.par_chunks(d.d_in * n))
        .zip(z_items.into_par_iter())
        .enumerate()
        .for_each(|(item, ((yb, xb), zb))| {
            let xm = MatRef::from_row_major_slice(xb, d.d_in, n);
            let y_parts = split_blocks(MatMut::from_row_major_slice_mut(yb, d.d_out, n));
            let z_parts: Vec<Option<MatMut<'_, f32>>> = match zb {
                Some(zb) => split_blocks(MatMut::from_row_major_slice_mut(zb, d.hidden, n))
                    .into_iter()
                    .map(|(_, m)| Some(m))
                    .collect(),
                None => (0..y_parts.len()).map(|_| None).collect(),
            };
            y_parts
                .into_par_iter()
                .zip(z_parts.into_par_iter())
                .for_each(|((cols, y_part), z_part)| {
                    let block = Block {
                        item,
                        x: xm.subcols(cols.start, cols.len()),
                        cols,
                        masks,
                        points: n,
                    };
                    forward_block(&block, &w, b2, d, y_part, z_part);
                });
        });
    (y, z)
}

/// One task's place: batch item, point range, its input columns.
struct Block<'a> {
    item: usize,
    cols: Range<usize>,
    x: MatRef<'a, f32>,
    masks: Option<&'a MaskStreams>,
    points: usize,
}

fn forward_block(
    block: &Block<'_>,
    w: &MlpWeights<'_>,
    b2: &[f32],
    d: MlpDims,
    mut y: MatMut<'_, f32>,
    z: Option<MatMut<'_, f32>>,
) {
    let len = block.cols.len();
    let mut h = vec![0.0f32; d.hidden * len];
    let mut mask = vec![0.0f32; if block.masks.is_some() { len } else { 0 }];
    match z {
        Some(mut z) => {
            gemm(z.as_mut(), Accum::Replace, d.w1(w), block.x);
            pulp::Arch::new().dispatch(Activate {
                h: &mut h,
                z: Some(z.as_ref()),
                mask: &mut mask,
                block,
                b1: w.b1,
            });
        }
        None => {
            let hm = MatMut::from_row_major_slice_mut(&mut h, d.hidden, len);
            gemm(hm, Accum::Replace, d.w1(w), block.x);
            pulp::Arch::new().dispatch(Activate {
                h: &mut h,
                z: None,
                mask: &mut mask,
                block,
                b1: w.b1,
            });
        }
    }
    for (r, &b) in b2.iter().enumerate() {
        y.as_mut().row_mut(r).fill(b);
    }
    let hm = MatRef::from_row_major_slice(&h, d.hidden, len);
    gemm(y, Accum::Add, d.w2(w), hm);
}

/// The block's dropout mask row `r` (hidden channel `r`) into `buf`, if any.
#[inline(always)]
fn mask_row<'b>(block: &Block<'_>, r: usize, buf: &'b mut [f32]) -> Option<&'b [f32]> {
    block.masks.map(|m| {
        m.fill(block.item, r * block.points + block.cols.start, buf);
        &buf[..]
    })
}

/// `h = gelu((z + b₁) · mask)` row by row over a `[hidden, len]` block: from `z` into `h`, or in
/// place in `h`. A [`pulp::WithSimd`] with an `#[inline(always)]` body, so the loops compile for
/// the widest instruction set (see [`math`]).
struct Activate<'a, 'b> {
    h: &'a mut [f32],
    z: Option<MatRef<'a, f32>>,
    mask: &'a mut [f32],
    block: &'a Block<'b>,
    b1: &'a [f32],
}

impl pulp::WithSimd for Activate<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let len = self.block.cols.len();
        for (r, hr) in self.h.chunks_mut(len).enumerate() {
            let m = mask_row(self.block, r, self.mask);
            math::forward_row(hr, self.z.map(|z| row(z, r)), m, self.b1[r]);
        }
    }
}

/// One task's share of the parameter gradients.
struct Partial {
    dw1: Vec<f32>,
    db1: Vec<f32>,
    dw2: Vec<f32>,
    db2: Vec<f32>,
}

/// Backward from the forward input `x`, the kept hidden pre-activation `z` and the output gradient
/// `grad` `[b, o, n]`.
pub fn backward(
    x: &[f32],
    z: &[f32],
    w: MlpWeights<'_>,
    masks: Option<&MaskStreams>,
    grad: &[f32],
    d: MlpDims,
) -> MlpGrads {
    d.check(x, &w);
    let n = d.points;
    assert!(
        z.len() == d.batch * d.hidden * n && grad.len() == d.batch * d.d_out * n,
        "channel_mlp_backward: z {} and grad {} do not fit {d:?}",
        z.len(),
        grad.len()
    );
    let mut dx = vec![0.0f32; d.batch * d.d_in * n];
    let partials: Vec<Vec<Partial>> = dx
        .par_chunks_mut(d.d_in * n)
        .enumerate()
        .map(|(item, dxb)| {
            let span = |c: usize| item * c * n..(item + 1) * c * n;
            let xm = MatRef::from_row_major_slice(&x[span(d.d_in)], d.d_in, n);
            let zm = MatRef::from_row_major_slice(&z[span(d.hidden)], d.hidden, n);
            let gm = MatRef::from_row_major_slice(&grad[span(d.d_out)], d.d_out, n);
            split_blocks(MatMut::from_row_major_slice_mut(dxb, d.d_in, n))
                .into_par_iter()
                .map(|(cols, dx_part)| {
                    let (at, len) = (cols.start, cols.len());
                    let block = Block {
                        item,
                        x: xm.subcols(at, len),
                        cols,
                        masks,
                        points: n,
                    };
                    backward_block(
                        &block,
                        zm.subcols(at, len),
                        gm.subcols(at, len),
                        &w,
                        d,
                        dx_part,
                    )
                })
                .collect()
        })
        .collect();
    let mut out = MlpGrads {
        dx,
        dw1: vec![0.0; d.hidden * d.d_in],
        dw2: vec![0.0; d.d_out * d.hidden],
        ..MlpGrads::default()
    };
    let mut db1 = vec![0.0f64; d.hidden];
    let mut db2 = vec![0.0f64; d.d_out];
    for p in partials.iter().flatten() {
        add(&mut out.dw1, &p.dw1);
        add(&mut out.dw2, &p.dw2);
        add_f64(&mut db1, &p.db1);
        add_f64(&mut db2, &p.db2);
    }
    out.db1 = db1.into_iter().map(|v| v as f32).collect();
    out.db2 = db2.into_iter().map(|v| v as f32).collect();
    out
}

fn add(acc: &mut [f32], v: &[f32]) {
    for (a, v) in acc.iter_mut().zip(v) {
        *a += v;
    }
}

fn add_f64(acc: &mut [f64], v: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(v) {
        *a += f64::from(v);
    }
}

fn backward_block(
    block: &Block<'_>,
    z: MatRef<'_, f32>,
    g: MatRef<'_, f32>,
    w: &MlpWeights<'_>,
    d: MlpDims,
    dx: MatMut<'_, f32>,
) -> Partial {
    let len = block.cols.len();
    let (h_n, i_n, o_n) = (d.hidden, d.d_in, d.d_out);
    // The activation again, and the block's masks (kept for the GELU gradient).
    let mut h = vec![0.0f32; h_n * len];
    let mut masks = vec![0.0f32; if block.masks.is_some() { h_n * len } else { 0 }];
    pulp::Arch::new().dispatch(Recompute {
        h: &mut h,
        masks: &mut masks,
        z,
        block,
        b1: w.b1,
    });
    let mut p = Partial {
        dw1: vec![0.0; h_n * i_n],
        db1: vec![0.0; h_n],
        dw2: vec![0.0; o_n * h_n],
        db2: vec![0.0; o_n],
    };
    let hm = MatRef::from_row_major_slice(&h, h_n, len);
    gemm(
        MatMut::from_row_major_slice_mut(&mut p.dw2, o_n, h_n),
        Accum::Replace,
        g,
        hm.transpose(),
    );
    // dz = (W₂ᵀ · g) · gelu'((z + b₁) · mask) · mask, in the buffer of `h`.
    gemm(
        MatMut::from_row_major_slice_mut(&mut h, h_n, len),
        Accum::Replace,
        d.w2(w).transpose(),
        g,
    );
    pulp::Arch::new().dispatch(GeluGrad {
        dz: &mut h,
        masks: &masks,
        z,
        g,
        b1: w.b1,
        db1: &mut p.db1,
        db2: &mut p.db2,
    });
    let dz = MatRef::from_row_major_slice(&h, h_n, len);
    gemm(
        MatMut::from_row_major_slice_mut(&mut p.dw1, h_n, i_n),
        Accum::Replace,
        dz,
        block.x.transpose(),
    );
    gemm(dx, Accum::Replace, d.w1(w).transpose(), dz);
    p
}

/// The backward's activation `h = gelu((z + b₁) · mask)` from the kept `z`, and the masks.
struct Recompute<'a, 'b> {
    h: &'a mut [f32],
    masks: &'a mut [f32],
    z: MatRef<'a, f32>,
    block: &'a Block<'b>,
    b1: &'a [f32],
}

impl pulp::WithSimd for Recompute<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let len = self.block.cols.len();
        let mut rows = self.masks.chunks_mut(len);
        for (r, hr) in self.h.chunks_mut(len).enumerate() {
            let m = match rows.next() {
                Some(buf) => mask_row(self.block, r, buf),
                None => None,
            };
            math::forward_row(hr, Some(row(self.z, r)), m, self.b1[r]);
        }
    }
}

/// `dz *= gelu'((z + b₁) · mask) · mask` row by row, with the rows' sums (the first bias's
/// gradient) and the output gradient's row sums (the second bias's).
struct GeluGrad<'a> {
    dz: &'a mut [f32],
    masks: &'a [f32],
    z: MatRef<'a, f32>,
    g: MatRef<'a, f32>,
    b1: &'a [f32],
    db1: &'a mut [f32],
    db2: &'a mut [f32],
}

impl pulp::WithSimd for GeluGrad<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let len = self.z.ncols();
        let mut rows = self.masks.chunks(len);
        for (r, dr) in self.dz.chunks_mut(len).enumerate() {
            math::backward_row(dr, None, row(self.z, r), rows.next(), self.b1[r]);
            self.db1[r] = math::sum(dr);
        }
        for (r, s) in self.db2.iter_mut().enumerate() {
            *s = math::sum(row(self.g, r));
        }
    }
}
