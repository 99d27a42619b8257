//! Viscous Burgers 1D on the periodic unit interval, FNO recipe.
//!
//! `u_t + (u²/2)_x = ν u_xx` on `[0, 1)`, `u0 ~ GRF_per(α, τ, σ)` (neuraloperator `GaussianRF`
//! law). Recipes (`docs/pde-specs.md` §1.2, §2.3; Li et al., "Fourier Neural Operator
//! for Parametric PDEs", ICLR 2021; peer `pde_ref/burgers_ref.py`):
//!
//! | recipe | ν | α | τ | σ | T |
//! |---|---|---|---|---|---|
//! | `fno` (default, `burgers_data_R10`) | 0.1 | 2 | 5 | 25 | 1 |
//! | `v1000` (`gen_burgers1.m`) | 1e-3 | 2.5 | 7 | 49 | 1 |
//!
//! Solver: pseudo-spectral ETDRK4 ([`crate::etdrk4`]) with `L = −ν(2πk)²` and
//! `N(v) = −½·i(2πk)·rfft(irfft(D·v)²)`, `D = [k ≤ ⅔·N/2]` (2/3 dealiasing on the input of the
//! product), solved on `solve_resolution` points and subsampled by stride to `resolution` (FNO
//! solved at 8192). Oracles: Cole–Hopf / Hopf formula in [`crate::samples::burgers`].
//!
//! Config keys (TOML / JSON), all optional:
//! - `recipe`: `"fno"` | `"v1000"` — sets the defaults of `nu`, `alpha`, `tau`, `sigma`.
//! - `resolution` (1024): output points; `solve_resolution` (= `resolution`): solver points, a
//!   multiple of `resolution`, even.
//! - `nu`, `alpha`, `tau`, `sigma`: viscosity and GRF parameters (recipe defaults).
//! - `t_final` (1.0), `dt` (1e-3): final time and maximal step (the step actually used divides
//!   each output interval exactly; see `dt_used` in the parameters).
//! - `output`: `"final"` (pair `x = u0`, `y = u(T)`, each `[1, R]`) or `"series"` (trajectory
//!   `u` `[n_times, 1, R]` at `n_times` (11) times evenly spaced over `[0, T]`, 0 included).

use num_complex::Complex64;
use serde::Deserialize;
use serde_json::json;

use crate::error::{Error, Result, positive};
use crate::etdrk4::{Etdrk4, Quadratic1d};
use crate::generator::{Generator, TensorLayout};
use crate::grf::GrfPeriodic;

/// Burgers recipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BurgersRecipe {
    /// FNO paper: ν = 0.1, u0 ~ N(0, 625(−Δ+25I)^{−2}).
    Fno,
    /// FNO repo `gen_burgers1.m`: ν = 1e-3, u0 ~ N(0, 49²(−Δ+49I)^{−2.5}).
    V1000,
}

impl BurgersRecipe {
    fn name(self) -> &'static str {
        match self {
            Self::Fno => "fno",
            Self::V1000 => "v1000",
        }
    }

    /// `(ν, α, τ, σ)` of the recipe.
    fn defaults(self) -> (f64, f64, f64, f64) {
        match self {
            Self::Fno => (0.1, 2.0, 5.0, 25.0),
            Self::V1000 => (1e-3, 2.5, 7.0, 49.0),
        }
    }
}

/// What a Burgers sample contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BurgersOutput {
    /// Pair `x = u0`, `y = u(T)`.
    Final,
    /// Trajectory `u` at `n_times` evenly spaced times in `[0, T]`.
    Series,
}

/// Raw Burgers config (see the module docs for the keys).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BurgersConfig {
    /// Recipe name.
    pub recipe: BurgersRecipe,
    /// Output points.
    pub resolution: usize,
    /// Solver points (`None` = `resolution`).
    pub solve_resolution: Option<usize>,
    /// Viscosity ν (recipe default).
    pub nu: Option<f64>,
    /// GRF smoothness α (recipe default).
    pub alpha: Option<f64>,
    /// GRF inverse length scale τ (recipe default).
    pub tau: Option<f64>,
    /// GRF amplitude σ (recipe default).
    pub sigma: Option<f64>,
    /// Final time T.
    pub t_final: f64,
    /// Maximal time step.
    pub dt: f64,
    /// `final` or `series`.
    pub output: BurgersOutput,
    /// Number of frames of a `series` output (t = 0 included).
    pub n_times: usize,
}

impl Default for BurgersConfig {
    fn default() -> Self {
        Self {
            recipe: BurgersRecipe::Fno,
            resolution: 1024,
            solve_resolution: None,
            nu: None,
            alpha: None,
            tau: None,
            sigma: None,
            t_final: 1.0,
            dt: 1e-3,
            output: BurgersOutput::Final,
            n_times: 11,
        }
    }
}

impl BurgersConfig {
    /// Checks every field and resolves the recipe defaults.
    pub fn validate(&self) -> Result<BurgersGenerator> {
        let r = self.resolution;
        if !(8..=1 << 20).contains(&r) || !r.is_multiple_of(2) {
            return Err(Error::config(
                "resolution",
                "an even integer in 8..=1048576",
                r,
            ));
        }
        let ns = self.solve_resolution.unwrap_or(r);
        if !ns.is_multiple_of(r) || ns > 1 << 22 {
            return Err(Error::config(
                "solve_resolution",
                format!("a multiple of resolution = {r}, at most 4194304"),
                ns,
            ));
        }
        let (nu0, a0, t0, s0) = self.recipe.defaults();
        let nu = positive("nu", self.nu.unwrap_or(nu0))?;
        let grf = GrfPeriodic::new(
            self.alpha.unwrap_or(a0),
            self.tau.unwrap_or(t0),
            Some(self.sigma.unwrap_or(s0)),
        );
        grf.validate("", 1)?;
        let t_final = positive("t_final", self.t_final)?;
        let dt = positive("dt", self.dt)?;
        let n_times = match self.output {
            BurgersOutput::Final => 2,
            BurgersOutput::Series => {
                if !(2..=100_000).contains(&self.n_times) {
                    return Err(Error::config(
                        "n_times",
                        "an integer in 2..=100000",
                        self.n_times,
                    ));
                }
                self.n_times
            }
        };
        let interval = t_final / (n_times - 1) as f64;
        let steps_per = (interval / dt - 1e-9).ceil().max(1.0);
        if steps_per * (n_times - 1) as f64 > 1e8 {
            return Err(Error::config(
                "dt",
                "at most 1e8 time steps in total (t_final / dt)",
                dt,
            ));
        }
        let steps_per = steps_per as usize;
        let h = interval / steps_per as f64;
        // L = −ν(2πk)², D = [k ≤ ⅔·N/2]/N, γ = −πk (Nyquist derivative zeroed)
        let nk = ns / 2 + 1;
        let two_pi = 2.0 * std::f64::consts::PI;
        let l: Vec<f64> = (0..nk).map(|k| -nu * (two_pi * k as f64).powi(2)).collect();
        let cut = (2.0 / 3.0) * (ns / 2) as f64;
        let m: Vec<f64> = (0..nk)
            .map(|k| {
                if k as f64 <= cut {
                    1.0 / ns as f64
                } else {
                    0.0
                }
            })
            .collect();
        let mut gamma: Vec<f64> = (0..nk).map(|k| -std::f64::consts::PI * k as f64).collect();
        gamma[nk - 1] = 0.0;
        Ok(BurgersGenerator {
            recipe: self.recipe,
            resolution: r,
            solve_resolution: ns,
            nu,
            grf,
            t_final,
            dt,
            h,
            steps_per_frame: steps_per,
            output: self.output,
            n_times,
            scheme: Etdrk4::new(&l, h),
            nonlin: Quadratic1d::new(ns, m, gamma),
        })
    }
}

/// Validated Burgers generator.
#[derive(Debug, Clone)]
pub struct BurgersGenerator {
    recipe: BurgersRecipe,
    resolution: usize,
    solve_resolution: usize,
    nu: f64,
    grf: GrfPeriodic,
    t_final: f64,
    dt: f64,
    h: f64,
    steps_per_frame: usize,
    output: BurgersOutput,
    n_times: usize,
    scheme: Etdrk4,
    nonlin: Quadratic1d,
}

/// Builds the Burgers generator from a raw config.
pub fn build(config: serde_json::Value) -> Result<Box<dyn Generator>> {
    let c: BurgersConfig = crate::generator::parse_config("burgers", config)?;
    Ok(Box::new(c.validate()?))
}

impl BurgersGenerator {
    /// Solves from `u0` (on `solve_resolution` points) and returns the `n_times` frames at full
    /// solver resolution (frame 0 is `u0`).
    pub fn solve(&self, u0: &[f64], index: u64) -> Result<Vec<Vec<f64>>> {
        let ns = self.solve_resolution;
        let mut v = self.nonlin.rfft(u0);
        let mut ws = self.scheme.workspace();
        let mut scratch = self.nonlin.scratch();
        let mut frames = Vec::with_capacity(self.n_times);
        frames.push(u0.to_vec());
        for f in 1..self.n_times {
            for _ in 0..self.steps_per_frame {
                self.scheme.step_truncated(
                    &mut v,
                    &mut ws,
                    self.nonlin.input_modes(),
                    |x: &[Complex64], o: &mut [Complex64]| self.nonlin.apply(x, o, &mut scratch),
                );
            }
            let mut u = vec![0.0; ns];
            self.nonlin.irfft_into(&v, &mut u, &mut scratch);
            if !u.iter().all(|x| x.is_finite()) {
                return Err(Error::NonFinite {
                    pde: "burgers",
                    index,
                    t: f as f64 * self.h * self.steps_per_frame as f64,
                    hint: format!(
                        "ETDRK4 with dt = {:e} at N = {ns} is unstable for ν = {:e}; \
                         reduce dt or raise solve_resolution",
                        self.h, self.nu
                    ),
                });
            }
            frames.push(u);
        }
        Ok(frames)
    }

    /// The initial condition of sample `(seed, index)` on the solver grid.
    pub fn initial_condition(&self, seed: u64, index: u64) -> Vec<f64> {
        let mut rng = crate::sample_rng(seed, index);
        self.grf.sample_1d(self.solve_resolution, &mut rng)
    }

    fn stride(&self, u: &[f64]) -> Vec<f64> {
        u.iter()
            .step_by(self.solve_resolution / self.resolution)
            .copied()
            .collect()
    }
}

impl Generator for BurgersGenerator {
    fn pde(&self) -> &'static str {
        "burgers"
    }

    fn recipe(&self) -> &str {
        self.recipe.name()
    }

    fn solver(&self) -> String {
        format!(
            "pseudo-spectral ETDRK4 (Cox-Matthews, Kassam-Trefethen contour M=32), 2/3 dealiasing, \
             N = {}, dt = {:e}, stride {} to {}",
            self.solve_resolution,
            self.h,
            self.solve_resolution / self.resolution,
            self.resolution
        )
    }

    fn layout(&self) -> Vec<TensorLayout> {
        let r = self.resolution;
        match self.output {
            BurgersOutput::Final => vec![
                TensorLayout::new("x", &[1, r]),
                TensorLayout::new("y", &[1, r]),
            ],
            BurgersOutput::Series => vec![TensorLayout::new("u", &[self.n_times, 1, r])],
        }
    }

    fn times(&self) -> Option<Vec<f64>> {
        match self.output {
            BurgersOutput::Final => None,
            BurgersOutput::Series => Some(
                (0..self.n_times)
                    .map(|i| self.t_final * i as f64 / (self.n_times - 1) as f64)
                    .collect(),
            ),
        }
    }

    fn resolution(&self) -> Vec<usize> {
        vec![self.resolution]
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "recipe": self.recipe.name(),
            "equation": "u_t + (u^2/2)_x = nu u_xx on [0,1) periodic",
            "resolution": self.resolution,
            "solve_resolution": self.solve_resolution,
            "nu": self.nu,
            "alpha": self.grf.alpha,
            "tau": self.grf.tau,
            "sigma": self.grf.sigma_for(1),
            "t_final": self.t_final,
            "dt": self.dt,
            "dt_used": self.h,
            "steps": self.steps_per_frame * (self.n_times - 1),
            "output": match self.output { BurgersOutput::Final => "final", BurgersOutput::Series => "series" },
            "n_times": self.n_times,
            "scheme": "etdrk4",
            "contour_points": crate::etdrk4::CONTOUR_POINTS,
            "dealias": "2/3 mask k <= (2/3)(N/2) on the product input",
            "initial_condition": "GRF_per: N(0, sigma^2 (-Laplacian + tau^2 I)^(-alpha)), zero mean",
        })
    }

    fn sample(&self, seed: u64, index: u64) -> Result<Vec<Vec<f64>>> {
        let u0 = self.initial_condition(seed, index);
        let frames = self.solve(&u0, index)?;
        Ok(match self.output {
            BurgersOutput::Final => vec![
                self.stride(&frames[0]),
                self.stride(&frames[frames.len() - 1]),
            ],
            BurgersOutput::Series => vec![frames.iter().flat_map(|u| self.stride(u)).collect()],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::burgers::{cole_hopf, hopf_formula, sine_flux_divergence};
    use pno_core::testing::{assert_close, rel_l2};

    fn make(c: serde_json::Value) -> BurgersGenerator {
        crate::generator::parse_config::<BurgersConfig>("burgers", c)
            .unwrap()
            .validate()
            .unwrap()
    }

    fn final_u(g: &BurgersGenerator, u0: &[f64]) -> Vec<f64> {
        g.solve(u0, 0).unwrap().pop().unwrap()
    }

    #[test]
    fn burgers_nonlinear_term_sine_is_exact() {
        let g = make(json!({"resolution": 64}));
        let (u, want) = sine_flux_divergence(64);
        let v = g.nonlin.rfft(&u);
        let mut nl = vec![Complex64::new(0.0, 0.0); 33];
        let mut s = g.nonlin.scratch();
        g.nonlin.apply(&v, &mut nl, &mut s);
        let mut got = vec![0.0; 64];
        g.nonlin.irfft_into(&nl, &mut got, &mut s);
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        eprintln!("burgers nonlinear term max error {err:e}");
        assert_close(&got, &want, 0.0, 1e-12);
    }

    #[test]
    fn burgers_fno_n1024_matches_cole_hopf() {
        let g = make(json!({"resolution": 1024}));
        let u0 = g.initial_condition(99, 0);
        let got = final_u(&g, &u0);
        let exact = cole_hopf(&u0, 0.1, 1.0, 8);
        let e = rel_l2(&got, &exact);
        eprintln!("burgers fno N=1024 dt=1e-3 rel-L2 vs Cole-Hopf(refine 8): {e:e}");
        assert!(e < 1e-7, "{e}");
    }

    #[test]
    fn burgers_dt_halving_error_ratio_is_at_least_8() {
        // ν = 0.1, N = 1024, T = 1, errors vs Cole–Hopf; asymptotic range dt ≤ 2e-3 (§3.3)
        let g = make(json!({}));
        let u0 = g.initial_condition(5, 1);
        let exact = cole_hopf(&u0, 0.1, 1.0, 8);
        let dts = [4e-3, 2e-3, 1e-3, 5e-4];
        let errs: Vec<f64> = dts
            .iter()
            .map(|dt| rel_l2(&final_u(&make(json!({"dt": dt})), &u0), &exact))
            .collect();
        let ratios: Vec<f64> = errs.windows(2).map(|w| w[0] / w[1]).collect();
        eprintln!("burgers rel-L2 vs Cole-Hopf (N=1024, dt {dts:?}) {errs:?} ratios {ratios:?}");
        assert!(ratios[1] >= 8.0 && ratios[2] >= 8.0, "{ratios:?}");
        assert!(errs[2] < 1e-8, "{errs:?}");
    }

    #[test]
    fn burgers_v1000_matches_hopf_formula() {
        let g = make(json!({"recipe": "v1000"}));
        let u0 = g.initial_condition(3, 2);
        let got = final_u(&g, &u0);
        let exact = hopf_formula(&u0, 1e-3, 1.0, 1);
        let e = rel_l2(&got, &exact);
        eprintln!("burgers v1000 N=1024 T=1 dt=1e-3 rel-L2 vs Hopf formula: {e:e}");
        assert!(e < 1e-7, "{e}");
    }

    #[test]
    fn burgers_mean_is_conserved_and_energy_decays() {
        let g = make(json!({"resolution": 256, "output": "series", "n_times": 11, "t_final": 0.5}));
        let mut u0 = g.initial_condition(1, 0);
        u0.iter_mut().for_each(|x| *x += 0.3);
        let frames = g.solve(&u0, 0).unwrap();
        let mean = |u: &[f64]| u.iter().sum::<f64>() / u.len() as f64;
        let energy = |u: &[f64]| 0.5 * u.iter().map(|x| x * x).sum::<f64>() / u.len() as f64;
        let m0 = mean(&u0);
        let drift = frames
            .iter()
            .map(|u| (mean(u) - m0).abs())
            .fold(0.0, f64::max);
        eprintln!("burgers mean drift {drift:e}");
        assert!(drift <= 1e-13, "{drift}");
        for w in frames.windows(2) {
            assert!(energy(&w[1]) <= energy(&w[0]), "energy increased");
        }
        // Galilean-shifted Cole–Hopf holds for the nonzero mean too
        let e = rel_l2(&frames[10], &cole_hopf(&u0, 0.1, 0.5, 4));
        assert!(e < 1e-7, "{e}");
    }

    #[test]
    fn burgers_sample_layout_stride_and_determinism() {
        let g = make(json!({"resolution": 32, "solve_resolution": 128, "t_final": 0.01}));
        let a = g.sample(7, 3).unwrap();
        let b = g.sample(7, 3).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].len(), 32);
        let u0 = g.initial_condition(7, 3);
        assert_eq!(a[0], u0.iter().step_by(4).copied().collect::<Vec<_>>());
        assert_ne!(a, g.sample(7, 4).unwrap());
        let s = make(json!({"resolution": 32, "output": "series", "n_times": 5, "t_final": 0.01}));
        assert_eq!(s.layout(), vec![TensorLayout::new("u", &[5, 1, 32])]);
        assert_eq!(s.times().unwrap().len(), 5);
        assert_eq!(s.sample(0, 0).unwrap()[0].len(), 5 * 32);
    }

    #[test]
    fn burgers_config_defaults_and_rejections() {
        let g = make(json!({}));
        let p = g.parameters();
        assert_eq!(p["nu"], 0.1);
        assert_eq!(p["resolution"], 1024);
        assert_eq!(p["steps"], 1000);
        let v = make(json!({"recipe": "v1000", "nu": 0.01}));
        assert_eq!(v.parameters()["nu"], 0.01);
        assert_eq!(v.parameters()["sigma"], 49.0);
        let bad = |c: serde_json::Value| crate::error::chain(&build(c).err().unwrap());
        assert!(
            bad(json!({"resolution": 100, "solve_resolution": 150})).contains("solve_resolution")
        );
        assert!(bad(json!({"nu": -1.0})).contains("nu"));
        assert!(bad(json!({"alpha": 0.4})).contains("alpha"));
        assert!(bad(json!({"viscosity": 0.1})).contains("viscosity"));
        assert!(bad(json!({"recipe": "pdebench"})).contains("pdebench"));
        assert!(bad(json!({"output": "series", "n_times": 1})).contains("n_times"));
    }
}
