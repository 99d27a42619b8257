//! Navier–Stokes 2D in vorticity form on the unit torus, FNO `ns_2d.py` scheme.
//!
//! `∂t ω + u·∇ω = νΔω + f` on `[0, 1)²`, `u = (ψ_y, −ψ_x)`, `−Δψ = ω`, forcing
//! `f = A(sin 2π(x+y) + cos 2π(x+y))` with `x` along array axis 0, IC `ω0 ~ GRF_per(2.5, 7, 7^1.5)`
//! (Li et al., "Fourier Neural Operator for Parametric PDEs", ICLR 2021, `ns_2d.py`;
//! `docs/pde-specs.md` §2.2, §3.4; peer `pde_ref/ns_ref.py`).
//!
//! Scheme (per step, in `rfft2` space, `λ = 4π²|k|²`, `λ_00 := 1`, `ψ̂ = ω̂/λ`): four inverse
//! real 2-D FFTs give `u_x = ψ_y`, `u_y = −ψ_x`, `ω_x`, `ω_y`; `F̂ = D ⊙ rfft2(u_x ω_x + u_y ω_y)`
//! with the 2/3 mask `D = [|k_x| ≤ ⅔·N/2] ∧ [|k_y| ≤ ⅔·N/2]`; then Crank–Nicolson on viscosity and
//! forward Euler on advection and forcing:
//! `ω̂ ← [−Δt·F̂ + Δt·f̂ + (1 − ½Δtνλ)ω̂] / (1 + ½Δtνλ)`. The last (`rfft`) axis uses the
//! wavenumbers `[0 … N/2−1, −N/2]` as `ns_2d.py`.
//!
//! Implementation: the half spectrum is stored transposed (`[k_y][k_x]`); complex FFTs (rustfft)
//! along `x` act on it, and the real transforms along `y` run as complex FFTs of two real rows at
//! once (`u_x + i·u_y` and `ω_x + i·ω_y` for the four inverse transforms, rows `2p`, `2p + 1` of
//! the product for the forward one), so a step makes 4·(N/2+1) + 2N inverse and N/2 + kc + 1
//! forward complex FFTs of length N. The forward transform only computes the rows
//! `k_y ≤ kc = ⌊⅔·N/2⌋` that survive the mask (identical result). Every step checks the advective
//! CFL number `Δt·max|u|·N ≤ 1`.
//!
//! Config keys (TOML / JSON), all optional:
//! - `profile`: `"ci"` (default: solve at `resolution`, `dt` 1e-3) or `"faithful"`
//!   (`solve_resolution` 256, `dt` 1e-4, stride-downsampled to `resolution`);
//! - `resolution` (64), `solve_resolution` (profile), `dt` (profile; the step used divides
//!   `record_every` exactly, see `dt_used`);
//! - `nu` (1e-3), `t_final` (10), `record_every` (1.0), `forcing_amplitude` (0.1);
//! - `alpha` (2.5), `tau` (7), `sigma` (τ^1.5): the GRF of the initial vorticity.
//!
//! Output: trajectory `u` `[n_times, 1, R, R]`, frames at `t = 0` (ω0), `record_every`, … ≤ `t_final`.

use std::f64::consts::PI;
use std::sync::Arc;

use num_complex::Complex64;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};
use serde::Deserialize;
use serde_json::json;

use crate::error::{Error, Result, positive};
use crate::fft2::wavenumber;
use crate::generator::{Generator, TensorLayout};
use crate::grf::GrfPeriodic;

const ZERO: Complex64 = Complex64 { re: 0.0, im: 0.0 };

/// Navier–Stokes profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NsProfile {
    /// Solve directly at the output resolution, `dt = 1e-3`.
    Ci,
    /// Solve at 256², `dt = 1e-4`, then stride-downsample (FNO data).
    Faithful,
}

impl NsProfile {
    fn name(self) -> &'static str {
        match self {
            Self::Ci => "ci",
            Self::Faithful => "faithful",
        }
    }
}

/// Raw Navier–Stokes config (see the module docs for the keys).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NavierStokesConfig {
    /// Profile name.
    pub profile: NsProfile,
    /// Output grid points per axis.
    pub resolution: usize,
    /// Solver grid points per axis (profile default).
    pub solve_resolution: Option<usize>,
    /// Viscosity ν.
    pub nu: f64,
    /// Maximal time step (profile default).
    pub dt: Option<f64>,
    /// Last frame time.
    pub t_final: f64,
    /// Time between frames.
    pub record_every: f64,
    /// Forcing amplitude `A`.
    pub forcing_amplitude: f64,
    /// GRF smoothness α of ω0.
    pub alpha: f64,
    /// GRF inverse length scale τ of ω0.
    pub tau: f64,
    /// GRF amplitude σ of ω0 (`None` = τ^{(2α−2)/2}).
    pub sigma: Option<f64>,
}

impl Default for NavierStokesConfig {
    fn default() -> Self {
        Self {
            profile: NsProfile::Ci,
            resolution: 64,
            solve_resolution: None,
            nu: 1e-3,
            dt: None,
            t_final: 10.0,
            record_every: 1.0,
            forcing_amplitude: 0.1,
            alpha: 2.5,
            tau: 7.0,
            sigma: None,
        }
    }
}

impl NavierStokesConfig {
    /// Checks every field and resolves the profile defaults.
    pub fn validate(&self) -> Result<NavierStokesGenerator> {
        let r = self.resolution;
        if !(8..=4096).contains(&r) || !r.is_multiple_of(2) {
            return Err(Error::config(
                "resolution",
                "an even integer in 8..=4096",
                r,
            ));
        }
        let (ns0, dt0) = match self.profile {
            NsProfile::Ci => (r, 1e-3),
            NsProfile::Faithful => (256.max(r), 1e-4),
        };
        let ns = self.solve_resolution.unwrap_or(ns0);
        if !ns.is_multiple_of(r) || ns > 4096 {
            return Err(Error::config(
                "solve_resolution",
                format!("a multiple of resolution = {r}, at most 4096"),
                ns,
            ));
        }
        if !(self.nu.is_finite() && self.nu >= 0.0) {
            return Err(Error::config("nu", "a finite number >= 0", self.nu));
        }
        let dt = positive("dt", self.dt.unwrap_or(dt0))?;
        let t_final = positive("t_final", self.t_final)?;
        let record_every = positive("record_every", self.record_every)?;
        if t_final < record_every * (1.0 - 1e-9) {
            return Err(Error::config(
                "t_final",
                format!("at least record_every = {record_every}"),
                t_final,
            ));
        }
        if !self.forcing_amplitude.is_finite() {
            return Err(Error::config(
                "forcing_amplitude",
                "a finite number",
                self.forcing_amplitude,
            ));
        }
        let grf = GrfPeriodic::new(self.alpha, self.tau, self.sigma);
        grf.validate("", 2)?;
        let records = (t_final / record_every + 1e-9).floor() as usize;
        let per = (record_every / dt - 1e-9).ceil().max(1.0);
        if per * records as f64 > 1e9 {
            return Err(Error::config(
                "dt",
                "at most 1e9 time steps (t_final / dt)",
                dt,
            ));
        }
        let per = per as usize;
        let h = record_every / per as f64;
        let spectral = NsSpectral::new(ns, self.nu, h, self.forcing_amplitude);
        Ok(NavierStokesGenerator {
            profile: self.profile,
            resolution: r,
            nu: self.nu,
            dt,
            h,
            steps_per_record: per,
            n_times: records + 1,
            forcing_amplitude: self.forcing_amplitude,
            grf,
            spectral,
        })
    }
}

/// Validated Navier–Stokes generator.
#[derive(Debug, Clone)]
pub struct NavierStokesGenerator {
    profile: NsProfile,
    resolution: usize,
    nu: f64,
    dt: f64,
    h: f64,
    steps_per_record: usize,
    n_times: usize,
    forcing_amplitude: f64,
    grf: GrfPeriodic,
    spectral: NsSpectral,
}

/// Builds the Navier–Stokes generator from a raw config.
pub fn build(config: serde_json::Value) -> Result<Box<dyn Generator>> {
    let c: NavierStokesConfig = crate::generator::parse_config("navier_stokes", config)?;
    Ok(Box::new(c.validate()?))
}

/// Plans and per-mode multipliers of the `ns_2d` step on an `n × n` grid.
///
/// Spectra are stored transposed: entry `(k_y, k_x)` at `k_y·n + k_x`, `k_y ∈ 0..=n/2` (the
/// `rfft` axis), `k_x ∈ 0..n` in FFT order.
#[derive(Clone)]
struct NsSpectral {
    n: usize,
    nk: usize,
    /// rows `k_y ≤ kc` survive the 2/3 mask
    kc: usize,
    h: f64,
    /// per mode, `i·mult[p][j]` maps ω̂ to (u_x, u_y, ω_x, ω_y)/n² (inverse normalisation
    /// folded in)
    mult: Vec<[f64; 4]>,
    cn_a: Vec<f64>,
    cn_bd: Vec<f64>,
    f_term: Vec<Complex64>,
    rfft: Arc<dyn RealToComplex<f64>>,
    irfft: Arc<dyn ComplexToReal<f64>>,
    /// complex FFTs of length `n` (along `x`, and along `y` on pairs of real rows)
    fft: Arc<dyn Fft<f64>>,
    ifft: Arc<dyn Fft<f64>>,
}

impl std::fmt::Debug for NsSpectral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NsSpectral({0}x{0}, dt = {1:e})", self.n, self.h)
    }
}

/// Per-sample work buffers (allocated once per sample).
struct NsWork {
    /// the four inverse spectra `[j][k_y][k_x]`, then (after the `x` transforms) `[j][k_y][x]`
    spec4: Vec<Complex64>,
    /// `spec4` after the inverse transforms along `x`: `[j][k_y][x]`
    spec4x: Vec<Complex64>,
    /// forward spectrum `[k_y][k_x]` (rows `≤ kc`)
    fwd: Vec<Complex64>,
    /// `fwd` before the transforms along `x`: `[k_y][x]`
    fwd_in: Vec<Complex64>,
    /// one row of a half spectrum (length nk)
    row: Vec<Complex64>,
    /// the spectra along `y` of `u_x + i·u_y` and `ω_x + i·ω_y`, `[2][x][k_y]`
    pairs4: Vec<Complex64>,
    /// `pairs4` after the inverse transforms along `y`: `[2][x][y]`
    pairs4y: Vec<Complex64>,
    /// rows `2p`, `2p + 1` of the product `u·∇ω` as real and imaginary parts, `[p][y]`
    prod: Vec<Complex64>,
    /// `prod` after the transforms along `y`: `[p][k_y]`
    prod_k: Vec<Complex64>,
    /// one real row (length n)
    phys: Vec<f64>,
    scratch: Vec<Complex64>,
}

impl NsSpectral {
    fn new(n: usize, nu: f64, h: f64, forcing_amplitude: f64) -> Self {
        let nk = n / 2 + 1;
        let cut = (2.0 / 3.0) * (n / 2) as f64;
        let kc = (0..nk).filter(|k| (*k as f64) <= cut).max().unwrap_or(0);
        let mut mult = vec![[0.0; 4]; nk * n];
        let mut cn_a = vec![0.0; nk * n];
        let mut cn_bd = vec![0.0; nk * n];
        let mut b = vec![0.0; nk * n];
        let norm = 1.0 / (n * n) as f64;
        for ky in 0..nk {
            // rfft axis: [0 … n/2−1, −n/2]
            let kyv = if ky == n / 2 {
                -((n / 2) as f64)
            } else {
                ky as f64
            };
            for kx in 0..n {
                let kxv = wavenumber(kx, n);
                let p = ky * n + kx;
                let lap = if ky == 0 && kx == 0 {
                    1.0
                } else {
                    4.0 * PI * PI * (kxv * kxv + kyv * kyv)
                };
                mult[p] = [
                    2.0 * PI * kyv / lap * norm,
                    -2.0 * PI * kxv / lap * norm,
                    2.0 * PI * kxv * norm,
                    2.0 * PI * kyv * norm,
                ];
                let den = 1.0 + 0.5 * h * nu * lap;
                cn_a[p] = (1.0 - 0.5 * h * nu * lap) / den;
                b[p] = h / den;
                let keep = kyv.abs() <= cut && kxv.abs() <= cut;
                cn_bd[p] = if keep { h / den } else { 0.0 };
            }
        }
        let mut rp = RealFftPlanner::<f64>::new();
        let mut cp = FftPlanner::<f64>::new();
        let mut s = Self {
            n,
            nk,
            kc,
            h,
            mult,
            cn_a,
            cn_bd,
            f_term: Vec::new(),
            rfft: rp.plan_fft_forward(n),
            irfft: rp.plan_fft_inverse(n),
            fft: cp.plan_fft_forward(n),
            ifft: cp.plan_fft_inverse(n),
        };
        let f = crate::samples::navier_stokes::fno_forcing(n, forcing_amplitude);
        let fh = s.forward_full(&f);
        s.f_term = fh.iter().zip(&b).map(|(f, b)| f * b).collect();
        s
    }

    fn work(&self) -> NsWork {
        let scratch = [
            self.rfft.get_scratch_len(),
            self.irfft.get_scratch_len(),
            self.fft.get_inplace_scratch_len(),
            self.ifft.get_inplace_scratch_len(),
            self.fft.get_outofplace_scratch_len(),
            self.ifft.get_outofplace_scratch_len(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        NsWork {
            spec4: vec![ZERO; 4 * self.nk * self.n],
            spec4x: vec![ZERO; 4 * self.nk * self.n],
            fwd: vec![ZERO; self.nk * self.n],
            fwd_in: vec![ZERO; self.nk * self.n],
            row: vec![ZERO; self.nk],
            pairs4: vec![ZERO; 2 * self.n * self.n],
            pairs4y: vec![ZERO; 2 * self.n * self.n],
            prod: vec![ZERO; (self.n / 2) * self.n],
            prod_k: vec![ZERO; (self.n / 2) * self.n],
            phys: vec![0.0; self.n],
            scratch: vec![ZERO; scratch],
        }
    }

    /// Unnormalised `rfft2` of a row-major `[x, y]` field, transposed layout, all rows.
    fn forward_full(&self, u: &[f64]) -> Vec<Complex64> {
        let mut ws = self.work();
        self.forward_rows(u, self.nk, &mut ws);
        ws.fwd
    }

    /// `rfft2` into `ws.fwd` for the rows `k_y < rows` (the other rows are left untouched).
    fn forward_rows(&self, u: &[f64], rows: usize, ws: &mut NsWork) {
        let (n, nk) = (self.n, self.nk);
        let NsWork {
            fwd,
            row,
            phys,
            scratch,
            ..
        } = ws;
        let line = &mut phys[..n];
        for x in 0..n {
            line.copy_from_slice(&u[x * n..(x + 1) * n]);
            // invariant: buffer lengths fixed by `work()` from the same plans.
            self.rfft
                .process_with_scratch(line, row, scratch)
                .expect("rfft buffers sized at plan time");
            for ky in 0..rows.min(nk) {
                fwd[ky * n + x] = row[ky];
            }
        }
        self.fft.process_with_scratch(&mut fwd[..rows * n], scratch);
    }

    /// Unnormalised inverse: transposed half spectrum → row-major `[x, y]` real field, `/n²`.
    fn inverse(&self, w: &[Complex64], out: &mut [f64], ws: &mut NsWork) {
        let (n, nk) = (self.n, self.nk);
        let norm = 1.0 / (n * n) as f64;
        let NsWork {
            spec4,
            row,
            scratch,
            ..
        } = ws;
        let spec = &mut spec4[..nk * n];
        for (s, w) in spec.iter_mut().zip(w) {
            *s = w * norm;
        }
        self.ifft.process_with_scratch(spec, scratch);
        for x in 0..n {
            for ky in 0..nk {
                row[ky] = spec[ky * n + x];
            }
            row[0].im = 0.0;
            row[nk - 1].im = 0.0;
            // invariant: as in `forward_rows`; DC/Nyquist imaginary parts zeroed above.
            self.irfft
                .process_with_scratch(row, &mut out[x * n..(x + 1) * n], scratch)
                .expect("irfft buffers sized at plan time");
        }
    }

    /// `F̂ = rfft2(u·∇ω)` for the rows `k_y ≤ kc` into `ws.fwd`; returns `max |u|²` (NaN when
    /// `u` is not finite).
    ///
    /// The real transforms along `y` run as complex FFTs of two real rows at once, the real and
    /// imaginary parts of one complex row: inverse, `u_x + i·u_y` and `ω_x + i·ω_y` (spectrum
    /// `A_k + i·B_k`, Hermitian-extended); forward, rows `2p` and `2p + 1` of the product (their
    /// spectra recovered by Hermitian symmetry). The transforms along `x` act on the half
    /// spectrum.
    fn advection(&self, w: &[Complex64], ws: &mut NsWork) -> f64 {
        let (n, nk) = (self.n, self.nk);
        let m = nk * n;
        let kc1 = self.kc + 1;
        let NsWork {
            spec4,
            spec4x,
            fwd,
            fwd_in,
            pairs4,
            pairs4y,
            prod,
            prod_k,
            scratch,
            ..
        } = ws;
        self.spread(w, spec4);
        self.ifft
            .process_outofplace_with_scratch(spec4, spec4x, scratch);
        for (s2, p2) in spec4x
            .chunks_exact(2 * m)
            .zip(pairs4.chunks_exact_mut(n * n))
        {
            let (a, ib) = s2.split_at(m);
            pack_field_pair(a, ib, p2, n);
        }
        self.ifft
            .process_outofplace_with_scratch(pairs4, pairs4y, scratch);
        let (u, w) = pairs4y.split_at(n * n);
        let umax2 = products(u, w, prod, n);
        self.fft
            .process_outofplace_with_scratch(prod, prod_k, scratch);
        unpack_row_pairs(prod_k, &mut fwd_in[..kc1 * n], n, kc1);
        self.fft.process_outofplace_with_scratch(
            &mut fwd_in[..kc1 * n],
            &mut fwd[..kc1 * n],
            scratch,
        );
        // F̂(0, 0) sums the product over the grid: not finite when any u (or ∇ω) is NaN
        if fwd[0].re.is_finite() {
            umax2
        } else {
            f64::NAN
        }
    }

    /// Writes the spectra of u_x, i·u_y, ω_x, i·ω_y (`i·mult[·][j] ⊙ ω̂`, times `i` for `j` odd)
    /// into `spec4` (`[j][k_y][k_x]`).
    fn spread(&self, w: &[Complex64], spec4: &mut [Complex64]) {
        let m = self.nk * self.n;
        let (s0, rest) = spec4.split_at_mut(m);
        let (s1, rest) = rest.split_at_mut(m);
        let (s2, s3) = rest.split_at_mut(m);
        let outs = s0.iter_mut().zip(s1).zip(s2.iter_mut().zip(s3));
        for ((((o0, o1), (o2, o3)), w), a) in outs.zip(w).zip(&self.mult) {
            let iw = Complex64::new(-w.im, w.re);
            (*o0, *o1, *o2, *o3) = (iw * a[0], w * -a[1], iw * a[2], w * -a[3]);
        }
    }

    /// One `ns_2d` step in place; returns the advective CFL number `Δt·max|u|·n` of the step.
    fn step(&self, w: &mut [Complex64], ws: &mut NsWork) -> f64 {
        let umax2 = self.advection(w, ws);
        let split = (self.kc + 1) * self.n;
        let (wl, wh) = w.split_at_mut(split);
        let (al, ah) = self.cn_a.split_at(split);
        let (fl, fh) = self.f_term.split_at(split);
        for ((((wv, f), a), bd), ft) in wl
            .iter_mut()
            .zip(&ws.fwd[..split])
            .zip(al)
            .zip(&self.cn_bd[..split])
            .zip(fl)
        {
            *wv = *wv * *a - f * *bd + ft;
        }
        for ((wv, a), ft) in wh.iter_mut().zip(ah).zip(fh) {
            *wv = *wv * *a + ft;
        }
        self.h * umax2.sqrt() * self.n as f64
    }
}

/// From the rows of `u = u_x + i·u_y` and `w = ω_x + i·ω_y` (`[x][y]`), writes rows `2p`,
/// `2p + 1` of `u_x ω_x + u_y ω_y` as the real and imaginary parts of `prod[p]` and returns
/// `max |u|²` (NaN is ignored).
fn products(u: &[Complex64], w: &[Complex64], prod: &mut [Complex64], n: usize) -> f64 {
    let mut umax2 = [0.0f64; 2];
    let rows = u.chunks_exact(2 * n).zip(w.chunks_exact(2 * n));
    for (pr, (u2, w2)) in prod.chunks_exact_mut(n).zip(rows) {
        let ((ua, ub), (wa, wb)) = (u2.split_at(n), w2.split_at(n));
        for ((p, (ua, ub)), (wa, wb)) in pr.iter_mut().zip(ua.iter().zip(ub)).zip(wa.iter().zip(wb))
        {
            let (u2a, u2b) = (ua.norm_sqr(), ub.norm_sqr());
            if u2a > umax2[0] {
                umax2[0] = u2a;
            }
            if u2b > umax2[1] {
                umax2[1] = u2b;
            }
            *p = Complex64::new(ua.re * wa.re + ua.im * wa.im, ub.re * wb.re + ub.im * wb.im);
        }
    }
    umax2[0].max(umax2[1])
}

/// Packs two half spectra after the transforms along `x`, `a` (of a real field `α`) and `c`
/// (`i` times that of a real field `β`), both `[k_y][x]` with `n/2 + 1` rows of `n`, into
/// complex rows `z[x]` of length `n` with `Σ_k z[x]_k e^{2πiky/n} = α(x, y) + i·β(x, y)`: the
/// Hermitian extension `z_k = a_k + c_k`, `z_{n−k} = conj(a_k − c_k)`; the imaginary parts of
/// the `k_y = 0` and `k_y = n/2` entries of the two spectra are ignored, as numpy's `irfft` does.
fn pack_field_pair(a: &[Complex64], c: &[Complex64], z: &mut [Complex64], n: usize) {
    let h = n / 2;
    let edges = |k: usize| a[k * n..(k + 1) * n].iter().zip(&c[k * n..(k + 1) * n]);
    for ((zr, (a0, c0)), (ah, ch)) in z.chunks_exact_mut(n).zip(edges(0)).zip(edges(h)) {
        zr[0] = Complex64::new(a0.re, c0.im);
        zr[h] = Complex64::new(ah.re, ch.im);
    }
    // rows k0 .. k0 + B at a time (the last block may overlap the previous one), so that each
    // packed row receives B contiguous entries at both ends
    const B: usize = 4;
    if h <= B {
        for k in 1..h {
            for (zr, (a, c)) in z.chunks_exact_mut(n).zip(edges(k)) {
                zr[k] = a + c;
                zr[n - k] = (a - c).conj();
            }
        }
        return;
    }
    let mut k0 = 1;
    loop {
        let r = |k: usize| edges(k0 + k);
        let quads = r(0).zip(r(1)).zip(r(2).zip(r(3)));
        for (zr, ((e0, e1), (e2, e3))) in z.chunks_exact_mut(n).zip(quads) {
            let (mut lo, mut hi) = ([ZERO; B], [ZERO; B]);
            for (i, (a, c)) in [e0, e1, e2, e3].into_iter().enumerate() {
                lo[i] = a + c;
                hi[B - 1 - i] = (a - c).conj();
            }
            zr[k0..k0 + B].copy_from_slice(&lo);
            zr[n + 1 - k0 - B..n + 1 - k0].copy_from_slice(&hi);
        }
        if k0 + B >= h {
            break;
        }
        k0 = (k0 + B).min(h - B);
    }
}

/// Inverse of the packing for forward transforms: from the spectra `z[p]` of the complex rows
/// `a + i·b` (rows `2p`, `2p + 1` of a real field), writes `A_k`, `B_k` for `k_y < rows` into
/// `f` (`[k_y][x]`).
fn unpack_row_pairs(z: &[Complex64], f: &mut [Complex64], n: usize, rows: usize) {
    for (k, fr) in f.chunks_exact_mut(n).take(rows).enumerate() {
        let kc = (n - k) % n;
        for (zr, ab) in z.chunks_exact(n).zip(fr.chunks_exact_mut(2)) {
            let (zk, zc) = (zr[k], zr[kc].conj());
            let (s, d) = (zk + zc, zk - zc);
            ab[0] = s * 0.5;
            ab[1] = Complex64::new(0.5 * d.im, -0.5 * d.re);
        }
    }
}

impl NavierStokesGenerator {
    /// The initial vorticity of sample `(seed, index)` on the solver grid, row-major `[x, y]`.
    pub fn initial_condition(&self, seed: u64, index: u64) -> Vec<f64> {
        let mut rng = crate::sample_rng(seed, index);
        self.grf.sample_2d(self.spectral.n, &mut rng)
    }

    /// Evolves `w0` (solver grid) and returns the `n_times` frames on the solver grid, each
    /// row-major `[x, y]` (frame 0 is `w0`).
    pub fn solve(&self, w0: &[f64], index: u64) -> Result<Vec<Vec<f64>>> {
        let sp = &self.spectral;
        let mut ws = sp.work();
        let mut w = sp.forward_full(w0);
        let mut frames = Vec::with_capacity(self.n_times);
        frames.push(w0.to_vec());
        let mut step = 0usize;
        for _ in 1..self.n_times {
            for _ in 0..self.steps_per_record {
                let cfl = sp.step(&mut w, &mut ws);
                step += 1;
                if cfl.is_nan() || cfl > 1.0 {
                    return Err(Error::NonFinite {
                        pde: "navier_stokes",
                        index,
                        t: step as f64 * self.h,
                        hint: format!(
                            "advective CFL number dt*max|u|/dx = {cfl:.3} exceeds 1 (dt = {:e}, \
                             N = {}); reduce dt",
                            self.h, sp.n
                        ),
                    });
                }
            }
            let mut u = vec![0.0; sp.n * sp.n];
            sp.inverse(&w, &mut u, &mut ws);
            if !u.iter().all(|x| x.is_finite()) {
                return Err(Error::NonFinite {
                    pde: "navier_stokes",
                    index,
                    t: step as f64 * self.h,
                    hint: "vorticity became non-finite; reduce dt".to_string(),
                });
            }
            frames.push(u);
        }
        Ok(frames)
    }

    fn stride<'a>(&'a self, u: &'a [f64]) -> impl Iterator<Item = f64> + 'a {
        let (n, s) = (self.spectral.n, self.spectral.n / self.resolution);
        (0..self.resolution)
            .flat_map(move |i| (0..self.resolution).map(move |j| u[i * s * n + j * s]))
    }
}

impl Generator for NavierStokesGenerator {
    fn pde(&self) -> &'static str {
        "navier_stokes"
    }

    fn recipe(&self) -> &str {
        self.profile.name()
    }

    fn solver(&self) -> String {
        format!(
            "pseudo-spectral vorticity (FNO ns_2d): Crank-Nicolson viscosity, forward Euler \
             advection+forcing, 2/3 mask, N = {}, dt = {:e}, stride {} to {}",
            self.spectral.n,
            self.h,
            self.spectral.n / self.resolution,
            self.resolution
        )
    }

    fn layout(&self) -> Vec<TensorLayout> {
        let r = self.resolution;
        vec![TensorLayout::new("u", &[self.n_times, 1, r, r])]
    }

    fn times(&self) -> Option<Vec<f64>> {
        let every = self.h * self.steps_per_record as f64;
        Some((0..self.n_times).map(|i| i as f64 * every).collect())
    }

    fn resolution(&self) -> Vec<usize> {
        vec![self.resolution, self.resolution]
    }

    fn parameters(&self) -> serde_json::Value {
        let every = self.h * self.steps_per_record as f64;
        json!({
            "profile": self.profile.name(),
            "equation": "w_t + u.grad w = nu Lap w + f, u = (psi_y, -psi_x), -Lap psi = w, unit torus",
            "resolution": self.resolution,
            "solve_resolution": self.spectral.n,
            "nu": self.nu,
            "dt": self.dt,
            "dt_used": self.h,
            "steps": self.steps_per_record * (self.n_times - 1),
            "t_final": every * (self.n_times - 1) as f64,
            "record_every": every,
            "n_times": self.n_times,
            "forcing": "A (sin 2pi(x+y) + cos 2pi(x+y)), x along axis 0",
            "forcing_amplitude": self.forcing_amplitude,
            "alpha": self.grf.alpha,
            "tau": self.grf.tau,
            "sigma": self.grf.sigma_for(2),
            "dealias": "2/3 mask |kx|,|ky| <= (2/3)(N/2) on the advection term",
            "cfl_max": 1.0,
            "initial_condition": "GRF_per: N(0, sigma^2 (-Laplacian + tau^2 I)^(-alpha)), zero mean",
        })
    }

    fn sample(&self, seed: u64, index: u64) -> Result<Vec<Vec<f64>>> {
        let w0 = self.initial_condition(seed, index);
        let frames = self.solve(&w0, index)?;
        Ok(vec![frames.iter().flat_map(|u| self.stride(u)).collect()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::navier_stokes::{advection_test_field, single_shell};
    use pno_core::testing::{assert_close, rel_l2};

    fn make(c: serde_json::Value) -> NavierStokesGenerator {
        crate::generator::parse_config::<NavierStokesConfig>("navier_stokes", c)
            .unwrap()
            .validate()
            .unwrap()
    }

    fn last(g: &NavierStokesGenerator, w0: &[f64]) -> Vec<f64> {
        g.solve(w0, 0).unwrap().pop().unwrap()
    }

    #[test]
    fn ns_advection_sign_and_axes_match_exact_term() {
        let g = make(json!({"resolution": 32, "t_final": 1.0}));
        let sp = &g.spectral;
        let (w, want) = advection_test_field(32);
        let mut ws = sp.work();
        let wh = sp.forward_full(&w);
        sp.advection(&wh, &mut ws);
        let mut f = ws.fwd.clone();
        f[(sp.kc + 1) * 32..].fill(ZERO);
        let mut got = vec![0.0; 32 * 32];
        sp.inverse(&f, &mut got, &mut ws);
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        eprintln!("ns advection term max error {err:e}");
        assert_close(&got, &want, 0.0, 1e-12);
    }

    #[test]
    fn ns_single_shell_matches_exact_solution() {
        // 32², T = 1, ν = 1e-3, A = 0.7, dt = 1e-4 (docs/pde-specs.md §3.4: ≤ 1e-8)
        let g = make(json!({"resolution": 32, "t_final": 1.0, "dt": 1e-4}));
        let x = |i: usize| i as f64 / 32.0;
        let w0: Vec<f64> = (0..32 * 32)
            .map(|p| 0.7 * (2.0 * PI * x(p / 32)).sin() * (2.0 * PI * x(p % 32)).sin())
            .collect();
        let e = rel_l2(&last(&g, &w0), &single_shell(32, 0.7, 1e-3, 0.1, 1.0));
        eprintln!("ns single-shell 32^2 T=1 dt=1e-4 rel-L2 {e:e}");
        assert!(e <= 1e-8, "{e}");
    }

    #[test]
    fn ns_single_shell_crank_nicolson_is_second_order() {
        // ν = 0.05 (νλ ≈ 3.9) so the time error is measurable: dt = 0.1, 0.05, 0.025, T = 1
        let x = |i: usize| i as f64 / 16.0;
        let w0: Vec<f64> = (0..16 * 16)
            .map(|p| 0.7 * (2.0 * PI * x(p / 16)).sin() * (2.0 * PI * x(p % 16)).sin())
            .collect();
        let exact = single_shell(16, 0.7, 0.05, 0.1, 1.0);
        let errs: Vec<f64> = [0.1, 0.05, 0.025]
            .iter()
            .map(|dt| {
                let g = make(json!({"resolution": 16, "nu": 0.05, "dt": dt, "t_final": 1.0}));
                rel_l2(&last(&g, &w0), &exact)
            })
            .collect();
        let ratios: Vec<f64> = errs.windows(2).map(|w| w[0] / w[1]).collect();
        eprintln!("ns single-shell CN errors (dt 0.1, 0.05, 0.025) {errs:?} ratios {ratios:?}");
        for r in ratios {
            assert!(
                (3.6..=4.4).contains(&r),
                "order-2 ratio expected ~4, got {r}"
            );
        }
    }

    #[test]
    fn ns_inviscid_unforced_conserves_enstrophy_energy_and_mean() {
        // 64², ν = 0, f = 0, dt = 1e-4, 1000 steps (docs/pde-specs.md §3.4: drift < 1e-4)
        let g = make(
            json!({"nu": 0.0, "forcing_amplitude": 0.0, "dt": 1e-4, "t_final": 0.1,
                            "record_every": 0.1}),
        );
        let sp = &g.spectral;
        let w0 = g.initial_condition(3, 0);
        let mut w = sp.forward_full(&w0);
        let mut ws = sp.work();
        let invariants = |w: &[Complex64]| {
            let (mut ens, mut en) = (0.0, 0.0);
            for (p, c) in w.iter().enumerate() {
                let ky = p / 64;
                let wgt = if ky == 0 || ky == 32 { 1.0 } else { 2.0 };
                let lam = if p == 0 {
                    1.0
                } else {
                    sp.mult[p][2].hypot(sp.mult[p][3]) * 4096.0
                };
                ens += wgt * c.norm_sqr();
                en += wgt * c.norm_sqr() / (lam * lam);
            }
            (ens, en)
        };
        let (z0, e0) = invariants(&w);
        for _ in 0..1000 {
            sp.step(&mut w, &mut ws);
        }
        let (z1, e1) = invariants(&w);
        let (dz, de) = ((z1 / z0 - 1.0).abs(), (e1 / e0 - 1.0).abs());
        eprintln!(
            "ns inviscid drift: enstrophy {dz:e}, energy {de:e}, mean {:e}",
            w[0].norm()
        );
        assert!(dz < 1e-4 && de < 1e-4, "{dz} {de}");
        assert!(w[0].norm() <= 1e-12, "{}", w[0]);
    }

    #[test]
    fn ns_cfl_violation_is_reported() {
        let g = make(json!({"resolution": 16, "dt": 0.01, "t_final": 1.0}));
        let w0 = vec![0.0; 256]
            .iter()
            .enumerate()
            .map(|(p, _)| 1000.0 * (2.0 * PI * (p / 16) as f64 / 16.0).sin())
            .collect::<Vec<_>>();
        let err = g.solve(&w0, 4).err().unwrap().to_string();
        assert!(err.contains("CFL") && err.contains("sample 4"), "{err}");
    }

    #[test]
    fn ns_sample_layout_stride_and_determinism() {
        let g = make(
            json!({"resolution": 16, "solve_resolution": 32, "t_final": 0.02,
                            "record_every": 0.01}),
        );
        assert_eq!(g.layout(), vec![TensorLayout::new("u", &[3, 1, 16, 16])]);
        assert_eq!(g.times().unwrap().len(), 3);
        let a = g.sample(1, 2).unwrap();
        assert_eq!(a, g.sample(1, 2).unwrap());
        assert_eq!(a[0].len(), 3 * 256);
        let w0 = g.initial_condition(1, 2);
        let strided: Vec<f64> = g.stride(&w0).collect();
        assert_eq!(a[0][..256], strided[..]);
        assert_eq!(strided[17], w0[2 * 32 + 2]);
        assert_ne!(a, g.sample(1, 3).unwrap());
    }

    #[test]
    fn ns_config_profiles_and_rejections() {
        let p = make(json!({})).parameters();
        assert_eq!(p["solve_resolution"], 64);
        assert_eq!(p["dt"], 1e-3);
        assert_eq!(p["n_times"], 11);
        assert_eq!(p["steps"], 10000);
        let f = make(json!({"profile": "faithful", "t_final": 1.0})).parameters();
        assert_eq!(f["solve_resolution"], 256);
        assert_eq!(f["dt"], 1e-4);
        let bad = |c: serde_json::Value| crate::error::chain(&build(c).err().unwrap());
        assert!(bad(json!({"solve_resolution": 96})).contains("solve_resolution"));
        assert!(bad(json!({"nu": -1.0})).contains("nu"));
        assert!(bad(json!({"resolution": 63})).contains("resolution"));
        assert!(bad(json!({"record_every": 0.0})).contains("record_every"));
        assert!(bad(json!({"alpha": 0.5})).contains("alpha"));
        assert!(bad(json!({"visc": 1e-3})).contains("visc"));
    }
}
