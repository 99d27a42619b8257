//! Wave equation `u_tt = c²Δu` in 2-D with exact solutions (`docs/pde-specs.md` §2.6, §3.6).
//!
//! - **`boundary = "periodic"`** (default, "W-per"): `[0,1)²` with `R²` points `x_i = i/R`,
//!   `u0 ~ GRF_per(α=2.5, τ=7, σ = 7^1.5)`, `v0 = 0` (or an independent GRF with
//!   `initial_velocity = "grf"`, drawn after `u0`), exact propagator
//!   `û_k(t) = û_k(0)cos(ω_k t) + v̂_k(0)sin(ω_k t)/ω_k`, `ω_k = 2πc|k|` (`k = 0`: `û_0 + v̂_0 t`).
//!   Output `u` `[n_times, 1, R, R]` at `t_j = j·T/(n_times−1)`, default `T = 1/c` (one period of
//!   the lowest mode).
//! - **`boundary = "dirichlet"`** ("W-dir", CNO style, Raonic et al. 2023):
//!   `u(x,y,t) = (π/K²) Σ_{i,j=1}^{K} a_ij (i²+j²)^{−r} sin(πix) sin(πjy) cos(cπt√(i²+j²))`,
//!   `a_ij ~ U[−1,1]` (row-major draws), K = 24, r = 1, c = 0.1, T = 5, on `R × R` nodes
//!   `x_i = i/(R−1)` (zero boundary included). Output pair `x = u(·,0)`, `y = u(·,T)`, `[1, R, R]`.
//!
//! Oracles: `crate::samples::wave` (independent complex-FFT propagator, spectral energy, direct
//! sine sums, a second-order leapfrog solver).

use num_complex::Complex64;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{Error, Result};
use crate::generator::{Generator, TensorLayout, all_finite};
use crate::grf::GrfPeriodic;
use crate::heat::SineSeries;
use crate::heat::reject_unused;
use crate::heat::spectral::{PeriodicSpectral, sup_abs};
use crate::rng::sample_rng;

/// Raw wave configuration (TOML keys). `None` means the boundary's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WaveConfig {
    /// `"periodic"` (default) or `"dirichlet"`.
    pub boundary: String,
    /// Grid side R (default 64; Dirichlet nodes include the boundary).
    pub resolution: usize,
    /// Wave speed c (periodic 1, Dirichlet 0.1).
    pub c: Option<f64>,
    /// Final time T (periodic `1/c`, Dirichlet 5).
    pub t_final: Option<f64>,
    /// Periodic only: stored frames including `t = 0` (default 21).
    pub n_times: Option<usize>,
    /// Periodic only: `"zero"` (default) or `"grf"`.
    pub initial_velocity: Option<String>,
    /// Periodic only: GRF smoothness α (default 2.5).
    pub alpha: Option<f64>,
    /// Periodic only: GRF inverse length scale τ (default 7).
    pub tau: Option<f64>,
    /// Periodic only: GRF amplitude σ (default `τ^{(2α−2)/2}`).
    pub sigma: Option<f64>,
    /// Dirichlet only: sine modes per axis K (default 24).
    pub modes: Option<usize>,
    /// Dirichlet only: spectral decay exponent r (default 1).
    pub decay: Option<f64>,
}

impl Default for WaveConfig {
    fn default() -> Self {
        Self {
            boundary: "periodic".to_string(),
            resolution: 64,
            c: None,
            t_final: None,
            n_times: None,
            initial_velocity: None,
            alpha: None,
            tau: None,
            sigma: None,
            modes: None,
            decay: None,
        }
    }
}

/// Boundary condition and initial-condition family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WaveBoundary {
    /// Periodic torus with GRF displacement (and optionally GRF velocity).
    Periodic {
        /// Law of `u0` (and `v0`).
        grf: GrfPeriodic,
        /// Whether `v0` is an independent GRF (otherwise zero).
        grf_velocity: bool,
        /// Stored frames incl. `t = 0`.
        n_times: usize,
    },
    /// Zero Dirichlet, CNO-style random sine series.
    Dirichlet {
        /// Sine modes per axis K.
        modes: usize,
        /// Decay exponent r.
        decay: f64,
    },
}

/// A validated wave configuration with every default resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveParams {
    /// Boundary condition and initial law.
    pub boundary: WaveBoundary,
    /// Grid side R.
    pub resolution: usize,
    /// Wave speed c.
    pub c: f64,
    /// Final time T.
    pub t_final: f64,
}

impl WaveConfig {
    /// Range-checks every field and resolves the defaults.
    pub fn validate(&self) -> Result<WaveParams> {
        let periodic = match self.boundary.as_str() {
            "periodic" => true,
            "dirichlet" => false,
            other => {
                return Err(Error::config(
                    "boundary",
                    "\"periodic\" or \"dirichlet\"",
                    format!("\"{other}\""),
                ));
            }
        };
        let c = self.c.unwrap_or(if periodic { 1.0 } else { 0.1 });
        if !(c.is_finite() && c > 0.0) {
            return Err(Error::config("c", "a finite number > 0", c));
        }
        let t_final = self.t_final.unwrap_or(if periodic { 1.0 / c } else { 5.0 });
        if !(t_final.is_finite() && t_final >= 0.0) {
            return Err(Error::config("t_final", "a finite number >= 0", t_final));
        }
        let r = self.resolution;
        let boundary = if periodic {
            reject_unused("modes", &self.modes, "boundary = \"periodic\"")?;
            reject_unused("decay", &self.decay, "boundary = \"periodic\"")?;
            if !(2..=4096).contains(&r) {
                return Err(Error::config("resolution", "between 2 and 4096 points", r));
            }
            let grf = GrfPeriodic::new(
                self.alpha.unwrap_or(2.5),
                self.tau.unwrap_or(7.0),
                self.sigma,
            );
            grf.validate("", 2)?;
            let grf_velocity = match self.initial_velocity.as_deref().unwrap_or("zero") {
                "zero" => false,
                "grf" => true,
                other => {
                    return Err(Error::config(
                        "initial_velocity",
                        "\"zero\" or \"grf\"",
                        format!("\"{other}\""),
                    ));
                }
            };
            let n_times = self.n_times.unwrap_or(21);
            if !(2..=100_000).contains(&n_times) {
                return Err(Error::config(
                    "n_times",
                    "between 2 and 100000 frames",
                    n_times,
                ));
            }
            WaveBoundary::Periodic {
                grf,
                grf_velocity,
                n_times,
            }
        } else {
            let which = "boundary = \"dirichlet\"";
            reject_unused("n_times", &self.n_times, which)?;
            reject_unused("initial_velocity", &self.initial_velocity, which)?;
            reject_unused("alpha", &self.alpha, which)?;
            reject_unused("tau", &self.tau, which)?;
            reject_unused("sigma", &self.sigma, which)?;
            if !(3..=4097).contains(&r) {
                return Err(Error::config("resolution", "between 3 and 4097 nodes", r));
            }
            let modes = self.modes.unwrap_or(24);
            if !(1..=1024).contains(&modes) {
                return Err(Error::config("modes", "between 1 and 1024", modes));
            }
            let decay = self.decay.unwrap_or(1.0);
            if !(decay.is_finite() && decay >= 0.0) {
                return Err(Error::config("decay", "a finite number >= 0", decay));
            }
            WaveBoundary::Dirichlet { modes, decay }
        };
        Ok(WaveParams {
            boundary,
            resolution: r,
            c,
            t_final,
        })
    }
}

enum Plan {
    Periodic {
        /// Per-mode GRF amplitudes (see [`PeriodicSpectral::grf_amplitudes`]).
        amp: Vec<f64>,
        grf_velocity: bool,
        spectral: PeriodicSpectral,
        /// Per frame: `cos(ω_k t_j)` and `sin(ω_k t_j)/ω_k` (`t_j` at `k = 0`).
        cos: Vec<Vec<f64>>,
        sinc: Vec<Vec<f64>>,
        /// `[max |cos|, max |sinc|]` (see [`sup_abs`]).
        sup: [f64; 2],
    },
    Dirichlet {
        series: SineSeries,
        /// `(π/K²)(i²+j²)^{−r}` and `cos(cπT√(i²+j²))`.
        weight: Vec<f64>,
        cos_t: Vec<f64>,
    },
}

/// The wave generator.
pub struct Wave {
    params: WaveParams,
    plan: Plan,
}

impl std::fmt::Debug for Wave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wave")
            .field("params", &self.params)
            .finish()
    }
}

impl Wave {
    /// Plans transforms and propagator tables.
    pub fn new(params: WaveParams) -> Self {
        let pi = std::f64::consts::PI;
        let plan = match params.boundary {
            WaveBoundary::Periodic {
                grf,
                grf_velocity,
                n_times,
            } => {
                let spectral = PeriodicSpectral::new(params.resolution);
                let omega: Vec<f64> = spectral
                    .ksq()
                    .iter()
                    .map(|q| 2.0 * pi * params.c * q.sqrt())
                    .collect();
                let times = Self::frame_times(params.t_final, n_times);
                let cos: Vec<Vec<f64>> = times
                    .iter()
                    .map(|t| omega.iter().map(|w| (w * t).cos()).collect())
                    .collect();
                let sinc: Vec<Vec<f64>> = times
                    .iter()
                    .map(|t| {
                        omega
                            .iter()
                            .map(|&w| if w > 0.0 { (w * t).sin() / w } else { *t })
                            .collect()
                    })
                    .collect();
                Plan::Periodic {
                    amp: spectral.grf_amplitudes(&grf),
                    grf_velocity,
                    spectral,
                    sup: [sup_abs(&cos), sup_abs(&sinc)],
                    cos,
                    sinc,
                }
            }
            WaveBoundary::Dirichlet { modes, decay } => {
                let q: Vec<f64> = (0..modes * modes)
                    .map(|p| ((p / modes + 1).pow(2) + (p % modes + 1).pow(2)) as f64)
                    .collect();
                let k2 = (modes * modes) as f64;
                Plan::Dirichlet {
                    series: SineSeries::new(params.resolution, modes),
                    weight: q.iter().map(|q| pi / k2 * q.powf(-decay)).collect(),
                    cos_t: q
                        .iter()
                        .map(|q| (params.c * pi * params.t_final * q.sqrt()).cos())
                        .collect(),
                }
            }
        };
        Self { params, plan }
    }

    fn frame_times(t_final: f64, n_times: usize) -> Vec<f64> {
        (0..n_times)
            .map(|j| t_final * j as f64 / (n_times - 1) as f64)
            .collect()
    }

    /// The resolved parameters.
    pub fn params(&self) -> &WaveParams {
        &self.params
    }

    /// Propagates given periodic fields `u0`, `v0` (`R²` each) to every frame (periodic only).
    pub fn evolve_periodic(&self, u0: &[f64], v0: &[f64]) -> Option<Result<Vec<f64>>> {
        match &self.plan {
            Plan::Periodic {
                spectral,
                cos,
                sinc,
                sup,
                ..
            } => {
                let mut w = spectral.work();
                let su = spectral.forward(u0, &mut w);
                let sv = spectral.forward(v0, &mut w);
                Some(su.and_then(|su| {
                    sv.and_then(|sv| {
                        self.frames_periodic(spectral, (cos, sinc, sup), &su, Some(&sv))
                    })
                    .map(|(u, _)| u)
                }))
            }
            Plan::Dirichlet { .. } => None,
        }
    }

    /// `u(·,0)` and `u(·,T)` for given Dirichlet amplitudes `a` (`K × K`, row-major).
    pub fn evolve_dirichlet(&self, a: &[f64]) -> Option<(Vec<f64>, Vec<f64>)> {
        match &self.plan {
            Plan::Dirichlet {
                series,
                weight,
                cos_t,
            } => {
                let r = self.params.resolution;
                let c0: Vec<f64> = a.iter().zip(weight).map(|(a, w)| a * w).collect();
                let ct: Vec<f64> = c0.iter().zip(cos_t).map(|(a, c)| a * c).collect();
                let (mut u0, mut ut, mut t) = (vec![0.0; r * r], vec![0.0; r * r], Vec::new());
                series.eval(&c0, &mut u0, &mut t);
                series.eval(&ct, &mut ut, &mut t);
                Some((u0, ut))
            }
            Plan::Periodic { .. } => None,
        }
    }

    fn frames_periodic(
        &self,
        spectral: &PeriodicSpectral,
        (cos, sinc, sup): (&[Vec<f64>], &[Vec<f64>], &[f64; 2]),
        su: &[Complex64],
        sv: Option<&[Complex64]>,
    ) -> Result<(Vec<f64>, bool)> {
        match sv {
            Some(sv) => spectral.frames_linear(
                cos.len(),
                &[su, sv],
                &[sup_abs(cos), sup_abs(sinc)],
                |j, t| {
                    if t == 0 { &cos[j] } else { &sinc[j] }
                },
            ),
            None => spectral.frames_linear(cos.len(), &[su], &sup[..1], |j, _| &cos[j]),
        }
    }
}

impl Generator for Wave {
    fn pde(&self) -> &'static str {
        "wave"
    }

    fn recipe(&self) -> &str {
        match self.params.boundary {
            WaveBoundary::Periodic { .. } => "periodic",
            WaveBoundary::Dirichlet { .. } => "dirichlet",
        }
    }

    fn solver(&self) -> String {
        match self.params.boundary {
            WaveBoundary::Periodic { .. } => {
                "exact spectral propagator cos(wt), sin(wt)/w, real FFTs".to_string()
            }
            WaveBoundary::Dirichlet { .. } => {
                "exact sine series, separable sine sums on nodes".to_string()
            }
        }
    }

    fn layout(&self) -> Vec<TensorLayout> {
        let r = self.params.resolution;
        match self.params.boundary {
            WaveBoundary::Periodic { n_times, .. } => {
                vec![TensorLayout::new("u", &[n_times, 1, r, r])]
            }
            WaveBoundary::Dirichlet { .. } => {
                vec![
                    TensorLayout::new("x", &[1, r, r]),
                    TensorLayout::new("y", &[1, r, r]),
                ]
            }
        }
    }

    fn times(&self) -> Option<Vec<f64>> {
        match self.params.boundary {
            WaveBoundary::Periodic { n_times, .. } => {
                Some(Self::frame_times(self.params.t_final, n_times))
            }
            WaveBoundary::Dirichlet { .. } => None,
        }
    }

    fn resolution(&self) -> Vec<usize> {
        vec![self.params.resolution; 2]
    }

    fn parameters(&self) -> serde_json::Value {
        let p = &self.params;
        let mut v = json!({"resolution": p.resolution, "c": p.c, "t_final": p.t_final});
        match p.boundary {
            WaveBoundary::Periodic {
                grf,
                grf_velocity,
                n_times,
            } => {
                v["boundary"] = json!("periodic");
                v["grid"] = json!("x_i = i/R on [0,1)");
                v["n_times"] = json!(n_times);
                v["initial_velocity"] = json!(if grf_velocity { "grf" } else { "zero" });
                v["alpha"] = json!(grf.alpha);
                v["tau"] = json!(grf.tau);
                v["sigma"] = json!(grf.sigma_for(2));
            }
            WaveBoundary::Dirichlet { modes, decay } => {
                v["boundary"] = json!("dirichlet");
                v["grid"] = json!("nodes x_i = i/(R-1), boundary included");
                v["modes"] = json!(modes);
                v["decay"] = json!(decay);
                v["initial_condition"] = json!(
                    "(pi/K^2) sum a_ij (i^2+j^2)^-r sin(pi i x) sin(pi j y), a ~ U[-1,1], u_t = 0"
                );
            }
        }
        v
    }

    fn sample(&self, seed: u64, index: u64) -> Result<Vec<Vec<f64>>> {
        let mut rng = sample_rng(seed, index);
        let (out, finite) = match &self.plan {
            Plan::Periodic {
                amp,
                grf_velocity,
                spectral,
                cos,
                sinc,
                sup,
            } => {
                let su = spectral.grf_spectrum(amp, &mut rng);
                let sv = grf_velocity.then(|| spectral.grf_spectrum(amp, &mut rng));
                let (u, finite) =
                    self.frames_periodic(spectral, (cos, sinc, sup), &su, sv.as_deref())?;
                (vec![u], finite)
            }
            Plan::Dirichlet { weight, .. } => {
                let a: Vec<f64> = (0..weight.len())
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect();
                let (u0, ut) = self.evolve_dirichlet(&a).unwrap_or_default();
                let finite = all_finite(&u0) && all_finite(&ut);
                (vec![u0, ut], finite)
            }
        };
        if !finite || out.iter().any(Vec::is_empty) {
            return Err(Error::NonFinite {
                pde: "wave",
                index,
                t: self.params.t_final,
                hint: "check c, sigma and the resolution are moderate".into(),
            });
        }
        Ok(out)
    }
}

/// Builds the wave generator from a raw config (see [`WaveConfig`]).
pub fn build(config: serde_json::Value) -> Result<Box<dyn Generator>> {
    let cfg: WaveConfig = crate::generator::parse_config("wave", config)?;
    Ok(Box::new(Wave::new(cfg.validate()?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::wave as oracle;
    use pno_core::testing::{assert_close, rel_l2};

    fn wave(json: serde_json::Value) -> Wave {
        let cfg: WaveConfig = crate::generator::parse_config("wave", json).unwrap();
        Wave::new(cfg.validate().unwrap())
    }

    #[test]
    fn wave_periodic_single_mode_returns_after_its_period() {
        let n = 32;
        for (kx, ky) in [(1.0, 0.0), (3.0, 4.0), (2.0, -1.0)] {
            let k = f64::hypot(kx, ky);
            let g =
                wave(json!({"resolution": n, "c": 0.7, "t_final": 1.0 / (0.7 * k), "n_times": 3}));
            let u0 = oracle::periodic_sine_mode(n, kx, ky);
            let u = g.evolve_periodic(&u0, &vec![0.0; n * n]).unwrap().unwrap();
            // half period: sign flip; full period: identity
            let neg: Vec<f64> = u0.iter().map(|v| -v).collect();
            assert_close(&u[n * n..2 * n * n], &neg, 1e-12, 1e-13);
            assert_close(&u[2 * n * n..], &u0, 1e-12, 1e-13);
        }
    }

    #[test]
    fn wave_periodic_frames_match_complex_fft_propagator_and_conserve_energy() {
        let n = 24;
        let g = wave(json!({"resolution": n, "initial_velocity": "grf", "n_times": 6}));
        let u = g.sample(3, 1).unwrap().remove(0);
        // rebuild the initial data from the same stream
        let grf = GrfPeriodic::new(2.5, 7.0, None);
        let mut rng = sample_rng(3, 1);
        let u0 = grf.sample_2d(n, &mut rng);
        let v0 = grf.sample_2d(n, &mut rng);
        let scale = u0.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let e0 = oracle::periodic_energy(&u0, &v0, n, 1.0);
        let mut drift = 0.0f64;
        for (j, t) in g.times().unwrap().iter().enumerate() {
            let (ue, ute) = oracle::periodic_propagate(&u0, &v0, n, 1.0, *t);
            assert_close(&u[j * n * n..(j + 1) * n * n], &ue, 1e-10, 1e-12 * scale);
            let e = oracle::periodic_energy(&ue, &ute, n, 1.0);
            drift = drift.max((e / e0 - 1.0).abs());
        }
        eprintln!("wave periodic energy relative drift {drift:.2e}");
        assert!(drift < 1e-12);
    }

    #[test]
    fn wave_periodic_propagation_is_time_reversible() {
        let n = 16;
        let grf = GrfPeriodic::new(2.5, 7.0, None);
        let mut rng = sample_rng(8, 0);
        let (u0, v0) = (grf.sample_2d(n, &mut rng), grf.sample_2d(n, &mut rng));
        let (u1, v1) = oracle::periodic_propagate(&u0, &v0, n, 1.0, 0.37);
        let (u2, v2) = oracle::periodic_propagate(&u1, &v1, n, 1.0, -0.37);
        let s = u0.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert_close(&u2, &u0, 1e-10, 1e-12 * s);
        assert_close(&v2, &v0, 1e-10, 1e-10 * s);
        // the generator's propagator, forward then backward with (u, -u_t)
        let g = wave(json!({"resolution": n, "t_final": 0.37, "n_times": 2}));
        let fwd = g.evolve_periodic(&u0, &v0).unwrap().unwrap();
        assert_close(&fwd[n * n..], &u1, 1e-10, 1e-12 * s);
        let back = g
            .evolve_periodic(&u1, &v1.iter().map(|v| -v).collect::<Vec<_>>())
            .unwrap()
            .unwrap();
        assert_close(&back[n * n..], &u0, 1e-10, 1e-12 * s);
    }

    #[test]
    fn wave_dirichlet_pair_matches_direct_sine_sum() {
        let (s, modes) = (20, 7);
        let g = wave(json!({"boundary": "dirichlet", "resolution": s, "modes": modes}));
        assert_eq!(
            g.layout(),
            vec![
                TensorLayout::new("x", &[1, s, s]),
                TensorLayout::new("y", &[1, s, s])
            ]
        );
        let a: Vec<f64> = (0..modes * modes)
            .map(|p| (p as f64 * 0.61).sin())
            .collect();
        let (u0, ut) = g.evolve_dirichlet(&a).unwrap();
        assert_close(
            &u0,
            &oracle::dirichlet_exact(&a, modes, 1.0, 0.1, 0.0, s),
            1e-12,
            1e-14,
        );
        assert_close(
            &ut,
            &oracle::dirichlet_exact(&a, modes, 1.0, 0.1, 5.0, s),
            1e-12,
            1e-14,
        );
        let out = g.sample(0, 5).unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0].iter().take(s).all(|&v| v == 0.0));
    }

    #[test]
    fn wave_dirichlet_leapfrog_converges_second_order() {
        let modes = 4;
        let a: Vec<f64> = (0..modes * modes).map(|p| (p as f64 * 1.7).cos()).collect();
        let mut errs = Vec::new();
        for s in [17, 33, 65] {
            let g = wave(
                json!({"boundary": "dirichlet", "resolution": s, "modes": modes, "c": 0.5, "t_final": 1.0}),
            );
            let (u0, ut) = g.evolve_dirichlet(&a).unwrap();
            let fd = oracle::leapfrog_dirichlet(&u0, s, 0.5, 1.0, 0.5);
            errs.push(rel_l2(&fd, &ut));
        }
        for w in errs.windows(2) {
            let order = (w[0] / w[1]).log2();
            eprintln!(
                "wave leapfrog vs exact: rel L2 {:.3e} -> {:.3e} order {order:.3}",
                w[0], w[1]
            );
            assert!((order - 2.0).abs() < 0.2, "order {order}");
        }
    }

    #[test]
    fn wave_config_rejects_bad_values_and_resolves_defaults() {
        for b in [
            json!({"c": 0.0}),
            json!({"t_final": -1.0}),
            json!({"initial_velocity": "random"}),
            json!({"boundary": "dirichlet", "n_times": 5}),
            json!({"modes": 3}),
            json!({"boundary": "dirichlet", "resolution": 2}),
            json!({"speed": 1.0}),
        ] {
            assert!(build(b.clone()).is_err(), "{b} must be rejected");
        }
        let g = build(json!({})).unwrap();
        assert_eq!(g.layout(), vec![TensorLayout::new("u", &[21, 1, 64, 64])]);
        let t = g.times().unwrap();
        assert!((t[20] - 1.0).abs() < 1e-15 && (t[1] - 0.05).abs() < 1e-15);
        let g = build(json!({"boundary": "dirichlet"})).unwrap();
        let p = g.parameters();
        assert_eq!(
            (p["modes"].clone(), p["c"].clone(), p["t_final"].clone()),
            (json!(24), json!(0.1), json!(5.0))
        );
        assert!(g.times().is_none());
    }
}
