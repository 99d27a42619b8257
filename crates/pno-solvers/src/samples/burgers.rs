//! Exact solutions of the viscous Burgers equation `u_t + (u²/2)_x = ν u_xx` on the periodic
//! unit interval (`docs/pde-specs.md` §3.3; peer `pde_ref/burgers_ref.py`).
//!
//! - [`cole_hopf`]: the Cole–Hopf transform evaluated with FFTs, exact up to the spectral
//!   interpolation of `u0`; well conditioned while `range(∫u0)/(2ν)` is moderate (ν ≳ 0.05).
//! - [`hopf_formula`]: the Hopf formula (heat kernel on the line, periodic images) evaluated in
//!   physical space with log-sum-exp weights; accurate for small ν, `O(N²)`.
//! - [`sine_flux_divergence`]: the nonlinear term of `u = sin 2πx`, `−½(u²)_x = −π sin 4πx`.
//!
//! All functions take `u0` sampled at `x_i = i/N`; [`hopf_formula`] assumes a zero mean.

use std::f64::consts::PI;

use num_complex::Complex64;
use realfft::RealFftPlanner;

/// Zero-mean antiderivative `U = ∫u0` on the grid via FFT (Nyquist mode dropped).
fn antiderivative(u0: &[f64]) -> Vec<f64> {
    let n = u0.len();
    let mut p = RealFftPlanner::<f64>::new();
    let (f, i) = (p.plan_fft_forward(n), p.plan_fft_inverse(n));
    let mut input = u0.to_vec();
    let mut spec = f.make_output_vec();
    // invariant: lengths come from the plans.
    f.process(&mut input, &mut spec).expect("rfft length fixed");
    spec[0] = Complex64::new(0.0, 0.0);
    for (k, c) in spec.iter_mut().enumerate().skip(1) {
        *c /= Complex64::new(0.0, 2.0 * PI * k as f64 * n as f64);
    }
    if n.is_multiple_of(2) {
        spec[n / 2] = Complex64::new(0.0, 0.0);
    }
    let mut out = vec![0.0; n];
    i.process(&mut spec, &mut out).expect("irfft length fixed");
    out
}

/// Exact solution `u(·, t)` by Cole–Hopf with FFTs.
///
/// `φ0 = exp(−(U − max U)/(2ν))`, `φ̂_k(t) = φ̂_k(0)e^{−ν(2πk)²t}`, `u = −2ν φ_x/φ`. With
/// `refine > 1` the initial condition is first interpolated spectrally onto `refine·N` points and
/// the result returned on the original grid (resolves φ for sharper data). A nonzero mean `c` is
/// handled by the Galilean shift `u(x, t) = c + v(x − ct, t)`.
pub fn cole_hopf(u0: &[f64], nu: f64, t: f64, refine: usize) -> Vec<f64> {
    let n = u0.len();
    let refine = refine.max(1);
    let nf = n * refine;
    let mut p = RealFftPlanner::<f64>::new();
    let (f, fi) = (p.plan_fft_forward(n), p.plan_fft_inverse(nf));
    let ff = p.plan_fft_forward(nf);
    let mut input: Vec<f64> = u0.to_vec();
    let mean = input.iter().sum::<f64>() / n as f64;
    input.iter_mut().for_each(|x| *x -= mean);
    let mut spec = f.make_output_vec();
    // invariant: lengths come from the plans.
    f.process(&mut input, &mut spec).expect("rfft length fixed");
    // antiderivative on the fine grid: Û_k = û_k/(2πik), scaled for the longer inverse
    let mut uh = vec![Complex64::new(0.0, 0.0); nf / 2 + 1];
    for k in 1..n.div_ceil(2) {
        uh[k] = spec[k] * refine as f64 / Complex64::new(0.0, 2.0 * PI * k as f64);
    }
    let mut big_u = vec![0.0; nf];
    fi.process(&mut uh, &mut big_u).expect("irfft length fixed");
    big_u.iter_mut().for_each(|x| *x /= nf as f64);
    let umax = big_u.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut phi0: Vec<f64> = big_u
        .iter()
        .map(|x| (-(x - umax) / (2.0 * nu)).exp())
        .collect();
    let mut ph = ff.make_output_vec();
    ff.process(&mut phi0, &mut ph).expect("rfft length fixed");
    let mut phx = ph.clone();
    for (k, (a, b)) in ph.iter_mut().zip(phx.iter_mut()).enumerate() {
        let kk = 2.0 * PI * k as f64;
        // heat decay and the Galilean shift x → x − ct of a mean-c solution
        let decay = Complex64::from_polar((-nu * kk * kk * t).exp(), -kk * mean * t);
        *a *= decay;
        *b *= decay * Complex64::new(0.0, kk);
    }
    // drop imaginary parts the real inverse ignores (numpy semantics)
    for s in [&mut ph, &mut phx] {
        s[0].im = 0.0;
        if nf.is_multiple_of(2) {
            s[nf / 2].im = 0.0;
        }
    }
    let (mut phi, mut phix) = (vec![0.0; nf], vec![0.0; nf]);
    fi.process(&mut ph, &mut phi).expect("irfft length fixed");
    fi.process(&mut phx, &mut phix).expect("irfft length fixed");
    (0..n)
        .map(|i| mean - 2.0 * nu * phix[i * refine] / phi[i * refine])
        .collect()
}

/// Exact solution by the Hopf formula with log-sum-exp weights, for small ν.
///
/// `u(x, t) = Σ_y ((x − y)/t)·w_y / Σ_y w_y` with `log w_y = −[U(y) + (x − y)²/(2t)]/(2ν)`,
/// `y` over the grid and `images` periodic copies on each side. `O(N²·(2·images + 1))`.
pub fn hopf_formula(u0: &[f64], nu: f64, t: f64, images: usize) -> Vec<f64> {
    let n = u0.len();
    let big_u = antiderivative(u0);
    let h = 1.0 / n as f64;
    let im = images as i64;
    let mut out = vec![0.0; n];
    let mut logw = Vec::with_capacity(n * (2 * images + 1));
    for (i, o) in out.iter_mut().enumerate() {
        let x = i as f64 * h;
        logw.clear();
        for m in -im..=im {
            for (j, uj) in big_u.iter().enumerate() {
                let d = x - (j as f64 * h + m as f64);
                logw.push((-(uj + d * d / (2.0 * t)) / (2.0 * nu), d));
            }
        }
        let mx = logw.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
        let (mut num, mut den) = (0.0, 0.0);
        for &(lw, d) in &logw {
            let w = (lw - mx).exp();
            num += w * d;
            den += w;
        }
        *o = num / (t * den);
    }
    out
}

/// `u = sin 2πx` on `n` points and its exact nonlinear term `−½(u²)_x = −π sin 4πx`.
pub fn sine_flux_divergence(n: usize) -> (Vec<f64>, Vec<f64>) {
    let x = (0..n).map(|i| i as f64 / n as f64);
    let u = x.clone().map(|x| (2.0 * PI * x).sin()).collect();
    let nl = x.map(|x| -PI * (4.0 * PI * x).sin()).collect();
    (u, nl)
}
