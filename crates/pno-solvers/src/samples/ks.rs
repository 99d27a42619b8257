//! Exact solutions and standard data of the Kuramoto–Sivashinsky equation
//! `u_t = −c·u u_x − u_xx − u_xxxx` on a periodic domain `[0, L)`
//! (`docs/pde-specs.md` §2.4, §3.5; peer `pde_ref/ks_ref.py`).
//!
//! - [`kt_initial_condition`]: the Kassam–Trefethen test datum `u0 = cos(x/16)(1 + sin(x/16))`.
//! - [`linear_evolution`]: the exact solution of the linear part (`c = 0`), each Fourier mode
//!   multiplied by `e^{(q² − q⁴)t}`, `q = 2πk/L`.

use std::f64::consts::PI;

use num_complex::Complex64;
use realfft::RealFftPlanner;

/// `u0(x_j) = cos(x_j/16)(1 + sin(x_j/16))` at `x_j = L·j/n` (Kassam & Trefethen 2005, §6).
pub fn kt_initial_condition(n: usize, length: f64) -> Vec<f64> {
    (0..n)
        .map(|j| {
            let x = length * j as f64 / n as f64;
            (x / 16.0).cos() * (1.0 + (x / 16.0).sin())
        })
        .collect()
}

/// Exact solution at time `t` of the linear KS equation `u_t = −u_xx − u_xxxx` (periodic, length
/// `length`) from grid data `u0` (trigonometric interpolant; Nyquist mode kept real).
pub fn linear_evolution(u0: &[f64], length: f64, t: f64) -> Vec<f64> {
    let n = u0.len();
    let mut p = RealFftPlanner::<f64>::new();
    let (f, i) = (p.plan_fft_forward(n), p.plan_fft_inverse(n));
    let mut input = u0.to_vec();
    let mut spec = f.make_output_vec();
    // invariant: lengths come from the plans.
    f.process(&mut input, &mut spec).expect("rfft length fixed");
    for (k, c) in spec.iter_mut().enumerate() {
        let q = 2.0 * PI * k as f64 / length;
        *c *= ((q * q - q.powi(4)) * t).exp() / n as f64;
    }
    spec[0].im = 0.0;
    if n.is_multiple_of(2) {
        spec[n / 2] = Complex64::new(spec[n / 2].re, 0.0);
    }
    let mut out = vec![0.0; n];
    i.process(&mut spec, &mut out).expect("irfft length fixed");
    out
}
