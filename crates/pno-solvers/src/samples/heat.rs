//! Exact solutions and a finite-difference reference solver for the 2-D heat equation
//! `u_t = νΔu` (`docs/pde-specs.md` §2.5, §3.6).
//!
//! - Periodic single mode: `cos(2π(k_x x + k_y y))` decays by `exp(−ν4π²|k|²t)`.
//! - Dirichlet sine series: `Σ C_mn e^{−νπ²(m²+n²)t} sin(mπx) sin(nπy)`, evaluated here by a
//!   direct double sum (independent of the generator's separable evaluation).
//! - 5-point finite differences + Crank–Nicolson ([`fd_cn_dirichlet`]): second order in `h` and
//!   `Δt`; its exact discrete oracle is the per-mode factor [`cn_mode_factor`] with the 5-point
//!   eigenvalue `μ_mn = (4/h²)(sin²(mπh/2) + sin²(nπh/2))`.

use std::f64::consts::PI;

use crate::darcy::Stencil5;
use crate::error::Result;

/// `cos(2π(kx·x + ky·y))` on the periodic `n × n` grid `x_i = i/n`, row-major.
pub fn periodic_mode(n: usize, kx: f64, ky: f64) -> Vec<f64> {
    (0..n * n)
        .map(|p| (2.0 * PI * (kx * (p / n) as f64 + ky * (p % n) as f64) / n as f64).cos())
        .collect()
}

/// Exact decay factor `exp(−ν4π²(kx² + ky²)t)` of a periodic Fourier mode.
pub fn periodic_decay(nu: f64, kx: f64, ky: f64, t: f64) -> f64 {
    (-nu * 4.0 * PI * PI * (kx * kx + ky * ky) * t).exp()
}

/// Exact Dirichlet solution at time `t` on the `s × s` node grid `x_i = i/(s−1)` for sine
/// coefficients `c` (`modes × modes`, row-major `(m, n)`, `m, n = 1..=modes`): direct double sum.
pub fn dirichlet_exact(c: &[f64], modes: usize, nu: f64, t: f64, s: usize) -> Vec<f64> {
    let h = 1.0 / (s - 1) as f64;
    let mut u = vec![0.0; s * s];
    for i in 1..s - 1 {
        for j in 1..s - 1 {
            let (x, y) = (i as f64 * h, j as f64 * h);
            let mut v = 0.0;
            for m in 1..=modes {
                for n in 1..=modes {
                    let q = (m * m + n * n) as f64;
                    v += c[(m - 1) * modes + n - 1]
                        * (-nu * PI * PI * q * t).exp()
                        * (m as f64 * PI * x).sin()
                        * (n as f64 * PI * y).sin();
                }
            }
            u[i * s + j] = v;
        }
    }
    u
}

/// Crank–Nicolson amplification factor of sine mode `(m, n)` under the 5-point Laplacian:
/// `(1 − ½Δtνμ)/(1 + ½Δtνμ)`, `μ = (4/h²)(sin²(mπh/2) + sin²(nπh/2))`.
pub fn cn_mode_factor(m: usize, n: usize, h: f64, nu: f64, dt: f64) -> f64 {
    let mu = 4.0 / (h * h)
        * ((m as f64 * PI * h / 2.0).sin().powi(2) + (n as f64 * PI * h / 2.0).sin().powi(2));
    (1.0 - 0.5 * dt * nu * mu) / (1.0 + 0.5 * dt * nu * mu)
}

/// 5-point finite differences + Crank–Nicolson on the `s × s` node grid (zero boundary): takes
/// `steps` steps of size `dt` from `u0` and returns the final field. The implicit matrix
/// `I − ½Δtν Δ_h` is factored once (sparse Cholesky).
pub fn fd_cn_dirichlet(u0: &[f64], s: usize, nu: f64, dt: f64, steps: usize) -> Result<Vec<f64>> {
    let n = s - 2;
    let h = 1.0 / (s - 1) as f64;
    let w = 0.5 * dt * nu / (h * h);
    let stencil = Stencil5::new(n)?;
    let diag = vec![1.0 + 4.0 * w; n * n];
    let off = vec![w; n * n];
    let factor = stencil.factor(&diag, &off, &off, 0)?;
    let mut x: Vec<f64> = (0..n * n)
        .map(|p| u0[(p / n + 1) * s + p % n + 1])
        .collect();
    let mut rhs = vec![0.0; n * n];
    for _ in 0..steps {
        // rhs = (I + ½Δtν Δ_h) x
        for i in 0..n {
            for j in 0..n {
                let p = i * n + j;
                let mut lap = -4.0 * x[p];
                if i > 0 {
                    lap += x[p - n];
                }
                if i + 1 < n {
                    lap += x[p + n];
                }
                if j > 0 {
                    lap += x[p - 1];
                }
                if j + 1 < n {
                    lap += x[p + 1];
                }
                rhs[p] = x[p] + w * lap;
            }
        }
        factor.solve_in_place(&mut rhs);
        std::mem::swap(&mut x, &mut rhs);
    }
    let mut u = vec![0.0; s * s];
    for p in 0..n * n {
        u[(p / n + 1) * s + p % n + 1] = x[p];
    }
    Ok(u)
}
