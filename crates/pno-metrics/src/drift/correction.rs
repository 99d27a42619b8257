//! Multiple-testing corrections of a family of p-values: Bonferroni (family-wise error) and
//! Benjamini–Hochberg (false discovery rate).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::view::check_finite;

/// A multiple-testing correction; [`Correction::adjust`] turns raw p-values into adjusted ones
/// that are compared with the nominal level directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Correction {
    /// Benjamini–Hochberg step-up adjustment, controls the false discovery rate
    /// ([`benjamini_hochberg`]).
    #[default]
    Fdr,
    /// Bonferroni, controls the family-wise error rate ([`bonferroni`]).
    Bonferroni,
    /// No correction (each p-value as is).
    None,
}

impl Correction {
    /// The lowercase name (`fdr`, `bonferroni`, `none`).
    pub fn name(&self) -> &'static str {
        match self {
            Correction::Fdr => "fdr",
            Correction::Bonferroni => "bonferroni",
            Correction::None => "none",
        }
    }

    /// Adjusted p-values, in the order of `p`.
    pub fn adjust(&self, p: &[f64]) -> Result<Vec<f64>> {
        match self {
            Correction::Fdr => benjamini_hochberg(p),
            Correction::Bonferroni => bonferroni(p),
            Correction::None => {
                check_p("p", p)?;
                Ok(p.to_vec())
            }
        }
    }
}

impl std::fmt::Display for Correction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for Correction {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "fdr" | "bh" | "benjamini-hochberg" => Ok(Correction::Fdr),
            "bonferroni" => Ok(Correction::Bonferroni),
            "none" => Ok(Correction::None),
            other => Err(format!("expected fdr, bonferroni or none, got {other:?}")),
        }
    }
}

fn check_p(argument: &'static str, p: &[f64]) -> Result<()> {
    check_finite(argument, p)?;
    match p.iter().position(|v| !(0.0..=1.0).contains(v)) {
        None => Ok(()),
        Some(index) => Err(Error::OutOfRange {
            argument,
            index,
            expected: "[0, 1]",
            got: p[index],
        }),
    }
}

/// Bonferroni-adjusted p-values `min(1, m·p_i)` for `m = p.len()` tests.
///
/// Rejecting where the adjusted value is `< α` keeps the probability of any false rejection
/// at most `α` (alibi-detect's default correction). An empty family gives an empty vector.
pub fn bonferroni(p: &[f64]) -> Result<Vec<f64>> {
    check_p("p", p)?;
    let m = p.len() as f64;
    Ok(p.iter().map(|&v| (v * m).min(1.0)).collect())
}

/// Benjamini–Hochberg adjusted p-values (`scipy.stats.false_discovery_control(p)`, `method='bh'`).
///
/// With `p_(1) <= … <= p_(m)` sorted ascending: `q_(i) = min_{k >= i} min(1, p_(k)·m/k)`, returned
/// in the input order. Rejecting where `q_i < α` controls the false discovery rate at `α` for
/// independent (or positively dependent) tests.
///
/// ```
/// // sorted: 0.01·4/1, 0.03·4/2, 0.04·4/3, 0.5·4/4, then the running minimum from the top
/// let q = pno_metrics::benjamini_hochberg(&[0.01, 0.04, 0.03, 0.5])?;
/// let expected = [0.04, 0.16 / 3.0, 0.16 / 3.0, 0.5];
/// assert!(q.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-15));
/// # Ok::<(), pno_metrics::Error>(())
/// ```
pub fn benjamini_hochberg(p: &[f64]) -> Result<Vec<f64>> {
    check_p("p", p)?;
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![0.0; m];
    let mut running = f64::INFINITY;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i] * (m as f64 / (rank + 1) as f64));
        out[i] = running.min(1.0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrections_reject_out_of_range_p() {
        assert!(matches!(
            bonferroni(&[0.1, 1.5]),
            Err(Error::OutOfRange { index: 1, .. })
        ));
        assert!(matches!(
            benjamini_hochberg(&[f64::NAN]),
            Err(Error::NonFinite { index: 0, .. })
        ));
    }

    #[test]
    fn bonferroni_caps_at_one() {
        assert_eq!(bonferroni(&[0.01, 0.5]).unwrap(), vec![0.02, 1.0]);
        assert!(bonferroni(&[]).unwrap().is_empty());
    }

    #[test]
    fn correction_parses_names() {
        assert_eq!("FDR".parse::<Correction>().unwrap(), Correction::Fdr);
        assert_eq!(
            "bonferroni".parse::<Correction>().unwrap(),
            Correction::Bonferroni
        );
        assert!("holm".parse::<Correction>().is_err());
    }
}
