//! All metrics at once, as one serialisable record (the JSON `pno eval` writes).

use serde::{Deserialize, Serialize};

use crate::accuracy::{h1_rel, l2_abs, mse, rel_l2};
use crate::calibration::DEFAULT_CALIBRATION_LEVELS;
use crate::calibration::{CalibrationCurve, calibration_curve};
use crate::coverage::{
    COVERAGE_LEVELS, coverage_levels, function_coverage, interval_score, interval_width,
    winkler_point,
};
use crate::crps::{Estimator, crps_gaussian, crps_tile};
use crate::domain::Domain;
use crate::energy::energy_pass;
use crate::error::Result;
use crate::nll::{nll_gaussian, nll_of};
use crate::quantile::{QuantileIndex, central_level_ranked, ranks_tile};
use crate::spread::{sharpness_of, spread_skill_of};
use crate::view::{GaussianPred, Prediction, Real, SamplePred, TILE, check_size, target_tile};

/// Every metric of the crate for one model on one test set; field names are the JSON keys.
///
/// Point metrics use the predictive mean (the sample mean for draws). See each function for its
/// formula; levels are nominal central-interval probabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`rel_l2`] of the mean.
    pub rel_l2: f64,
    /// [`l2_abs`] of the mean (the PNO paper's `MSE` column).
    pub l2_abs: f64,
    /// [`crate::rmse`] of the mean.
    pub rmse: f64,
    /// [`mse`] of the mean.
    pub mse: f64,
    /// [`h1_rel`] of the mean.
    pub h1_rel: f64,
    /// Gaussian NLL ([`nll_gaussian`], or [`crate::nll_samples`] from sample mean and std).
    pub nll: f64,
    /// CRPS: Gaussian closed form ([`crps_gaussian`]) or standard ensemble estimator
    /// ([`crate::crps_samples`]).
    pub crps: f64,
    /// Fair ensemble CRPS ([`crate::crps_fair`]); `null` for a Gaussian prediction.
    pub crps_fair: Option<f64>,
    /// Fair energy score with the domain's discretised L² norm ([`crate::energy_score`]); `null` for a
    /// Gaussian prediction.
    pub energy_score: Option<f64>,
    /// Pointwise coverage at 0.5 ([`coverage_levels`]).
    pub coverage_50: f64,
    /// Pointwise coverage at 0.8.
    pub coverage_80: f64,
    /// Pointwise coverage at 0.9.
    pub coverage_90: f64,
    /// Pointwise coverage at 0.95.
    pub coverage_95: f64,
    /// Pointwise coverage at 0.99.
    pub coverage_99: f64,
    /// Fraction of functions entirely inside the pointwise 0.95 band ([`function_coverage`]).
    pub function_coverage_95: f64,
    /// Mean width of the 0.9 central interval ([`interval_width`]).
    pub interval_width_90: f64,
    /// Mean Winkler score of the 0.9 central interval ([`interval_score`]).
    pub interval_score_90: f64,
    /// Mean absolute calibration error over 100 levels ([`crate::calibration_error`]).
    pub calibration_error: f64,
    /// Miscalibration area over 100 levels ([`crate::miscalibration_area`]).
    pub miscalibration_area: f64,
    /// Root mean predictive variance ([`crate::sharpness`]).
    pub sharpness: f64,
    /// Spread–skill ratio ([`crate::spread_skill`]).
    pub spread_skill: f64,
}

struct Probabilistic {
    nll: f64,
    crps: f64,
    crps_fair: Option<f64>,
    energy_score: Option<f64>,
}

/// The interval and calibration metrics of a report.
struct Intervals {
    coverage: Vec<f64>,
    function_coverage_95: f64,
    interval_width_90: f64,
    interval_score_90: f64,
    curve: CalibrationCurve,
}

impl Intervals {
    fn from_prediction<T: Real, Y: Real>(pred: &Prediction<'_, T>, target: &[Y]) -> Result<Self> {
        Ok(Self {
            coverage: coverage_levels(pred, target, &COVERAGE_LEVELS)?,
            function_coverage_95: function_coverage(pred, target, 0.95)?,
            interval_width_90: interval_width(pred, 0.9)?,
            interval_score_90: interval_score(pred, target, 0.9)?,
            curve: calibration_curve(pred, target, DEFAULT_CALIBRATION_LEVELS)?,
        })
    }
}

/// Per-function contributions of every sorted-draw metric (one pass over the draws).
struct SortedPartial {
    crps: f64,
    crps_fair: f64,
    coverage: [usize; COVERAGE_LEVELS.len()],
    inside_95: bool,
    width_90: f64,
    score_90: f64,
    calibration: Vec<usize>,
}

/// CRPS (standard and fair), coverage, function coverage, interval width and score and the
/// calibration curve from one sorted pass; each reduction is the one of the single-metric
/// function (same per-function sums, reduced in function order), so results are identical.
fn sorted_metrics<T: Real, Y: Real>(
    pred: &SamplePred<'_, T>,
    target: &[Y],
) -> Result<(f64, f64, Intervals)> {
    let shape = pred.shape();
    shape.check_target("target", target)?;
    let (n, d) = (shape.n, shape.d);
    let levels = DEFAULT_CALIBRATION_LEVELS;
    let step = 1.0 / (levels - 1) as f64;
    let expected: Vec<f64> = (0..levels).map(|k| k as f64 * step).collect();
    // index of 0.95 and 0.9 in COVERAGE_LEVELS
    let (i95, i90) = (3, 2);
    let at = |p: f64| QuantileIndex::new(pred.m(), p);
    let ends: Vec<_> = COVERAGE_LEVELS
        .iter()
        .map(|p| (at(0.5 - p / 2.0), at(0.5 + p / 2.0)))
        .collect();
    let init = || SortedPartial {
        crps: 0.0,
        crps_fair: 0.0,
        coverage: [0; COVERAGE_LEVELS.len()],
        inside_95: true,
        width_90: 0.0,
        score_90: 0.0,
        calibration: vec![0; levels],
    };
    let mut per = pred.fold_sorted(
        init,
        #[inline(always)]
        |p, j, i0, tile| {
            let w = tile.width();
            let y = target_tile(target, j * d + i0, w);
            let (mut standard, mut fair) = ([0.0; TILE], [0.0; TILE]);
            crps_tile(tile, &y, &mut standard, &mut fair);
            let (mut lo, mut hi) = ([0.0; TILE], [0.0; TILE]);
            let mut inside = [[false; TILE]; COVERAGE_LEVELS.len()];
            for (l, (&lv, (ql, qh))) in COVERAGE_LEVELS.iter().zip(&ends).enumerate() {
                ql.eval_tile(tile, &mut lo);
                qh.eval_tile(tile, &mut hi);
                for c in 0..w {
                    inside[l][c] = lo[c] < y[c] && y[c] < hi[c];
                    if l == i90 {
                        p.width_90 += hi[c] - lo[c];
                        p.score_90 += winkler_point(lo[c], hi[c], y[c], lv);
                    }
                }
            }
            let (mut a, mut b) = ([0; TILE], [0; TILE]);
            ranks_tile(tile, &y, &mut a, &mut b);
            for c in 0..w {
                p.crps += standard[c];
                p.crps_fair += fair[c];
                for (count, inside) in p.coverage.iter_mut().zip(&inside) {
                    *count += usize::from(inside[c]);
                }
                p.inside_95 &= inside[i95][c];
                let (a, b) = (a[c] as usize, b[c] as usize);
                let s = central_level_ranked(tile.m(), a, b, y[c], |k| tile.row(k)[c]);
                let k = expected.partition_point(|&tk| tk < s);
                if k < levels {
                    p.calibration[k] += 1;
                }
            }
        },
    );
    for p in &mut per {
        p.crps /= d as f64;
        p.crps_fair /= d as f64;
        p.width_90 /= d as f64;
    }
    let total = shape.len() as f64;
    let crps = per.iter().map(|p| p.crps).sum::<f64>() / n as f64;
    let crps_fair = per.iter().map(|p| p.crps_fair).sum::<f64>() / n as f64;
    let coverage = (0..COVERAGE_LEVELS.len())
        .map(|l| per.iter().map(|p| p.coverage[l]).sum::<usize>() as f64 / total)
        .collect();
    let mut cum = 0usize;
    let observed = (0..levels)
        .map(|k| {
            cum += per.iter().map(|p| p.calibration[k]).sum::<usize>();
            cum as f64 / total
        })
        .collect();
    let intervals = Intervals {
        coverage,
        function_coverage_95: per.iter().filter(|p| p.inside_95).count() as f64 / n as f64,
        interval_width_90: per.iter().map(|p| p.width_90).sum::<f64>() / n as f64,
        interval_score_90: per.iter().map(|p| p.score_90).sum::<f64>() / total,
        curve: CalibrationCurve { expected, observed },
    };
    Ok((crps, crps_fair, intervals))
}

impl Report {
    /// All metrics from `m` draws (`[m, n, d]`, samples first); needs `m >= 2`. `domain`
    /// describes the `d` points (quadrature weight for `l2_abs` and the energy score, spacing
    /// for `h1_rel`).
    pub fn from_samples<T: Real, Y: Real>(
        pred: &SamplePred<'_, T>,
        target: &[Y],
        domain: &Domain,
    ) -> Result<Self> {
        check_size("m", 2, pred.m())?;
        let (crps, crps_fair, intervals) = sorted_metrics(pred, target)?;
        // the energy pass also yields the sample mean and std (shared by nll, the point metrics
        // and spread), saving one more read of the draws
        let (energy_score, moments) = energy_pass(pred, target, domain, Estimator::Fair, true)?;
        let (mean, std) = moments.unwrap_or_else(|| pred.mean_std());
        let probabilistic = Probabilistic {
            nll: nll_of(&mean, &std, target),
            crps,
            crps_fair: Some(crps_fair),
            energy_score: Some(energy_score),
        };
        Self::assemble(
            &Prediction::Samples(*pred),
            target,
            domain,
            (mean, std),
            probabilistic,
            intervals,
        )
    }

    /// All metrics from a pointwise Gaussian prediction (`mean`, `std`, each `[n, d]`);
    /// `crps_fair` and `energy_score` are `None`.
    pub fn from_gaussian<T: Real, Y: Real>(
        pred: &GaussianPred<'_, T>,
        target: &[Y],
        domain: &Domain,
    ) -> Result<Self> {
        let probabilistic = Probabilistic {
            nll: nll_gaussian(pred, target)?,
            crps: crps_gaussian(pred, target)?,
            crps_fair: None,
            energy_score: None,
        };
        let prediction = Prediction::Gaussian(*pred);
        let intervals = Intervals::from_prediction(&prediction, target)?;
        let mean_std = prediction.mean_std();
        Self::assemble(
            &prediction,
            target,
            domain,
            mean_std,
            probabilistic,
            intervals,
        )
    }

    fn assemble<T: Real, Y: Real>(
        pred: &Prediction<'_, T>,
        target: &[Y],
        domain: &Domain,
        (mean, std): (Vec<f64>, Vec<f64>),
        p: Probabilistic,
        iv: Intervals,
    ) -> Result<Self> {
        let shape = pred.shape();
        shape.check_target("target", target)?;
        domain.check_points(shape.d)?;
        let (cov, curve) = (&iv.coverage, &iv.curve);
        let mse = mse(&mean, target, shape)?;
        Ok(Self {
            rel_l2: rel_l2(&mean, target, shape)?,
            l2_abs: l2_abs(&mean, target, shape, domain)?,
            rmse: mse.sqrt(),
            mse,
            h1_rel: h1_rel(&mean, target, shape, domain)?,
            nll: p.nll,
            crps: p.crps,
            crps_fair: p.crps_fair,
            energy_score: p.energy_score,
            coverage_50: cov[0],
            coverage_80: cov[1],
            coverage_90: cov[2],
            coverage_95: cov[3],
            coverage_99: cov[4],
            function_coverage_95: iv.function_coverage_95,
            interval_width_90: iv.interval_width_90,
            interval_score_90: iv.interval_score_90,
            calibration_error: curve.mean_absolute_error(),
            miscalibration_area: curve.miscalibration_area(),
            sharpness: sharpness_of(&std),
            spread_skill: spread_skill_of(pred, &mean, &std, target),
        })
    }
}
