//! Running summary statistics (count, NaN/Inf, min, max, mean, std) in `f64`.

use serde::{Deserialize, Serialize};

/// Summary statistics of the finite values of a tensor, plus counts of the non-finite ones.
///
/// Mean and standard deviation (population, `ddof = 0`) are accumulated in `f64` with
/// Welford's update and Chan's merge, in a fixed order, so the same data gives the same bits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// Number of finite values.
    pub count: u64,
    /// Number of NaN values.
    pub nan: u64,
    /// Number of ±Inf values.
    pub inf: u64,
    /// Smallest finite value (0 when there is none).
    pub min: f64,
    /// Largest finite value (0 when there is none).
    pub max: f64,
    /// Mean of the finite values.
    pub mean: f64,
    /// Population standard deviation of the finite values.
    pub std: f64,
    #[serde(skip)]
    m2: f64,
}

impl Default for Moments {
    fn default() -> Self {
        Self {
            count: 0,
            nan: 0,
            inf: 0,
            min: 0.0,
            max: 0.0,
            mean: 0.0,
            std: 0.0,
            m2: 0.0,
        }
    }
}

impl Moments {
    /// Adds one value.
    pub fn push(&mut self, x: f64) {
        if x.is_nan() {
            self.nan += 1;
            return;
        }
        if x.is_infinite() {
            self.inf += 1;
            return;
        }
        if self.count == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.count += 1;
        let d = x - self.mean;
        self.mean += d / self.count as f64;
        self.m2 += d * (x - self.mean);
        self.std = (self.m2 / self.count as f64).max(0.0).sqrt();
    }

    /// Adds every value of a slice, block-wise: each block of finite values is summarised with
    /// an exact two-pass mean and sum of squared deviations and merged with Chan's formula
    /// (blocks holding NaN/Inf fall back to [`Moments::push`]). Same data, same bits.
    pub fn extend_f32(&mut self, xs: &[f32]) {
        const BLOCK: usize = 4096;
        for block in xs.chunks(BLOCK) {
            if !block.iter().all(|x| x.is_finite()) {
                for &x in block {
                    self.push(f64::from(x));
                }
                continue;
            }
            let nb = block.len() as f64;
            let (mut lo, mut hi, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
            for &x in block {
                let x = f64::from(x);
                lo = lo.min(x);
                hi = hi.max(x);
                sum += x;
            }
            let mean_b = sum / nb;
            let m2_b: f64 = block
                .iter()
                .map(|&x| {
                    let d = f64::from(x) - mean_b;
                    d * d
                })
                .sum();
            if self.count == 0 {
                self.min = lo;
                self.max = hi;
                self.mean = mean_b;
                self.m2 = m2_b;
            } else {
                let na = self.count as f64;
                let n = na + nb;
                let d = mean_b - self.mean;
                self.min = self.min.min(lo);
                self.max = self.max.max(hi);
                self.mean += d * nb / n;
                self.m2 += m2_b + d * d * na * nb / n;
            }
            self.count += block.len() as u64;
            self.std = (self.m2 / self.count as f64).max(0.0).sqrt();
        }
    }

    /// Adds every value of `xs`.
    pub fn extend(&mut self, xs: impl IntoIterator<Item = f64>) {
        for x in xs {
            self.push(x);
        }
    }

    /// Combines two summaries as if all values had been pushed into one.
    pub fn merge(&self, other: &Moments) -> Moments {
        if self.count == 0 {
            return Moments {
                nan: self.nan + other.nan,
                inf: self.inf + other.inf,
                ..*other
            };
        }
        if other.count == 0 {
            return Moments {
                nan: self.nan + other.nan,
                inf: self.inf + other.inf,
                ..*self
            };
        }
        let n = (self.count + other.count) as f64;
        let (na, nb) = (self.count as f64, other.count as f64);
        // Stored summaries lose m2; rebuild it from std.
        let m2a = self.std * self.std * na;
        let m2b = other.std * other.std * nb;
        let d = other.mean - self.mean;
        let mean = self.mean + d * nb / n;
        let m2 = m2a + m2b + d * d * na * nb / n;
        Moments {
            count: self.count + other.count,
            nan: self.nan + other.nan,
            inf: self.inf + other.inf,
            min: self.min.min(other.min),
            max: self.max.max(other.max),
            mean,
            std: (m2 / n).max(0.0).sqrt(),
            m2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pno_core::testing::assert_close;

    #[test]
    fn moments_known_values_match() {
        let mut m = Moments::default();
        m.extend([1.0, 2.0, 3.0, 4.0, f64::NAN, f64::INFINITY]);
        assert_eq!((m.count, m.nan, m.inf), (4, 1, 1));
        assert_close(
            &[m.min, m.max, m.mean, m.std],
            &[1.0, 4.0, 2.5, 1.25f64.sqrt()],
            1e-14,
            0.0,
        );
    }

    #[test]
    fn moments_merge_equals_single_pass() {
        let xs: Vec<f64> = (0..50)
            .map(|i| (i as f64 * 0.37).sin() * 3.0 + 1.0)
            .collect();
        let mut all = Moments::default();
        all.extend(xs.iter().copied());
        let (mut a, mut b) = (Moments::default(), Moments::default());
        a.extend(xs[..17].iter().copied());
        b.extend(xs[17..].iter().copied());
        let m = a.merge(&b);
        assert_close(
            &[m.mean, m.std, m.min, m.max],
            &[all.mean, all.std, all.min, all.max],
            1e-12,
            1e-14,
        );
        assert_eq!(m.merge(&Moments::default()).count, 50);
    }

    #[test]
    fn moments_extend_f32_matches_push_including_non_finite() {
        let xs: Vec<f32> = (0..10_000)
            .map(|i| match i {
                5000 => f32::NAN,
                7000 => f32::INFINITY,
                _ => ((i as f32) * 0.37).sin() * 3.0 + 1.0,
            })
            .collect();
        let mut a = Moments::default();
        a.extend(xs.iter().map(|&x| f64::from(x)));
        let mut b = Moments::default();
        b.extend_f32(&xs);
        assert_eq!(
            (a.count, a.nan, a.inf, a.min, a.max),
            (b.count, b.nan, b.inf, b.min, b.max)
        );
        assert!((a.mean - b.mean).abs() < 1e-12 && (a.std - b.std).abs() < 1e-12);
    }
}
