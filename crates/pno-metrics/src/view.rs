//! Borrowed, validated views of predictions and targets.
//!
//! Layout conventions (row-major, channels flattened into `d`):
//! - targets `y`: `[n, d]`, function `j` is `y[j*d .. (j+1)*d]`;
//! - Gaussian predictions: `mean` and `std`, each `[n, d]`;
//! - sample predictions: `[m, n, d]`, **samples first** (neuralop / `pno predict` convention):
//!   draw `k` of function `j` is `samples[(k*n + j)*d .. (k*n + j + 1)*d]`.

use faer::traits::pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

use crate::error::{Error, Result};

/// Element types accepted by every metric: anything that widens losslessly to `f64`
/// (`f32`, `f64`, integers). All accumulation happens in `f64`.
pub trait Real: Copy + Send + Sync + Into<f64> {}
impl<T: Copy + Send + Sync + Into<f64>> Real for T {}

/// Checks `len == expected` for `argument`.
pub(crate) fn check_len(argument: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            argument,
            expected,
            got,
        })
    }
}

/// Checks `value >= min` for a size argument.
pub(crate) fn check_size(argument: &'static str, min: usize, got: usize) -> Result<()> {
    if got >= min {
        Ok(())
    } else {
        Err(Error::TooSmall {
            argument,
            expected: min,
            got,
        })
    }
}

/// Checks that every element is finite.
pub(crate) fn check_finite<T: Real>(argument: &'static str, xs: &[T]) -> Result<()> {
    match xs.iter().position(|&x| !x.into().is_finite()) {
        None => Ok(()),
        Some(index) => Err(Error::NonFinite {
            argument,
            index,
            got: xs[index].into(),
        }),
    }
}

/// Checks a nominal level lies in the open interval (0, 1).
pub(crate) fn check_level(argument: &'static str, level: f64) -> Result<()> {
    if level > 0.0 && level < 1.0 {
        Ok(())
    } else {
        Err(Error::InvalidLevel {
            argument,
            got: level,
        })
    }
}

/// `n` functions of `d` points each: the shape `[n, d]` shared by targets and point predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Number of functions (test samples).
    pub n: usize,
    /// Points per function: product of spatial sizes × channels.
    pub d: usize,
}

impl Shape {
    /// A shape `[n, d]`; both must be at least 1.
    pub fn new(n: usize, d: usize) -> Result<Self> {
        check_size("n", 1, n)?;
        check_size("d", 1, d)?;
        Ok(Self { n, d })
    }

    /// `n · d`.
    pub fn len(&self) -> usize {
        self.n * self.d
    }

    /// Always false: a validated shape has at least one element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Validates a target (or point prediction) array `[n, d]`: length and finiteness.
    pub(crate) fn check_target<T: Real>(&self, argument: &'static str, y: &[T]) -> Result<()> {
        check_len(argument, self.len(), y.len())?;
        check_finite(argument, y)
    }
}

/// A pointwise Gaussian prediction N(mean, std²), both `[n, d]`.
#[derive(Debug, Clone, Copy)]
pub struct GaussianPred<'a, T> {
    mean: &'a [T],
    std: &'a [T],
    shape: Shape,
}

impl<'a, T: Real> GaussianPred<'a, T> {
    /// Validates lengths (`n·d` each), finiteness, and `std >= 0`.
    pub fn new(mean: &'a [T], std: &'a [T], n: usize, d: usize) -> Result<Self> {
        let shape = Shape::new(n, d)?;
        check_len("mean", shape.len(), mean.len())?;
        check_len("std", shape.len(), std.len())?;
        check_finite("mean", mean)?;
        check_finite("std", std)?;
        if let Some(index) = std.iter().position(|&s| s.into() < 0.0) {
            return Err(Error::NegativeStd {
                argument: "std",
                index,
                got: std[index].into(),
            });
        }
        Ok(Self { mean, std, shape })
    }

    /// The shape `[n, d]`.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The predicted means, `[n, d]`.
    pub fn mean(&self) -> &'a [T] {
        self.mean
    }

    /// The predicted standard deviations, `[n, d]`.
    pub fn std(&self) -> &'a [T] {
        self.std
    }

    /// Maps each function `j` (mean row, std row, target row) to a value, in parallel over
    /// functions; results come back in function order (deterministic reductions).
    pub(crate) fn map_functions<Y: Real, R: Send>(
        &self,
        y: &[Y],
        f: impl Fn(usize, &[T], &[T], &[Y]) -> R + Sync,
    ) -> Result<Vec<R>> {
        self.shape.check_target("target", y)?;
        let d = self.shape.d;
        Ok((0..self.shape.n)
            .into_par_iter()
            .map(|j| {
                let r = j * d..(j + 1) * d;
                f(j, &self.mean[r.clone()], &self.std[r.clone()], &y[r])
            })
            .collect())
    }
}

/// An ensemble of `m` draws per function, stored samples-first as `[m, n, d]`.
#[derive(Debug, Clone, Copy)]
pub struct SamplePred<'a, T> {
    samples: &'a [T],
    m: usize,
    shape: Shape,
}

impl<'a, T: Real> SamplePred<'a, T> {
    /// Validates `samples.len() == m·n·d` (samples-first `[m, n, d]`), `m >= 1`, finiteness.
    ///
    /// Finiteness is checked here once, in parallel; estimators that need `m >= 2` (fair CRPS,
    /// fair energy score, unbiased std) check `m` themselves.
    pub fn new(samples: &'a [T], m: usize, n: usize, d: usize) -> Result<Self> {
        check_size("m", 1, m)?;
        let shape = Shape::new(n, d)?;
        check_len("samples", m * shape.len(), samples.len())?;
        const CHUNK: usize = 1 << 16;
        let bad = samples
            .par_chunks(CHUNK)
            .position_first(|c| !c.iter().all(|&x| x.into().is_finite()))
            .and_then(|c| {
                let start = c * CHUNK;
                let end = (start + CHUNK).min(samples.len());
                samples[start..end]
                    .iter()
                    .position(|&x| !x.into().is_finite())
                    .map(|i| start + i)
            });
        if let Some(index) = bad {
            return Err(Error::NonFinite {
                argument: "samples",
                index,
                got: samples[index].into(),
            });
        }
        Ok(Self { samples, m, shape })
    }

    /// The shape `[n, d]` of one draw.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Number of draws `m`.
    pub fn m(&self) -> usize {
        self.m
    }

    /// The raw samples `[m, n, d]`.
    pub fn samples(&self) -> &'a [T] {
        self.samples
    }

    /// Draw `k` of function `j`, `d` values.
    pub fn draw(&self, k: usize, j: usize) -> &'a [T] {
        let d = self.shape.d;
        let start = (k * self.shape.n + j) * d;
        &self.samples[start..start + d]
    }

    /// Pointwise sample mean and unbiased (ddof = 1; 0 when `m = 1`) sample standard deviation,
    /// each `[n, d]`, accumulated in `f64` (two-pass).
    pub fn mean_std(&self) -> (Vec<f64>, Vec<f64>) {
        let (n, d, m) = (self.shape.n, self.shape.d, self.m);
        let per: Vec<(Vec<f64>, Vec<f64>)> = (0..n)
            .into_par_iter()
            .map(|j| {
                vectorized(
                    #[inline(always)]
                    || {
                        let mut mean = vec![0.0; d];
                        for k in 0..m {
                            for (acc, &x) in mean.iter_mut().zip(self.draw(k, j)) {
                                *acc += x.into();
                            }
                        }
                        let inv = 1.0 / m as f64;
                        mean.iter_mut().for_each(|v| *v *= inv);
                        let mut var = vec![0.0; d];
                        for k in 0..m {
                            for ((acc, &x), &mu) in var.iter_mut().zip(self.draw(k, j)).zip(&mean) {
                                let e = x.into() - mu;
                                *acc += e * e;
                            }
                        }
                        let denom = if m > 1 { (m - 1) as f64 } else { 1.0 };
                        let std = var.iter().map(|v| (v / denom).sqrt()).collect();
                        (mean, std)
                    },
                )
            })
            .collect();
        let mut mean = Vec::with_capacity(n * d);
        let mut std = Vec::with_capacity(n * d);
        for (mu, s) in per {
            mean.extend(mu);
            std.extend(s);
        }
        (mean, std)
    }

    /// Folds every function's draws, point tile by point tile, with each point's draws sorted:
    /// for each function `j` (in parallel; results in function order, so every reduction over
    /// functions is deterministic) starts from `init()` and calls `visit(acc, j, i0, tile)` for
    /// the tiles of points `i0 .. i0 + tile.width()` in ascending order.
    ///
    /// How: the draws of a chunk of [`CHUNK`] points are staged row by row (`m` contiguous,
    /// prefetch-friendly copies out of the samples-first layout); each [`TILE`] of points is then
    /// sorted column-wise by a data-independent comparator network (vectorised min/max across the
    /// tile, in `f32` whenever the values are exactly representable in `f32`, else in `f64`),
    /// widened to `f64`, and handed to `visit` while it is still in L1. Widening after sorting
    /// gives the same `f64` values as sorting in `f64`. The hot loop runs under runtime SIMD
    /// dispatch (AVX2/FMA where available, via `pulp`); mark `visit` `#[inline(always)]` so it
    /// is compiled into the dispatched loop too.
    pub(crate) fn fold_sorted<A: Send>(
        &self,
        init: impl Fn() -> A + Sync,
        visit: impl Fn(&mut A, usize, usize, &SortedTile<'_>) + Sync,
    ) -> Vec<A> {
        let (n, m) = (self.shape.n, self.m);
        let net = sorting_network(m);
        let arch = Arch::new();
        (0..n)
            .into_par_iter()
            .map_init(
                || Scratch::new(m, self.samples[0]),
                |scratch, j| {
                    arch.dispatch(FunctionPass {
                        pred: self,
                        j,
                        net: &net,
                        scratch,
                        acc: init(),
                        visit: &visit,
                    })
                },
            )
            .collect()
    }
}

/// The pass of [`SamplePred::fold_sorted`] over function `j`, run under runtime SIMD dispatch
/// (`with_simd` and everything it calls is inlined into the dispatched, feature-enabled function,
/// so the comparator network and the visitor are vectorised with the widest available
/// instructions).
struct FunctionPass<'p, 'a, T, A, V> {
    pred: &'p SamplePred<'a, T>,
    j: usize,
    net: &'p [(usize, usize)],
    scratch: &'p mut Scratch<T>,
    acc: A,
    visit: &'p V,
}

impl<T: Real, A, V: Fn(&mut A, usize, usize, &SortedTile<'_>)> WithSimd
    for FunctionPass<'_, '_, T, A, V>
{
    type Output = A;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> A {
        let Self {
            pred,
            j,
            net,
            scratch: s,
            mut acc,
            visit,
        } = self;
        let (n, d, m) = (pred.shape.n, pred.shape.d, pred.m);
        for c0 in (0..d).step_by(CHUNK) {
            let cw = CHUNK.min(d - c0);
            for k in 0..m {
                let src = (k * n + j) * d + c0;
                s.stage[k * CHUNK..k * CHUNK + cw].copy_from_slice(&pred.samples[src..src + cw]);
            }
            for t0 in (0..cw).step_by(TILE) {
                let w = TILE.min(cw - t0);
                s.sort_tile(simd, t0, net);
                visit(&mut acc, j, c0 + t0, &SortedTile { rows: &s.wide, w });
            }
        }
        acc
    }
}

/// Runs `f` under runtime SIMD dispatch (`pulp`): mark the closure `#[inline(always)]` and its
/// loops are compiled for the widest available instruction set (AVX2/FMA), not the baseline
/// SSE2 of the build target.
pub(crate) fn vectorized<R>(f: impl FnMut() -> R) -> R {
    struct Op<F>(F);
    impl<R, F: FnMut() -> R> WithSimd for Op<F> {
        type Output = R;

        #[inline(always)]
        fn with_simd<S: Simd>(self, _simd: S) -> R {
            // through `FnMut::call_mut`, the closure body itself (no `FnOnce` shim, which would
            // not be inlined into the dispatched function)
            let mut f = self.0;
            f()
        }
    }
    Arch::new().dispatch(Op(f))
}

/// Points per tile of [`SamplePred::fold_sorted`]: the `m` sorted draws of a tile (`m` rows of
/// `TILE` values, in `f32` and `f64`) stay in L1.
pub(crate) const TILE: usize = 32;

/// Points per staged chunk of [`SamplePred::fold_sorted`] (a multiple of [`TILE`]): `m` rows of
/// `CHUNK` inputs stay in L2, and each row is one long contiguous copy.
const CHUNK: usize = 512;

/// The `m` sorted draws of `width()` consecutive points of one function: `rows()[k][c]` is the
/// `k`-th smallest draw (0-based) at the tile's point `c`.
pub(crate) struct SortedTile<'t> {
    rows: &'t [[f64; TILE]],
    w: usize,
}

impl SortedTile<'_> {
    /// Number of points in the tile (`TILE`, less at the end of a function).
    pub(crate) fn width(&self) -> usize {
        self.w
    }

    /// Number of draws `m`.
    pub(crate) fn m(&self) -> usize {
        self.rows.len()
    }

    /// Order statistic `k` (0-based) at every point: only the first [`Self::width`] are valid.
    pub(crate) fn row(&self, k: usize) -> &[f64; TILE] {
        &self.rows[k]
    }

    /// The `m` order statistics as rows.
    pub(crate) fn rows(&self) -> &[[f64; TILE]] {
        self.rows
    }
}

/// Per-thread buffers of [`SamplePred::fold_sorted`].
struct Scratch<T> {
    /// Staged draws `[m, CHUNK]`.
    stage: Vec<T>,
    /// Tile in `f32`, `[m][TILE]`.
    narrow: Vec<[f32; TILE]>,
    /// Tile in `f64`, `[m][TILE]`: what the visitor reads.
    wide: Vec<[f64; TILE]>,
}

impl<T: Real> Scratch<T> {
    fn new(m: usize, fill: T) -> Self {
        Self {
            stage: vec![fill; m * CHUNK],
            narrow: vec![[0.0; TILE]; m],
            wide: vec![[0.0; TILE]; m],
        }
    }

    /// Loads the staged points `t0 .. t0 + TILE` into `wide`, sorted per point (columns past the
    /// end of the function hold stale but finite draws; visitors read only the tile's width).
    #[inline(always)]
    fn sort_tile<S: Simd>(&mut self, simd: S, t0: usize, net: &[(usize, usize)]) {
        let Self {
            stage,
            narrow,
            wide,
        } = self;
        if load_tile(stage, t0, narrow) {
            sort_columns(simd, narrow, net);
            widen(narrow, wide);
        } else {
            load_tile(stage, t0, wide);
            sort_columns(simd, wide, net);
        }
    }
}

/// Converts staged columns `t0 .. t0 + TILE` (rows of `CHUNK`) into `tile`; true iff every value
/// is exactly representable (always true for `f64` tiles).
///
/// Each row is converted into a local array and stored whole: LLVM cannot tell the scratch
/// buffers apart and leaves in-place element loops scalar.
#[inline(always)]
fn load_tile<T: Real, K: Key>(stage: &[T], t0: usize, tile: &mut [[K; TILE]]) -> bool {
    let mut exact = true;
    for (row, staged) in tile.iter_mut().zip(stage.chunks_exact(CHUNK)) {
        let src = &staged[t0..t0 + TILE];
        let mut out = *row;
        for (dst, &x) in out.iter_mut().zip(src) {
            let v: f64 = x.into();
            *dst = K::from_f64(v);
            exact &= (*dst).into() == v;
        }
        *row = out;
    }
    exact
}

/// Widens a sorted `f32` tile to `f64` (exact), row by row through a local array (see
/// [`load_tile`]).
#[inline(always)]
fn widen(narrow: &[[f32; TILE]], wide: &mut [[f64; TILE]]) {
    for (dst, src) in wide.iter_mut().zip(narrow) {
        let src = *src;
        let mut out = [0.0; TILE];
        for (d, s) in out.iter_mut().zip(src) {
            *d = f64::from(s);
        }
        *dst = out;
    }
}

/// Comparator pairs `(a, b)`, `a < b`, of Batcher's odd–even merge sort for `m` inputs (valid for
/// any `m`, as if padded with `+∞` to a power of two).
pub(crate) fn sorting_network(m: usize) -> Vec<(usize, usize)> {
    let mut net = Vec::new();
    let mut p = 1;
    while p < m {
        let mut k = p;
        while k >= 1 {
            let mut j = k % p;
            while j + k < m {
                for i in 0..k.min(m - j - k) {
                    if (i + j) / (2 * p) == (i + j + k) / (2 * p) {
                        net.push((i + j, i + j + k));
                    }
                }
                j += 2 * k;
            }
            k /= 2;
        }
        p *= 2;
    }
    net
}

/// A value the comparator network sorts: finite `f32` or `f64`.
pub(crate) trait Key: Copy + Into<f64> {
    /// Rounds an `f64` to the key type.
    fn from_f64(v: f64) -> Self;

    /// One comparator applied to every column of two tile rows: `lo, hi ← min, max`.
    fn compare_exchange<S: Simd>(simd: S, lo: &mut [Self; TILE], hi: &mut [Self; TILE]);
}

/// [`Key::compare_exchange`] with explicit vector min/max (a plain `if` select compiles to
/// masked stores, several times slower); the scalar tail only runs without SIMD.
macro_rules! key_impl {
    ($t:ty, $split:ident, $min:ident, $max:ident) => {
        impl Key for $t {
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }

            #[inline(always)]
            fn compare_exchange<S: Simd>(simd: S, lo: &mut [$t; TILE], hi: &mut [$t; TILE]) {
                let (lo_v, lo_t) = S::$split(lo);
                let (hi_v, hi_t) = S::$split(hi);
                for (x, y) in lo_v.iter_mut().zip(hi_v) {
                    let (p, q) = (*x, *y);
                    *x = simd.$min(p, q);
                    *y = simd.$max(p, q);
                }
                for (x, y) in lo_t.iter_mut().zip(hi_t) {
                    let (p, q) = (*x, *y);
                    *x = p.min(q);
                    *y = p.max(q);
                }
            }
        }
    };
}
key_impl!(f32, as_mut_simd_f32s, min_f32s, max_f32s);
key_impl!(f64, as_mut_simd_f64s, min_f64s, max_f64s);

/// Sorts every column of `tile` (rows `[TILE]`) ascending with the comparator network `net`.
/// Values are finite (checked in [`SamplePred::new`]), so min/max are a total order.
#[inline(always)]
pub(crate) fn sort_columns<S: Simd, K: Key>(
    simd: S,
    tile: &mut [[K; TILE]],
    net: &[(usize, usize)],
) {
    for &(a, b) in net {
        let (lo, hi) = tile.split_at_mut(b);
        K::compare_exchange(simd, &mut lo[a], &mut hi[0]);
    }
}

/// A predictive distribution at every point of `n` functions: Gaussian parameters or draws.
#[derive(Debug, Clone, Copy)]
pub enum Prediction<'a, T> {
    /// Pointwise Gaussian `N(mean, std²)`.
    Gaussian(GaussianPred<'a, T>),
    /// Ensemble of draws, samples-first `[m, n, d]`.
    Samples(SamplePred<'a, T>),
}

impl<'a, T: Real> Prediction<'a, T> {
    /// The shape `[n, d]`.
    pub fn shape(&self) -> Shape {
        match self {
            Self::Gaussian(g) => g.shape(),
            Self::Samples(s) => s.shape(),
        }
    }

    /// Pointwise predictive mean and standard deviation `[n, d]` in `f64`: the Gaussian
    /// parameters, or the sample mean and unbiased (ddof = 1) sample std.
    pub fn mean_std(&self) -> (Vec<f64>, Vec<f64>) {
        match self {
            Self::Gaussian(g) => (
                g.mean().iter().map(|&v| v.into()).collect(),
                g.std().iter().map(|&v| v.into()).collect(),
            ),
            Self::Samples(s) => s.mean_std(),
        }
    }
}

impl<'a, T> From<GaussianPred<'a, T>> for Prediction<'a, T> {
    fn from(g: GaussianPred<'a, T>) -> Self {
        Self::Gaussian(g)
    }
}

impl<'a, T> From<SamplePred<'a, T>> for Prediction<'a, T> {
    fn from(s: SamplePred<'a, T>) -> Self {
        Self::Samples(s)
    }
}

/// The `w <= TILE` values `y[start .. start + w]` in `f64`, zero-padded to a tile.
#[inline(always)]
pub(crate) fn target_tile<Y: Real>(y: &[Y], start: usize, w: usize) -> [f64; TILE] {
    let mut out = [0.0; TILE];
    for (o, &v) in out.iter_mut().zip(&y[start..start + w]) {
        *o = v.into();
    }
    out
}

/// Mean of per-function values (summed in function order).
pub(crate) fn mean_of(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::traits::pulp::Scalar;

    #[test]
    fn sorting_network_sorts_columns_for_every_size() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 17) as f64 - 8.0
        };
        for m in 1..=130 {
            let net = sorting_network(m);
            let mut tile = vec![[0.0f64; TILE]; m];
            for row in tile.iter_mut() {
                row.iter_mut().for_each(|v| *v = next());
            }
            let mut expected: Vec<Vec<f64>> = (0..TILE)
                .map(|c| tile.iter().map(|r| r[c]).collect())
                .collect();
            expected
                .iter_mut()
                .for_each(|col| col.sort_by(f64::total_cmp));
            sort_columns(Scalar::new(), &mut tile, &net);
            for (c, col) in expected.iter().enumerate() {
                let got: Vec<f64> = tile.iter().map(|r| r[c]).collect();
                assert_eq!(&got, col, "m = {m}, column {c}");
            }
        }
    }

    /// Every point's draws as `fold_sorted` presents them equal the sorted draws, for `f32` and
    /// `f64` inputs, with ties, partial tiles and chunks (`d` = 600 spans two chunks).
    #[test]
    fn fold_sorted_presents_each_points_sorted_draws() {
        let (m, n, d) = (37, 3, 600);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 1001) as f64 / 64.0 - 7.0
        };
        let x64: Vec<f64> = (0..m * n * d).map(|_| next()).collect();
        // not exactly representable in f32: the f64 tile path
        let x64_inexact: Vec<f64> = x64.iter().map(|v| v + 1e-10).collect();
        let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
        fn check<T: Real>(x: &[T], m: usize, n: usize, d: usize) {
            let pred = SamplePred::new(x, m, n, d).unwrap();
            let got = pred.fold_sorted(Vec::new, |acc: &mut Vec<Vec<f64>>, _, i0, tile| {
                assert_eq!(acc.len(), i0);
                for c in 0..tile.width() {
                    acc.push(tile.rows().iter().map(|r| r[c]).collect());
                }
            });
            for (j, points) in got.iter().enumerate() {
                assert_eq!(points.len(), d);
                for (i, sorted) in points.iter().enumerate() {
                    let mut want: Vec<f64> = (0..m).map(|k| pred.draw(k, j)[i].into()).collect();
                    want.sort_by(f64::total_cmp);
                    assert_eq!(sorted, &want, "function {j}, point {i}");
                }
            }
        }
        check(&x64, m, n, d);
        check(&x64_inexact, m, n, d);
        check(&x32, m, n, d);
    }
}
