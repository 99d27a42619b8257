//! Two-dimensional complex FFTs on row-major `[nx, ny]` arrays (unnormalised, like rustfft).

use std::sync::Arc;

use num_complex::Complex64;
use rustfft::{Fft, FftPlanner};

/// Forward and inverse 2-D FFT plans for one shape.
///
/// `forward` computes `X_k = Σ_x u_x e^{-2πi k·x/N}`; `inverse` computes the same sum with
/// `+2πi` and **no** `1/(nx·ny)` factor (divide yourself).
#[derive(Clone)]
pub struct Fft2 {
    nx: usize,
    ny: usize,
    fx: Arc<dyn Fft<f64>>,
    fy: Arc<dyn Fft<f64>>,
    ix: Arc<dyn Fft<f64>>,
    iy: Arc<dyn Fft<f64>>,
}

impl std::fmt::Debug for Fft2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fft2({}x{})", self.nx, self.ny)
    }
}

impl Fft2 {
    /// Plans transforms of shape `[nx, ny]`.
    pub fn new(nx: usize, ny: usize) -> Self {
        let mut p = FftPlanner::new();
        Self {
            nx,
            ny,
            fx: p.plan_fft_forward(nx),
            fy: p.plan_fft_forward(ny),
            ix: p.plan_fft_inverse(nx),
            iy: p.plan_fft_inverse(ny),
        }
    }

    /// In-place forward transform of a row-major `[nx, ny]` array.
    pub fn forward(&self, data: &mut [Complex64]) {
        self.apply(data, &self.fx, &self.fy);
    }

    /// In-place unnormalised inverse transform of a row-major `[nx, ny]` array.
    pub fn inverse(&self, data: &mut [Complex64]) {
        self.apply(data, &self.ix, &self.iy);
    }

    fn apply(&self, data: &mut [Complex64], fx: &Arc<dyn Fft<f64>>, fy: &Arc<dyn Fft<f64>>) {
        assert_eq!(data.len(), self.nx * self.ny, "Fft2: wrong array length");
        // rows (contiguous, along y)
        fy.process(data);
        // columns (along x) through a transposed scratch copy
        let mut col = vec![Complex64::new(0.0, 0.0); self.nx * self.ny];
        for i in 0..self.nx {
            for j in 0..self.ny {
                col[j * self.nx + i] = data[i * self.ny + j];
            }
        }
        fx.process(&mut col);
        for i in 0..self.nx {
            for j in 0..self.ny {
                data[i * self.ny + j] = col[j * self.nx + i];
            }
        }
    }
}

/// FFT wavenumber of index `i` on an axis of `n` points: `0, 1, …, ⌈n/2⌉−1, −⌊n/2⌋, …, −1`.
pub fn wavenumber(i: usize, n: usize) -> f64 {
    if i < n.div_ceil(2) {
        i as f64
    } else {
        i as f64 - n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft2_matches_naive_dft_and_inverts() {
        let (nx, ny) = (6, 5);
        let u: Vec<Complex64> = (0..nx * ny)
            .map(|k| Complex64::new((k as f64 * 0.37).sin(), (k as f64 * 0.11).cos()))
            .collect();
        let mut f = u.clone();
        let plan = Fft2::new(nx, ny);
        plan.forward(&mut f);
        for kx in 0..nx {
            for ky in 0..ny {
                let mut s = Complex64::new(0.0, 0.0);
                for x in 0..nx {
                    for y in 0..ny {
                        let ph = -2.0
                            * std::f64::consts::PI
                            * (kx as f64 * x as f64 / nx as f64 + ky as f64 * y as f64 / ny as f64);
                        s += u[x * ny + y] * Complex64::from_polar(1.0, ph);
                    }
                }
                assert!((s - f[kx * ny + ky]).norm() < 1e-12);
            }
        }
        plan.inverse(&mut f);
        for (a, b) in f.iter().zip(&u) {
            assert!((a / (nx * ny) as f64 - b).norm() < 1e-14);
        }
    }

    #[test]
    fn wavenumber_follows_fft_order() {
        let k: Vec<f64> = (0..5).map(|i| wavenumber(i, 5)).collect();
        assert_eq!(k, vec![0.0, 1.0, 2.0, -2.0, -1.0]);
        let k: Vec<f64> = (0..4).map(|i| wavenumber(i, 4)).collect();
        assert_eq!(k, vec![0.0, 1.0, -2.0, -1.0]);
    }
}
