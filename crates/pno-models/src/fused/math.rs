//! Vectorisable `f32` erf, exp and GELU, and the slice kernels of the fused bias + dropout + GELU
//! op.
//!
//! Every function here is straight-line arithmetic (no table look-ups, no data-dependent
//! branches), so the loops over slices compile to SIMD code; [`pulp::Arch::dispatch`] compiles
//! them for the widest instruction set the CPU has (AVX-512 or AVX2 + FMA on x86-64) and picks
//! it at run time, without `unsafe`. The slice loops are `#[inline(always)]` all the way down from
//! a [`pulp::WithSimd`] body, or the compiler keeps them out of the `#[target_feature]` function.
//!
//! - erf: the rational approximation `x·P(x²)/Q(x²)` on `|x| ≤ 3.744` (erf is ±1 to within half an
//!   `f32` ulp beyond), the coefficients XLA and Eigen use for `f32`. Absolute error ≤ 4e-7 in
//!   `f32` arithmetic against the exact function (tested against an `f64` reference).
//! - exp (arguments ≤ 0 only, for the Gaussian density): Cody–Waite reduction by `ln 2` and
//!   Cephes' degree-6 minimax polynomial, relative error ≈ 2e-7.

use rayon::prelude::*;

use crate::noise::MaskStreams;

const ERF_CLAMP: f32 = 3.743_921_2;
const ERF_ALPHA: [f32; 5] = [
    0.000_229_050_66,
    0.003_408_291,
    0.050_955_694,
    0.185_208_32,
    std::f32::consts::FRAC_2_SQRT_PI,
];
const ERF_BETA: [f32; 7] = [
    -1.179_160_3e-7,
    0.000_023_547_966,
    0.001_017_962_5,
    0.014_070_47,
    0.110_985_05,
    0.497_469_26,
    1.0,
];
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// `1 / sqrt(2π)`.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// `erf(x)`, absolute error ≤ 4e-7.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    // Written as selects, not `clamp`, so NaN propagates and the loop stays branch-free.
    let x = if x > ERF_CLAMP { ERF_CLAMP } else { x };
    let x = if x < -ERF_CLAMP { -ERF_CLAMP } else { x };
    let x2 = x * x;
    let mut p = ERF_ALPHA[0];
    for &a in &ERF_ALPHA[1..] {
        p = p * x2 + a;
    }
    let mut q = ERF_BETA[0];
    for &b in &ERF_BETA[1..] {
        q = q * x2 + b;
    }
    x * p / q
}

/// `exp(t)` for `t ≤ 0` (results below `f32::MIN_POSITIVE` flush to about `exp(-87.3)`, which
/// is what the Gaussian density needs: `x · exp(-x²/2)` is below 1e-36 there).
#[inline(always)]
pub fn exp_nonpositive(t: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2^23: adding and subtracting rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let t = if t < -87.3 { -87.3 } else { t };
    let k = (t * LOG2E + ROUND) - ROUND;
    let r = t - k * LN2_HI - k * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // k ∈ [-126, 0]: 2^k is a normal number.
    let scale = f32::from_bits(((k as i32 + 127) as u32) << 23);
    e * scale
}

/// `gelu(z) = z · Φ(z) = z/2 · (1 + erf(z/√2))`.
#[inline(always)]
pub fn gelu(z: f32) -> f32 {
    0.5 * z * (1.0 + erf(z * FRAC_1_SQRT_2))
}

/// `gelu'(z) = Φ(z) + z · φ(z)`.
#[inline(always)]
pub fn gelu_grad(z: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf(z * FRAC_1_SQRT_2));
    let pdf = FRAC_1_SQRT_2PI * exp_nonpositive(-0.5 * z * z);
    cdf + z * pdf
}

/// Elements per parallel task: big enough to amortise rayon, small enough to split a
/// `[batch, channels, points]` tensor over the threads.
const TASK: usize = 1 << 15;

/// Whole rows of `n` points per parallel task.
fn rows_per_task(n: usize) -> usize {
    (TASK / n.max(1)).max(1)
}

/// One `[batch, channels, points]` operand set of the fused op, as contiguous slices.
#[derive(Clone, Copy)]
pub struct Operands<'a> {
    /// Channels `c`.
    pub channels: usize,
    /// Points per row `n`.
    pub points: usize,
    /// Bias `[c]`, if any.
    pub bias: Option<&'a [f32]>,
    /// Dropout masks (one row of `c · n` entries per batch item, made on demand), if any.
    pub masks: Option<&'a MaskStreams>,
}

/// `z = (x + bias[c]) · mask` for row `row` of a task.
#[inline(always)]
fn bias_of(ops: &Operands<'_>, row: usize) -> f32 {
    ops.bias.map_or(0.0, |b| b[row % ops.channels])
}

/// Forward: `out = gelu((x + bias[c]) · mask)`, in place (`data` holds `x` on entry) or from
/// `src` into `data`. Rows are `[b, c]` pairs of `n` points, split over rayon tasks.
pub fn forward(data: &mut [f32], src: Option<&[f32]>, ops: Operands<'_>) {
    row_tasks(data, src, ops.points, |first_row, out, x| {
        pulp::Arch::new().dispatch(ForwardTask {
            out,
            x,
            first_row,
            ops,
        });
    });
}

/// Runs `task(first_row, out, x)` on rayon tasks of whole rows of `n` points of `data`, `x`
/// being the same span of `src`.
fn row_tasks(
    data: &mut [f32],
    src: Option<&[f32]>,
    n: usize,
    task: impl Fn(usize, &mut [f32], Option<&[f32]>) + Sync,
) {
    let n = n.max(1);
    let chunk = rows_per_task(n) * n;
    data.par_chunks_mut(chunk).enumerate().for_each(|(t, out)| {
        let start = t * chunk;
        let x = src.map(|s| &s[start..start + out.len()]);
        task(start / n, out, x);
    });
}

/// One rayon task of [`forward`]. A [`pulp::WithSimd`] whose body is `#[inline(always)]`, so the
/// whole row loop is compiled inside pulp's `#[target_feature]` function (AVX-512 or AVX2 + FMA);
/// a closure passed to `dispatch` stays a separate function and compiles for baseline SSE2.
struct ForwardTask<'a> {
    out: &'a mut [f32],
    x: Option<&'a [f32]>,
    first_row: usize,
    ops: Operands<'a>,
}

/// Row `row` (a `[batch, channel]` pair) of the dropout masks into `buf` (`n` entries), if any.
#[inline(always)]
fn mask_row<'b>(ops: &Operands<'_>, row: usize, buf: &'b mut Vec<f32>) -> Option<&'b [f32]> {
    ops.masks.map(|m| {
        let n = ops.points.max(1);
        buf.resize(n, 0.0);
        m.fill(row / ops.channels, (row % ops.channels) * n, buf);
        &buf[..]
    })
}

impl pulp::WithSimd for ForwardTask<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let Self {
            out,
            x,
            first_row,
            ops,
        } = self;
        let n = ops.points.max(1);
        let mut buf = Vec::new();
        for (r, o) in out.chunks_mut(n).enumerate() {
            let b = bias_of(&ops, first_row + r);
            let span = r * n..r * n + o.len();
            let mask = mask_row(&ops, first_row + r, &mut buf);
            forward_row(o, x.map(|x| &x[span]), mask, b);
        }
    }
}

/// Dropout alone: `out = x · mask`, in place (`data` holds `x` on entry) or from `src` into
/// `data`, the mask rows made from `ops.masks` as they are needed (no mask: `x` unchanged).
/// The same row tasks as [`forward`].
pub fn dropout(data: &mut [f32], src: Option<&[f32]>, ops: Operands<'_>) {
    let n = ops.points.max(1);
    row_tasks(data, src, n, |first_row, out, src| {
        let mut buf = Vec::new();
        for (r, o) in out.chunks_mut(n).enumerate() {
            let x = src.map(|s| &s[r * n..r * n + o.len()]);
            match (mask_row(&ops, first_row + r, &mut buf), x) {
                (Some(m), Some(x)) => {
                    for ((o, &x), &m) in o.iter_mut().zip(x).zip(m) {
                        *o = x * m;
                    }
                }
                (Some(m), None) => {
                    for (o, &m) in o.iter_mut().zip(m) {
                        *o *= m;
                    }
                }
                (None, Some(x)) => o.copy_from_slice(x),
                (None, None) => {}
            }
        }
    });
}

// The row loops are `for` loops, not `for_each`: an iterator adapter's `fold` is a separate
// function the compiler may keep out of line, and then it compiles for baseline SSE2.
#[inline(always)]
pub(super) fn forward_row(out: &mut [f32], x: Option<&[f32]>, mask: Option<&[f32]>, b: f32) {
    match (x, mask) {
        (None, None) => {
            for o in out.iter_mut() {
                *o = gelu(*o + b);
            }
        }
        (None, Some(m)) => {
            for (o, &m) in out.iter_mut().zip(m) {
                *o = gelu((*o + b) * m);
            }
        }
        (Some(x), None) => {
            for (o, &x) in out.iter_mut().zip(x) {
                *o = gelu(x + b);
            }
        }
        (Some(x), Some(m)) => {
            for (o, (&x, &m)) in out.iter_mut().zip(x.iter().zip(m)) {
                *o = gelu((x + b) * m);
            }
        }
    }
}

/// Backward: `data = grad · gelu'(z) · mask` with `z = (x + bias[c]) · mask`, in place (`data`
/// holds `grad` on entry) or from `grad` into `data`. Returns the per-row sums of the result
/// (`[b·c]`, for the bias gradient) when `ops.bias` is set.
pub fn backward(
    data: &mut [f32],
    grad: Option<&[f32]>,
    x: &[f32],
    ops: Operands<'_>,
) -> Option<Vec<f32>> {
    let n = ops.points.max(1);
    let rows_per = rows_per_task(n);
    let chunk = rows_per * n;
    let rows = data.len() / n;
    let mut sums = vec![0.0f32; if ops.bias.is_some() { rows } else { 0 }];
    let sum_chunks: Vec<&mut [f32]> = if ops.bias.is_some() {
        sums.chunks_mut(rows_per).collect()
    } else {
        Vec::new()
    };
    let mut sum_chunks: Vec<Option<&mut [f32]>> = sum_chunks.into_iter().map(Some).collect();
    sum_chunks.resize_with(data.len().div_ceil(chunk), || None);
    data.par_chunks_mut(chunk)
        .zip(sum_chunks.into_par_iter())
        .enumerate()
        .for_each(|(task, (out, row_sums))| {
            let start = task * chunk;
            let span = start..start + out.len();
            pulp::Arch::new().dispatch(BackwardTask {
                out,
                grad: grad.map(|g| &g[span.clone()]),
                x: &x[span.clone()],
                row_sums,
                first_row: start / n,
                ops,
            });
        });
    ops.bias.map(|_| sums)
}

/// One rayon task of [`backward`], compiled inside pulp's `#[target_feature]` function like
/// [`ForwardTask`].
struct BackwardTask<'a> {
    out: &'a mut [f32],
    grad: Option<&'a [f32]>,
    x: &'a [f32],
    row_sums: Option<&'a mut [f32]>,
    first_row: usize,
    ops: Operands<'a>,
}

impl pulp::WithSimd for BackwardTask<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let Self {
            out,
            grad,
            x,
            mut row_sums,
            first_row,
            ops,
        } = self;
        let n = ops.points.max(1);
        let mut buf = Vec::new();
        for (r, o) in out.chunks_mut(n).enumerate() {
            let b = bias_of(&ops, first_row + r);
            let span = r * n..r * n + o.len();
            let mask = mask_row(&ops, first_row + r, &mut buf);
            backward_row(o, grad.map(|g| &g[span.clone()]), &x[span], mask, b);
            if let Some(s) = row_sums.as_deref_mut() {
                s[r] = sum(o);
            }
        }
    }
}

#[inline(always)]
pub(super) fn backward_row(
    out: &mut [f32],
    grad: Option<&[f32]>,
    x: &[f32],
    mask: Option<&[f32]>,
    b: f32,
) {
    match (grad, mask) {
        (None, None) => {
            for (o, &x) in out.iter_mut().zip(x) {
                *o *= gelu_grad(x + b);
            }
        }
        (None, Some(m)) => {
            for (o, (&x, &m)) in out.iter_mut().zip(x.iter().zip(m)) {
                *o *= gelu_grad((x + b) * m) * m;
            }
        }
        (Some(g), None) => {
            for (o, (&x, &g)) in out.iter_mut().zip(x.iter().zip(g)) {
                *o = g * gelu_grad(x + b);
            }
        }
        (Some(g), Some(m)) => {
            for (o, (&x, (&g, &m))) in out.iter_mut().zip(x.iter().zip(g.iter().zip(m))) {
                *o = g * gelu_grad((x + b) * m) * m;
            }
        }
    }
}

/// Sum with eight independent lanes (vectorises; pairs them at the end).
#[inline(always)]
pub(super) fn sum(v: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = v.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += x;
        }
    }
    let [a, b, c, d, e, f, g, h] = lanes;
    ((a + e) + (b + f)) + ((c + g) + (d + h)) + tail
}

/// The sum of every row of `n` points of `data` (`[rows]`), vectorised and split over rayon tasks.
pub fn row_sums(data: &[f32], n: usize) -> Vec<f32> {
    let n = n.max(1);
    let rows_per = rows_per_task(n);
    let mut sums = vec![0.0f32; data.len() / n];
    sums.par_chunks_mut(rows_per)
        .zip(data.par_chunks(rows_per * n))
        .for_each(|(s, d)| {
            pulp::Arch::new().dispatch(RowSums {
                sums: s,
                data: d,
                n,
            })
        });
    sums
}

/// One rayon task of [`row_sums`], compiled inside pulp's `#[target_feature]` function.
struct RowSums<'a> {
    sums: &'a mut [f32],
    data: &'a [f32],
    n: usize,
}

impl pulp::WithSimd for RowSums<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        for (s, row) in self.sums.iter_mut().zip(self.data.chunks(self.n)) {
            *s = sum(row);
        }
    }
}

/// Sum of `[batch·channels]` row sums over the batch: the bias gradient `[channels]`
/// (accumulated in `f64`).
pub fn bias_grad(row_sums: &[f32], channels: usize) -> Vec<f32> {
    let mut acc = vec![0.0f64; channels];
    for (i, &s) in row_sums.iter().enumerate() {
        acc[i % channels] += f64::from(s);
    }
    acc.into_iter().map(|v| v as f32).collect()
}
