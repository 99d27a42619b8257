//! Borrowed, validated views of predictions and targets.
//!
//! Layout conventions (row-major, channels flattened into `d`):
//! - targets `y`: `[n, d]`, function `j` is `y[j*d .. (j+1)*d]`;
//! - Gaussian predictions: `mean` and `std`, each `[n, d]`;
//! - sample predictions: `[m, n, d]`, **samples first** (neuralop / `pno predict` convention):
//!   draw `k` of function `j` is `samples[(k*n + j)*d .. (k*n + j + 1)*d]`.

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

/// The `m` draws of one function, transposed to `[d, m]` in `f64`, each point's draws sorted
/// ascending. Produced by the crate's parallel per-function pass.
pub(crate) struct SortedFunction<'b> {
    pub(crate) m: usize,
    pub(crate) data: &'b [f64],
}

impl SortedFunction<'_> {
    /// The sorted draws at point `i`.
    pub(crate) fn point(&self, i: usize) -> &[f64] {
        &self.data[i * self.m..(i + 1) * self.m]
    }
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

    /// For each function (in parallel, results in function order), gathers the draws into a
    /// `[d, m]` `f64` buffer with each point's draws sorted, and calls `f(j, sorted)`.
    ///
    /// Points are processed in tiles of [`TILE`]: the `m` draws of a tile are contiguous
    /// `TILE`-wide rows of the samples-first layout, sorted column-wise by a data-independent
    /// comparator network (vectorised min/max over the tile), then transposed into the buffer.
    pub(crate) fn map_sorted<R: Send>(
        &self,
        f: impl Fn(usize, &SortedFunction<'_>) -> R + Sync,
    ) -> Vec<R> {
        let (n, d, m) = (self.shape.n, self.shape.d, self.m);
        let net = sorting_network(m);
        (0..n)
            .into_par_iter()
            .map_init(
                || (vec![0.0f64; d * m], vec![[0.0f64; TILE]; m]),
                |(buf, tile), j| {
                    let mut i0 = 0;
                    while i0 < d {
                        let w = TILE.min(d - i0);
                        for (k, row) in tile.iter_mut().enumerate() {
                            let start = (k * n + j) * d + i0;
                            for (dst, &x) in row.iter_mut().zip(&self.samples[start..start + w]) {
                                *dst = x.into();
                            }
                        }
                        sort_columns(tile, &net);
                        let out = &mut buf[i0 * m..(i0 + w) * m];
                        for (k, row) in tile.iter().enumerate() {
                            for (c, &x) in row[..w].iter().enumerate() {
                                out[c * m + k] = x;
                            }
                        }
                        i0 += w;
                    }
                    f(j, &SortedFunction { m, data: buf })
                },
            )
            .collect()
    }
}

/// Points per tile of [`SamplePred::map_sorted`]: `m` rows of `TILE` `f64` stay in L1.
pub(crate) const TILE: usize = 32;

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

/// Sorts every column of `tile` (rows `[TILE]`) ascending with the comparator network `net`.
/// Values are finite (checked in [`SamplePred::new`]), so `<` is a total order.
pub(crate) fn sort_columns(tile: &mut [[f64; TILE]], net: &[(usize, usize)]) {
    for &(a, b) in net {
        let (lo, hi) = tile.split_at_mut(b);
        let (ra, rb) = (&mut lo[a], &mut hi[0]);
        for (x, y) in ra.iter_mut().zip(rb.iter_mut()) {
            let (p, q) = (*x, *y);
            *x = p.min(q);
            *y = p.max(q);
        }
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

/// Mean of per-function values (summed in function order).
pub(crate) fn mean_of(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

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
            sort_columns(&mut tile, &net);
            for (c, col) in expected.iter().enumerate() {
                let got: Vec<f64> = tile.iter().map(|r| r[c]).collect();
                assert_eq!(&got, col, "m = {m}, column {c}");
            }
        }
    }
}
