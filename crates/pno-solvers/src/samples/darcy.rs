//! Exact and manufactured solutions for Darcy flow `−∇·(a∇u) = f`, `u = 0` on `∂(0,1)²`
//! (`docs/pde-specs.md` §3.2).
//!
//! - Manufactured: `u* = sin πx sin πy`, `a = 2 + sin 2πx sin 2πy`,
//!   `f = 2π²·a·u* − (a_x u*_x + a_y u*_y)`; a second-order scheme converges at `O(h²)`.
//! - Torsion (`a ≡ 1`, `f ≡ 1`): continuum limits `max w = 0.0736714`, `∫w = 0.0351443`; with
//!   `a ≡ c` the solution is `w/c`.

use std::f64::consts::PI;

/// Continuum maximum of the torsion function `−Δw = 1` on the unit square.
pub const TORSION_MAX: f64 = 0.073_671_4;
/// Continuum integral `∫w` of the torsion function on the unit square.
pub const TORSION_INTEGRAL: f64 = 0.035_144_3;

/// Manufactured solution `u*(x, y) = sin πx sin πy`.
pub fn manufactured_u(x: f64, y: f64) -> f64 {
    (PI * x).sin() * (PI * y).sin()
}

/// Manufactured coefficient `a(x, y) = 2 + sin 2πx sin 2πy` (between 1 and 3).
pub fn manufactured_a(x: f64, y: f64) -> f64 {
    2.0 + (2.0 * PI * x).sin() * (2.0 * PI * y).sin()
}

/// Source `f = −∇·(a∇u*) = 2π²·a·u* − (a_x u*_x + a_y u*_y)` of the manufactured problem.
pub fn manufactured_f(x: f64, y: f64) -> f64 {
    let ax = 2.0 * PI * (2.0 * PI * x).cos() * (2.0 * PI * y).sin();
    let ay = 2.0 * PI * (2.0 * PI * x).sin() * (2.0 * PI * y).cos();
    let ux = PI * (PI * x).cos() * (PI * y).sin();
    let uy = PI * (PI * x).sin() * (PI * y).cos();
    2.0 * PI * PI * manufactured_a(x, y) * manufactured_u(x, y) - (ax * ux + ay * uy)
}

/// Evaluates `g` on the `k × k` node grid `x_i = i/(k−1)`, row-major `[x, y]`.
pub fn on_nodes(k: usize, g: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    let h = 1.0 / (k - 1) as f64;
    (0..k * k)
        .map(|p| g((p / k) as f64 * h, (p % k) as f64 * h))
        .collect()
}
