//! Kuramoto–Sivashinsky 1D trajectories, PNO and Kassam–Trefethen recipes.
//!
//! `u_t = −c·u u_x − u_xx − u_xxxx` on a periodic domain `[0, L)` with `N` points `x_j = Lj/N`
//! (`docs/pde-specs.md` §2.4, §3.5; peer `pde_ref/ks_ref.py`):
//!
//! - `pno` (default; Bülte et al. 2025, "Probabilistic neural operators for functional uncertainty
//!   quantification", `ks_generation.py`): `c = ½`, `L = 100`, `N = 256`, IC i.i.d. `U(−1, 1)` per
//!   point (mean kept; it is conserved), frames every 1.0 from `t = 0`. PNO's own solver was
//!   adaptive Euler + finite differences; ETDRK4 gives the same statistics, not the same
//!   pointwise values (chaotic flow).
//! - `kt` (Kassam & Trefethen, SIAM J. Sci. Comput. 26 (2005) 1214, `kursiv.m`): standard KS
//!   (`c = 1`), `L = 32π`, `u0 = cos(x/16)(1 + sin(x/16))` (deterministic), `h = 1/4`.
//!
//! Solver: ETDRK4 ([`crate::etdrk4`]) with `L̂ = q² − q⁴`, `q = 2πk/L`, and
//! `N̂ = −(c/2)·iq·rfft(u²)`, no dealiasing by default (as `kursiv.m`).
//!
//! Config keys (TOML / JSON), all optional:
//! - `recipe`: `"pno"` | `"kt"`; `resolution` (256): grid points (even);
//! - `length` (100 / 32π), `dt` (0.05 / 0.25): domain length and maximal step (recipe defaults;
//!   the step used divides `save_every` exactly, see `dt_used`);
//! - `t_final` (100), `save_every` (1.0): frames at `t = 0, save_every, …, ≤ t_final`;
//! - `burn_in` (0): time simulated and discarded before the first frame;
//! - `dealias` (false): apply the 2/3 mask `k ≤ ⅔·N/2` to the input of the product.
//!
//! Output: trajectory `u` `[n_times, 1, N]`.

use rand::Rng;
use rand_distr::Uniform;
use serde::Deserialize;
use serde_json::json;

use crate::error::{Error, Result, positive};
use crate::etdrk4::{Etdrk4, Quadratic1d};
use crate::generator::{Generator, TensorLayout};

/// KS recipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KsRecipe {
    /// PNO: `u_t = −½uu_x − u_xx − u_xxxx`, L = 100, IC U(−1, 1).
    Pno,
    /// Kassam–Trefethen: standard KS, L = 32π, `u0 = cos(x/16)(1 + sin(x/16))`.
    Kt,
}

impl KsRecipe {
    fn name(self) -> &'static str {
        match self {
            Self::Pno => "pno",
            Self::Kt => "kt",
        }
    }
}

/// Raw KS config (see the module docs for the keys).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KsConfig {
    /// Recipe name.
    pub recipe: KsRecipe,
    /// Grid points.
    pub resolution: usize,
    /// Domain length `L` (recipe default).
    pub length: Option<f64>,
    /// Maximal time step (recipe default).
    pub dt: Option<f64>,
    /// Last frame time.
    pub t_final: f64,
    /// Time between frames.
    pub save_every: f64,
    /// Time discarded before the first frame.
    pub burn_in: f64,
    /// 2/3 dealiasing of the quadratic term.
    pub dealias: bool,
}

impl Default for KsConfig {
    fn default() -> Self {
        Self {
            recipe: KsRecipe::Pno,
            resolution: 256,
            length: None,
            dt: None,
            t_final: 100.0,
            save_every: 1.0,
            burn_in: 0.0,
            dealias: false,
        }
    }
}

impl KsConfig {
    /// Checks every field and resolves the recipe defaults.
    pub fn validate(&self) -> Result<KsGenerator> {
        let n = self.resolution;
        if !(8..=1 << 20).contains(&n) || !n.is_multiple_of(2) {
            return Err(Error::config(
                "resolution",
                "an even integer in 8..=1048576",
                n,
            ));
        }
        let (l0, dt0, c) = match self.recipe {
            KsRecipe::Pno => (100.0, 0.05, 0.5),
            KsRecipe::Kt => (32.0 * std::f64::consts::PI, 0.25, 1.0),
        };
        let length = positive("length", self.length.unwrap_or(l0))?;
        let dt = positive("dt", self.dt.unwrap_or(dt0))?;
        let save_every = positive("save_every", self.save_every)?;
        let t_final = positive("t_final", self.t_final)?;
        if t_final < save_every * (1.0 - 1e-9) {
            return Err(Error::config(
                "t_final",
                format!("at least save_every = {save_every}"),
                t_final,
            ));
        }
        if !(self.burn_in.is_finite() && self.burn_in >= 0.0) {
            return Err(Error::config(
                "burn_in",
                "a finite number >= 0",
                self.burn_in,
            ));
        }
        let frames = (t_final / save_every + 1e-9).floor() as usize + 1;
        let per = (save_every / dt - 1e-9).ceil().max(1.0);
        let total = per * (frames - 1) as f64 + self.burn_in / dt;
        if total > 1e8 || frames > 1_000_000 {
            return Err(Error::config(
                "dt",
                "at most 1e8 time steps and 1e6 frames",
                dt,
            ));
        }
        Ok(KsGenerator::new(
            self.recipe,
            n,
            length,
            c,
            save_every / per,
            per as usize,
            frames,
            self.burn_in,
            self.dealias,
            dt,
        ))
    }
}

/// Validated KS generator.
#[derive(Debug, Clone)]
pub struct KsGenerator {
    recipe: KsRecipe,
    n: usize,
    length: f64,
    c: f64,
    dt: f64,
    h: f64,
    steps_per_frame: usize,
    n_times: usize,
    burn_in_steps: usize,
    dealias: bool,
    scheme: Etdrk4,
    nonlin: Quadratic1d,
}

/// Builds the KS generator from a raw config.
pub fn build(config: serde_json::Value) -> Result<Box<dyn Generator>> {
    let c: KsConfig = crate::generator::parse_config("ks", config)?;
    Ok(Box::new(c.validate()?))
}

impl KsGenerator {
    #[allow(clippy::too_many_arguments)]
    fn new(
        recipe: KsRecipe,
        n: usize,
        length: f64,
        c: f64,
        h: f64,
        steps_per_frame: usize,
        n_times: usize,
        burn_in: f64,
        dealias: bool,
        dt: f64,
    ) -> Self {
        let nk = n / 2 + 1;
        let q: Vec<f64> = (0..nk)
            .map(|k| 2.0 * std::f64::consts::PI * k as f64 / length)
            .collect();
        let l: Vec<f64> = q.iter().map(|q| q * q - q.powi(4)).collect();
        let cut = (2.0 / 3.0) * (n / 2) as f64;
        let m: Vec<f64> = (0..nk)
            .map(|k| {
                if !dealias || k as f64 <= cut {
                    1.0 / n as f64
                } else {
                    0.0
                }
            })
            .collect();
        let mut gamma: Vec<f64> = q.iter().map(|q| -0.5 * c * q).collect();
        gamma[nk - 1] = 0.0;
        Self {
            recipe,
            n,
            length,
            c,
            dt,
            h,
            steps_per_frame,
            n_times,
            burn_in_steps: (burn_in / h - 1e-9).ceil().max(0.0) as usize,
            dealias,
            scheme: Etdrk4::new(&l, h),
            nonlin: Quadratic1d::new(n, m, gamma),
        }
    }

    /// The initial condition of sample `(seed, index)` (`kt`: the same for every sample).
    pub fn initial_condition(&self, seed: u64, index: u64) -> Vec<f64> {
        match self.recipe {
            KsRecipe::Pno => {
                let mut rng = crate::sample_rng(seed, index);
                // invariant: −1 < 1, so the range is valid.
                let d = Uniform::new(-1.0, 1.0).expect("valid uniform range");
                (0..self.n).map(|_| rng.sample(d)).collect()
            }
            KsRecipe::Kt => crate::samples::ks::kt_initial_condition(self.n, self.length),
        }
    }

    /// Evolves `u0` through the burn-in and returns the `n_times` frames, flattened `[t, N]`.
    pub fn solve(&self, u0: &[f64], index: u64) -> Result<Vec<f64>> {
        let n = self.n;
        let mut v = self.nonlin.rfft(u0);
        let mut ws = self.scheme.workspace();
        let mut scratch = self.nonlin.scratch();
        let mut out = vec![0.0; self.n_times * n];
        let mut step = |v: &mut Vec<num_complex::Complex64>| {
            self.scheme
                .step_truncated(v, &mut ws, self.nonlin.input_modes(), |x, o| {
                    self.nonlin.apply(x, o, &mut scratch)
                });
        };
        for _ in 0..self.burn_in_steps {
            step(&mut v);
        }
        let mut s2 = self.nonlin.scratch();
        let mut steps = self.burn_in_steps;
        for (f, frame) in out.chunks_exact_mut(n).enumerate() {
            if f > 0 {
                for _ in 0..self.steps_per_frame {
                    step(&mut v);
                }
                steps += self.steps_per_frame;
            }
            if f == 0 && self.burn_in_steps == 0 {
                frame.copy_from_slice(u0);
            } else {
                self.nonlin.irfft_into(&v, frame, &mut s2);
            }
            if !frame.iter().all(|x| x.is_finite()) {
                return Err(Error::NonFinite {
                    pde: "ks",
                    index,
                    t: steps as f64 * self.h,
                    hint: format!(
                        "ETDRK4 with dt = {:e} at N = {n} blew up; reduce dt or raise resolution",
                        self.h
                    ),
                });
            }
        }
        Ok(out)
    }
}

impl Generator for KsGenerator {
    fn pde(&self) -> &'static str {
        "ks"
    }

    fn recipe(&self) -> &str {
        self.recipe.name()
    }

    fn solver(&self) -> String {
        format!(
            "pseudo-spectral ETDRK4 (Cox-Matthews, Kassam-Trefethen contour M=32){}, N = {}, dt = {:e}",
            if self.dealias {
                ", 2/3 dealiasing"
            } else {
                ", no dealiasing"
            },
            self.n,
            self.h
        )
    }

    fn layout(&self) -> Vec<TensorLayout> {
        vec![TensorLayout::new("u", &[self.n_times, 1, self.n])]
    }

    fn times(&self) -> Option<Vec<f64>> {
        let dt_frame = self.h * self.steps_per_frame as f64;
        Some((0..self.n_times).map(|i| i as f64 * dt_frame).collect())
    }

    fn resolution(&self) -> Vec<usize> {
        vec![self.n]
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "recipe": self.recipe.name(),
            "equation": "u_t = -c u u_x - u_xx - u_xxxx, periodic [0, length)",
            "nonlinear_coefficient": self.c,
            "resolution": self.n,
            "length": self.length,
            "dt": self.dt,
            "dt_used": self.h,
            "save_every": self.h * self.steps_per_frame as f64,
            "t_final": self.h * (self.steps_per_frame * (self.n_times - 1)) as f64,
            "n_times": self.n_times,
            "burn_in": self.h * self.burn_in_steps as f64,
            "dealias": self.dealias,
            "scheme": "etdrk4",
            "contour_points": crate::etdrk4::CONTOUR_POINTS,
            "initial_condition": match self.recipe {
                KsRecipe::Pno => "iid U(-1,1) per grid point",
                KsRecipe::Kt => "cos(x/16)(1+sin(x/16))",
            },
        })
    }

    fn sample(&self, seed: u64, index: u64) -> Result<Vec<Vec<f64>>> {
        let u0 = self.initial_condition(seed, index);
        Ok(vec![self.solve(&u0, index)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::ks::{kt_initial_condition, linear_evolution};
    use pno_core::testing::rel_l2;

    fn make(c: serde_json::Value) -> KsGenerator {
        crate::generator::parse_config::<KsConfig>("ks", c)
            .unwrap()
            .validate()
            .unwrap()
    }

    /// KT problem (L = 32π, N = 128), one frame at `t`, step `h`, nonlinear coefficient `c`.
    fn kt(h: f64, t: f64, c: f64) -> KsGenerator {
        let per = (t / h).round() as usize;
        KsGenerator::new(
            KsRecipe::Kt,
            128,
            32.0 * std::f64::consts::PI,
            c,
            h,
            per,
            2,
            0.0,
            false,
            h,
        )
    }

    fn last(g: &KsGenerator, u0: &[f64]) -> Vec<f64> {
        let u = g.solve(u0, 0).unwrap();
        u[u.len() - g.n..].to_vec()
    }

    #[test]
    fn ks_linear_part_is_exact() {
        let g = kt(0.25, 10.0, 0.0);
        let u0 = kt_initial_condition(128, g.length);
        let e = rel_l2(&last(&g, &u0), &linear_evolution(&u0, g.length, 10.0));
        eprintln!("ks linear exactness rel-L2 {e:e}");
        assert!(e < 1e-13, "{e}");
    }

    #[test]
    fn ks_kt_etdrk4_error_ratio_above_8() {
        let u0 = kt_initial_condition(128, 32.0 * std::f64::consts::PI);
        let reference = last(&kt(1.0 / 1024.0, 10.0, 1.0), &u0);
        let errs: Vec<f64> = [8.0, 16.0, 32.0, 64.0]
            .iter()
            .map(|n| rel_l2(&last(&kt(1.0 / n, 10.0, 1.0), &u0), &reference))
            .collect();
        let ratios: Vec<f64> = errs.windows(2).map(|w| w[0] / w[1]).collect();
        eprintln!("ks KT rel-L2 (h = 1/8, 1/16, 1/32, 1/64 vs 1/1024) {errs:?} ratios {ratios:?}");
        assert!(ratios[1] > 8.0 && ratios[2] > 8.0, "{ratios:?}");
        assert!(errs[3] < 1e-8, "{errs:?}");
    }

    #[test]
    fn ks_pno_mean_is_conserved() {
        let g = make(json!({"t_final": 20.0}));
        let u = g.sample(3, 1).unwrap().remove(0);
        let means: Vec<f64> = u
            .chunks(256)
            .map(|f| f.iter().sum::<f64>() / 256.0)
            .collect();
        let drift = means
            .iter()
            .map(|m| (m - means[0]).abs())
            .fold(0.0, f64::max);
        eprintln!(
            "ks pno mean drift over t in [0, 20]: {drift:e} (mean {:e})",
            means[0]
        );
        assert!(drift <= 1e-13, "{drift}");
    }

    #[test]
    fn ks_pno_statistics_after_burn_in() {
        // L = 100: rms(v) ∈ [1.1, 1.6] and spectral peak q ∈ [0.55, 0.85], v = u/2, t ∈ [100, 300]
        let g = make(json!({"burn_in": 100.0, "t_final": 200.0}));
        let u = g.sample(1, 0).unwrap().remove(0);
        let n = 256;
        let mut power = vec![0.0; n / 2 + 1];
        let mut ms = 0.0;
        let frames = u.len() / n;
        for f in u.chunks(n) {
            let mean = f.iter().sum::<f64>() / n as f64;
            let v: Vec<f64> = f.iter().map(|x| 0.5 * (x - mean)).collect();
            ms += v.iter().map(|x| x * x).sum::<f64>() / n as f64;
            for (p, c) in power.iter_mut().zip(g.nonlin.rfft(&v)) {
                *p += c.norm_sqr();
            }
        }
        let rms = (ms / frames as f64).sqrt();
        let kmax = (1..power.len())
            .max_by(|a, b| power[*a].total_cmp(&power[*b]))
            .unwrap();
        let qpeak = 2.0 * std::f64::consts::PI * kmax as f64 / 100.0;
        eprintln!("ks pno statistics: rms(v) = {rms:.4}, spectral peak q = {qpeak:.4}");
        assert!((1.1..=1.6).contains(&rms), "{rms}");
        assert!((0.55..=0.85).contains(&qpeak), "{qpeak}");
    }

    #[test]
    fn ks_layout_times_and_config() {
        let g = make(json!({"t_final": 3.0, "save_every": 0.5, "dt": 0.03}));
        assert_eq!(g.layout(), vec![TensorLayout::new("u", &[7, 1, 256])]);
        let t = g.times().unwrap();
        assert_eq!(t.len(), 7);
        assert!((t[6] - 3.0).abs() < 1e-12);
        assert!((g.parameters()["dt_used"].as_f64().unwrap() - 0.5 / 17.0).abs() < 1e-15);
        let a = g.sample(9, 2).unwrap();
        assert_eq!(a, g.sample(9, 2).unwrap());
        assert_eq!(a[0][..256], g.initial_condition(9, 2)[..]);
        assert!(a[0][..256].iter().all(|x| x.abs() <= 1.0));
        let kt = make(json!({"recipe": "kt", "t_final": 1.0}));
        assert_eq!(kt.sample(0, 0).unwrap(), kt.sample(5, 5).unwrap());
        assert_eq!(kt.parameters()["dt"], 0.25);
        let bad = |c: serde_json::Value| crate::error::chain(&build(c).err().unwrap());
        assert!(bad(json!({"length": 0.0})).contains("length"));
        assert!(bad(json!({"resolution": 255})).contains("resolution"));
        assert!(bad(json!({"burn_in": -1.0})).contains("burn_in"));
        assert!(bad(json!({"t_final": 0.5})).contains("t_final"));
        assert!(bad(json!({"nu": 1.0})).contains("nu"));
    }
}
