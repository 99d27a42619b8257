//! Fourth-order exponential time differencing Runge–Kutta (ETDRK4) for diagonal stiff systems.
//!
//! Implements the Cox–Matthews scheme (S. M. Cox, P. C. Matthews, "Exponential time differencing
//! for stiff systems", J. Comput. Phys. 176 (2002) 430–455) for `v' = L v + N(v)` with a real
//! diagonal `L`, with the φ-function coefficients evaluated by the Kassam–Trefethen contour
//! integral (A.-K. Kassam, L. N. Trefethen, "Fourth-order time-stepping for stiff PDEs", SIAM J.
//! Sci. Comput. 26 (2005) 1214–1233): `M = 32` points on the upper half of the unit circle around
//! each `hL`, real part of the mean (`docs/pde-specs.md` §1.5; peer `pde_ref/common.py`).
//!
//! [`Etdrk4`] holds the coefficients for one `(L, h)`; [`Etdrk4::step`] advances spectral
//! coefficients with a caller-supplied nonlinear closure and a reusable [`Etdrk4Workspace`], so a
//! time loop allocates nothing. [`Quadratic1d`] is the pseudo-spectral quadratic nonlinearity
//! `N(v) = i·γ ⊙ rfft((irfft(m ⊙ v))²)` shared by Burgers and Kuramoto–Sivashinsky.

use std::f64::consts::PI;
use std::sync::Arc;

use num_complex::Complex64;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};

/// Number of contour points of the Kassam–Trefethen evaluation (upper half circle).
pub const CONTOUR_POINTS: usize = 32;

const ZERO: Complex64 = Complex64 { re: 0.0, im: 0.0 };

/// ETDRK4 coefficients `E, E2, Q, f1, f2, f3` for a real diagonal operator `L` and step `h`.
#[derive(Debug, Clone)]
pub struct Etdrk4 {
    h: f64,
    e: Vec<f64>,
    e2: Vec<f64>,
    q: Vec<f64>,
    f1: Vec<f64>,
    f2x2: Vec<f64>,
    f3: Vec<f64>,
}

/// The φ-function coefficients of one diagonal entry: `(Q, f1, f2, f3) / h`.
///
/// `z = hL`; evaluated as the mean over `r_j = e^{iπ(j−½)/M}` of the Cox–Matthews formulas at
/// `z + r_j`, real part (valid for real `z`).
pub fn phi_coefficients(z: f64) -> (f64, f64, f64, f64) {
    let m = CONTOUR_POINTS as f64;
    let (mut q, mut f1, mut f2, mut f3) = (ZERO, ZERO, ZERO, ZERO);
    for j in 1..=CONTOUR_POINTS {
        let r = Complex64::from_polar(1.0, PI * (j as f64 - 0.5) / m);
        let lr = r + z;
        let ez = lr.exp();
        let ez2 = (lr * 0.5).exp();
        let lr2 = lr * lr;
        let lr3 = lr2 * lr;
        q += (ez2 - 1.0) / lr;
        f1 += (-4.0 - lr + ez * (4.0 - 3.0 * lr + lr2)) / lr3;
        f2 += (2.0 + lr + ez * (lr - 2.0)) / lr3;
        f3 += (-4.0 - 3.0 * lr - lr2 + ez * (4.0 - lr)) / lr3;
    }
    (q.re / m, f1.re / m, f2.re / m, f3.re / m)
}

impl Etdrk4 {
    /// Precomputes the coefficients for the diagonal `l` (one entry per spectral mode) and step `h`.
    pub fn new(l: &[f64], h: f64) -> Self {
        let n = l.len();
        let mut s = Self {
            h,
            e: Vec::with_capacity(n),
            e2: Vec::with_capacity(n),
            q: Vec::with_capacity(n),
            f1: Vec::with_capacity(n),
            f2x2: Vec::with_capacity(n),
            f3: Vec::with_capacity(n),
        };
        // Coefficients below 1e-300 (e.g. e^{hL} of strongly damped modes) are flushed to zero:
        // subnormal operands slow every multiplication by ~100×, and the change is far below
        // roundoff relative to any O(1) quantity.
        let flush = |x: f64| if x.abs() < 1e-300 { 0.0 } else { x };
        for &lk in l {
            let z = h * lk;
            let (q, f1, f2, f3) = phi_coefficients(z);
            s.e.push(flush(z.exp()));
            s.e2.push(flush((0.5 * z).exp()));
            s.q.push(flush(h * q));
            s.f1.push(flush(h * f1));
            s.f2x2.push(flush(2.0 * h * f2));
            s.f3.push(flush(h * f3));
        }
        s
    }

    /// Number of modes.
    pub fn len(&self) -> usize {
        self.e.len()
    }

    /// True when there is no mode.
    pub fn is_empty(&self) -> bool {
        self.e.is_empty()
    }

    /// The time step `h`.
    pub fn h(&self) -> f64 {
        self.h
    }

    /// A workspace sized for these coefficients.
    pub fn workspace(&self) -> Etdrk4Workspace {
        let z = vec![ZERO; self.len()];
        Etdrk4Workspace {
            nv: z.clone(),
            a: z.clone(),
            b: z.clone(),
            nl: z.clone(),
            acc: z,
        }
    }

    /// One Cox–Matthews step `v ← v(t + h)`.
    ///
    /// `nonlin(input, output)` writes `N(input)` into `output` (both of length [`Etdrk4::len`]).
    pub fn step<F>(&self, v: &mut [Complex64], ws: &mut Etdrk4Workspace, nonlin: F)
    where
        F: FnMut(&[Complex64], &mut [Complex64]),
    {
        self.step_truncated(v, ws, self.len(), nonlin);
    }

    /// [`Etdrk4::step`] for a nonlinearity that reads only the first `input_modes` entries of
    /// its input (e.g. a dealiasing mask on the input, [`Quadratic1d::input_modes`]): the
    /// intermediate stages are computed on those modes only (the others stay zero), with the
    /// same result.
    // (indexed loops: one pass per stage over up to seven arrays reads better than nested zips)
    #[allow(clippy::needless_range_loop)]
    pub fn step_truncated<F>(
        &self,
        v: &mut [Complex64],
        ws: &mut Etdrk4Workspace,
        input_modes: usize,
        mut nonlin: F,
    ) where
        F: FnMut(&[Complex64], &mut [Complex64]),
    {
        let r = input_modes.min(v.len());
        let Etdrk4Workspace { nv, a, b, nl, acc } = ws;
        let (e, e2, q, f1, f2x2, f3) = (
            &self.e[..],
            &self.e2[..],
            &self.q[..],
            &self.f1[..],
            &self.f2x2[..],
            &self.f3[..],
        );
        // stage 1: Nv = N(v); a = E2 v + Q Nv; acc = E v + f1 Nv
        nonlin(v, nv);
        for k in 0..r {
            a[k] = v[k] * e2[k] + nv[k] * q[k];
            acc[k] = v[k] * e[k] + nv[k] * f1[k];
        }
        for k in r..v.len() {
            acc[k] = v[k] * e[k] + nv[k] * f1[k];
        }
        // stage 2: Na = N(a); b = E2 v + Q Na; acc += 2 f2 Na
        nonlin(a, nl);
        for k in 0..r {
            b[k] = v[k] * e2[k] + nl[k] * q[k];
            acc[k] += nl[k] * f2x2[k];
        }
        for k in r..v.len() {
            acc[k] += nl[k] * f2x2[k];
        }
        // stage 3: Nb = N(b); c = E2 a + Q (2 Nb − Nv) (stored in a); acc += 2 f2 Nb
        nonlin(b, nl);
        for k in 0..r {
            a[k] = a[k] * e2[k] + (nl[k] * 2.0 - nv[k]) * q[k];
            acc[k] += nl[k] * f2x2[k];
        }
        for k in r..v.len() {
            acc[k] += nl[k] * f2x2[k];
        }
        // stage 4: Nc = N(c); v = acc + f3 Nc
        nonlin(a, nl);
        for k in 0..v.len() {
            v[k] = acc[k] + nl[k] * f3[k];
        }
    }
}

/// Work buffers of [`Etdrk4::step`] (allocate once per sample).
#[derive(Debug, Clone)]
pub struct Etdrk4Workspace {
    nv: Vec<Complex64>,
    a: Vec<Complex64>,
    b: Vec<Complex64>,
    nl: Vec<Complex64>,
    acc: Vec<Complex64>,
}

/// Pseudo-spectral quadratic term `N(v)_k = i·γ_k · rfft((irfft(m ⊙ v))²)_k` on `n` points.
///
/// `v` holds the `n/2 + 1` unnormalised `rfft` coefficients of a real field (numpy convention);
/// `m` (mask times `1/n`) and `γ` are real per mode. The imaginary parts of the DC and Nyquist
/// inputs are discarded, as numpy's `irfft` does. Burgers: `m = [k ≤ ⅔·n/2]/n`, `γ = −π k`;
/// KS: `m = 1/n`, `γ = −(c/2)·q`.
///
/// The two real transforms run as complex FFTs of length `n/2` on the even/odd samples packed as
/// `x_{2j} + i·x_{2j+1}` (the standard real-FFT split), with the mask and the gains applied in
/// the split's pre- and post-processing passes and the square taken componentwise on the packed
/// samples, so one evaluation makes three passes over the data besides the two FFTs.
#[derive(Clone)]
pub struct Quadratic1d {
    n: usize,
    m: Vec<f64>,
    /// `γ/2` (the split's factor ½ folded in)
    half_gamma: Vec<f64>,
    /// modes `k ≥ input_modes` have `m_k = 0`
    input_modes: usize,
    /// `e^{2πik/n}`, `k = 0..=n/2`
    twiddle: Vec<Complex64>,
    fwd: Arc<dyn RealToComplex<f64>>,
    inv: Arc<dyn ComplexToReal<f64>>,
    cfwd: Arc<dyn Fft<f64>>,
    cinv: Arc<dyn Fft<f64>>,
}

impl std::fmt::Debug for Quadratic1d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Quadratic1d(n = {})", self.n)
    }
}

/// Scratch buffers of [`Quadratic1d`] (allocate once per sample).
#[derive(Debug, Clone)]
pub struct Quadratic1dScratch {
    spec: Vec<Complex64>,
    packed: Vec<Complex64>,
    fft: Vec<Complex64>,
}

impl Quadratic1d {
    /// Plans the transforms of length `n` (even, at least 2) with per-mode input weights `m` and
    /// gains `γ` (`n/2 + 1` each).
    pub fn new(n: usize, m: Vec<f64>, gamma: Vec<f64>) -> Self {
        let h = n / 2;
        let input_modes = m.iter().rposition(|x| *x != 0.0).map_or(0, |k| k + 1);
        let twiddle = (0..=h)
            .map(|k| Complex64::from_polar(1.0, 2.0 * PI * k as f64 / n as f64))
            .collect();
        let mut p = RealFftPlanner::<f64>::new();
        let mut cp = FftPlanner::<f64>::new();
        Self {
            n,
            m,
            half_gamma: gamma.iter().map(|g| 0.5 * g).collect(),
            input_modes,
            twiddle,
            fwd: p.plan_fft_forward(n),
            inv: p.plan_fft_inverse(n),
            cfwd: cp.plan_fft_forward(h),
            cinv: cp.plan_fft_inverse(h),
        }
    }

    /// Number of grid points.
    pub fn n(&self) -> usize {
        self.n
    }

    /// [`Quadratic1d::apply`] reads only the input modes `k < input_modes()` (`m_k = 0` above).
    pub fn input_modes(&self) -> usize {
        self.input_modes
    }

    /// Scratch buffers for [`Quadratic1d::apply`].
    pub fn scratch(&self) -> Quadratic1dScratch {
        let s = [
            self.fwd.get_scratch_len(),
            self.inv.get_scratch_len(),
            self.cfwd.get_inplace_scratch_len(),
            self.cinv.get_inplace_scratch_len(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        Quadratic1dScratch {
            spec: vec![ZERO; self.n / 2 + 1],
            packed: vec![ZERO; self.n / 2],
            fft: vec![ZERO; s],
        }
    }

    /// Writes `N(v)` into `out`.
    pub fn apply(&self, v: &[Complex64], out: &mut [Complex64], s: &mut Quadratic1dScratch) {
        let h = self.n / 2;
        let Quadratic1dScratch { packed, fft, .. } = s;
        // X = m ⊙ v, read from v directly (m = 0 from `input_modes` on: those modes are not
        // read; `irfft` ignores the imaginary parts at DC and Nyquist).
        // Packed spectrum of x_{2j} + i·x_{2j+1}: with S = X_k + X̄_{h−k}, D = X_k − X̄_{h−k} and
        // u = i·e^{2πik/n}·D, Z_k = S + u and Z_{h−k} = conj(S − u).
        let r = self.input_modes.min(h + 1);
        let (m, v) = (&self.m[..r], &v[..r]);
        let x = |k: usize| if k < r { v[k] * m[k] } else { ZERO };
        let (x0, xh) = (x(0).re, x(h).re);
        packed[0] = Complex64::new(x0 + xh, x0 - xh);
        let q = h.div_ceil(2);
        let (zl, zu) = packed.split_at_mut(q);
        let lower = zl[1..].iter_mut().zip(&self.twiddle[1..q]);
        let upper = zu.iter_mut().rev();
        for (k, ((zk, t), zm)) in (1..q).zip(lower.zip(upper)) {
            let (xk, xm) = (x(k), x(h - k));
            let (sum, diff) = (xk + xm.conj(), xk - xm.conj());
            let u = Complex64::new(-t.im, t.re) * diff;
            *zk = sum + u;
            *zm = (sum - u).conj();
        }
        if h.is_multiple_of(2) {
            // k = h/2: e^{iπ/2} = i
            let x = x(h / 2);
            packed[h / 2] = Complex64::new(2.0 * x.re, -2.0 * x.im);
        }
        self.cinv.process_with_scratch(packed, fft);
        // u² on the packed samples
        for z in packed.iter_mut() {
            *z = Complex64::new(z.re * z.re, z.im * z.im);
        }
        self.cfwd.process_with_scratch(packed, fft);
        // rfft of the square, times i·γ: with S = Z_k + Z̄_{h−k}, D = Z_k − Z̄_{h−k} and
        // w = −i·e^{−2πik/n}·D, X_k = ½(S + w), X_{h−k} = ½·conj(S − w), X_0 = Re Z_0 + Im Z_0,
        // X_h = Re Z_0 − Im Z_0 (the ½ is folded into `half_gamma`)
        let hg = &self.half_gamma;
        let z0 = packed[0];
        out[0] = Complex64::new(0.0, 2.0 * hg[0] * (z0.re + z0.im));
        out[h] = Complex64::new(0.0, 2.0 * hg[h] * (z0.re - z0.im));
        let (ol, ou) = out[..h].split_at_mut(q);
        let lower = ol[1..]
            .iter_mut()
            .zip(&packed[1..q])
            .zip(self.twiddle[1..q].iter().zip(&hg[1..q]));
        let upper = ou
            .iter_mut()
            .rev()
            .zip(packed[h - q + 1..].iter().rev())
            .zip(hg[h - q + 1..h].iter().rev());
        for (((ok, zk), (t, gk)), ((om, zm), gm)) in lower.zip(upper) {
            let (sum, diff) = (zk + zm.conj(), zk - zm.conj());
            let w = Complex64::new(-t.im, -t.re) * diff;
            let (xk, xm) = (sum + w, (sum - w).conj());
            *ok = Complex64::new(-gk * xk.im, gk * xk.re);
            *om = Complex64::new(-gm * xm.im, gm * xm.re);
        }
        if h.is_multiple_of(2) {
            // k = h/2: X = conj(Z_{h/2})
            let (z, g) = (packed[h / 2], hg[h / 2]);
            out[h / 2] = Complex64::new(2.0 * g * z.im, 2.0 * g * z.re);
        }
    }

    /// Forward `rfft` of a real field (unnormalised), allocating.
    pub fn rfft(&self, u: &[f64]) -> Vec<Complex64> {
        let mut input = u.to_vec();
        let mut out = vec![ZERO; self.n / 2 + 1];
        // invariant: lengths match the plan (`u.len() == n` is checked by the callers' layout).
        self.fwd
            .process(&mut input, &mut out)
            .expect("rfft length fixed at plan time");
        out
    }

    /// Inverse `rfft` (normalised by `1/n`, numpy's `irfft`) into `out`, using `s` as scratch.
    pub fn irfft_into(&self, v: &[Complex64], out: &mut [f64], s: &mut Quadratic1dScratch) {
        let scale = 1.0 / self.n as f64;
        for (o, x) in s.spec.iter_mut().zip(v) {
            *o = x * scale;
        }
        s.spec[0].im = 0.0;
        if self.n.is_multiple_of(2) {
            s.spec[self.n / 2].im = 0.0;
        }
        // invariant: as in `apply`.
        self.inv
            .process_with_scratch(&mut s.spec, out, &mut s.fft)
            .expect("irfft buffers sized at plan time");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Taylor series of the φ-functions near 0 (independent of the contour).
    fn phi_taylor(z: f64) -> (f64, f64, f64, f64) {
        // Q/h = (e^{z/2} − 1)/z; f1 = (−4 − z + e^z(4 − 3z + z²))/z³ etc.
        let fact = |n: u32| (1..=n).map(f64::from).product::<f64>();
        let (mut q, mut f1, mut f2, mut f3) = (0.0, 0.0, 0.0, 0.0);
        for n in 0..30u32 {
            let zn = z.powi(n as i32);
            q += zn * 0.5f64.powi(n as i32 + 1) / fact(n + 1);
            // φ_k(z) = Σ z^n/(n+k)!; f1 = φ1 − 3φ2 + 4φ3, f2 = φ2 − 2φ3, f3 = −φ2 + 4φ3
            let p1 = zn / fact(n + 1);
            let p2 = zn / fact(n + 2);
            let p3 = zn / fact(n + 3);
            f1 += p1 - 3.0 * p2 + 4.0 * p3;
            f2 += p2 - 2.0 * p3;
            f3 += -p2 + 4.0 * p3;
        }
        (q, f1, f2, f3)
    }

    #[test]
    fn phi_coefficients_small_z_match_taylor_series() {
        for z in [0.0, -1e-8, -0.3, 0.25, -1.5] {
            let a = phi_coefficients(z);
            let b = phi_taylor(z);
            for (x, y) in [(a.0, b.0), (a.1, b.1), (a.2, b.2), (a.3, b.3)] {
                assert!(
                    (x - y).abs() <= 1e-14 + 1e-13 * y.abs(),
                    "z = {z}: {x} vs {y}"
                );
            }
        }
    }

    #[test]
    fn phi_coefficients_large_negative_z_match_closed_form() {
        // for |z| ≫ 1 the direct formulas are well conditioned
        for z in [-8.0, -50.0, -1e3, -6.6e4] {
            let ez = f64::exp(z);
            let z3 = z * z * z;
            let q = (f64::exp(z / 2.0) - 1.0) / z;
            let f1 = (-4.0 - z + ez * (4.0 - 3.0 * z + z * z)) / z3;
            let f2 = (2.0 + z + ez * (z - 2.0)) / z3;
            let f3 = (-4.0 - 3.0 * z - z * z + ez * (4.0 - z)) / z3;
            let a = phi_coefficients(z);
            for (x, y) in [(a.0, q), (a.1, f1), (a.2, f2), (a.3, f3)] {
                assert!(
                    (x - y).abs() <= 1e-300 + 1e-12 * y.abs(),
                    "z = {z}: {x} vs {y}"
                );
            }
        }
    }

    #[test]
    fn etdrk4_linear_problem_is_exact() {
        // N ≡ 0: v(t) = e^{Lt} v(0) to roundoff
        let l = [0.0, -1.0, -40.0, 0.2];
        let s = Etdrk4::new(&l, 0.1);
        let mut ws = s.workspace();
        let mut v: Vec<Complex64> = (0..4)
            .map(|k| Complex64::new(1.0 + k as f64, -0.5))
            .collect();
        let v0 = v.clone();
        for _ in 0..10 {
            s.step(&mut v, &mut ws, |_, o| o.fill(ZERO));
        }
        for k in 0..4 {
            let want = v0[k] * (l[k] * 1.0).exp();
            assert!((v[k] - want).norm() <= 1e-14 + 1e-13 * want.norm(), "{k}");
        }
    }

    #[test]
    fn etdrk4_scalar_riccati_converges_at_fourth_order() {
        // v' = −2v + v², v(0) = 1: v(t) = 2/(1 + e^{2t}); errors at t = 1 for h = 1/4 … 1/32
        let exact = 2.0 / (1.0 + 2f64.exp());
        let mut errs = Vec::new();
        for n in [4usize, 8, 16, 32] {
            let h = 1.0 / n as f64;
            let s = Etdrk4::new(&[-2.0], h);
            let mut ws = s.workspace();
            let mut v = vec![Complex64::new(1.0, 0.0)];
            for _ in 0..n {
                s.step(&mut v, &mut ws, |x, o| o[0] = x[0] * x[0]);
            }
            errs.push((v[0].re - exact).abs());
        }
        let ratios: Vec<f64> = errs.windows(2).map(|w| w[0] / w[1]).collect();
        eprintln!("ETDRK4 Riccati errors {errs:?} ratios {ratios:?}");
        for r in &ratios[1..] {
            assert!(*r > 13.0, "order-4 ratio expected ~16, got {r}");
        }
    }

    #[test]
    fn quadratic1d_squares_a_single_mode_exactly() {
        // γ = 1, m = 1/n: N(v) = i·rfft(u²) with u = cos 2πx ⇒ u² = ½ + ½cos 4πx
        let n = 16;
        let nk = n / 2 + 1;
        let q = Quadratic1d::new(n, vec![1.0 / n as f64; nk], vec![1.0; nk]);
        let u: Vec<f64> = (0..n)
            .map(|i| (2.0 * PI * i as f64 / n as f64).cos())
            .collect();
        let v = q.rfft(&u);
        let mut out = vec![ZERO; nk];
        let mut s = q.scratch();
        q.apply(&v, &mut out, &mut s);
        for (k, o) in out.iter().enumerate() {
            let want = match k {
                0 => Complex64::new(0.0, 0.5 * n as f64),
                2 => Complex64::new(0.0, 0.25 * n as f64),
                _ => ZERO,
            };
            assert!((o - want).norm() < 1e-13, "mode {k}: {o} vs {want}");
        }
        let mut back = vec![0.0; n];
        q.irfft_into(&v, &mut back, &mut s);
        pno_core::testing::assert_close(&back, &u, 0.0, 1e-15);
    }
}
