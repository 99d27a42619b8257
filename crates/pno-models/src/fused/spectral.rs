//! Slice kernels of the fused 2-D spectral convolution: truncated real DFT along the last axis,
//! truncated complex DFT along the first, per-mode complex channel mixing, Fourier dropout, the
//! two inverse transforms and the bias, without a single transpose or copy of the field.
//!
//! Shapes (row-major): `x [b, c, h·w]`; weights `wr`, `wi` `[m, c, co]` over the kept modes
//! `m = k1·k2` (mode `i·k2 + j`); the DFT bases of [`crate::spectral`]: `fw [w, 2·k2]` (real
//! forward, cosine columns then sine columns), `mh [2·k1, 2·h]` (complex forward on stacked
//! real/imaginary rows), `gh [2·h, 2·k1]` and `gw [2·k2, w]` (the inverses); bias `[co]`. The
//! dropout masks have one row of `co · m` entries per batch item (entry `o·m + q`), the same
//! for the real and imaginary part of a coefficient.
//!
//! Three parallel phases (a row's values never depend on the batch it is in):
//! 1. the last axis for all of an item's rows at once, `A = X · fw` (`[c·h, 2·k2]` per item, in
//!    tasks of one item and a block of rows), then per (item, channel) the coefficients
//!    `S = mh[:, :h] · A_re + mh[:, h:] · A_im` (`[2·k1, k2]`) — the column halves of `A` are
//!    strided views, not copies;
//! 2. per mode: each item's `2c` coefficients gathered from `S`, then the complex product with
//!    the mode's `[c, co]` weights, a vectorised loop per item (a GEMM over the batch would let
//!    a row's values depend on the batch), into `O [m, b, 2·co]`;
//! 3. per (item, output channel): the coefficients gathered from `O` and masked, and
//!    `U = [gh[:h] · T | gh[h:] · T]` (`[h, 2·k2]`); then the last axis for all of an item's
//!    rows at once, `Y = bias + U · gw`.
//!
//! The per-item row GEMMs keep a 1-D grid (`h = 1`, thousands of one-row products otherwise)
//! as fast as one matrix product over all rows.
//!
//! The [`backward`] runs the adjoint of each phase in reverse order from the forward's
//! coefficients `S` alone (the op is linear in the input, so the field is not kept), with the
//! dropout entries made again from the mask streams. A 1-D convolution is the `h = 1` case with
//! identity bases along the first axis.

use faer::{Accum, MatMut, MatRef};
use rayon::prelude::*;

use super::math;
use super::pointwise::{gemm, split_blocks};
use crate::noise::MaskStreams;

/// The shapes of one 2-D spectral convolution.
#[derive(Clone, Copy, Debug)]
pub struct SpectralDims {
    /// Batch `b`.
    pub batch: usize,
    /// Input channels `c`.
    pub d_in: usize,
    /// Output channels `co`.
    pub d_out: usize,
    /// Grid rows `h`.
    pub h: usize,
    /// Grid columns `w`.
    pub w: usize,
    /// Kept modes along the first axis `k1`.
    pub k1: usize,
    /// Kept modes along the last axis `k2`.
    pub k2: usize,
}

/// The operands of one 2-D spectral convolution as contiguous slices (shapes in the module
/// docs).
#[derive(Clone, Copy, Debug)]
pub struct SpectralOperands<'a> {
    /// Input field `[b, c, h·w]`.
    pub x: &'a [f32],
    /// Real weights `[m, c, co]`.
    pub wr: &'a [f32],
    /// Imaginary weights `[m, c, co]`.
    pub wi: &'a [f32],
    /// Bias `[co]`.
    pub bias: &'a [f32],
    /// Forward real DFT along the last axis `[w, 2·k2]`.
    pub fw: &'a [f32],
    /// Forward complex DFT along the first axis `[2·k1, 2·h]`.
    pub mh: &'a [f32],
    /// Inverse complex DFT along the first axis `[2·h, 2·k1]`.
    pub gh: &'a [f32],
    /// Inverse real DFT along the last axis `[2·k2, w]`.
    pub gw: &'a [f32],
}

impl SpectralDims {
    fn modes(&self) -> usize {
        self.k1 * self.k2
    }

    fn check_masks(&self, masks: Option<&MaskStreams>) {
        if let Some(ms) = masks {
            assert!(
                ms.batch() == self.batch && ms.per_row() == self.d_out * self.modes(),
                "spectral2d: masks of {} rows of {} for {self:?}",
                ms.batch(),
                ms.per_row()
            );
        }
    }

    fn check(&self, o: &SpectralOperands<'_>) {
        let (b, c, co, hw) = (self.batch, self.d_in, self.d_out, self.h * self.w);
        self.check_sizes(&[("x", o.x.len(), b * c * hw), ("bias", o.bias.len(), co)]);
        self.check_weights_and_bases([o.wr, o.wi, o.fw, o.mh, o.gh, o.gw]);
    }

    fn check_weights_and_bases(&self, [wr, wi, fw, mh, gh, gw]: [&[f32]; 6]) {
        let (c, co, h, w, k1, k2) = (self.d_in, self.d_out, self.h, self.w, self.k1, self.k2);
        let m = self.modes();
        self.check_sizes(&[
            ("wr", wr.len(), m * c * co),
            ("wi", wi.len(), m * c * co),
            ("fw", fw.len(), w * 2 * k2),
            ("mh", mh.len(), 2 * k1 * 2 * h),
            ("gh", gh.len(), 2 * h * 2 * k1),
            ("gw", gw.len(), 2 * k2 * w),
        ]);
    }

    fn check_sizes(&self, sizes: &[(&str, usize, usize)]) {
        assert!(
            [
                self.batch, self.d_in, self.d_out, self.h, self.w, self.k1, self.k2
            ]
            .iter()
            .all(|&v| v > 0),
            "spectral2d: empty dimension in {self:?}"
        );
        for &(name, got, want) in sizes {
            assert_eq!(
                got, want,
                "spectral2d: {name} has {got} entries, {self:?} needs {want}"
            );
        }
    }
}

/// One item's coefficients at one mode times the mode's weights: `out = [Re | Im]` (`2·co`) with
/// `Re = Σ_c zre·Wr − zim·Wi`, `Im = Σ_c zre·Wi + zim·Wr`, summed over the input channels in
/// order. A [`pulp::WithSimd`] whose `#[inline(always)]` body vectorises over the outputs.
struct Mix<'a> {
    out: &'a mut [f32],
    z: &'a [f32],
    wr: &'a [f32],
    wi: &'a [f32],
}

impl pulp::WithSimd for Mix<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let co = self.out.len() / 2;
        let c = self.z.len() / 2;
        let (ore, oim) = self.out.split_at_mut(co);
        ore.fill(0.0);
        oim.fill(0.0);
        for ci in 0..c {
            let (zr, zi) = (self.z[ci], self.z[c + ci]);
            let wr = &self.wr[ci * co..(ci + 1) * co];
            let wi = &self.wi[ci * co..(ci + 1) * co];
            for (o, (&r, &i)) in ore.iter_mut().zip(wr.iter().zip(wi)) {
                *o += zr * r - zi * i;
            }
            for (o, (&r, &i)) in oim.iter_mut().zip(wr.iter().zip(wi)) {
                *o += zr * i + zi * r;
            }
        }
    }
}

/// Rows per task of [`item_rows_gemm`].
const ROWS: usize = 256;

/// `out[b] = lhs[b] · rhs` (or `+=`) for every item `b`, `lhs[b]` being `[rows, k]` and `out[b]`
/// `[rows, n]` (row-major), in tasks of one item and a block of [`ROWS`] rows counted from the
/// item's first row: a row's values depend only on its item, never on the batch. With
/// `activate`, each task ends with GELU on its block while it is in cache.
fn item_rows_gemm(
    out: &mut [f32],
    lhs: &[f32],
    rows: usize,
    rhs: MatRef<'_, f32>,
    accum: Accum,
    activate: bool,
) {
    let (k, n) = (rhs.nrows(), rhs.ncols());
    out.par_chunks_mut(rows * n)
        .zip(lhs.par_chunks(rows * k))
        .flat_map(|(o, l)| o.par_chunks_mut(ROWS * n).zip(l.par_chunks(ROWS * k)))
        .for_each(|(o, l)| {
            let r = o.len() / n;
            gemm(
                MatMut::from_row_major_slice_mut(o, r, n),
                accum,
                MatRef::from_row_major_slice(l, r, k),
                rhs,
            );
            if activate {
                pulp::Arch::new().dispatch(GeluInPlace(o));
            }
        });
}

/// Exact GELU in place, vectorised ([`math`]).
struct GeluInPlace<'a>(&'a mut [f32]);

impl pulp::WithSimd for GeluInPlace<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        math::forward_row(self.0, None, None, 0.0);
    }
}

/// What an FNO block adds to the convolution inside the op: a pointwise skip connection from the
/// same input and the activation of the sum.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tail<'a> {
    /// The skip weight `[co, c]`: `y += W · x` per item.
    pub skip: Option<&'a [f32]>,
    /// The skip's bias `[co]`.
    pub skip_bias: Option<&'a [f32]>,
    /// GELU on the sum.
    pub activate: bool,
}

/// Products below this many multiply-adds run as a plain loop ([`small_gemm`]).
const SMALL: usize = 2048;

/// `dst = lhs · rhs` (or `+=`): a plain loop for tiny products (a 1-D grid's identity first
/// axis, where a GEMM call costs more than its work), else one sequential GEMM.
fn small_gemm(mut dst: MatMut<'_, f32>, accum: Accum, lhs: MatRef<'_, f32>, rhs: MatRef<'_, f32>) {
    let (m, k, n) = (lhs.nrows(), lhs.ncols(), rhs.ncols());
    if m * k * n > SMALL {
        return gemm(dst, accum, lhs, rhs);
    }
    for i in 0..m {
        for j in 0..n {
            let v: f32 = (0..k).map(|l| lhs[(i, l)] * rhs[(l, j)]).sum();
            match accum {
                Accum::Replace => dst[(i, j)] = v,
                Accum::Add => dst[(i, j)] += v,
            }
        }
    }
}

/// The forward: `y [b, co, h·w]` and, when `keep_coefs`, the input's Fourier coefficients
/// `S [b, c, 2·k1, k2]` (real rows then imaginary rows; the state of [`backward`]). With a
/// [`Tail`], an FNO block's forward, `act(conv(x) + W_skip · x + b_skip)`, as one op: the skip
/// GEMM adds into the convolution's output per (item, point block), and GELU runs on each block
/// of rows right after its last GEMM.
pub fn forward(
    o: SpectralOperands<'_>,
    masks: Option<&MaskStreams>,
    d: SpectralDims,
    keep_coefs: bool,
    tail: Tail<'_>,
) -> (Vec<f32>, Option<Vec<f32>>) {
    d.check(&o);
    d.check_sizes(&[
        (
            "skip",
            tail.skip.map_or(0, <[f32]>::len),
            tail.skip.map_or(0, |_| d.d_out * d.d_in),
        ),
        (
            "skip bias",
            tail.skip_bias.map_or(0, <[f32]>::len),
            tail.skip_bias.map_or(0, |_| d.d_out),
        ),
    ]);
    d.check_masks(masks);
    let (b, c, co, h, w, k1, k2) = (d.batch, d.d_in, d.d_out, d.h, d.w, d.k1, d.k2);
    let m = d.modes();
    let (hw, per_coef) = (h * w, 2 * k1 * k2);
    let fw = MatRef::from_row_major_slice(o.fw, w, 2 * k2);
    let mh = MatRef::from_row_major_slice(o.mh, 2 * k1, 2 * h);
    let gh = MatRef::from_row_major_slice(o.gh, 2 * h, 2 * k1);
    let gw = MatRef::from_row_major_slice(o.gw, 2 * k2, w);

    // 1. Coefficients S [b, c, 2·k1, k2]: the last axis for all of an item's rows at once
    // (`A [b, c·h, 2·k2]`), then the first axis per (item, channel).
    let mut a = vec![0.0f32; b * c * h * 2 * k2];
    item_rows_gemm(&mut a, o.x, c * h, fw, Accum::Replace, false);
    let mut s = vec![0.0f32; b * c * per_coef];
    s.par_chunks_mut(per_coef)
        .zip(a.par_chunks(h * 2 * k2))
        .for_each(|(sc, ac)| {
            let am = MatRef::from_row_major_slice(ac, h, 2 * k2);
            let mut sm = MatMut::from_row_major_slice_mut(sc, 2 * k1, k2);
            small_gemm(
                sm.as_mut(),
                Accum::Replace,
                mh.subcols(0, h),
                am.subcols(0, k2),
            );
            small_gemm(sm, Accum::Add, mh.subcols(h, h), am.subcols(k2, k2));
        });
    drop(a);

    // 2. Mixing, per mode: O [m, b, 2·co]. Each item's row is its own loop over the input
    // channels (not one GEMM over the batch), so its values never depend on the batch.
    let mut out = vec![0.0f32; m * b * 2 * co];
    out.par_chunks_mut(b * 2 * co)
        .enumerate()
        .for_each(|(q, oq)| {
            let (i, j) = (q / k2, q % k2);
            let mut z = vec![0.0f32; 2 * c];
            for (bi, orow) in oq.chunks_mut(2 * co).enumerate() {
                for ci in 0..c {
                    let base = (bi * c + ci) * per_coef;
                    z[ci] = s[base + i * k2 + j];
                    z[c + ci] = s[base + (k1 + i) * k2 + j];
                }
                pulp::Arch::new().dispatch(Mix {
                    out: orow,
                    z: &z,
                    wr: &o.wr[q * c * co..(q + 1) * c * co],
                    wi: &o.wi[q * c * co..(q + 1) * c * co],
                });
            }
        });

    // 3. Inverse transforms: the first axis per (item, output channel) into
    // `U [b, co·h, 2·k2]` (`[U_re | U_im]`), then the last axis for all of an item's rows at once,
    // `y = bias + U · gw`.
    let mut u = vec![0.0f32; b * co * h * 2 * k2];
    u.par_chunks_mut(h * 2 * k2)
        .enumerate()
        .for_each(|(row, uc)| {
            let (bi, oc) = (row / co, row % co);
            let mut mask = vec![0.0f32; if masks.is_some() { m } else { 0 }];
            if let Some(ms) = masks {
                ms.fill(bi, oc * m, &mut mask);
            }
            let mut t = vec![0.0f32; per_coef];
            for q in 0..m {
                let (i, j) = (q / k2, q % k2);
                let at = (q * b + bi) * 2 * co;
                let keep = if mask.is_empty() { 1.0 } else { mask[q] };
                t[i * k2 + j] = out[at + oc] * keep;
                t[(k1 + i) * k2 + j] = out[at + co + oc] * keep;
            }
            let tm = MatRef::from_row_major_slice(&t, 2 * k1, k2);
            let mut um = MatMut::from_row_major_slice_mut(uc, h, 2 * k2);
            small_gemm(
                um.as_mut().subcols_mut(0, k2),
                Accum::Replace,
                gh.subrows(0, h),
                tm,
            );
            small_gemm(um.subcols_mut(k2, k2), Accum::Replace, gh.subrows(h, h), tm);
        });
    drop(out);
    let mut y = vec![0.0f32; b * co * hw];
    y.par_chunks_mut(hw).enumerate().for_each(|(row, yc)| {
        let oc = row % co;
        yc.fill(o.bias[oc] + tail.skip_bias.map_or(0.0, |sb| sb[oc]));
    });
    if let Some(ws) = tail.skip {
        // The skip connection per (item, point block), as the pointwise layer runs it.
        let wm = MatRef::from_row_major_slice(ws, co, c);
        y.par_chunks_mut(co * hw)
            .zip(o.x.par_chunks(c * hw))
            .for_each(|(yb, xb)| {
                let xm = MatRef::from_row_major_slice(xb, c, hw);
                split_blocks(MatMut::from_row_major_slice_mut(yb, co, hw))
                    .into_par_iter()
                    .for_each(|(cols, yp)| {
                        gemm(yp, Accum::Add, wm, xm.subcols(cols.start, cols.len()));
                    });
            });
    }
    item_rows_gemm(&mut y, &u, co * h, gw, Accum::Add, tail.activate);
    (y, keep_coefs.then_some(s))
}

/// The operands of the backward as contiguous slices: the forward's coefficients `s`
/// `[b, c, 2·k1, k2]`, the weights and bases of [`SpectralOperands`] and the output gradient
/// `grad [b, co, h·w]`. The backward needs neither the input field nor the bias.
#[derive(Clone, Copy, Debug)]
pub struct SpectralBackwardOperands<'a> {
    /// The input's Fourier coefficients `[b, c, 2·k1, k2]` ([`forward`] with `keep_coefs`).
    pub s: &'a [f32],
    /// Real weights `[m, c, co]`.
    pub wr: &'a [f32],
    /// Imaginary weights `[m, c, co]`.
    pub wi: &'a [f32],
    /// Forward real DFT along the last axis `[w, 2·k2]`.
    pub fw: &'a [f32],
    /// Forward complex DFT along the first axis `[2·k1, 2·h]`.
    pub mh: &'a [f32],
    /// Inverse complex DFT along the first axis `[2·h, 2·k1]`.
    pub gh: &'a [f32],
    /// Inverse real DFT along the last axis `[2·k2, w]`.
    pub gw: &'a [f32],
    /// Output gradient `[b, co, h·w]`.
    pub grad: &'a [f32],
}

/// The gradients of one 2-D spectral convolution.
#[derive(Clone, Debug)]
pub struct SpectralGrads {
    /// Input `[b, c, h·w]`.
    pub dx: Vec<f32>,
    /// Real weights `[m, c, co]`.
    pub dwr: Vec<f32>,
    /// Imaginary weights `[m, c, co]`.
    pub dwi: Vec<f32>,
    /// Bias `[co]`.
    pub dbias: Vec<f32>,
}

/// The adjoint of the mixing for one item at one mode: from the output coefficients' gradient
/// `go = [Re | Im]` (`2·co`) and the input coefficients `z = [Re | Im]` (`2·c`), the input
/// coefficients' gradient `dz` (`2·c`, overwritten) and the weight gradients added into
/// `dwr`, `dwi` (`[c, co]`): `dzr = Σ_o gre·Wr + gim·Wi`, `dzi = Σ_o gim·Wr − gre·Wi`,
/// `dWr += zr·gre + zi·gim`, `dWi += zr·gim − zi·gre`.
struct MixBack<'a> {
    dz: &'a mut [f32],
    dwr: &'a mut [f32],
    dwi: &'a mut [f32],
    z: &'a [f32],
    go: &'a [f32],
    wr: &'a [f32],
    wi: &'a [f32],
}

/// `Σ a·b + c·d` with eight independent lanes (vectorises).
#[inline(always)]
fn dot2(a: &[f32], b: &[f32], c: &[f32], d: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let n = a.len() / 8 * 8;
    for k in (0..n).step_by(8) {
        for (l, lane) in lanes.iter_mut().enumerate() {
            *lane += a[k + l] * b[k + l] + c[k + l] * d[k + l];
        }
    }
    let tail: f32 = (n..a.len()).map(|k| a[k] * b[k] + c[k] * d[k]).sum();
    let [l0, l1, l2, l3, l4, l5, l6, l7] = lanes;
    ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)) + tail
}

impl pulp::WithSimd for MixBack<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let co = self.go.len() / 2;
        let c = self.z.len() / 2;
        let (gre, gim) = self.go.split_at(co);
        let neg: Vec<f32> = gre.iter().map(|v| -v).collect();
        for ci in 0..c {
            let span = ci * co..(ci + 1) * co;
            let (wr, wi) = (&self.wr[span.clone()], &self.wi[span.clone()]);
            self.dz[ci] = dot2(gre, wr, gim, wi);
            self.dz[c + ci] = dot2(gim, wr, &neg, wi);
            let (zr, zi) = (self.z[ci], self.z[c + ci]);
            for (o, (&r, &i)) in self.dwr[span.clone()].iter_mut().zip(gre.iter().zip(gim)) {
                *o += zr * r + zi * i;
            }
            for (o, (&r, &i)) in self.dwi[span].iter_mut().zip(gre.iter().zip(gim)) {
                *o += zr * i - zi * r;
            }
        }
    }
}

/// The backward: the gradients with respect to the input, both weights and the bias, the
/// adjoint of each forward phase in reverse order:
/// 1. per (item, output channel): `P = G · gwᵀ` (`[h, 2·k2]`), `dT = gh[:h]ᵀ · P[:, :k2] +
///    gh[h:]ᵀ · P[:, k2:]`, masked by the same dropout entries (regenerated, never stored), and
///    the row sum of `G` for the bias;
/// 2. per mode: the mixing's adjoint for each item in batch order, which also sums
///    the mode's weight gradients over the batch in a fixed order;
/// 3. per (item, input channel): `dA = [mh[:, :h]ᵀ · dS | mh[:, h:]ᵀ · dS]` and
///    `dX = dA · fwᵀ`.
pub fn backward(
    o: SpectralBackwardOperands<'_>,
    masks: Option<&MaskStreams>,
    d: SpectralDims,
) -> SpectralGrads {
    let (b, c, co, h, w, k1, k2) = (d.batch, d.d_in, d.d_out, d.h, d.w, d.k1, d.k2);
    let m = d.modes();
    let (hw, per_coef) = (h * w, 2 * k1 * k2);
    d.check_sizes(&[
        ("s", o.s.len(), b * c * per_coef),
        ("grad", o.grad.len(), b * co * hw),
    ]);
    d.check_weights_and_bases([o.wr, o.wi, o.fw, o.mh, o.gh, o.gw]);
    d.check_masks(masks);
    let fw = MatRef::from_row_major_slice(o.fw, w, 2 * k2);
    let mh = MatRef::from_row_major_slice(o.mh, 2 * k1, 2 * h);
    let gh = MatRef::from_row_major_slice(o.gh, 2 * h, 2 * k1);
    let gw = MatRef::from_row_major_slice(o.gw, 2 * k2, w);

    // 1. Output coefficients' gradient dT [b, co, 2·k1, k2]: `P = G · gwᵀ` for all of an
    // item's rows at once (`[b, co·h, 2·k2]`), then the first axis per (item, output channel).
    let mut p = vec![0.0f32; b * co * h * 2 * k2];
    item_rows_gemm(
        &mut p,
        o.grad,
        co * h,
        gw.transpose(),
        Accum::Replace,
        false,
    );
    let mut dt = vec![0.0f32; b * co * per_coef];
    dt.par_chunks_mut(per_coef)
        .zip(p.par_chunks(h * 2 * k2))
        .enumerate()
        .for_each(|(row, (dtr, pc))| {
            let pm = MatRef::from_row_major_slice(pc, h, 2 * k2);
            let mut tm = MatMut::from_row_major_slice_mut(dtr, 2 * k1, k2);
            small_gemm(
                tm.as_mut(),
                Accum::Replace,
                gh.subrows(0, h).transpose(),
                pm.subcols(0, k2),
            );
            small_gemm(
                tm,
                Accum::Add,
                gh.subrows(h, h).transpose(),
                pm.subcols(k2, k2),
            );
            if let Some(ms) = masks {
                let mut mask = vec![0.0f32; m];
                ms.fill(row / co, (row % co) * m, &mut mask);
                let (top, bottom) = dtr.split_at_mut(k1 * k2);
                for ((t, u), &keep) in top.iter_mut().zip(bottom).zip(&mask) {
                    *t *= keep;
                    *u *= keep;
                }
            }
        });
    drop(p);
    let dbias = math::bias_grad(&math::row_sums(o.grad, hw), co);

    // 2. Per mode: the input coefficients' gradient dZ [m, b, 2·c] and the weight gradients.
    let mut dwr = vec![0.0f32; m * c * co];
    let mut dwi = vec![0.0f32; m * c * co];
    let mut dz = vec![0.0f32; m * b * 2 * c];
    dwr.par_chunks_mut(c * co)
        .zip(dwi.par_chunks_mut(c * co))
        .zip(dz.par_chunks_mut(b * 2 * c))
        .enumerate()
        .for_each(|(q, ((gr, gi), dzq))| {
            let (i, j) = (q / k2, q % k2);
            let (mut z, mut go) = (vec![0.0f32; 2 * c], vec![0.0f32; 2 * co]);
            for (bi, dzrow) in dzq.chunks_mut(2 * c).enumerate() {
                for ci in 0..c {
                    let base = (bi * c + ci) * per_coef;
                    z[ci] = o.s[base + i * k2 + j];
                    z[c + ci] = o.s[base + (k1 + i) * k2 + j];
                }
                for oc in 0..co {
                    let base = (bi * co + oc) * per_coef;
                    go[oc] = dt[base + i * k2 + j];
                    go[co + oc] = dt[base + (k1 + i) * k2 + j];
                }
                pulp::Arch::new().dispatch(MixBack {
                    dz: dzrow,
                    dwr: gr,
                    dwi: gi,
                    z: &z,
                    go: &go,
                    wr: &o.wr[q * c * co..(q + 1) * c * co],
                    wi: &o.wi[q * c * co..(q + 1) * c * co],
                });
            }
        });

    // 3. The input gradient: `dA = [mh[:, :h]ᵀ · dS | mh[:, h:]ᵀ · dS]` per (item, input
    // channel) into `[b, c·h, 2·k2]`, then `dX = dA · fwᵀ` for all of an item's rows at once.
    let mut da = vec![0.0f32; b * c * h * 2 * k2];
    da.par_chunks_mut(h * 2 * k2)
        .enumerate()
        .for_each(|(row, dac)| {
            let (bi, ci) = (row / c, row % c);
            let mut ds = vec![0.0f32; per_coef];
            for q in 0..m {
                let (i, j) = (q / k2, q % k2);
                let at = (q * b + bi) * 2 * c;
                ds[i * k2 + j] = dz[at + ci];
                ds[(k1 + i) * k2 + j] = dz[at + c + ci];
            }
            let dsm = MatRef::from_row_major_slice(&ds, 2 * k1, k2);
            let mut dam = MatMut::from_row_major_slice_mut(dac, h, 2 * k2);
            small_gemm(
                dam.as_mut().subcols_mut(0, k2),
                Accum::Replace,
                mh.subcols(0, h).transpose(),
                dsm,
            );
            small_gemm(
                dam.subcols_mut(k2, k2),
                Accum::Replace,
                mh.subcols(h, h).transpose(),
                dsm,
            );
        });
    drop(dz);
    let mut dx = vec![0.0f32; b * c * hw];
    item_rows_gemm(&mut dx, &da, c * h, fw.transpose(), Accum::Replace, false);
    SpectralGrads {
        dx,
        dwr,
        dwi,
        dbias,
    }
}
