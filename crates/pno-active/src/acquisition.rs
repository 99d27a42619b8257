//! Acquisition functions: how much a candidate input is worth labelling, from the model's
//! predictive draws on it, and the batch chosen from the scores.
//!
//! Every score is computed per candidate from its draws `X_1..X_M` (`M` ≥ 2) over the `D`
//! output values (channels × points, physical units):
//!
//! - **`variance`**: the mean predictive variance over the output values,
//!   `(1/D) Σ_d σ_d²`, with `σ_d` the model's predictive std (analytic where the model has one;
//!   with a Gaussian head it includes the aleatoric part).
//! - **`energy`**: the spread term of the energy score, the expected distance between two
//!   independent draws `E‖X − X′‖`, estimated without bias by the mean over the `M(M−1)` ordered
//!   pairs `i ≠ j` of `‖X_i − X_j‖`, with the RMS norm `‖v‖ = (Σ_d v_d² / D)^½` (independent of
//!   the resolution).
//! - **`bald`**: the mutual information between the output and the model parameters,
//!   `I(y; θ | x) = H[y | x] − E_θ H[y | x, θ]`, under a Gaussian approximation of the draws,
//!   factorised over the output values and averaged over them:
//!   `(1/D) Σ_d ½ ln(1 + v_d / a_d)`, where `v_d` is the epistemic variance and `a_d` the
//!   aleatoric one. Models with a Gaussian std head (ensembles with heads, `pno_r`, `vi_pno`):
//!   `a_d` is the mean head variance `E_θ[σ_θ²]` (used in place of `exp E_θ ln σ_θ²`) and
//!   `v_d = max(σ_d² − a_d, 0)` by the law of total variance. Models whose draws are purely
//!   epistemic (`pno_d`, `mc_dropout`, ensembles without heads, `laplace`): `v_d = σ_d²` and `a_d`
//!   is one homoscedastic noise variance, the mean squared residual of the predictive mean on
//!   the labelled samples (the maximum-likelihood noise of a Gaussian observation model).
//! - **`random`**: a seeded uniform choice, the baseline.
//!
//! The batch of `B` is chosen by a [`BatchRule`]:
//!
//! - **`greedy`** (default): the top `B` scores; ties go to the smaller generator sample index,
//!   so the choice is deterministic. Top-`B` batches of a smooth score are redundant: the
//!   candidates next to the most uncertain one are all uncertain.
//! - **`power`**: stochastic batch acquisition (Kirsch et al., "Stochastic Batch Acquisition: A
//!   Simple Baseline for Deep Active Learning", TMLR 2023): `B` candidates drawn without
//!   replacement with probabilities proportional to `score^β`, by the Gumbel-top-`B` trick —
//!   the top `B` of `β ln s_i + G_i` with `G_i` independent standard Gumbel variables (from a
//!   seeded ChaCha8 stream per round). `β → ∞` is greedy, `β = 0` is uniform; a zero score is
//!   taken only after every positive one.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{ActiveError, Result};

/// An acquisition function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Acquisition {
    /// Mean predictive variance.
    Variance,
    /// Expected distance between two draws (energy-score spread term).
    Energy,
    /// Mutual information (Gaussian approximation).
    Bald,
    /// Seeded uniform choice.
    Random,
}

impl Acquisition {
    /// Every acquisition.
    pub const ALL: [Acquisition; 4] = [
        Acquisition::Variance,
        Acquisition::Energy,
        Acquisition::Bald,
        Acquisition::Random,
    ];

    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Acquisition::Variance => "variance",
            Acquisition::Energy => "energy",
            Acquisition::Bald => "bald",
            Acquisition::Random => "random",
        }
    }

    /// Parse a name (`variance`, `energy`, `bald`, `random`).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl std::fmt::Display for Acquisition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The aleatoric variance `a_d` of the `bald` score.
#[derive(Debug, Clone, Copy)]
pub enum Noise<'a> {
    /// Per output value of every candidate, `[n, d]` (a Gaussian head's mean variance); the
    /// draws' variance holds it too.
    Head(&'a [f32]),
    /// One noise variance for every value; the draws are purely epistemic.
    Homoscedastic(f64),
}

/// Variances below this are treated as this (a head predicting zero noise).
const VAR_FLOOR: f64 = 1e-300;

/// `variance` scores of `n` candidates from their predictive std `[n, d]`.
pub fn variance_scores(std: &[f32], n: usize, d: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let row = &std[i * d..(i + 1) * d];
            row.iter()
                .map(|&s| f64::from(s) * f64::from(s))
                .sum::<f64>()
                / d.max(1) as f64
        })
        .collect()
}

/// `energy` scores of `n` candidates from `m ≥ 2` draws `[m, n, d]`.
pub fn energy_scores(samples: &[f32], m: usize, n: usize, d: usize) -> Vec<f64> {
    let pairs = (m * m.saturating_sub(1) / 2).max(1) as f64;
    (0..n)
        .map(|i| {
            let draw = |k: usize| &samples[(k * n + i) * d..(k * n + i + 1) * d];
            let mut sum = 0.0;
            for a in 0..m {
                for b in a + 1..m {
                    let sq: f64 = draw(a)
                        .iter()
                        .zip(draw(b))
                        .map(|(&x, &y)| {
                            let t = f64::from(x) - f64::from(y);
                            t * t
                        })
                        .sum();
                    sum += (sq / d.max(1) as f64).sqrt();
                }
            }
            // Mean over the M(M−1) ordered pairs = mean over the unordered ones.
            sum / pairs
        })
        .collect()
}

/// `bald` scores of `n` candidates from their predictive std `[n, d]` and the aleatoric
/// variance (see the module docs).
pub fn bald_scores(std: &[f32], noise: Noise<'_>, n: usize, d: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let mut sum = 0.0;
            for k in i * d..(i + 1) * d {
                let total = f64::from(std[k]) * f64::from(std[k]);
                let (epistemic, aleatoric) = match noise {
                    Noise::Head(a) => {
                        let a = f64::from(a[k]).max(0.0);
                        ((total - a).max(0.0), a)
                    }
                    Noise::Homoscedastic(a) => (total, a),
                };
                sum += 0.5 * (epistemic / aleatoric.max(VAR_FLOOR)).ln_1p();
            }
            sum / d.max(1) as f64
        })
        .collect()
}

/// The positions (into `pool`) of the `b` highest `scores`, best first; ties go to the smaller
/// sample index. A non-finite score is refused.
pub fn top_b(
    acquisition: Acquisition,
    scores: &[f64],
    pool: &[u64],
    b: usize,
) -> Result<Vec<usize>> {
    if let Some(k) = scores.iter().position(|s| !s.is_finite()) {
        return Err(ActiveError::Score {
            acquisition: acquisition.name(),
            index: pool[k],
            score: scores[k],
        });
    }
    Ok(best_first(scores, pool, b))
}

/// The positions of the `b` largest `keys`, largest first; ties go to the smaller sample index.
fn best_first(keys: &[f64], pool: &[u64], b: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len().min(pool.len())).collect();
    order.sort_by(|&a, &c| {
        keys[c]
            .total_cmp(&keys[a])
            .then_with(|| pool[a].cmp(&pool[c]))
    });
    order.truncate(b);
    order
}

/// How the batch is chosen from the scores (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum BatchRule {
    /// The top `B` scores.
    #[default]
    Greedy,
    /// `B` draws without replacement with probabilities ∝ `score^β`.
    Power {
        /// The exponent (> 0; 1 is the paper's default).
        beta: f64,
    },
}

impl BatchRule {
    /// `greedy`, or `power(β)`.
    pub fn describe(self) -> String {
        match self {
            BatchRule::Greedy => "top".to_string(),
            BatchRule::Power { beta } => format!("power (β = {beta}) sampled"),
        }
    }
}

/// The positions (into `pool`) of `b` candidates drawn without replacement with probabilities
/// proportional to `scores^beta` (Gumbel-top-`b` with the ChaCha8 stream `seed`), in the order
/// of their keys. Zero scores come last, in sample-index order. A non-finite or negative score,
/// or a `beta` that is not positive and finite, is refused.
pub fn power_b(
    acquisition: Acquisition,
    scores: &[f64],
    pool: &[u64],
    b: usize,
    beta: f64,
    seed: u64,
) -> Result<Vec<usize>> {
    if let Some(k) = scores.iter().position(|s| !s.is_finite() || *s < 0.0) {
        return Err(ActiveError::Score {
            acquisition: acquisition.name(),
            index: pool[k],
            score: scores[k],
        });
    }
    if !(beta.is_finite() && beta > 0.0) {
        return Err(crate::error::option_err(
            "--power-beta",
            "a positive finite exponent",
            beta,
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let keys: Vec<f64> = scores
        .iter()
        .map(|&s| {
            // u in (0, 1): the 53 high bits and a half step, so ln(u) and ln(-ln u) are finite.
            let u = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let gumbel = -(-u.ln()).ln();
            if s > 0.0 {
                beta * s.ln() + gumbel
            } else {
                f64::NEG_INFINITY
            }
        })
        .collect();
    Ok(best_first(&keys, pool, b))
}

/// `b` positions into a pool of `len` candidates, uniformly without replacement, from the
/// ChaCha8 stream `seed` (in the order drawn).
pub fn random_positions(len: usize, b: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rand::seq::index::sample(&mut rng, len, b.min(len)).into_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-12 * y.abs().max(1.0), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn variance_is_the_mean_squared_std() {
        close(&variance_scores(&[1.0, 2.0, 0.0, 3.0], 2, 2), &[2.5, 4.5]);
    }

    #[test]
    fn energy_is_the_mean_pairwise_rms_distance() {
        // Two draws [0, 0] and [3, 4]: ‖·‖₂ = 5, RMS = 5/√2.
        close(
            &energy_scores(&[0.0, 0.0, 3.0, 4.0], 2, 1, 2),
            &[5.0 / 2f64.sqrt()],
        );
        // Three scalar draws 0, 1, 3: distances 1, 3, 2 -> mean 2. Second candidate: all equal.
        // Layout [m, n, d] = [3, 2, 1].
        close(
            &energy_scores(&[0.0, 7.0, 1.0, 7.0, 3.0, 7.0], 3, 2, 1),
            &[2.0, 0.0],
        );
    }

    #[test]
    fn bald_is_half_log_of_total_over_aleatoric() {
        // Head: total variance 4, aleatoric 1 -> ½ ln(1 + 3/1) = ½ ln 4.
        close(
            &bald_scores(&[2.0], Noise::Head(&[1.0]), 1, 1),
            &[0.5 * 4f64.ln()],
        );
        // A head explaining more than the total: no epistemic part.
        close(&bald_scores(&[1.0], Noise::Head(&[2.0]), 1, 1), &[0.0]);
        // Homoscedastic noise 2, variances 2 and 6: mean of ½ ln 2 and ½ ln 4.
        let s = [2f32.sqrt(), 6f32.sqrt()];
        let got = bald_scores(&s, Noise::Homoscedastic(2.0), 1, 2);
        let want = 0.25 * (2f64.ln() + 4f64.ln());
        assert!((got[0] - want).abs() < 1e-6, "{got:?} vs {want}");
        // Bald ranks differently from variance: spread over many points beats one peak.
        let flat = [1.0f32, 1.0];
        let peak = [0.0f32, 2f32.sqrt()];
        let std: Vec<f32> = flat.iter().chain(&peak).copied().collect();
        let v = variance_scores(&std, 2, 2);
        let b = bald_scores(&std, Noise::Homoscedastic(0.1), 2, 2);
        assert!((v[0] - v[1]).abs() < 1e-6);
        assert!(b[0] > b[1]);
    }

    #[test]
    fn power_draws_in_proportion_to_score_to_the_beta() {
        let pool = [10, 11, 12, 13];
        let scores = [1.0, 2.0, 3.0, 4.0];
        // One draw: the Gumbel-max trick gives P(k) = s_k^β / Σ s^β exactly; 40,000 seeded
        // rounds, each frequency within 4.5 binomial standard deviations.
        let trials = 40_000;
        for beta in [1.0, 2.0] {
            let mut hits = [0usize; 4];
            for t in 0..trials {
                hits[power_b(Acquisition::Variance, &scores, &pool, 1, beta, t).unwrap()[0]] += 1;
            }
            let z: f64 = scores.iter().map(|s: &f64| s.powf(beta)).sum();
            for (k, &h) in hits.iter().enumerate() {
                let p = scores[k].powf(beta) / z;
                let sd = (trials as f64 * p * (1.0 - p)).sqrt();
                let dev = (h as f64 - trials as f64 * p).abs();
                assert!(
                    dev < 4.5 * sd,
                    "beta {beta}, k {k}: {h} hits, expected {}",
                    trials as f64 * p
                );
            }
        }
        // Without replacement, seeded: distinct positions, the same for the same seed.
        let a = power_b(Acquisition::Energy, &scores, &pool, 3, 1.0, 7).unwrap();
        assert_eq!(
            a,
            power_b(Acquisition::Energy, &scores, &pool, 3, 1.0, 7).unwrap()
        );
        let mut d = a.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), 3);
        assert!(
            (0..50).any(|t| power_b(Acquisition::Energy, &scores, &pool, 3, 1.0, t).unwrap() != a)
        );
        // A large β is greedy; zero scores come last in index order; b beyond the pool stops.
        let wide = [0.5, 0.0, 4.0, 0.0, 2.0];
        let pool5 = [5, 4, 3, 2, 1];
        for t in 0..20 {
            assert_eq!(
                power_b(Acquisition::Bald, &wide, &pool5, 9, 1e4, t).unwrap(),
                vec![2, 4, 0, 3, 1]
            );
            assert_eq!(
                power_b(Acquisition::Bald, &wide, &pool5, 3, 1e4, t).unwrap(),
                top_b(Acquisition::Bald, &wide, &pool5, 3).unwrap()
            );
        }
        // Refusals name the candidate or the flag.
        let e = power_b(Acquisition::Variance, &[1.0, -1.0], &[3, 4], 1, 1.0, 0).unwrap_err();
        assert!(e.to_string().contains('4'), "{e}");
        let e = power_b(Acquisition::Variance, &[1.0, f64::NAN], &[3, 4], 1, 1.0, 0).unwrap_err();
        assert!(e.to_string().contains("NaN"), "{e}");
        let e = power_b(Acquisition::Variance, &[1.0], &[3], 1, 0.0, 0).unwrap_err();
        assert!(e.to_string().contains("--power-beta"), "{e}");
    }

    #[test]
    fn top_b_breaks_ties_by_sample_index_and_refuses_nan() {
        let pool = [10, 11, 9, 12];
        let got = top_b(Acquisition::Variance, &[1.0, 3.0, 3.0, 2.0], &pool, 3).unwrap();
        assert_eq!(got, vec![2, 1, 3]);
        assert_eq!(
            top_b(Acquisition::Energy, &[1.0], &[5], 4).unwrap(),
            vec![0]
        );
        let e = top_b(Acquisition::Bald, &[1.0, f64::NAN], &[3, 4], 1).unwrap_err();
        assert!(e.to_string().contains("pool sample 4"), "{e}");
    }

    #[test]
    fn random_positions_are_seeded_distinct_and_in_range() {
        let a = random_positions(50, 10, 7);
        assert_eq!(a, random_positions(50, 10, 7));
        assert_ne!(a, random_positions(50, 10, 8));
        let mut s = a.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 10);
        assert!(a.iter().all(|&p| p < 50));
        assert_eq!(random_positions(3, 10, 1).len(), 3);
    }

    #[test]
    fn names_round_trip() {
        for a in Acquisition::ALL {
            assert_eq!(Acquisition::parse(a.name()), Some(a));
        }
        assert_eq!(Acquisition::parse("entropy"), None);
    }
}
