//! All metrics at once, as one serialisable record (the JSON `pno eval` writes).

use serde::{Deserialize, Serialize};

use crate::accuracy::{h1_rel, l2_abs, mse, rel_l2};
use crate::calibration::DEFAULT_CALIBRATION_LEVELS;
use crate::calibration::calibration_curve;
use crate::coverage::{
    COVERAGE_LEVELS, coverage_levels, function_coverage, interval_score, interval_width,
};
use crate::crps::{Estimator, crps_fair, crps_gaussian, crps_samples};
use crate::domain::Domain;
use crate::energy::energy_score;
use crate::error::Result;
use crate::nll::{nll_gaussian, nll_samples};
use crate::spread::{sharpness, spread_skill};
use crate::view::{GaussianPred, Prediction, Real, SamplePred, check_size};

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
    /// Gaussian NLL ([`nll_gaussian`], or [`nll_samples`] from sample mean and std).
    pub nll: f64,
    /// CRPS: Gaussian closed form ([`crps_gaussian`]) or standard ensemble estimator
    /// ([`crps_samples`]).
    pub crps: f64,
    /// Fair ensemble CRPS ([`crps_fair`]); `null` for a Gaussian prediction.
    pub crps_fair: Option<f64>,
    /// Fair energy score with the domain's discretised L² norm ([`energy_score`]); `null` for a
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
    /// Root mean predictive variance ([`sharpness`]).
    pub sharpness: f64,
    /// Spread–skill ratio ([`spread_skill`]).
    pub spread_skill: f64,
}

struct Probabilistic {
    nll: f64,
    crps: f64,
    crps_fair: Option<f64>,
    energy_score: Option<f64>,
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
        let probabilistic = Probabilistic {
            nll: nll_samples(pred, target)?,
            crps: crps_samples(pred, target)?,
            crps_fair: Some(crps_fair(pred, target)?),
            energy_score: Some(energy_score(pred, target, domain, Estimator::Fair)?),
        };
        Self::assemble(&Prediction::Samples(*pred), target, domain, probabilistic)
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
        Self::assemble(&Prediction::Gaussian(*pred), target, domain, probabilistic)
    }

    fn assemble<T: Real, Y: Real>(
        pred: &Prediction<'_, T>,
        target: &[Y],
        domain: &Domain,
        p: Probabilistic,
    ) -> Result<Self> {
        let shape = pred.shape();
        shape.check_target("target", target)?;
        domain.check_points(shape.d)?;
        let (mean, _) = pred.mean_std();
        let cov = coverage_levels(pred, target, &COVERAGE_LEVELS)?;
        let curve = calibration_curve(pred, target, DEFAULT_CALIBRATION_LEVELS)?;
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
            function_coverage_95: function_coverage(pred, target, 0.95)?,
            interval_width_90: interval_width(pred, 0.9)?,
            interval_score_90: interval_score(pred, target, 0.9)?,
            calibration_error: curve.mean_absolute_error(),
            miscalibration_area: curve.miscalibration_area(),
            sharpness: sharpness(pred),
            spread_skill: spread_skill(pred, target)?,
        })
    }
}
