//! Slice kernels of the fused pointwise (1×1) layer: `y[b] = W · x[b] + bias` over
//! `x[batch, in, points]` and `W[out, in]`, as GEMMs through faer (AVX-512 or AVX2 + FMA kernels,
//! picked at run time).
//!
//! Work is split into tasks of one batch item and a fixed block of [`COLS`] points; each task
//! is one sequential GEMM. A task's values depend only on its own operands, never on the batch
//! size or the thread count, so a row gives the same numbers alone or batched with others. The
//! outputs are written into buffers this module allocates (no copy after the product), and the
//! weight gradient sums its per-task partial products in task order (deterministic).

use std::ops::Range;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Points per task: a `[out, COLS]` block is big enough for the GEMM kernels and splits a
/// 64² field (4,096 points) into four tasks per batch item.
pub const COLS: usize = 1024;

/// The shapes of one pointwise layer.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    /// Batch `b`.
    pub batch: usize,
    /// Input channels `i`.
    pub d_in: usize,
    /// Output channels `o`.
    pub d_out: usize,
    /// Points per channel `n`.
    pub points: usize,
}

/// The point blocks of one batch item.
fn blocks(points: usize) -> impl Iterator<Item = Range<usize>> {
    (0..points.div_ceil(COLS)).map(move |k| k * COLS..((k + 1) * COLS).min(points))
}

/// `[rows, points]` (row-major) split into its column blocks, as disjoint views.
pub(super) fn split_blocks(m: MatMut<'_, f32>) -> Vec<(Range<usize>, MatMut<'_, f32>)> {
    let mut parts = Vec::new();
    let mut rest = m;
    let mut at = 0;
    while rest.ncols() > COLS {
        let (head, tail) = rest.split_at_col_mut(COLS);
        parts.push((at..at + COLS, head));
        at += COLS;
        rest = tail;
    }
    let end = at + rest.ncols();
    parts.push((at..end, rest));
    parts
}

/// `dst = lhs · rhs` (or `dst += lhs · rhs`), one sequential GEMM.
pub(super) fn gemm(dst: MatMut<'_, f32>, accum: Accum, lhs: MatRef<'_, f32>, rhs: MatRef<'_, f32>) {
    matmul(dst, accum, lhs, rhs, 1.0f32, Par::Seq);
}

/// `out[b] = lhs · src[b]` for every batch item, `src[b]` being `[k, points]` and `out[b]`
/// `[rows, points]`; rows start at `bias[row]` (then the product is added) when given.
fn batched(
    out: &mut [f32],
    src: &[f32],
    lhs: MatRef<'_, f32>,
    bias: Option<&[f32]>,
    points: usize,
) {
    let (rows, k) = (lhs.nrows(), lhs.ncols());
    if out.is_empty() {
        return;
    }
    out.par_chunks_mut(rows * points)
        .zip(src.par_chunks(k * points))
        .for_each(|(yb, xb)| {
            let xm = MatRef::from_row_major_slice(xb, k, points);
            let ym = MatMut::from_row_major_slice_mut(yb, rows, points);
            split_blocks(ym)
                .into_par_iter()
                .for_each(|(cols, mut part)| {
                    let accum = match bias {
                        Some(b) => {
                            for (r, &v) in b.iter().enumerate() {
                                part.as_mut().row_mut(r).fill(v);
                            }
                            Accum::Add
                        }
                        None => Accum::Replace,
                    };
                    gemm(part, accum, lhs, xm.subcols(cols.start, cols.len()));
                });
        });
}

/// Forward: `y[b] = W · x[b] (+ bias)`, `x` `[b, i, n]`, `w` `[o, i]`, `bias` `[o]`; returns
/// `y` `[b, o, n]`.
pub fn forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, d: Dims) -> Vec<f32> {
    let mut y = vec![0.0f32; d.batch * d.d_out * d.points];
    if d.d_in == 0 {
        // An empty product: the bias alone.
        if let Some(b) = bias {
            for (row, v) in y.chunks_mut(d.points.max(1)).enumerate() {
                v.fill(b[row % d.d_out]);
            }
        }
        return y;
    }
    let wm = MatRef::from_row_major_slice(w, d.d_out, d.d_in);
    batched(&mut y, x, wm, bias, d.points);
    y
}

/// Input gradient: `dx[b] = Wᵀ · grad[b]`, `[b, i, n]`.
pub fn input_grad(grad: &[f32], w: &[f32], d: Dims) -> Vec<f32> {
    let mut dx = vec![0.0f32; d.batch * d.d_in * d.points];
    if d.d_out == 0 {
        return dx;
    }
    let wt = MatRef::from_row_major_slice(w, d.d_out, d.d_in).transpose();
    batched(&mut dx, grad, wt, None, d.points);
    dx
}

/// Weight gradient: `dW = Σ_b grad[b] · x[b]ᵀ`, `[o, i]`. Each (batch item, point block) task
/// forms its partial product; the partials are summed in task order.
pub fn weight_grad(grad: &[f32], x: &[f32], d: Dims) -> Vec<f32> {
    let size = d.d_out * d.d_in;
    let mut dw = vec![0.0f32; size];
    if size == 0 || d.points == 0 {
        return dw;
    }
    let tasks: Vec<(usize, Range<usize>)> = (0..d.batch)
        .flat_map(|b| blocks(d.points).map(move |c| (b, c)))
        .collect();
    let partials: Vec<Vec<f32>> = tasks
        .into_par_iter()
        .map(|(b, cols)| {
            let g = MatRef::from_row_major_slice(
                &grad[b * d.d_out * d.points..(b + 1) * d.d_out * d.points],
                d.d_out,
                d.points,
            );
            let xb = MatRef::from_row_major_slice(
                &x[b * d.d_in * d.points..(b + 1) * d.d_in * d.points],
                d.d_in,
                d.points,
            );
            let mut part = vec![0.0f32; size];
            gemm(
                MatMut::from_row_major_slice_mut(&mut part, d.d_out, d.d_in),
                Accum::Replace,
                g.subcols(cols.start, cols.len()),
                xb.subcols(cols.start, cols.len()).transpose(),
            );
            part
        })
        .collect();
    for p in &partials {
        for (acc, v) in dw.iter_mut().zip(p) {
            *acc += v;
        }
    }
    dw
}
