//! Distribution-drift statistics: population stability index, the two-sample
//! Kolmogorov–Smirnov test, multiple-testing corrections, the MMD permutation test, and a
//! per-feature drift report over two feature tables.
//!
//! Defaults follow the anchors in `research/serving-anchors.md` §3: KS with p < 0.05 after a
//! correction (alibi-detect: Bonferroni; here FDR by default), PSI on 10 reference-quantile bins
//! with the bands < 0.1 stable / 0.1–0.25 moderate / > 0.25 major, and an MMD test with a
//! median-heuristic Gaussian kernel.

mod correction;
mod ks;
mod mmd;
mod report;

pub use correction::{Correction, benjamini_hochberg, bonferroni};
pub use ks::{KS_EXACT_MAX_N, KsMethod, KsTest, ks_2samp};
pub use mmd::{MmdTest, median_bandwidth, mmd_test, mmd2_unbiased};
pub use report::{
    DriftOptions, DriftReport, FeatureDrift, MMD_MAX_ROWS, PSI_MIN_PER_BIN, drift_report,
};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::quantile::quantile_sorted;
use crate::view::{Real, check_finite, check_size};

/// Default number of reference-quantile bins of [`psi_quantile`].
pub const PSI_BINS: usize = 10;
/// PSI below this is [`PsiBand::Stable`].
pub const PSI_MODERATE: f64 = 0.1;
/// PSI above this is [`PsiBand::Major`].
pub const PSI_MAJOR: f64 = 0.25;

/// The conventional reading of a PSI value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PsiBand {
    /// PSI < 0.1.
    Stable,
    /// 0.1 <= PSI <= 0.25.
    Moderate,
    /// PSI > 0.25.
    Major,
}

impl PsiBand {
    /// The band of `psi` ([`PSI_MODERATE`], [`PSI_MAJOR`]).
    pub fn of(psi: f64) -> Self {
        if psi > PSI_MAJOR {
            PsiBand::Major
        } else if psi >= PSI_MODERATE {
            PsiBand::Moderate
        } else {
            PsiBand::Stable
        }
    }

    /// The lowercase name.
    pub fn name(&self) -> &'static str {
        match self {
            PsiBand::Stable => "stable",
            PsiBand::Moderate => "moderate",
            PsiBand::Major => "major",
        }
    }
}

impl std::fmt::Display for PsiBand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// Interior cut points of `bins` equal-probability bins of `reference`: its quantiles at
/// `k / bins`, `k = 1..bins`, numpy's linear interpolation ([`quantile_sorted`]), duplicates
/// removed (ties in the reference merge bins, so fewer than `bins − 1` cuts may come back).
pub fn quantile_cuts<T: Real>(reference: &[T], bins: usize) -> Result<Vec<f64>> {
    check_size("bins", 1, bins)?;
    check_size("reference", 1, reference.len())?;
    check_finite("reference", reference)?;
    let mut sorted: Vec<f64> = reference.iter().map(|&v| v.into()).collect();
    sorted.sort_unstable_by(f64::total_cmp);
    let mut cuts: Vec<f64> = (1..bins)
        .map(|k| quantile_sorted(&sorted, k as f64 / bins as f64))
        .collect();
    cuts.dedup();
    Ok(cuts)
}

/// Population stability index of `current` against `reference` on `bins` reference-quantile
/// bins (the usual PSI: every bin holds ~1/`bins` of the reference).
///
/// Bins are `(−∞, c₁), [c₁, c₂), …, [c_{B−1}, ∞)` with the cut points of [`quantile_cuts`];
/// `PSI = Σ_b (a_b − e_b)·ln(a_b / e_b)`, fractions floored at [`PSI_EPSILON`] as in [`psi`].
/// Reading: [`PsiBand`]. Under no drift PSI ≈ (1/n_ref + 1/n_cur)·χ²_{B−1}, so small samples
/// need few bins (see [`PSI_MIN_PER_BIN`]).
///
/// ```
/// use pno_metrics::{PsiBand, psi_quantile};
/// let reference: Vec<f64> = (0..1000).map(|i| i as f64 / 1000.0).collect();
/// let same = psi_quantile(&reference, &reference, 10)?;
/// assert_eq!(same, 0.0);
/// let shifted: Vec<f64> = reference.iter().map(|v| v + 0.5).collect();
/// assert_eq!(PsiBand::of(psi_quantile(&reference, &shifted, 10)?), PsiBand::Major);
/// # Ok::<(), pno_metrics::Error>(())
/// ```
pub fn psi_quantile<T: Real, U: Real>(reference: &[T], current: &[U], bins: usize) -> Result<f64> {
    check_size("current", 1, current.len())?;
    check_finite("current", current)?;
    let cuts = quantile_cuts(reference, bins)?;
    let fractions = |xs: &mut dyn Iterator<Item = f64>, len: usize| {
        let mut counts = vec![0usize; cuts.len() + 1];
        for x in xs {
            counts[cuts.partition_point(|&c| c <= x)] += 1;
        }
        counts
            .into_iter()
            .map(|c| (c as f64 / len as f64).max(PSI_EPSILON))
            .collect::<Vec<f64>>()
    };
    let e = fractions(&mut reference.iter().map(|&v| v.into()), reference.len());
    let a = fractions(&mut current.iter().map(|&v| v.into()), current.len());
    Ok(e.iter().zip(&a).map(|(e, a)| (a - e) * (a / e).ln()).sum())
}

/// Floor applied to bin proportions in [`psi`] so empty bins give a finite index.
pub const PSI_EPSILON: f64 = 1e-4;

/// Population stability index of `current` against `reference` on the given bin edges.
///
/// Formula: `PSI = Σ_b (a_b − e_b)·ln(a_b / e_b)`, `e_b`, `a_b` the fractions of `reference`
/// and `current` in bin `b`, each floored at [`PSI_EPSILON`]. Bins are `[edge_b, edge_{b+1})`,
/// the last closed; values outside `[edge_0, edge_B]` are counted in the first or last bin.
/// Common reading: < 0.1 stable, 0.1–0.25 moderate shift, > 0.25 major shift.
pub fn psi<T: Real, U: Real>(reference: &[T], current: &[U], edges: &[f64]) -> Result<f64> {
    check_size("edges", 2, edges.len())?;
    check_size("reference", 1, reference.len())?;
    check_size("current", 1, current.len())?;
    check_finite("reference", reference)?;
    check_finite("current", current)?;
    for (index, w) in edges.windows(2).enumerate() {
        if !(w[0].is_finite() && w[1].is_finite() && w[0] < w[1]) {
            let bad = if w[0].is_finite() { index + 1 } else { index };
            return Err(Error::InvalidEdges {
                argument: "edges",
                index: bad,
                got: edges[bad],
            });
        }
    }
    let bins = edges.len() - 1;
    let fractions = |xs: &mut dyn Iterator<Item = f64>, len: usize| {
        let mut counts = vec![0usize; bins];
        for x in xs {
            // bin b such that edges[b] <= x < edges[b+1]; clamp outside values
            let b = edges
                .partition_point(|&e| e <= x)
                .saturating_sub(1)
                .min(bins - 1);
            counts[b] += 1;
        }
        counts
            .into_iter()
            .map(|c| (c as f64 / len as f64).max(PSI_EPSILON))
            .collect::<Vec<f64>>()
    };
    let e = fractions(&mut reference.iter().map(|&v| v.into()), reference.len());
    let a = fractions(&mut current.iter().map(|&v| v.into()), current.len());
    Ok(e.iter().zip(&a).map(|(e, a)| (a - e) * (a / e).ln()).sum())
}

/// Two-sample Kolmogorov–Smirnov statistic (`scipy.stats.ks_2samp(...).statistic`).
///
/// Formula: `D = sup_x |F_a(x) − F_b(x)|` over the empirical distribution functions, evaluated
/// at every observed value after sorting both samples (O((p + q) log(p + q))).
pub fn ks_statistic<T: Real, U: Real>(a: &[T], b: &[U]) -> Result<f64> {
    check_size("a", 1, a.len())?;
    check_size("b", 1, b.len())?;
    check_finite("a", a)?;
    check_finite("b", b)?;
    let mut xa: Vec<f64> = a.iter().map(|&v| v.into()).collect();
    let mut xb: Vec<f64> = b.iter().map(|&v| v.into()).collect();
    xa.sort_unstable_by(f64::total_cmp);
    xb.sort_unstable_by(f64::total_cmp);
    let (na, nb) = (xa.len() as f64, xb.len() as f64);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0.0f64);
    while i < xa.len() && j < xb.len() {
        let x = xa[i].min(xb[j]);
        while i < xa.len() && xa[i] <= x {
            i += 1;
        }
        while j < xb.len() && xb[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / na - j as f64 / nb).abs());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_identical_samples_is_zero() {
        let x = [0.1, 0.4, 0.5, 0.9, 0.2];
        assert_eq!(psi(&x, &x, &[0.0, 0.3, 0.6, 1.0]).unwrap(), 0.0);
    }

    #[test]
    fn psi_unsorted_edges_is_invalid_edges_error() {
        let err = psi(&[0.1], &[0.2], &[0.0, 0.5, 0.4]).unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidEdges {
                argument: "edges",
                index: 2,
                ..
            }
        ));
    }

    #[test]
    fn ks_statistic_disjoint_samples_is_one() {
        assert_eq!(ks_statistic(&[1.0, 2.0], &[3.0, 4.0, 5.0]).unwrap(), 1.0);
    }
}
