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
//! 1. per (item, channel): `A = X · fw` (`[h, 2·k2]`), then the coefficients
//!    `S = mh[:, :h] · A_re + mh[:, h:] · A_im` (`[2·k1, k2]`) — the column halves of `A` are
//!    strided views, not copies;
//! 2. per mode: each item's `2c` coefficients gathered from `S`, then the complex product with
//!    the mode's `[c, co]` weights, a vectorised loop per item (a GEMM over the batch would let
//!    a row's values depend on the batch), into `O [m, b, 2·co]`;
//! 3. per (item, output channel): the coefficients gathered from `O` and masked, `U = gh · T`
//!    (`[2·h, k2]`), and the output `Y = bias + U[:h] · gw[:k2] + U[h:] · gw[k2:]` written in
//!    place.

use faer::{Accum, MatMut, MatRef};
use rayon::prelude::*;

use super::pointwise::gemm;
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

    fn check(&self, o: &SpectralOperands<'_>) {
        let (b, c, co, h, w, k1, k2) = (
            self.batch, self.d_in, self.d_out, self.h, self.w, self.k1, self.k2,
        );
        let m = self.modes();
        assert!(
            [b, c, co, h, w, k1, k2].iter().all(|&v| v > 0),
            "spectral2d: empty dimension in {self:?}"
        );
        let sizes = [
            ("x", o.x.len(), b * c * h * w),
            ("wr", o.wr.len(), m * c * co),
            ("wi", o.wi.len(), m * c * co),
            ("bias", o.bias.len(), co),
            ("fw", o.fw.len(), w * 2 * k2),
            ("mh", o.mh.len(), 2 * k1 * 2 * h),
            ("gh", o.gh.len(), 2 * h * 2 * k1),
            ("gw", o.gw.len(), 2 * k2 * w),
        ];
        for (name, got, want) in sizes {
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

/// The forward: `y [b, co, h·w]`.
pub fn forward(o: SpectralOperands<'_>, masks: Option<&MaskStreams>, d: SpectralDims) -> Vec<f32> {
    d.check(&o);
    if let Some(ms) = masks {
        assert!(
            ms.batch() == d.batch && ms.per_row() == d.d_out * d.modes(),
            "spectral2d: masks of {} rows of {} for {d:?}",
            ms.batch(),
            ms.per_row()
        );
    }
    let (b, c, co, h, w, k1, k2) = (d.batch, d.d_in, d.d_out, d.h, d.w, d.k1, d.k2);
    let m = d.modes();
    let (hw, per_coef) = (h * w, 2 * k1 * k2);
    let fw = MatRef::from_row_major_slice(o.fw, w, 2 * k2);
    let mh = MatRef::from_row_major_slice(o.mh, 2 * k1, 2 * h);
    let gh = MatRef::from_row_major_slice(o.gh, 2 * h, 2 * k1);
    let gw = MatRef::from_row_major_slice(o.gw, 2 * k2, w);

    // 1. Coefficients S [b, c, 2·k1, k2].
    let mut s = vec![0.0f32; b * c * per_coef];
    s.par_chunks_mut(per_coef)
        .zip(o.x.par_chunks(hw))
        .for_each(|(sc, xc)| {
            let mut a = vec![0.0f32; h * 2 * k2];
            let mut am = MatMut::from_row_major_slice_mut(&mut a, h, 2 * k2);
            gemm(
                am.as_mut(),
                Accum::Replace,
                MatRef::from_row_major_slice(xc, h, w),
                fw,
            );
            let am = am.as_ref();
            let mut sm = MatMut::from_row_major_slice_mut(sc, 2 * k1, k2);
            gemm(
                sm.as_mut(),
                Accum::Replace,
                mh.subcols(0, h),
                am.subcols(0, k2),
            );
            gemm(sm, Accum::Add, mh.subcols(h, h), am.subcols(k2, k2));
        });

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

    // 3. Inverse transforms per (item, output channel), into y [b, co, h·w].
    let mut y = vec![0.0f32; b * co * hw];
    y.par_chunks_mut(hw).enumerate().for_each(|(row, yc)| {
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
        let mut u = vec![0.0f32; 2 * h * k2];
        let mut um = MatMut::from_row_major_slice_mut(&mut u, 2 * h, k2);
        gemm(
            um.as_mut(),
            Accum::Replace,
            gh,
            MatRef::from_row_major_slice(&t, 2 * k1, k2),
        );
        let um = um.as_ref();
        yc.fill(o.bias[oc]);
        let mut ym = MatMut::from_row_major_slice_mut(yc, h, w);
        gemm(ym.as_mut(), Accum::Add, um.subrows(0, h), gw.subrows(0, k2));
        gemm(ym, Accum::Add, um.subrows(h, h), gw.subrows(k2, k2));
    });
    y
}
