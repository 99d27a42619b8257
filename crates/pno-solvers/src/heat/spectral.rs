//! Real-field spectral evaluation on the periodic `n × n` grid, shared by the heat and wave
//! generators (`pde-specs.md` §1.1–1.2): half spectra, GRF draws straight into spectral space, and
//! batched inverse transforms (complex FFT along `x`, real c2r FFT along `y`), all planned once.
//!
//! Spectra are stored **transposed**, `S[ky][kx]` with `ky = 0..=n/2` (the `rfft` axis) and `kx`
//! in FFT order, in the unnormalised-inverse convention `u(x) = Σ_k S_k e^{+2πik·x/n}` (so
//! `S = FFT(u)/n²`).

use std::sync::Arc;

use num_complex::Complex64;
use rand::Rng;
use rand_distr::StandardNormal;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};

use crate::error::{Error, Result};
use crate::fft2::wavenumber;
use crate::grf::GrfPeriodic;

/// Planned transforms for real fields on the periodic `n × n` grid.
#[derive(Clone)]
pub(crate) struct PeriodicSpectral {
    n: usize,
    nh: usize,
    fwd_x: Arc<dyn Fft<f64>>,
    inv_x: Arc<dyn Fft<f64>>,
    r2c: Arc<dyn RealToComplex<f64>>,
    c2r: Arc<dyn ComplexToReal<f64>>,
}

impl std::fmt::Debug for PeriodicSpectral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeriodicSpectral({0}x{0})", self.n)
    }
}

/// Per-sample work buffers of [`PeriodicSpectral::inverse`].
pub(crate) struct SpectralWork {
    rows: Vec<Complex64>,
    fft_scratch: Vec<Complex64>,
    real_scratch: Vec<Complex64>,
}

impl PeriodicSpectral {
    /// Plans all transforms for side `n`.
    pub(crate) fn new(n: usize) -> Self {
        let mut p = FftPlanner::new();
        let mut rp = RealFftPlanner::new();
        Self {
            n,
            nh: n / 2 + 1,
            fwd_x: p.plan_fft_forward(n),
            inv_x: p.plan_fft_inverse(n),
            r2c: rp.plan_fft_forward(n),
            c2r: rp.plan_fft_inverse(n),
        }
    }

    /// Number of stored spectral values, `(n/2 + 1)·n`.
    pub(crate) fn len(&self) -> usize {
        self.nh * self.n
    }

    /// `|k|²` of every stored mode, in storage order.
    pub(crate) fn ksq(&self) -> Vec<f64> {
        let n = self.n;
        let mut out = Vec::with_capacity(self.len());
        for ky in 0..self.nh {
            for i in 0..n {
                let kx = wavenumber(i, n);
                out.push(kx * kx + (ky * ky) as f64);
            }
        }
        out
    }

    /// Work buffers for one sample.
    pub(crate) fn work(&self) -> SpectralWork {
        SpectralWork {
            rows: vec![Complex64::new(0.0, 0.0); self.len()],
            fft_scratch: vec![
                Complex64::new(0.0, 0.0);
                self.inv_x
                    .get_inplace_scratch_len()
                    .max(self.fwd_x.get_inplace_scratch_len())
            ],
            real_scratch: vec![
                Complex64::new(0.0, 0.0);
                self.c2r.get_scratch_len().max(self.r2c.get_scratch_len())
            ],
        }
    }

    /// Draws a field of law `grf` exactly as [`GrfPeriodic::sample_2d`] does (same random
    /// numbers, same order) and returns its half spectrum instead of the field.
    pub(crate) fn grf_spectrum<R: Rng + ?Sized>(
        &self,
        grf: &GrfPeriodic,
        rng: &mut R,
    ) -> Vec<Complex64> {
        let n = self.n;
        let half = std::f64::consts::FRAC_1_SQRT_2;
        let mut c = vec![Complex64::new(0.0, 0.0); n * n];
        for (p, z) in c.iter_mut().enumerate() {
            let (kx, ky) = (wavenumber(p / n, n), wavenumber(p % n, n));
            let re: f64 = rng.sample(StandardNormal);
            let im: f64 = rng.sample(StandardNormal);
            let amp = (2.0 * grf.mode_variance(kx * kx + ky * ky, 2)).sqrt();
            *z = Complex64::new(re * half, im * half) * amp;
        }
        // u = Re(Σ c_k e^{+ik·x}) has coefficients (c_k + conj(c_{−k}))/2
        let mut s = vec![Complex64::new(0.0, 0.0); self.len()];
        for ky in 0..self.nh {
            for kx in 0..n {
                let (mx, my) = ((n - kx) % n, (n - ky) % n);
                s[ky * n + kx] = 0.5 * (c[kx * n + ky] + c[mx * n + my].conj());
            }
        }
        s
    }

    /// Half spectrum of the real field `u` (row-major `[x, y]`), `S = FFT(u)/n²`.
    pub(crate) fn forward(&self, u: &[f64], work: &mut SpectralWork) -> Result<Vec<Complex64>> {
        let (n, nh) = (self.n, self.nh);
        let mut row = u[..n].to_vec();
        let mut out = vec![Complex64::new(0.0, 0.0); nh];
        for x in 0..n {
            row.copy_from_slice(&u[x * n..(x + 1) * n]);
            self.r2c
                .process_with_scratch(&mut row, &mut out, &mut work.real_scratch)
                .map_err(fft_error)?;
            for (ky, z) in out.iter().enumerate() {
                work.rows[ky * n + x] = *z;
            }
        }
        let mut s = work.rows.clone();
        self.fwd_x
            .process_with_scratch(&mut s, &mut work.fft_scratch);
        let scale = 1.0 / (n * n) as f64;
        for z in &mut s {
            *z *= scale;
        }
        Ok(s)
    }

    /// Evaluates the field of spectrum `spec` (consumed as scratch) into `out` (`n²`, `[x, y]`).
    pub(crate) fn inverse(
        &self,
        spec: &mut [Complex64],
        out: &mut [f64],
        work: &mut SpectralWork,
    ) -> Result<()> {
        let (n, nh) = (self.n, self.nh);
        // along x: one batched call over the nh contiguous columns
        self.inv_x.process_with_scratch(spec, &mut work.fft_scratch);
        // transpose to rows [x][ky]
        for ky in 0..nh {
            let col = &spec[ky * n..(ky + 1) * n];
            for (x, z) in col.iter().enumerate() {
                work.rows[x * nh + ky] = *z;
            }
        }
        let even = n % 2 == 0;
        for (row, o) in work.rows.chunks_exact_mut(nh).zip(out.chunks_exact_mut(n)) {
            // Hermitian symmetry makes these real up to round-off; c2r requires exact zeros.
            row[0].im = 0.0;
            if even {
                row[nh - 1].im = 0.0;
            }
            self.c2r
                .process_with_scratch(row, o, &mut work.real_scratch)
                .map_err(fft_error)?;
        }
        Ok(())
    }
}

fn fft_error(e: realfft::FftError) -> Error {
    Error::Solve {
        solver: "realfft",
        index: 0,
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::sample_rng;

    #[test]
    fn periodic_spectral_grf_spectrum_matches_grf_sample_2d() {
        for n in [8, 9] {
            let sp = PeriodicSpectral::new(n);
            let g = GrfPeriodic::new(2.5, 7.0, None);
            let mut s = sp.grf_spectrum(&g, &mut sample_rng(4, 1));
            let want = g.sample_2d(n, &mut sample_rng(4, 1));
            let mut got = vec![0.0; n * n];
            let mut w = sp.work();
            sp.inverse(&mut s, &mut got, &mut w).unwrap();
            let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            pno_core::testing::assert_close(&got, &want, 1e-12, 1e-13 * scale);
            // forward inverts inverse
            let mut back = sp.forward(&got, &mut w).unwrap();
            let mut again = vec![0.0; n * n];
            sp.inverse(&mut back, &mut again, &mut w).unwrap();
            pno_core::testing::assert_close(&again, &got, 1e-12, 1e-14 * scale);
        }
    }
}
