//! Heat equation `u_t = ν Δu` in 2-D with exact solutions (`docs/pde-specs.md` §2.5, oracles §3.6).
//!
//! - **`boundary = "periodic"`** (default, "H-per"): `[0,1)²` with `R²` points `x_i = i/R`,
//!   `u0 ~ GRF_per(α=2.5, τ=7, σ = τ^{(2α−2)/2})` (neuraloperator's `GaussianRF`, the NS
//!   initial law), exact spectral evolution `û_k(t) = û_k(0)·exp(−ν·4π²|k|²·t)`.
//! - **`boundary = "dirichlet"`** ("H-dir"): `[0,1]²`, `u = 0` on the boundary, `R × R` nodes
//!   `x_i = i/(R−1)` (boundary included),
//!   `u0 = Σ_{m,n=1}^{M} ξ_mn (m² + n²)^{−1} sin(mπx) sin(nπy)`, `ξ ~ N(0,1)` (row-major `(m, n)`),
//!   exact decay `exp(−νπ²(m² + n²)t)` per mode, evaluated by separable sine sums.
//!
//! Output: one trajectory tensor `u` shaped `[n_times, 1, R, R]` at `t_j = j·dt_record`
//! (`t_0 = 0`). Oracles: `crate::samples::heat` (single-mode decay, exact Dirichlet sums, a 5-point
//! FD + Crank–Nicolson solver).

pub(crate) mod spectral;

use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{Error, Result};
use crate::generator::{Generator, TensorLayout, all_finite};
use crate::grf::GrfPeriodic;
use crate::rng::sample_rng;
use spectral::{PeriodicSpectral, sup_abs};

/// Raw heat configuration (TOML keys). `None` means the boundary's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeatConfig {
    /// `"periodic"` (default) or `"dirichlet"`.
    pub boundary: String,
    /// Grid side R: periodic points (default 64) or Dirichlet nodes incl. boundary (default 65).
    pub resolution: Option<usize>,
    /// Diffusivity ν (default 0.01).
    pub nu: f64,
    /// Time between stored frames (default 0.05).
    pub dt_record: f64,
    /// Number of stored frames including `t = 0` (default 21).
    pub n_times: usize,
    /// Periodic only: GRF smoothness α (default 2.5).
    pub alpha: Option<f64>,
    /// Periodic only: GRF inverse length scale τ (default 7).
    pub tau: Option<f64>,
    /// Periodic only: GRF amplitude σ (default `τ^{(2α−2)/2}` = 7^1.5).
    pub sigma: Option<f64>,
    /// Dirichlet only: number of sine modes per axis M (default 16).
    pub modes: Option<usize>,
}

impl Default for HeatConfig {
    fn default() -> Self {
        Self {
            boundary: "periodic".to_string(),
            resolution: None,
            nu: 0.01,
            dt_record: 0.05,
            n_times: 21,
            alpha: None,
            tau: None,
            sigma: None,
            modes: None,
        }
    }
}

/// Boundary condition and initial-condition family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HeatBoundary {
    /// Periodic torus, GRF initial condition.
    Periodic(GrfPeriodic),
    /// Zero Dirichlet, `modes × modes` random sine series.
    Dirichlet {
        /// Sine modes per axis.
        modes: usize,
    },
}

/// A validated heat configuration with every default resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatParams {
    /// Boundary condition and initial law.
    pub boundary: HeatBoundary,
    /// Grid side R.
    pub resolution: usize,
    /// Diffusivity ν.
    pub nu: f64,
    /// Time between frames.
    pub dt_record: f64,
    /// Number of frames (incl. `t = 0`).
    pub n_times: usize,
}

pub(crate) fn reject_unused<T: std::fmt::Debug>(
    field: &str,
    v: &Option<T>,
    which: &str,
) -> Result<()> {
    match v {
        Some(x) => Err(Error::config(
            field,
            format!("no value (not used with {which})"),
            format!("{x:?}"),
        )),
        None => Ok(()),
    }
}

impl HeatConfig {
    /// Range-checks every field and resolves the defaults.
    pub fn validate(&self) -> Result<HeatParams> {
        if !(self.nu.is_finite() && self.nu >= 0.0) {
            return Err(Error::config("nu", "a finite number >= 0", self.nu));
        }
        if !(self.dt_record.is_finite() && self.dt_record > 0.0) {
            return Err(Error::config(
                "dt_record",
                "a finite number > 0",
                self.dt_record,
            ));
        }
        if !(1..=100_000).contains(&self.n_times) {
            return Err(Error::config(
                "n_times",
                "between 1 and 100000 frames",
                self.n_times,
            ));
        }
        let (boundary, resolution) = match self.boundary.as_str() {
            "periodic" => {
                reject_unused("modes", &self.modes, "boundary = \"periodic\"")?;
                let g = GrfPeriodic::new(
                    self.alpha.unwrap_or(2.5),
                    self.tau.unwrap_or(7.0),
                    self.sigma,
                );
                g.validate("", 2)?;
                let r = self.resolution.unwrap_or(64);
                if !(2..=4096).contains(&r) {
                    return Err(Error::config("resolution", "between 2 and 4096 points", r));
                }
                (HeatBoundary::Periodic(g), r)
            }
            "dirichlet" => {
                reject_unused("alpha", &self.alpha, "boundary = \"dirichlet\"")?;
                reject_unused("tau", &self.tau, "boundary = \"dirichlet\"")?;
                reject_unused("sigma", &self.sigma, "boundary = \"dirichlet\"")?;
                let modes = self.modes.unwrap_or(16);
                if !(1..=1024).contains(&modes) {
                    return Err(Error::config("modes", "between 1 and 1024", modes));
                }
                let r = self.resolution.unwrap_or(65);
                if !(3..=4097).contains(&r) {
                    return Err(Error::config("resolution", "between 3 and 4097 nodes", r));
                }
                (HeatBoundary::Dirichlet { modes }, r)
            }
            other => {
                return Err(Error::config(
                    "boundary",
                    "\"periodic\" or \"dirichlet\"",
                    format!("\"{other}\""),
                ));
            }
        };
        Ok(HeatParams {
            boundary,
            resolution,
            nu: self.nu,
            dt_record: self.dt_record,
            n_times: self.n_times,
        })
    }
}

/// Separable sine-series evaluator on the `R × R` node grid `x_i = i/(R−1)`:
/// `u_ij = Σ_{m,n=1}^{M} C_mn sin(mπx_i) sin(nπx_j)`, boundary values exactly zero.
#[derive(Debug, Clone)]
pub(crate) struct SineSeries {
    r: usize,
    modes: usize,
    /// `sin(mπx_i)`, row-major `[i][m−1]`.
    s: Vec<f64>,
    /// Transposed table, row-major `[m−1][j]`.
    st: Vec<f64>,
}

impl SineSeries {
    pub(crate) fn new(r: usize, modes: usize) -> Self {
        let h = 1.0 / (r - 1) as f64;
        let mut s = vec![0.0; r * modes];
        let mut st = vec![0.0; r * modes];
        for i in 1..r - 1 {
            for m in 0..modes {
                let v = (std::f64::consts::PI * (m + 1) as f64 * i as f64 * h).sin();
                s[i * modes + m] = v;
                st[m * r + i] = v;
            }
        }
        Self { r, modes, s, st }
    }

    /// Writes the field of coefficients `c` (`M × M`, row-major `(m, n)`) into `out` (`R²`).
    pub(crate) fn eval(&self, c: &[f64], out: &mut [f64], t: &mut Vec<f64>) {
        let (r, m) = (self.r, self.modes);
        // T = S·C  (R × M)
        t.clear();
        t.resize(r * m, 0.0);
        for i in 1..r - 1 {
            let si = &self.s[i * m..(i + 1) * m];
            let ti = &mut t[i * m..(i + 1) * m];
            for (a, &sa) in si.iter().enumerate() {
                let ca = &c[a * m..(a + 1) * m];
                for (tv, cv) in ti.iter_mut().zip(ca) {
                    *tv += sa * cv;
                }
            }
        }
        // U = T·Sᵀ, row by row as axpys over contiguous rows of Sᵀ
        for (i, row) in out.chunks_exact_mut(r).enumerate() {
            row.fill(0.0);
            if i == 0 || i == r - 1 {
                continue;
            }
            for (b, &tb) in t[i * m..(i + 1) * m].iter().enumerate() {
                for (o, sv) in row.iter_mut().zip(&self.st[b * r..(b + 1) * r]) {
                    *o += tb * sv;
                }
            }
        }
    }
}

enum Plan {
    Periodic {
        /// Per-mode GRF amplitudes (see [`PeriodicSpectral::grf_amplitudes`]).
        amp: Vec<f64>,
        spectral: PeriodicSpectral,
        /// `exp(−ν4π²|k|² t_j)` per frame, in spectral storage order.
        decay: Vec<Vec<f64>>,
        /// `max |decay|` (see [`sup_abs`]).
        decay_sup: f64,
    },
    Dirichlet {
        series: SineSeries,
        /// `(m² + n²)^{−1}` weights and `exp(−νπ²(m² + n²) t_j)` per frame.
        weight: Vec<f64>,
        decay: Vec<Vec<f64>>,
    },
}

/// The heat generator.
pub struct Heat {
    params: HeatParams,
    plan: Plan,
}

impl std::fmt::Debug for Heat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heat")
            .field("params", &self.params)
            .finish()
    }
}

impl Heat {
    /// Plans transforms and per-frame decay tables.
    pub fn new(params: HeatParams) -> Self {
        let times: Vec<f64> = (0..params.n_times)
            .map(|j| j as f64 * params.dt_record)
            .collect();
        let pi2 = std::f64::consts::PI * std::f64::consts::PI;
        let plan = match params.boundary {
            HeatBoundary::Periodic(grf) => {
                let spectral = PeriodicSpectral::new(params.resolution);
                let ksq = spectral.ksq();
                let decay: Vec<Vec<f64>> = times
                    .iter()
                    .map(|t| {
                        ksq.iter()
                            .map(|q| (-params.nu * 4.0 * pi2 * q * t).exp())
                            .collect()
                    })
                    .collect();
                Plan::Periodic {
                    amp: spectral.grf_amplitudes(&grf),
                    spectral,
                    decay_sup: sup_abs(&decay),
                    decay,
                }
            }
            HeatBoundary::Dirichlet { modes } => {
                let q: Vec<f64> = (0..modes * modes)
                    .map(|p| ((p / modes + 1).pow(2) + (p % modes + 1).pow(2)) as f64)
                    .collect();
                let weight = q.iter().map(|q| 1.0 / q).collect();
                let decay: Vec<Vec<f64>> = times
                    .iter()
                    .map(|t| q.iter().map(|q| (-params.nu * pi2 * q * t).exp()).collect())
                    .collect();
                Plan::Dirichlet {
                    series: SineSeries::new(params.resolution, modes),
                    weight,
                    decay,
                }
            }
        };
        Self { params, plan }
    }

    /// The resolved parameters.
    pub fn params(&self) -> &HeatParams {
        &self.params
    }

    /// Evolves a given periodic initial field `u0` (`R²`) to every frame (periodic boundary
    /// only; `None` otherwise). Used by tests with hand-made initial conditions.
    pub fn evolve_periodic(&self, u0: &[f64]) -> Option<Result<Vec<f64>>> {
        match &self.plan {
            Plan::Periodic {
                spectral,
                decay,
                decay_sup,
                ..
            } => {
                let mut work = spectral.work();
                Some(
                    spectral
                        .forward(u0, &mut work)
                        .and_then(|s| {
                            spectral
                                .frames_linear(decay.len(), &[&s], &[*decay_sup], |j, _| &decay[j])
                        })
                        .map(|(u, _)| u),
                )
            }
            Plan::Dirichlet { .. } => None,
        }
    }

    /// Evolves Dirichlet sine coefficients `c` (`M × M`, row-major) to every frame.
    pub fn evolve_dirichlet(&self, c: &[f64]) -> Option<Vec<f64>> {
        match &self.plan {
            Plan::Dirichlet { series, decay, .. } => Some(Self::frames_dirichlet(
                series,
                decay,
                c,
                self.params.resolution,
            )),
            Plan::Periodic { .. } => None,
        }
    }

    fn frames_dirichlet(series: &SineSeries, decay: &[Vec<f64>], c: &[f64], r: usize) -> Vec<f64> {
        let r2 = r * r;
        let mut out = vec![0.0; r2 * decay.len()];
        let mut ct = vec![0.0; c.len()];
        let mut t = Vec::new();
        for (d, frame) in decay.iter().zip(out.chunks_exact_mut(r2)) {
            for ((o, a), b) in ct.iter_mut().zip(c).zip(d) {
                *o = a * b;
            }
            series.eval(&ct, frame, &mut t);
        }
        out
    }
}

impl Generator for Heat {
    fn pde(&self) -> &'static str {
        "heat"
    }

    fn recipe(&self) -> &str {
        match self.params.boundary {
            HeatBoundary::Periodic(_) => "periodic",
            HeatBoundary::Dirichlet { .. } => "dirichlet",
        }
    }

    fn solver(&self) -> String {
        match self.params.boundary {
            HeatBoundary::Periodic(_) => "exact spectral evolution exp(-nu 4 pi^2 |k|^2 t), real FFTs".to_string(),
            HeatBoundary::Dirichlet { .. } => {
                "exact sine-series evolution exp(-nu pi^2 (m^2+n^2) t), separable sine sums on nodes".to_string()
            }
        }
    }

    fn layout(&self) -> Vec<TensorLayout> {
        let r = self.params.resolution;
        vec![TensorLayout::new("u", &[self.params.n_times, 1, r, r])]
    }

    fn times(&self) -> Option<Vec<f64>> {
        Some(
            (0..self.params.n_times)
                .map(|j| j as f64 * self.params.dt_record)
                .collect(),
        )
    }

    fn resolution(&self) -> Vec<usize> {
        vec![self.params.resolution; 2]
    }

    fn parameters(&self) -> serde_json::Value {
        let p = &self.params;
        let mut v = json!({
            "resolution": p.resolution,
            "nu": p.nu,
            "dt_record": p.dt_record,
            "n_times": p.n_times,
            "t_final": (p.n_times - 1) as f64 * p.dt_record,
        });
        match p.boundary {
            HeatBoundary::Periodic(g) => {
                v["boundary"] = json!("periodic");
                v["grid"] = json!("x_i = i/R on [0,1)");
                v["alpha"] = json!(g.alpha);
                v["tau"] = json!(g.tau);
                v["sigma"] = json!(g.sigma_for(2));
                v["initial_condition"] =
                    json!("GRF_per: sigma^2(-Lap + tau^2)^(-alpha), mean mode removed");
            }
            HeatBoundary::Dirichlet { modes } => {
                v["boundary"] = json!("dirichlet");
                v["grid"] = json!("nodes x_i = i/(R-1), boundary included");
                v["modes"] = json!(modes);
                v["initial_condition"] =
                    json!("sum xi_mn (m^2+n^2)^-1 sin(m pi x) sin(n pi y), xi ~ N(0,1)");
            }
        }
        v
    }

    fn sample(&self, seed: u64, index: u64) -> Result<Vec<Vec<f64>>> {
        let mut rng = sample_rng(seed, index);
        let (u, finite) = match &self.plan {
            Plan::Periodic {
                amp,
                spectral,
                decay,
                decay_sup,
            } => {
                let s0 = spectral.grf_spectrum(amp, &mut rng);
                spectral.frames_linear(decay.len(), &[&s0], &[*decay_sup], |j, _| &decay[j])?
            }
            Plan::Dirichlet {
                series,
                weight,
                decay,
            } => {
                let c: Vec<f64> = weight
                    .iter()
                    .map(|w| w * rng.sample::<f64, _>(StandardNormal))
                    .collect();
                let u = Self::frames_dirichlet(series, decay, &c, self.params.resolution);
                let finite = all_finite(&u);
                (u, finite)
            }
        };
        if !finite {
            return Err(Error::NonFinite {
                pde: "heat",
                index,
                t: 0.0,
                hint: "check nu, sigma and the resolution are moderate".into(),
            });
        }
        Ok(vec![u])
    }

    /// The initial condition `u(t = 0)` (`[1, 1, R, R]`) without evolving it.
    fn input(&self, seed: u64, index: u64) -> Result<Vec<Vec<f64>>> {
        let mut rng = sample_rng(seed, index);
        let u0 = match &self.plan {
            Plan::Periodic {
                amp,
                spectral,
                decay,
                decay_sup,
            } => {
                let s0 = spectral.grf_spectrum(amp, &mut rng);
                let (u, _) = spectral.frames_linear(1, &[&s0], &[*decay_sup], |j, _| &decay[j])?;
                u
            }
            Plan::Dirichlet {
                series,
                weight,
                decay,
            } => {
                let c: Vec<f64> = weight
                    .iter()
                    .map(|w| w * rng.sample::<f64, _>(StandardNormal))
                    .collect();
                Self::frames_dirichlet(series, &decay[..1], &c, self.params.resolution)
            }
        };
        if !all_finite(&u0) {
            return Err(Error::NonFinite {
                pde: "heat",
                index,
                t: 0.0,
                hint: "check sigma and the resolution are moderate".into(),
            });
        }
        Ok(vec![u0])
    }
}

/// Builds the heat generator from a raw config (see [`HeatConfig`]).
pub fn build(config: serde_json::Value) -> Result<Box<dyn Generator>> {
    let cfg: HeatConfig = crate::generator::parse_config("heat", config)?;
    Ok(Box::new(Heat::new(cfg.validate()?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::heat as oracle;
    use pno_core::testing::{assert_close, rel_l2};

    fn heat(json: serde_json::Value) -> Heat {
        let cfg: HeatConfig = crate::generator::parse_config("heat", json).unwrap();
        Heat::new(cfg.validate().unwrap())
    }

    #[test]
    fn heat_input_is_the_initial_frame_without_the_evolution() {
        for cfg in [
            json!({"resolution": 16, "n_times": 4}),
            json!({"boundary": "dirichlet", "resolution": 9, "modes": 4, "n_times": 3}),
        ] {
            let g = build(cfg).unwrap();
            let r = g.resolution()[0];
            assert_eq!(
                crate::input_layout(g.as_ref()),
                vec![TensorLayout::new("u", &[1, 1, r, r])]
            );
            for index in [0, 7, 1 << 33] {
                let full = g.sample(4, index).unwrap().remove(0);
                let input = g.input(4, index).unwrap();
                assert_eq!(input.len(), 1);
                assert_eq!(input[0], full[..r * r], "index {index}");
            }
        }
    }

    #[test]
    fn heat_periodic_single_mode_decays_exactly() {
        let n = 32;
        let g = heat(json!({"resolution": n, "n_times": 5, "dt_record": 0.25}));
        let mut worst = 0.0f64;
        for (kx, ky) in [(1.0, 0.0), (1.0, 1.0), (3.0, 0.0), (5.0, -7.0), (16.0, 0.0)] {
            let u0 = oracle::periodic_mode(n, kx, ky);
            let u = g.evolve_periodic(&u0).unwrap().unwrap();
            for (j, frame) in u.chunks_exact(n * n).enumerate() {
                let d = oracle::periodic_decay(0.01, kx, ky, 0.25 * j as f64);
                let want: Vec<f64> = u0.iter().map(|v| v * d).collect();
                let err = frame
                    .iter()
                    .zip(&want)
                    .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
                worst = worst.max(err);
            }
        }
        eprintln!("heat periodic single-mode max error {worst:.2e}");
        assert!(worst < 1e-13);
    }

    #[test]
    fn heat_periodic_sample_conserves_mean_and_dissipates() {
        let n = 32;
        let g = heat(json!({"resolution": n}));
        assert_eq!(g.layout(), vec![TensorLayout::new("u", &[21, 1, n, n])]);
        for index in 0..3 {
            let u = g.sample(1, index).unwrap().remove(0);
            let frames: Vec<&[f64]> = u.chunks_exact(n * n).collect();
            let (max0, min0) = frames[0]
                .iter()
                .fold((f64::MIN, f64::MAX), |(a, b), &v| (a.max(v), b.min(v)));
            let mut prev_energy = f64::INFINITY;
            for f in &frames {
                let mean = f.iter().sum::<f64>() / (n * n) as f64;
                assert!(mean.abs() < 1e-15, "mean drift {mean}");
                let e = f.iter().map(|v| v * v).sum::<f64>();
                assert!(e <= prev_energy * (1.0 + 1e-14), "energy increased");
                prev_energy = e;
                // maximum principle (discrete kernel of the smooth GRF: tolerance 1e-6 of the range)
                let tol = 1e-6 * (max0 - min0);
                assert!(
                    f.iter().all(|&v| v <= max0 + tol && v >= min0 - tol),
                    "max principle"
                );
            }
        }
    }

    #[test]
    fn heat_periodic_initial_frame_matches_grf_sampler() {
        let n = 16;
        let g = heat(json!({"resolution": n, "n_times": 2}));
        let u = g.sample(9, 3).unwrap().remove(0);
        let want = GrfPeriodic::new(2.5, 7.0, None).sample_2d(n, &mut sample_rng(9, 3));
        assert_close(&u[..n * n], &want, 1e-12, 1e-14);
    }

    #[test]
    fn heat_dirichlet_generator_matches_direct_sine_sum() {
        let (s, modes) = (17, 6);
        let g = heat(
            json!({"boundary": "dirichlet", "resolution": s, "modes": modes, "n_times": 4, "dt_record": 0.3}),
        );
        let c: Vec<f64> = (0..modes * modes).map(|p| (p as f64 * 1.3).sin()).collect();
        let u = g.evolve_dirichlet(&c).unwrap();
        for (j, frame) in u.chunks_exact(s * s).enumerate() {
            let want = oracle::dirichlet_exact(&c, modes, 0.01, 0.3 * j as f64, s);
            assert_close(frame, &want, 1e-12, 1e-13);
        }
        // a sample: zero boundary, energy non-increasing
        let u = g.sample(2, 0).unwrap().remove(0);
        let mut prev = f64::INFINITY;
        for frame in u.chunks_exact(s * s) {
            for i in 0..s {
                assert_eq!(frame[i], 0.0);
                assert_eq!(frame[i * s], 0.0);
                assert_eq!(frame[i * s + s - 1], 0.0);
                assert_eq!(frame[(s - 1) * s + i], 0.0);
            }
            let e = frame.iter().map(|v| v * v).sum::<f64>();
            assert!(e <= prev * (1.0 + 1e-14));
            prev = e;
        }
    }

    #[test]
    fn heat_dirichlet_fd_cn_matches_discrete_mode_decay() {
        let (s, modes, nu, dt, steps) = (33, 8, 0.01, 0.01, 20);
        let h = 1.0 / (s - 1) as f64;
        let c: Vec<f64> = (0..modes * modes)
            .map(|p| (p as f64 * 0.77).cos() / (1 + p) as f64)
            .collect();
        let u0 = oracle::dirichlet_exact(&c, modes, nu, 0.0, s);
        let fd = oracle::fd_cn_dirichlet(&u0, s, nu, dt, steps).unwrap();
        let cd: Vec<f64> = (0..modes * modes)
            .map(|p| {
                c[p] * oracle::cn_mode_factor(p / modes + 1, p % modes + 1, h, nu, dt)
                    .powi(steps as i32)
            })
            .collect();
        let want = oracle::dirichlet_exact(&cd, modes, 0.0, 0.0, s);
        let err = rel_l2(&fd, &want);
        eprintln!("heat FD-CN vs discrete mode decay rel L2 {err:.2e}");
        assert!(err < 1e-12);
    }

    #[test]
    fn heat_dirichlet_fd_cn_converges_second_order_to_generator() {
        // 4 modes, T = 0.1, dt = 1e-3: the time error (~1e-7) is far below the space error.
        let (modes, nu, t) = (4, 0.05, 0.1);
        let c: Vec<f64> = (0..modes * modes).map(|p| (p as f64 * 2.1).sin()).collect();
        let mut errs = Vec::new();
        for s in [17, 33, 65] {
            let g = heat(
                json!({"boundary": "dirichlet", "resolution": s, "modes": modes, "nu": nu, "n_times": 2, "dt_record": t}),
            );
            let exact = g.evolve_dirichlet(&c).unwrap();
            let fd = oracle::fd_cn_dirichlet(&exact[..s * s], s, nu, 1e-3, 100).unwrap();
            let e = fd
                .iter()
                .zip(&exact[s * s..])
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            errs.push(e);
        }
        for w in errs.windows(2) {
            let order = (w[0] / w[1]).log2();
            eprintln!(
                "heat FD-CN vs exact: Linf {:.3e} -> {:.3e} order {order:.3}",
                w[0], w[1]
            );
            assert!((order - 2.0).abs() < 0.15, "order {order}");
        }
    }

    #[test]
    fn heat_config_rejects_bad_values_and_resolves_defaults() {
        for b in [
            json!({"nu": -1.0}),
            json!({"dt_record": 0.0}),
            json!({"n_times": 0}),
            json!({"boundary": "neumann"}),
            json!({"boundary": "dirichlet", "alpha": 3.0}),
            json!({"modes": 4}),
            json!({"alpha": 0.5}),
            json!({"boundary": "dirichlet", "resolution": 2}),
            json!({"viscosity": 0.1}),
        ] {
            assert!(build(b.clone()).is_err(), "{b} must be rejected");
        }
        let g = build(json!({})).unwrap();
        let p = g.parameters();
        assert_eq!(
            (p["resolution"].clone(), p["n_times"].clone()),
            (json!(64), json!(21))
        );
        assert!((p["sigma"].as_f64().unwrap() - 7f64.powf(1.5)).abs() < 1e-12);
        let t = g.times().unwrap();
        assert_eq!(t.len(), 21);
        assert!((t[20] - 1.0).abs() < 1e-12);
        let g = build(json!({"boundary": "dirichlet"})).unwrap();
        assert_eq!(g.resolution(), vec![65, 65]);
        assert_eq!(g.parameters()["modes"], 16);
    }
}
