//! Exact solutions of the 2-D vorticity equation `ω_t + u·∇ω = νΔω + f` on the unit torus with
//! `u = (ψ_y, −ψ_x)`, `−Δψ = ω` (`docs/pde-specs.md` §3.4; peer `pde_ref/ns_ref.py`).
//!
//! - [`fno_forcing`]: `f = A(sin 2π(x+y) + cos 2π(x+y))`, `x` along array axis 0 (FNO `ns_2d.py`).
//! - [`single_shell`]: with `ω0 = a·sin 2πx sin 2πy` both `ω0` and `f` live on the shell
//!   `|k|² = 2`, where the Jacobian vanishes, so `ω(t) = ω0 e^{−νλt} + f(1 − e^{−νλt})/(νλ)`,
//!   `λ = 8π²`.
//! - [`advection_test_field`]: `ω = cos 2πx + cos 4πy` and its exact
//!   `u·∇ω = −(3/2) sin 2πx sin 4πy` (catches velocity-sign and axis mix-ups).
//!
//! Fields are row-major `[x, y]` on `x_i = i/n`, `y_j = j/n`.

use std::f64::consts::PI;

fn grid(n: usize, f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    let h = 1.0 / n as f64;
    (0..n * n)
        .map(|p| f((p / n) as f64 * h, (p % n) as f64 * h))
        .collect()
}

/// The FNO forcing `A(sin 2π(x+y) + cos 2π(x+y))` on the `n × n` grid.
pub fn fno_forcing(n: usize, amplitude: f64) -> Vec<f64> {
    grid(n, |x, y| {
        let s = 2.0 * PI * (x + y);
        amplitude * (s.sin() + s.cos())
    })
}

/// `ω(t)` from `ω0 = a·sin 2πx sin 2πy` under viscosity `ν > 0` and the FNO forcing of amplitude
/// `forcing_amplitude` (exact solution of the full nonlinear equation).
pub fn single_shell(n: usize, a: f64, nu: f64, forcing_amplitude: f64, t: f64) -> Vec<f64> {
    let lam = 8.0 * PI * PI;
    let e = (-nu * lam * t).exp();
    let f = fno_forcing(n, forcing_amplitude);
    grid(n, |x, y| a * (2.0 * PI * x).sin() * (2.0 * PI * y).sin())
        .iter()
        .zip(&f)
        .map(|(w0, f)| w0 * e + f * (1.0 - e) / (nu * lam))
        .collect()
}

/// `(ω, u·∇ω)` for `ω = cos 2πx + cos 4πy`: `u·∇ω = −(3/2) sin 2πx sin 4πy`.
pub fn advection_test_field(n: usize) -> (Vec<f64>, Vec<f64>) {
    let w = grid(n, |x, y| (2.0 * PI * x).cos() + (4.0 * PI * y).cos());
    let a = grid(n, |x, y| -1.5 * (2.0 * PI * x).sin() * (4.0 * PI * y).sin());
    (w, a)
}
