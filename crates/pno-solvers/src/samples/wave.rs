//! Exact solutions, energy and a finite-difference reference solver for the 2-D wave equation
//! `u_tt = c²Δu` (`docs/pde-specs.md` §2.6, §3.6).
//!
//! - Periodic: [`periodic_propagate`] applies the exact propagator with a full complex 2-D FFT
//!   (independent of the generator's real-FFT path) and also returns `u_t`;
//!   [`periodic_energy`] evaluates `E = ½⟨u_t² + c²|∇u|²⟩` per Fourier mode (Parseval), which the
//!   exact flow conserves.
//! - Dirichlet (CNO style): [`dirichlet_exact`] is the direct double sum
//!   `(π/K²) Σ a_ij (i²+j²)^{−r} sin(πix) sin(πjy) cos(cπt√(i²+j²))`.
//! - [`leapfrog_dirichlet`]: 5-point leapfrog with a Taylor start (`u_t(0) = 0`), second order.

use std::f64::consts::PI;

use num_complex::Complex64;

use crate::fft2::{Fft2, wavenumber};

fn spectrum(u: &[f64], plan: &Fft2) -> Vec<Complex64> {
    let mut z: Vec<Complex64> = u.iter().map(|&v| Complex64::new(v, 0.0)).collect();
    plan.forward(&mut z);
    z
}

fn omega(p: usize, n: usize, c: f64) -> f64 {
    let (kx, ky) = (wavenumber(p / n, n), wavenumber(p % n, n));
    2.0 * PI * c * (kx * kx + ky * ky).sqrt()
}

/// Exact periodic propagation of `(u0, v0)` (each `n × n`, `x_i = i/n`) to time `t`:
/// returns `(u(t), u_t(t))`.
pub fn periodic_propagate(
    u0: &[f64],
    v0: &[f64],
    n: usize,
    c: f64,
    t: f64,
) -> (Vec<f64>, Vec<f64>) {
    let plan = Fft2::new(n, n);
    let (uh, vh) = (spectrum(u0, &plan), spectrum(v0, &plan));
    let mut u = vec![Complex64::new(0.0, 0.0); n * n];
    let mut ut = vec![Complex64::new(0.0, 0.0); n * n];
    for p in 0..n * n {
        let w = omega(p, n, c);
        let (co, si) = ((w * t).cos(), (w * t).sin());
        let sinc = if w > 0.0 { si / w } else { t };
        u[p] = uh[p] * co + vh[p] * sinc;
        ut[p] = -uh[p] * (w * si) + vh[p] * co;
    }
    plan.inverse(&mut u);
    plan.inverse(&mut ut);
    let s = 1.0 / (n * n) as f64;
    (
        u.iter().map(|z| z.re * s).collect(),
        ut.iter().map(|z| z.re * s).collect(),
    )
}

/// Energy `½⟨u_t² + c²|∇u|²⟩` (domain average) of periodic fields, spectrally.
pub fn periodic_energy(u: &[f64], ut: &[f64], n: usize, c: f64) -> f64 {
    let plan = Fft2::new(n, n);
    let (uh, vh) = (spectrum(u, &plan), spectrum(ut, &plan));
    let n4 = ((n * n) as f64).powi(2);
    0.5 * (0..n * n)
        .map(|p| vh[p].norm_sqr() + omega(p, n, c).powi(2) * uh[p].norm_sqr())
        .sum::<f64>()
        / n4
}

/// `sin(2π(kx·x + ky·y))` on the periodic `n × n` grid.
pub fn periodic_sine_mode(n: usize, kx: f64, ky: f64) -> Vec<f64> {
    (0..n * n)
        .map(|p| (2.0 * PI * (kx * (p / n) as f64 + ky * (p % n) as f64) / n as f64).sin())
        .collect()
}

/// Exact CNO-style Dirichlet solution at time `t` on the `s × s` node grid for amplitudes `a`
/// (`modes × modes`, row-major): direct double sum.
pub fn dirichlet_exact(a: &[f64], modes: usize, decay: f64, c: f64, t: f64, s: usize) -> Vec<f64> {
    let h = 1.0 / (s - 1) as f64;
    let k2 = (modes * modes) as f64;
    let mut u = vec![0.0; s * s];
    for i in 1..s - 1 {
        for j in 1..s - 1 {
            let (x, y) = (i as f64 * h, j as f64 * h);
            let mut v = 0.0;
            for p in 1..=modes {
                for q in 1..=modes {
                    let r2 = (p * p + q * q) as f64;
                    v += a[(p - 1) * modes + q - 1]
                        * r2.powf(-decay)
                        * (PI * p as f64 * x).sin()
                        * (PI * q as f64 * y).sin()
                        * (c * PI * t * r2.sqrt()).cos();
                }
            }
            u[i * s + j] = PI / k2 * v;
        }
    }
    u
}

/// 5-point leapfrog for `u_tt = c²Δ_h u` on the `s × s` node grid (zero boundary), `u_t(0) = 0`
/// via the Taylor start `u¹ = u⁰ + ½λΔ_h u⁰`, `Δt = T/⌈T/(cfl·h/c)⌉`. Returns `u(T)`.
pub fn leapfrog_dirichlet(u0: &[f64], s: usize, c: f64, t_final: f64, cfl: f64) -> Vec<f64> {
    let h = 1.0 / (s - 1) as f64;
    let steps = (t_final / (cfl * h / c)).ceil().max(1.0) as usize;
    let dt = t_final / steps as f64;
    let lam = (c * dt / h).powi(2);
    let lap = |u: &[f64]| -> Vec<f64> {
        let mut l = vec![0.0; s * s];
        for i in 1..s - 1 {
            for j in 1..s - 1 {
                let p = i * s + j;
                l[p] = u[p + s] + u[p - s] + u[p + 1] + u[p - 1] - 4.0 * u[p];
            }
        }
        l
    };
    let mut prev = u0.to_vec();
    let mut cur: Vec<f64> = u0
        .iter()
        .zip(lap(u0))
        .map(|(u, l)| u + 0.5 * lam * l)
        .collect();
    for _ in 1..steps {
        let l = lap(&cur);
        let next: Vec<f64> = (0..s * s)
            .map(|p| 2.0 * cur[p] - prev[p] + lam * l[p])
            .collect();
        prev = std::mem::replace(&mut cur, next);
    }
    cur
}
