//! Real-field spectral evaluation on the periodic `n × n` grid, shared by the heat and wave
//! generators (`docs/pde-specs.md` §1.1–1.2): half spectra, GRF draws straight into spectral
//! space, and batched inverse transforms (complex FFT along `x`, real c2r FFT along `y`; for even
//! `n` the c2r is folded into one batched half-length complex FFT), all planned once.
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
use crate::generator::all_finite;
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
    /// Even `n` only: the folded, batched half-length c2r of [`Self::frames_linear`] (odd `n`
    /// takes [`Self::inverse_rows`]).
    half: Option<HalfC2r>,
}

/// Complex-to-real inverse transforms of even length `n` along `y` for all rows at once, as one
/// batched complex FFT of length `n/2`: with `X_0..X_{n/2}` a row's half spectrum,
/// `Z_k = (X_k + X̄_{n/2−k}) + i·e^{2πik/n}(X_k − X̄_{n/2−k})` (`k < n/2`) has inverse transform
/// `z_p = x_{2p} + i·x_{2p+1}`, the real row read as interleaved complex values.
#[derive(Clone)]
struct HalfC2r {
    fft: Arc<dyn Fft<f64>>,
    /// `i·e^{2πik/n}`, `k = 0..n/2`.
    tw: Vec<Complex64>,
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
    row_out: Vec<f64>,
    /// Batched half-length rows of the even-`n` c2r, `[x][k]`.
    z: Vec<Complex64>,
    half_scratch: Vec<Complex64>,
}

impl PeriodicSpectral {
    /// Plans all transforms for side `n`.
    pub(crate) fn new(n: usize) -> Self {
        let mut p = FftPlanner::new();
        let mut rp = RealFftPlanner::new();
        let half = n.is_multiple_of(2).then(|| HalfC2r {
            fft: p.plan_fft_inverse(n / 2),
            tw: (0..n / 2)
                .map(|k| {
                    let (s, c) = (2.0 * std::f64::consts::PI * k as f64 / n as f64).sin_cos();
                    Complex64::new(-s, c)
                })
                .collect(),
        });
        Self {
            n,
            nh: n / 2 + 1,
            fwd_x: p.plan_fft_forward(n),
            inv_x: p.plan_fft_inverse(n),
            r2c: rp.plan_fft_forward(n),
            c2r: rp.plan_fft_inverse(n),
            half,
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
            row_out: vec![0.0; self.n],
            z: vec![
                Complex64::new(0.0, 0.0);
                if self.half.is_some() {
                    self.n * (self.n / 2)
                } else {
                    0
                }
            ],
            half_scratch: vec![
                Complex64::new(0.0, 0.0);
                self.half
                    .as_ref()
                    .map_or(0, |h| h.fft.get_inplace_scratch_len())
            ],
        }
    }

    /// Amplitudes `√(2·σ²λ̃_k^{−α})` of law `grf` for every full-grid mode, in the draw order of
    /// [`GrfPeriodic::sample_2d`] (row-major `[kx][ky]`, FFT order). Plan once, draw many.
    pub(crate) fn grf_amplitudes(&self, grf: &GrfPeriodic) -> Vec<f64> {
        let n = self.n;
        (0..n * n)
            .map(|p| {
                let (kx, ky) = (wavenumber(p / n, n), wavenumber(p % n, n));
                (2.0 * grf.mode_variance(kx * kx + ky * ky, 2)).sqrt()
            })
            .collect()
    }

    /// Draws a field with the amplitudes `amp` of [`Self::grf_amplitudes`] exactly as
    /// [`GrfPeriodic::sample_2d`] does (same random numbers, same order, same arithmetic) and
    /// returns its half spectrum instead of the field.
    pub(crate) fn grf_spectrum<R: Rng + ?Sized>(&self, amp: &[f64], rng: &mut R) -> Vec<Complex64> {
        let n = self.n;
        assert_eq!(
            amp.len(),
            n * n,
            "grf_spectrum: amplitude table of the wrong size"
        );
        let half = std::f64::consts::FRAC_1_SQRT_2;
        let c: Vec<Complex64> = amp
            .iter()
            .map(|&a| {
                let re: f64 = rng.sample(StandardNormal);
                let im: f64 = rng.sample(StandardNormal);
                Complex64::new(re * half, im * half) * a
            })
            .collect();
        // u = Re(Σ c_k e^{+ik·x}) has coefficients (c_k + conj(c_{−k}))/2
        let mut s = Vec::with_capacity(self.len());
        for ky in 0..self.nh {
            let my = (n - ky) % n;
            for kx in 0..n {
                let mx = (n - kx) % n;
                s.push(0.5 * (c[kx * n + ky] + c[mx * n + my].conj()));
            }
        }
        s
    }

    /// Evaluates `n_frames` fields `u_j = Σ_t F⁻¹[spec_t ⊙ table(j, t)]` (each `spec_t` a half
    /// spectrum and each `table(j, t)` a real multiplier, both in storage order) and returns them
    /// concatenated (`n_frames·n²` values, each frame row-major `[x, y]`) together with whether
    /// every value is finite. `sup[t]` bounds `|table(j, t)|` over all frames (see [`sup_abs`]).
    /// No per-frame allocation.
    pub(crate) fn frames_linear<'a>(
        &self,
        n_frames: usize,
        specs: &[&[Complex64]],
        sup: &[f64],
        table: impl Fn(usize, usize) -> &'a [f64],
    ) -> Result<(Vec<f64>, bool)> {
        assert_eq!(
            specs.len(),
            sup.len(),
            "frames_linear: one bound per spectrum"
        );
        let n2 = self.n * self.n;
        let mut out = Vec::with_capacity(n2 * n_frames);
        let mut work = self.work();
        let mut finite = true;
        match &self.half {
            Some(half) => {
                let folded: Vec<(Vec<Complex64>, Vec<Complex64>)> =
                    specs.iter().map(|s| self.fold(half, s)).collect();
                // Every value of the two inverse DFTs (and of their partial sums inside the FFTs)
                // is bounded by Σ|P| ≤ Σ_t sup_t·Σ(|α_t| + |β_t|); far below f64::MAX (or NaN-free
                // and finite) means no output value can be non-finite, so the scan is skipped.
                let l1 = |v: &[Complex64]| v.iter().map(|z| z.re.abs() + z.im.abs()).sum::<f64>();
                let bound: f64 = folded
                    .iter()
                    .zip(sup)
                    .map(|((a, b), s)| s * (l1(a) + l1(b)))
                    .sum();
                let check = !(bound.is_finite() && bound < 1e300);
                let m = self.n / 2;
                let mut p = vec![Complex64::new(0.0, 0.0); m * self.n];
                for j in 0..n_frames {
                    for (t, (a, b)) in folded.iter().enumerate() {
                        self.fold_apply(a, b, table(j, t), &mut p, t == 0);
                    }
                    let start = out.len();
                    self.inverse_folded(half, &mut p, &mut work, &mut out);
                    if check {
                        finite &= all_finite(&out[start..]);
                    }
                }
            }
            None => {
                let mut spec = vec![Complex64::new(0.0, 0.0); self.len()];
                for j in 0..n_frames {
                    for (t, st) in specs.iter().enumerate() {
                        let tab = table(j, t);
                        for ((o, z), f) in spec.iter_mut().zip(st.iter()).zip(tab) {
                            *o = if t == 0 { z * f } else { *o + z * f };
                        }
                    }
                    let start = out.len();
                    // rows come in order x = 0..n, so appending them builds the row-major frame
                    self.inverse_rows(&mut spec, &mut work, |o| out.extend_from_slice(o))?;
                    finite &= all_finite(&out[start..]);
                }
            }
        }
        Ok((out, finite))
    }

    /// Folds a half spectrum `s` for the even-`n` inverse: with `ŝ_k = conj(s[m−k][−kx])`
    /// (`m = n/2`), returns `α = s_k·(1 + i e^{2πik/n})` and `β = ŝ_k·(1 − i e^{2πik/n})`, both
    /// `[k][kx]` for `k = 0..m`, so that the transform input of [`HalfC2r`] is `α·T + β·T̂`.
    fn fold(&self, half: &HalfC2r, s: &[Complex64]) -> (Vec<Complex64>, Vec<Complex64>) {
        let (n, m) = (self.n, self.n / 2);
        let one = Complex64::new(1.0, 0.0);
        let mut a = Vec::with_capacity(m * n);
        let mut b = Vec::with_capacity(m * n);
        for k in 0..m {
            let (ta, tb) = (one + half.tw[k], one - half.tw[k]);
            let row = &s[k * n..(k + 1) * n];
            let mirror = &s[(m - k) * n..(m - k + 1) * n];
            a.extend(row.iter().map(|z| z * ta));
            b.extend((0..n).map(|kx| mirror[(n - kx) % n].conj() * tb));
        }
        (a, b)
    }

    /// `p (=|+=) α·T + β·T̂` with `T` a storage-order table and `T̂[k][kx] = T[m−k][−kx]`.
    fn fold_apply(
        &self,
        a: &[Complex64],
        b: &[Complex64],
        tab: &[f64],
        p: &mut [Complex64],
        assign: bool,
    ) {
        let (n, m) = (self.n, self.n / 2);
        for k in 0..m {
            let ta = &tab[k * n..(k + 1) * n];
            let tb = &tab[(m - k) * n..(m - k + 1) * n];
            let (ar, br) = (&a[k * n..(k + 1) * n], &b[k * n..(k + 1) * n]);
            let pr = &mut p[k * n..(k + 1) * n];
            // kx = 0 mirrors onto itself, kx ≥ 1 onto n − kx
            let v0 = ar[0] * ta[0] + br[0] * tb[0];
            pr[0] = if assign { v0 } else { pr[0] + v0 };
            let it = pr[1..]
                .iter_mut()
                .zip(&ar[1..])
                .zip(&br[1..])
                .zip(&ta[1..])
                .zip(tb[1..].iter().rev());
            if assign {
                for ((((o, x), y), f), g) in it {
                    *o = x * f + y * g;
                }
            } else {
                for ((((o, x), y), f), g) in it {
                    *o += x * f + y * g;
                }
            }
        }
    }

    /// Inverse transform of a folded spectrum `p` (`[k][kx]`, consumed as scratch); appends the
    /// `n²` field values (row-major `[x, y]`) to `out`.
    fn inverse_folded(
        &self,
        half: &HalfC2r,
        p: &mut [Complex64],
        work: &mut SpectralWork,
        out: &mut Vec<f64>,
    ) {
        let (n, m) = (self.n, self.n / 2);
        // along x: one batched call over the m contiguous columns
        self.inv_x.process_with_scratch(p, &mut work.fft_scratch);
        // blocked transpose [k][x] → [x][k]
        const B: usize = 8;
        let z = &mut work.z;
        for xb in (0..n).step_by(B) {
            let xe = (xb + B).min(n);
            for k in 0..m {
                for (dx, v) in p[k * n + xb..k * n + xe].iter().enumerate() {
                    z[(xb + dx) * m + k] = *v;
                }
            }
        }
        // along y: z_p = x_{2p} + i·x_{2p+1}
        half.fft.process_with_scratch(z, &mut work.half_scratch);
        out.extend(z.iter().flat_map(|v| [v.re, v.im]));
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
    #[cfg(test)]
    pub(crate) fn inverse(
        &self,
        spec: &mut [Complex64],
        out: &mut [f64],
        work: &mut SpectralWork,
    ) -> Result<()> {
        assert_eq!(
            out.len(),
            self.n * self.n,
            "inverse: output of the wrong size"
        );
        let mut rows = out.chunks_exact_mut(self.n);
        self.inverse_rows(spec, work, |o| {
            if let Some(dst) = rows.next() {
                dst.copy_from_slice(o);
            }
        })
    }

    /// Evaluates the field of spectrum `spec` (consumed as scratch) and hands its rows `x = 0..n`
    /// (each `n` values along `y`) to `emit`, in order.
    fn inverse_rows(
        &self,
        spec: &mut [Complex64],
        work: &mut SpectralWork,
        mut emit: impl FnMut(&[f64]),
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
        let mut o = std::mem::take(&mut work.row_out);
        o.resize(n, 0.0);
        for row in work.rows.chunks_exact_mut(nh) {
            // Hermitian symmetry makes these real up to round-off; c2r requires exact zeros.
            row[0].im = 0.0;
            if even {
                row[nh - 1].im = 0.0;
            }
            self.c2r
                .process_with_scratch(row, &mut o, &mut work.real_scratch)
                .map_err(fft_error)?;
            emit(&o);
        }
        work.row_out = o;
        Ok(())
    }
}

/// `max |v|` over all tables, `+∞` if any value is NaN or infinite: the `sup` bound of
/// [`PeriodicSpectral::frames_linear`].
pub(crate) fn sup_abs(tables: &[Vec<f64>]) -> f64 {
    tables.iter().flatten().fold(0.0f64, |m, v| {
        if v.is_finite() {
            m.max(v.abs())
        } else {
            f64::INFINITY
        }
    })
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
            let mut s = sp.grf_spectrum(&sp.grf_amplitudes(&g), &mut sample_rng(4, 1));
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

    #[test]
    fn periodic_spectral_folded_frames_match_rowwise_c2r() {
        for n in [2, 8, 10, 9] {
            let sp = PeriodicSpectral::new(n);
            let g = GrfPeriodic::new(2.5, 7.0, None);
            let amp = sp.grf_amplitudes(&g);
            let su = sp.grf_spectrum(&amp, &mut sample_rng(5, 2));
            let sv = sp.grf_spectrum(&amp, &mut sample_rng(5, 3));
            let tables: Vec<Vec<f64>> = (0..4)
                .map(|j| {
                    sp.ksq()
                        .iter()
                        .map(|q| (0.3 * j as f64 * (q + 1.0)).cos())
                        .collect()
                })
                .collect();
            let (got, finite) = sp
                .frames_linear(2, &[&su, &sv], &[1.0, 1.0], |j, t| &tables[2 * j + t])
                .unwrap();
            assert!(finite);
            let mut w = sp.work();
            for j in 0..2 {
                let mut spec: Vec<Complex64> = su
                    .iter()
                    .zip(&sv)
                    .zip(&tables[2 * j])
                    .zip(&tables[2 * j + 1])
                    .map(|(((a, b), f), h)| a * f + b * h)
                    .collect();
                let mut want = vec![0.0; n * n];
                sp.inverse(&mut spec, &mut want, &mut w).unwrap();
                let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                pno_core::testing::assert_close(
                    &got[j * n * n..(j + 1) * n * n],
                    &want,
                    1e-12,
                    1e-14 * scale,
                );
            }
        }
    }

    #[test]
    fn periodic_spectral_frames_report_non_finite_values() {
        for n in [8, 9] {
            let sp = PeriodicSpectral::new(n);
            let ones = vec![1.0; sp.len()];
            let mut s = vec![Complex64::new(0.0, 0.0); sp.len()];
            s[1] = Complex64::new(f64::NAN, 0.0);
            let (_, finite) = sp.frames_linear(1, &[&s], &[1.0], |_, _| &ones).unwrap();
            assert!(!finite, "NaN spectrum, n = {n}");
            // cos(2πx) mode of amplitude 3e308: finite spectrum, overflowing field
            s[1] = Complex64::new(1.5e308, 0.0);
            s[n - 1] = s[1];
            let (_, finite) = sp.frames_linear(1, &[&s], &[1.0], |_, _| &ones).unwrap();
            assert!(!finite, "overflowing spectrum, n = {n}");
            s[1] = Complex64::new(1.0, 0.0);
            s[n - 1] = s[1];
            let (_, finite) = sp.frames_linear(1, &[&s], &[1.0], |_, _| &ones).unwrap();
            assert!(finite, "moderate spectrum, n = {n}");
        }
    }
}
