//! Darcy flow `−∇·(a∇u) = f` on `(0,1)²` with `u = 0` on the boundary (`docs/pde-specs.md` §2.1).
//!
//! Two recipes:
//! - **`fno`** (default), Li et al. 2020 "piececonst": `U ~ GRF_neu(α=2, τ=3)` ([`GrfNeumann`],
//!   sampled on the `K × K` solve grid, the `s × s` cell-centre samples treated as node values),
//!   `a = a_pos` where `U ≥ 0` and `a_neg` elsewhere (12/3), `f ≡ forcing` (1). Second-order
//!   5-point finite differences on the `K × K` node grid (`h = 1/(K−1)`, boundary included,
//!   `(K−2)²` unknowns) with arithmetic-mean face coefficients `a_{i+½,j} = (a_{ij} + a_{i+1,j})/2`.
//!   Output: every `(K−1)/(R−1)`-th node of the coefficient and the solution ("solve fine, then
//!   subsample", as FNO's 421 → 85/141/211 files).
//! - **`pdebench`** (Takamoto et al. 2022, also PNO's Darcy data): cell-centred `S × S` grid,
//!   `nu = Σ_{m=1..5} exp(−‖x − c_m‖²/s_m)`, `c_m ~ U(0,1)²`, `s_m = ½·U(0,1]`, `a = 1` where
//!   `nu > mean(nu)` else `0.1`, `f ≡ β`. The steady finite-volume system (face coefficient
//!   `½(a_L + a_R)`, ghost cells `u = 0` so boundary faces use the boundary cell's `a`) is solved
//!   directly instead of PDEBench's pseudo-time relaxation (§2.1 recommendation; `u_β = β·u_1`).
//!   **Deviation:** PDEBench thresholds at the mean over the whole *batch*; we use the
//!   *per-sample* mean so a sample depends only on `(seed, index)`, never on batching/sharding.
//!   Output: every `S/R`-th cell (PNO trained on stride 2 of 128).
//!
//! Both systems are SPD 5-point matrices with a fixed pattern: the symbolic sparse Cholesky
//! factorisation ([`Stencil5`]) is computed once per generator and reused by every sample.
//! Oracles: `crate::samples::darcy` and the tests below (§3.2).

mod grf_neumann;
mod stencil;

pub use grf_neumann::GrfNeumann;
pub use stencil::{Ordering, Stencil5, Stencil5Factor, apply as stencil5_apply, nested_dissection};

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{Error, Result, positive};
use crate::generator::{Generator, TensorLayout};
use crate::rng::sample_rng;

/// Raw Darcy configuration (TOML keys). `None` means the recipe's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DarcyConfig {
    /// `"fno"` (default) or `"pdebench"`.
    pub recipe: String,
    /// Output grid side R: nodes for `fno` (default 64, any value ≥ 3), cells for `pdebench`
    /// (default 128).
    pub resolution: Option<usize>,
    /// Solve grid side (default = `resolution`). `fno`: K nodes with `(K−1) % (R−1) == 0`;
    /// `pdebench`: S cells with `S % R == 0`.
    pub solve_resolution: Option<usize>,
    /// `fno` only: GRF smoothness α (default 2).
    pub alpha: Option<f64>,
    /// `fno` only: GRF inverse length scale τ (default 3).
    pub tau: Option<f64>,
    /// Coefficient value on the positive set (`fno` 12, `pdebench` 1).
    pub a_pos: Option<f64>,
    /// Coefficient value elsewhere (`fno` 3, `pdebench` 0.1).
    pub a_neg: Option<f64>,
    /// `fno` only: constant source f (default 1).
    pub forcing: Option<f64>,
    /// `pdebench` only: constant source β (default 1).
    pub beta: Option<f64>,
}

impl Default for DarcyConfig {
    fn default() -> Self {
        Self {
            recipe: "fno".to_string(),
            resolution: None,
            solve_resolution: None,
            alpha: None,
            tau: None,
            a_pos: None,
            a_neg: None,
            forcing: None,
            beta: None,
        }
    }
}

/// Which coefficient/solver recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DarcyRecipe {
    /// FNO piececonst, node-grid finite differences.
    Fno,
    /// PDEBench Gaussian blobs, cell-centred finite volumes.
    Pdebench,
}

/// A validated Darcy configuration with every default resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct DarcyParams {
    /// The recipe.
    pub recipe: DarcyRecipe,
    /// Output grid side R.
    pub resolution: usize,
    /// Solve grid side (K nodes or S cells).
    pub solve_resolution: usize,
    /// GRF α (`fno`).
    pub alpha: f64,
    /// GRF τ (`fno`).
    pub tau: f64,
    /// Coefficient on the positive set.
    pub a_pos: f64,
    /// Coefficient elsewhere.
    pub a_neg: f64,
    /// Constant source (f for `fno`, β for `pdebench`).
    pub source: f64,
}

fn unused(field: &str, v: Option<f64>, recipe: &str) -> Result<()> {
    match v {
        Some(x) => Err(Error::config(
            field,
            format!("no value (not used by recipe `{recipe}`)"),
            x,
        )),
        None => Ok(()),
    }
}

impl DarcyConfig {
    /// Range-checks every field and resolves the recipe defaults.
    pub fn validate(&self) -> Result<DarcyParams> {
        let recipe = match self.recipe.as_str() {
            "fno" => DarcyRecipe::Fno,
            "pdebench" => DarcyRecipe::Pdebench,
            other => {
                return Err(Error::config(
                    "recipe",
                    "\"fno\" or \"pdebench\"",
                    format!("\"{other}\""),
                ));
            }
        };
        let a_pos;
        let a_neg;
        let resolution;
        let solve_resolution;
        let (mut alpha, mut tau) = (2.0, 3.0);
        let source;
        match recipe {
            DarcyRecipe::Fno => {
                unused("beta", self.beta, "fno")?;
                resolution = self.resolution.unwrap_or(64);
                if resolution < 3 {
                    return Err(Error::config("resolution", "at least 3 nodes", resolution));
                }
                solve_resolution = self.solve_resolution.unwrap_or(resolution);
                if solve_resolution < resolution || (solve_resolution - 1) % (resolution - 1) != 0 {
                    return Err(Error::config(
                        "solve_resolution",
                        format!(
                            "K >= resolution with (K-1) % (resolution-1) == 0, e.g. {}",
                            2 * resolution - 1
                        ),
                        solve_resolution,
                    ));
                }
                alpha = self.alpha.unwrap_or(2.0);
                if !(alpha.is_finite() && alpha > 1.0) {
                    return Err(Error::config("alpha", "a finite number > 1 (= d/2)", alpha));
                }
                tau = positive("tau", self.tau.unwrap_or(3.0))?;
                a_pos = positive("a_pos", self.a_pos.unwrap_or(12.0))?;
                a_neg = positive("a_neg", self.a_neg.unwrap_or(3.0))?;
                source = self.forcing.unwrap_or(1.0);
                if !source.is_finite() {
                    return Err(Error::config("forcing", "a finite number", source));
                }
            }
            DarcyRecipe::Pdebench => {
                unused("alpha", self.alpha, "pdebench")?;
                unused("tau", self.tau, "pdebench")?;
                unused("forcing", self.forcing, "pdebench")?;
                resolution = self.resolution.unwrap_or(128);
                if resolution < 1 {
                    return Err(Error::config("resolution", "at least 1 cell", resolution));
                }
                solve_resolution = self.solve_resolution.unwrap_or(resolution);
                if solve_resolution < resolution || solve_resolution % resolution != 0 {
                    return Err(Error::config(
                        "solve_resolution",
                        format!("a multiple of resolution = {resolution}"),
                        solve_resolution,
                    ));
                }
                a_pos = positive("a_pos", self.a_pos.unwrap_or(1.0))?;
                a_neg = positive("a_neg", self.a_neg.unwrap_or(0.1))?;
                source = self.beta.unwrap_or(1.0);
                if !source.is_finite() {
                    return Err(Error::config("beta", "a finite number", source));
                }
            }
        }
        if solve_resolution > 8193 {
            return Err(Error::config(
                "solve_resolution",
                "at most 8193",
                solve_resolution,
            ));
        }
        Ok(DarcyParams {
            recipe,
            resolution,
            solve_resolution,
            alpha,
            tau,
            a_pos,
            a_neg,
            source,
        })
    }
}

/// Node-grid finite-difference weights (`diag`, `wx`, `wy`, see [`Stencil5`]) on the `(K−2)²`
/// interior nodes for the nodal coefficient `a` (`K × K`, row-major), scaled by `1/h²`.
pub fn node_fd_weights(a: &[f64], k: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let n = k - 2;
    let h = 1.0 / (k - 1) as f64;
    let s = 0.5 / (h * h);
    let mut diag = vec![0.0; n * n];
    let mut wx = vec![0.0; n * n];
    let mut wy = vec![0.0; n * n];
    for i in 0..n {
        let (r0, r1, r2) = (i * k, (i + 1) * k, (i + 2) * k);
        for j in 0..n {
            let c = a[r1 + j + 1];
            let east = s * (c + a[r2 + j + 1]); // face (I+½, J)
            let west = s * (c + a[r0 + j + 1]); // face (I−½, J)
            let north = s * (c + a[r1 + j + 2]); // face (I, J+½)
            let south = s * (c + a[r1 + j]); // face (I, J−½)
            let p = i * n + j;
            diag[p] = east + west + north + south;
            wx[p] = east;
            wy[p] = north;
        }
    }
    (diag, wx, wy)
}

/// Cell-centred finite-volume weights of PDEBench's Darcy system for the cell coefficient `a`
/// (`s × s`), scaled by `s²`: interior faces `½(a_L + a_R)`, boundary faces the boundary cell's `a`
/// with a zero ghost value one cell width away.
pub fn cell_fv_weights(a: &[f64], s: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let inv = (s * s) as f64;
    let mut diag = vec![0.0; s * s];
    let mut wx = vec![0.0; s * s];
    let mut wy = vec![0.0; s * s];
    for i in 0..s {
        for j in 0..s {
            let p = i * s + j;
            let c = a[p];
            let face = |q: Option<usize>| match q {
                Some(q) => 0.5 * (c + a[q]) * inv,
                None => c * inv,
            };
            let east = face((i + 1 < s).then_some(p + s));
            let west = face((i > 0).then(|| p - s));
            let north = face((j + 1 < s).then_some(p + 1));
            let south = face((j > 0).then(|| p - 1));
            diag[p] = east + west + north + south;
            if i + 1 < s {
                wx[p] = east;
            }
            if j + 1 < s {
                wy[p] = north;
            }
        }
    }
    (diag, wx, wy)
}

/// Solves the `fno` node-grid problem for nodal coefficient `a` and nodal source `f` (both
/// `K × K`, only interior values of `f` are used). Returns `u` on all `K × K` nodes (zero boundary).
pub fn solve_node_fd(stencil: &Stencil5, a: &[f64], f: &[f64], index: u64) -> Result<Vec<f64>> {
    let k = stencil.n() + 2;
    let n = k - 2;
    let (diag, wx, wy) = node_fd_weights(a, k);
    let factor = stencil.factor(&diag, &wx, &wy, index)?;
    let mut x: Vec<f64> = (0..n * n).map(|p| f[(p / n + 1) * k + p % n + 1]).collect();
    factor.solve_in_place(&mut x);
    let mut u = vec![0.0; k * k];
    for i in 0..n {
        u[(i + 1) * k + 1..(i + 1) * k + 1 + n].copy_from_slice(&x[i * n..(i + 1) * n]);
    }
    Ok(u)
}

/// Solves PDEBench's cell-centred system `−∇·(a∇u) = β` for the `s × s` cell coefficient `a`.
pub fn solve_cell_fv(stencil: &Stencil5, a: &[f64], beta: f64, index: u64) -> Result<Vec<f64>> {
    let s = stencil.n();
    let (diag, wx, wy) = cell_fv_weights(a, s);
    let factor = stencil.factor(&diag, &wx, &wy, index)?;
    let mut x = vec![beta; s * s];
    factor.solve_in_place(&mut x);
    Ok(x)
}

/// PDEBench coefficient: five Gaussian blobs on the `s × s` cell centres, thresholded at the
/// per-sample mean to `a_pos`/`a_neg`. Draws `c_x[5]`, `c_y[5]`, `s_m[5]` in that order.
pub fn pdebench_coefficient<R: Rng + ?Sized>(
    rng: &mut R,
    s: usize,
    a_pos: f64,
    a_neg: f64,
) -> Vec<f64> {
    const N_BLOBS: usize = 5;
    let cx: Vec<f64> = (0..N_BLOBS).map(|_| rng.random::<f64>()).collect();
    let cy: Vec<f64> = (0..N_BLOBS).map(|_| rng.random::<f64>()).collect();
    // s_m = L/2 · U(0,1] (1 − U[0,1) avoids a zero width)
    let w: Vec<f64> = (0..N_BLOBS)
        .map(|_| 0.5 * (1.0 - rng.random::<f64>()))
        .collect();
    let xc: Vec<f64> = (0..s).map(|i| (i as f64 + 0.5) / s as f64).collect();
    let mut nu = vec![0.0; s * s];
    for m in 0..N_BLOBS {
        let gx: Vec<f64> = xc
            .iter()
            .map(|x| (-(x - cx[m]).powi(2) / w[m]).exp())
            .collect();
        let gy: Vec<f64> = xc
            .iter()
            .map(|y| (-(y - cy[m]).powi(2) / w[m]).exp())
            .collect();
        for (i, row) in nu.chunks_exact_mut(s).enumerate() {
            for (v, g) in row.iter_mut().zip(&gy) {
                *v += gx[i] * g;
            }
        }
    }
    let mean = nu.iter().sum::<f64>() / (s * s) as f64;
    nu.iter()
        .map(|&v| if v > mean { a_pos } else { a_neg })
        .collect()
}

/// The Darcy generator (both recipes).
#[derive(Debug)]
pub struct Darcy {
    params: DarcyParams,
    stencil: Stencil5,
    grf: Option<GrfNeumann>,
}

impl Darcy {
    /// Plans the generator: GRF transforms and the symbolic Cholesky factorisation.
    pub fn new(params: DarcyParams) -> Result<Self> {
        let (stencil, grf) = match params.recipe {
            DarcyRecipe::Fno => (
                Stencil5::new(params.solve_resolution - 2)?,
                Some(GrfNeumann::new(
                    params.alpha,
                    params.tau,
                    params.solve_resolution,
                )),
            ),
            DarcyRecipe::Pdebench => (Stencil5::new(params.solve_resolution)?, None),
        };
        Ok(Self {
            params,
            stencil,
            grf,
        })
    }

    /// The resolved parameters.
    pub fn params(&self) -> &DarcyParams {
        &self.params
    }

    /// The coefficient of sample `index` on the full solve grid (no solve).
    pub fn coefficient(&self, seed: u64, index: u64) -> Vec<f64> {
        let p = &self.params;
        let mut rng = sample_rng(seed, index);
        match &self.grf {
            Some(grf) => grf
                .sample(&mut rng)
                .into_iter()
                .map(|v| if v >= 0.0 { p.a_pos } else { p.a_neg })
                .collect(),
            None => pdebench_coefficient(&mut rng, p.solve_resolution, p.a_pos, p.a_neg),
        }
    }

    /// Coefficient and solution on the full solve grid (before subsampling).
    pub fn solve_full(&self, seed: u64, index: u64) -> Result<(Vec<f64>, Vec<f64>)> {
        let p = &self.params;
        let a = self.coefficient(seed, index);
        let u = match &self.grf {
            Some(_) => {
                let k = p.solve_resolution;
                let f = vec![p.source; k * k];
                solve_node_fd(&self.stencil, &a, &f, index)?
            }
            None => solve_cell_fv(&self.stencil, &a, p.source, index)?,
        };
        if u.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                pde: "darcy",
                index,
                t: 0.0,
                hint: "the linear solve produced NaN/Inf; check a_pos/a_neg and the source are moderate".into(),
            });
        }
        Ok((a, u))
    }

    fn stride(&self) -> usize {
        let p = &self.params;
        match p.recipe {
            DarcyRecipe::Fno => (p.solve_resolution - 1) / (p.resolution - 1),
            DarcyRecipe::Pdebench => p.solve_resolution / p.resolution,
        }
    }
}

/// Every `stride`-th row and column of a `k × k` array, `r × r` values.
pub fn subsample(v: &[f64], k: usize, r: usize, stride: usize) -> Vec<f64> {
    if stride == 1 && k == r {
        return v.to_vec();
    }
    let mut out = Vec::with_capacity(r * r);
    for i in 0..r {
        for j in 0..r {
            out.push(v[i * stride * k + j * stride]);
        }
    }
    out
}

impl Generator for Darcy {
    fn pde(&self) -> &'static str {
        "darcy"
    }

    fn recipe(&self) -> &str {
        match self.params.recipe {
            DarcyRecipe::Fno => "fno",
            DarcyRecipe::Pdebench => "pdebench",
        }
    }

    fn solver(&self) -> String {
        let p = &self.params;
        match p.recipe {
            DarcyRecipe::Fno => format!(
                "5-point finite differences (arithmetic-mean faces) on {k}x{k} nodes, faer sparse Cholesky (AMD below 128^2 unknowns, nested dissection above; symbolic reused), stride {s} subsample",
                k = p.solve_resolution,
                s = self.stride()
            ),
            DarcyRecipe::Pdebench => format!(
                "cell-centred finite volumes on {k}x{k} cells (zero ghost cells), direct faer sparse Cholesky (AMD below 128^2 unknowns, nested dissection above; symbolic reused), stride {s} subsample",
                k = p.solve_resolution,
                s = self.stride()
            ),
        }
    }

    fn layout(&self) -> Vec<TensorLayout> {
        let r = self.params.resolution;
        vec![
            TensorLayout::new("x", &[1, r, r]),
            TensorLayout::new("y", &[1, r, r]),
        ]
    }

    fn times(&self) -> Option<Vec<f64>> {
        None
    }

    fn resolution(&self) -> Vec<usize> {
        vec![self.params.resolution; 2]
    }

    fn parameters(&self) -> serde_json::Value {
        let p = &self.params;
        match p.recipe {
            DarcyRecipe::Fno => json!({
                "recipe": "fno",
                "resolution": p.resolution,
                "solve_resolution": p.solve_resolution,
                "stride": self.stride(),
                "grid": "nodes incl. boundary, h = 1/(K-1)",
                "alpha": p.alpha,
                "tau": p.tau,
                "grf": "GRF_neu: orthonormal DCT-III of s*tau^(alpha-1)*(pi^2|k|^2+tau^2)^(-alpha/2)*xi, cell-centre samples used as node values",
                "a_pos": p.a_pos,
                "a_neg": p.a_neg,
                "threshold": 0.0,
                "forcing": p.source,
                "boundary": "u = 0",
                "discretisation": "5-point FD, arithmetic-mean face coefficients",
                "linear_solver": "faer sparse Cholesky, symbolic factorisation reused (AMD ordering below 128^2 unknowns, geometric nested dissection above)",
            }),
            DarcyRecipe::Pdebench => json!({
                "recipe": "pdebench",
                "resolution": p.resolution,
                "solve_resolution": p.solve_resolution,
                "stride": self.stride(),
                "grid": "cell centres (i+1/2)/S",
                "n_blobs": 5,
                "blob_width": "s_m = 0.5*U(0,1], nu = sum exp(-|x-c_m|^2/s_m)",
                "threshold": "per-sample mean of nu (PDEBench: batch mean)",
                "a_pos": p.a_pos,
                "a_neg": p.a_neg,
                "beta": p.source,
                "boundary": "u = 0 ghost cells",
                "discretisation": "finite volumes, face coefficient (aL+aR)/2, boundary face = cell a",
                "linear_solver": "faer sparse Cholesky, symbolic factorisation reused (AMD ordering below 128^2 unknowns, geometric nested dissection above)",
            }),
        }
    }

    fn sample(&self, seed: u64, index: u64) -> Result<Vec<Vec<f64>>> {
        let (a, u) = self.solve_full(seed, index)?;
        let (k, r, st) = (
            self.params.solve_resolution,
            self.params.resolution,
            self.stride(),
        );
        Ok(vec![subsample(&a, k, r, st), subsample(&u, k, r, st)])
    }

    /// The coefficient `x` without the linear solve.
    fn input(&self, seed: u64, index: u64) -> Result<Vec<Vec<f64>>> {
        let a = self.coefficient(seed, index);
        let (k, r, st) = (
            self.params.solve_resolution,
            self.params.resolution,
            self.stride(),
        );
        Ok(vec![subsample(&a, k, r, st)])
    }
}

/// Builds the Darcy generator from a raw config (see [`DarcyConfig`]).
pub fn build(config: serde_json::Value) -> Result<Box<dyn Generator>> {
    let cfg: DarcyConfig = crate::generator::parse_config("darcy", config)?;
    let params = cfg.validate()?;
    Ok(Box::new(Darcy::new(params)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::darcy as oracle;
    use pno_core::testing::{assert_close, rel_l2};

    fn fno(json: serde_json::Value) -> Darcy {
        let cfg: DarcyConfig = crate::generator::parse_config("darcy", json).unwrap();
        Darcy::new(cfg.validate().unwrap()).unwrap()
    }

    #[test]
    fn darcy_input_is_the_sample_coefficient_without_the_solve() {
        for cfg in [
            json!({"resolution": 9, "solve_resolution": 17}),
            json!({"recipe": "pdebench", "resolution": 8, "solve_resolution": 16}),
        ] {
            let g = build(cfg).unwrap();
            assert_eq!(crate::input_layout(g.as_ref()), vec![g.layout()[0].clone()]);
            for index in [0, 5, 1 << 40] {
                let full = g.sample(3, index).unwrap();
                let input = g.input(3, index).unwrap();
                assert_eq!(input.len(), 1);
                assert_eq!(input[0], full[0], "index {index}");
            }
        }
    }

    fn manufactured_errors(k: usize) -> (f64, f64) {
        let st = Stencil5::new(k - 2).unwrap();
        let a = oracle::on_nodes(k, oracle::manufactured_a);
        let f = oracle::on_nodes(k, oracle::manufactured_f);
        let u = solve_node_fd(&st, &a, &f, 0).unwrap();
        let exact = oracle::on_nodes(k, oracle::manufactured_u);
        let e: Vec<f64> = u.iter().zip(&exact).map(|(a, b)| a - b).collect();
        let linf = e.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let l2 = (e.iter().map(|v| v * v).sum::<f64>() / (k * k) as f64).sqrt();
        (linf, l2)
    }

    #[test]
    fn node_fd_manufactured_solution_converges_second_order() {
        let errs: Vec<(f64, f64)> = [17, 33, 65]
            .iter()
            .map(|&k| manufactured_errors(k))
            .collect();
        for w in errs.windows(2) {
            let (oinf, ol2) = ((w[0].0 / w[1].0).log2(), (w[0].1 / w[1].1).log2());
            eprintln!(
                "darcy manufactured: Linf {:.3e} -> {:.3e} order {oinf:.3}; L2 {:.3e} -> {:.3e} order {ol2:.3}",
                w[0].0, w[1].0, w[0].1, w[1].1
            );
            assert!((oinf - 2.0).abs() < 0.15, "Linf order {oinf}");
            assert!((ol2 - 2.0).abs() < 0.15, "L2 order {ol2}");
        }
        assert!(errs[2].0 < 3e-4, "Linf at K=65: {}", errs[2].0);
    }

    #[test]
    fn node_fd_constant_coefficient_scales_torsion_solution() {
        let k = 65;
        let st = Stencil5::new(k - 2).unwrap();
        let f = vec![1.0; k * k];
        let w = solve_node_fd(&st, &vec![1.0; k * k], &f, 0).unwrap();
        let u = solve_node_fd(&st, &vec![7.5; k * k], &f, 0).unwrap();
        let scaled: Vec<f64> = w.iter().map(|v| v / 7.5).collect();
        assert_close(&u, &scaled, 1e-12, 1e-16);
        let max = w.iter().fold(0.0f64, |m, &v| m.max(v));
        let h = 1.0 / (k - 1) as f64;
        let integral = h * h * w.iter().sum::<f64>();
        eprintln!(
            "darcy torsion K=65: max {max:.7} (continuum {}), integral {integral:.7} (continuum {})",
            oracle::TORSION_MAX,
            oracle::TORSION_INTEGRAL
        );
        // O(h^2) discretisation error, h = 1/64
        assert!((max - oracle::TORSION_MAX).abs() < 2e-4, "{max}");
        assert!(
            (integral - oracle::TORSION_INTEGRAL).abs() < 1e-3,
            "{integral}"
        );
    }

    #[test]
    fn fno_sample_satisfies_max_principle_compliance_and_residual() {
        let g = fno(json!({"resolution": 48}));
        let k = 48;
        let st = Stencil5::new(k - 2).unwrap();
        let w = solve_node_fd(&st, &vec![1.0; k * k], &vec![1.0; k * k], 0).unwrap();
        let h = 1.0 / (k - 1) as f64;
        let c_lap = h * h * w.iter().sum::<f64>();
        for index in 0..3 {
            let out = g.sample(5, index).unwrap();
            let (a, u) = (&out[0], &out[1]);
            assert!(
                a.iter().all(|&v| v == 3.0 || v == 12.0),
                "coefficient values must be 3 or 12"
            );
            assert!(a.contains(&3.0) && a.contains(&12.0));
            for i in 0..k {
                for j in 0..k {
                    let v = u[i * k + j];
                    if i == 0 || j == 0 || i == k - 1 || j == k - 1 {
                        assert_eq!(v, 0.0);
                    } else {
                        assert!(v > 0.0, "max principle violated at ({i},{j}): {v}");
                    }
                }
            }
            let comp = h * h * u.iter().sum::<f64>();
            assert!(
                c_lap / 12.0 <= comp && comp <= c_lap / 3.0,
                "compliance {comp} not in [{}, {}]",
                c_lap / 12.0,
                c_lap / 3.0
            );
            // residual through the matrix-free operator
            let (diag, wx, wy) = node_fd_weights(a, k);
            let n = k - 2;
            let x: Vec<f64> = (0..n * n).map(|p| u[(p / n + 1) * k + p % n + 1]).collect();
            let r = stencil5_apply(n, &diag, &wx, &wy, &x);
            let res = (r.iter().map(|v| (v - 1.0).powi(2)).sum::<f64>() / (n * n) as f64).sqrt();
            eprintln!(
                "darcy fno K=48 sample {index}: compliance {comp:.4e} in [{:.4e}, {:.4e}], residual {res:.2e}",
                c_lap / 12.0,
                c_lap / 3.0
            );
            assert!(res <= 1e-10, "relative residual {res}");
        }
    }

    #[test]
    fn fno_transposed_coefficient_transposes_solution() {
        let k = 33;
        let g = fno(json!({"resolution": k}));
        let (a, u) = g.solve_full(2, 9).unwrap();
        let tr = |v: &[f64]| -> Vec<f64> { (0..k * k).map(|p| v[(p % k) * k + p / k]).collect() };
        let st = Stencil5::new(k - 2).unwrap();
        let ut = solve_node_fd(&st, &tr(&a), &vec![1.0; k * k], 0).unwrap();
        assert_close(&ut, &tr(&u), 1e-11, 1e-15);
    }

    #[test]
    fn fno_subsampled_output_matches_fine_solve() {
        let r = 17;
        let g = fno(json!({"resolution": r, "solve_resolution": 2 * r - 1}));
        assert_eq!(
            g.layout(),
            vec![
                TensorLayout::new("x", &[1, r, r]),
                TensorLayout::new("y", &[1, r, r])
            ]
        );
        let out = g.sample(1, 4).unwrap();
        let (a, u) = g.solve_full(1, 4).unwrap();
        let k = 2 * r - 1;
        assert_eq!(out[0].len(), r * r);
        for i in 0..r {
            for j in 0..r {
                assert_eq!(out[0][i * r + j], a[2 * i * k + 2 * j]);
                assert_eq!(out[1][i * r + j], u[2 * i * k + 2 * j]);
            }
        }
        assert_eq!(g.parameters()["stride"], 2);
    }

    #[test]
    fn fno_sample_depends_only_on_seed_and_index() {
        let g = fno(json!({"resolution": 20}));
        let a = g.sample(3, 17).unwrap();
        let _ = g.sample(3, 2).unwrap();
        assert_eq!(a, g.sample(3, 17).unwrap());
        assert_ne!(a, g.sample(3, 18).unwrap());
    }

    #[test]
    fn pdebench_solution_is_positive_and_linear_in_beta() {
        let g1 = fno(json!({"recipe": "pdebench", "resolution": 32}));
        let g10 = fno(json!({"recipe": "pdebench", "resolution": 32, "beta": 10.0}));
        for index in 0..2 {
            let s1 = g1.sample(4, index).unwrap();
            let s10 = g10.sample(4, index).unwrap();
            assert_eq!(s1[0], s10[0]);
            assert!(s1[0].iter().all(|&v| v == 1.0 || v == 0.1));
            assert!(s1[0].contains(&1.0) && s1[0].contains(&0.1));
            assert!(s1[1].iter().all(|&v| v > 0.0));
            let scaled: Vec<f64> = s1[1].iter().map(|v| 10.0 * v).collect();
            let lin = rel_l2(&s10[1], &scaled);
            eprintln!(
                "darcy pdebench linearity rel L2 {lin:.2e}, max u {:.4}",
                s1[1].iter().fold(0.0f64, |m, &v| m.max(v))
            );
            assert!(lin < 1e-12);
            // residual of the FV system
            let (diag, wx, wy) = cell_fv_weights(&s1[0], 32);
            let r = stencil5_apply(32, &diag, &wx, &wy, &s1[1]);
            let res = (r.iter().map(|v| (v - 1.0).powi(2)).sum::<f64>() / 1024.0).sqrt();
            assert!(res < 1e-10, "{res}");
        }
    }

    #[test]
    fn pdebench_constant_coefficient_matches_cell_laplacian_modes() {
        // a ≡ 1: the FV matrix is the Dirichlet cell Laplacian (ghost at half a cell... a full
        // cell width from the centre), diagonalised by sin(mπ(i+1)/(s+1)) with eigenvalues
        // s²·(4 sin²(mπ/(2(s+1))) + …); check one eigenpair.
        let s = 12;
        let st = Stencil5::new(s).unwrap();
        let (m1, m2) = (2.0, 3.0);
        let th = |m: f64| std::f64::consts::PI * m / (s + 1) as f64;
        let v: Vec<f64> = (0..s * s)
            .map(|p| ((p / s + 1) as f64 * th(m1)).sin() * ((p % s + 1) as f64 * th(m2)).sin())
            .collect();
        let lam = (s * s) as f64
            * (4.0 * (th(m1) / 2.0).sin().powi(2) + 4.0 * (th(m2) / 2.0).sin().powi(2));
        let (diag, wx, wy) = cell_fv_weights(&vec![1.0; s * s], s);
        let f = st.factor(&diag, &wx, &wy, 0).unwrap();
        let mut x: Vec<f64> = v.iter().map(|t| t * lam).collect();
        f.solve_in_place(&mut x);
        assert_close(&x, &v, 1e-11, 1e-12);
    }

    #[test]
    fn darcy_config_rejects_bad_values_and_reports_resolved_defaults() {
        let bad = [
            json!({"resolution": 2}),
            json!({"resolution": 64, "solve_resolution": 100}),
            json!({"a_pos": -1.0}),
            json!({"recipe": "matlab"}),
            json!({"beta": 2.0}),
            json!({"recipe": "pdebench", "alpha": 2.0}),
            json!({"recipe": "pdebench", "resolution": 64, "solve_resolution": 100}),
            json!({"resolutoin": 64}),
        ];
        for b in bad {
            assert!(build(b.clone()).is_err(), "{b} must be rejected");
        }
        let g = build(json!({})).unwrap();
        let p = g.parameters();
        assert_eq!(p["resolution"], 64);
        assert_eq!(p["solve_resolution"], 64);
        assert_eq!(p["a_pos"], 12.0);
        assert_eq!(p["a_neg"], 3.0);
        assert_eq!(p["alpha"], 2.0);
        assert_eq!(p["tau"], 3.0);
        assert_eq!(p["forcing"], 1.0);
        let g = build(json!({"recipe": "pdebench"})).unwrap();
        assert_eq!(g.resolution(), vec![128, 128]);
        assert_eq!(g.parameters()["a_neg"], 0.1);
        let toml_cfg: serde_json::Value =
            toml::from_str("recipe = \"fno\"\nresolution = 85\nsolve_resolution = 421\n").unwrap();
        let cfg: DarcyConfig = crate::generator::parse_config("darcy", toml_cfg).unwrap();
        assert_eq!(cfg.validate().unwrap().solve_resolution, 421);
    }
}
