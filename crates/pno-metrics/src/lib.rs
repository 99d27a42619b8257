//! Accuracy and uncertainty-quality metrics for probabilistic neural operators.
//!
//! Predictions for `n` test functions, each discretised on `d` points (spatial points ×
//! channels, flattened channels-first), come either as a pointwise Gaussian ([`GaussianPred`]:
//! `mean`, `std`, each `[n, d]`) or as `m` draws stored **samples-first** ([`SamplePred`]:
//! `[m, n, d]`, the layout `pno predict` writes). Targets are `[n, d]`. Inputs may be `f32` or
//! `f64` (anything [`Real`]); every sum is accumulated in `f64`. Every metric documents its
//! formula and estimator; the conventions follow the PNO paper (Bülte et al. 2025) and the FNO
//! paper where they define one:
//!
//! | concept | functions |
//! |---|---|
//! | point accuracy | [`rel_l2`], [`l2_abs`], [`mse`], [`rmse`], [`h1_rel`] |
//! | likelihood | [`nll_gaussian`], [`nll_samples`] |
//! | CRPS | [`crps_gaussian`], [`crps_samples`], [`crps_fair`], [`crps_ensemble`] |
//! | energy score | [`energy_score`] (discretised L² norm of a [`Domain`]) |
//! | intervals | [`coverage`], [`coverage_levels`], [`function_coverage`], [`interval_width`], [`interval_score`], [`mean_interval_score`] |
//! | calibration | [`calibration_curve`], [`calibration_error`], [`miscalibration_area`], [`pit_values`], [`pit_histogram`] |
//! | spread | [`sharpness`], [`spread_skill`] |
//! | drift | [`psi`], [`psi_quantile`], [`ks_statistic`], [`ks_2samp`], [`bonferroni`], [`benjamini_hochberg`], [`mmd_test`], [`drift_report`] |
//! | everything | [`Report::from_samples`], [`Report::from_gaussian`] |
//!
//! Work is parallel over functions (rayon). The sample-based CRPS, interval, PIT and calibration
//! metrics sort each point's draws with a comparator network, 32 points at a time under runtime
//! SIMD dispatch, and evaluate the metric on each sorted tile while it is in cache; the energy
//! score uses one Gram matrix per function (faer matmul).
//!
//! ```
//! use pno_metrics::{Domain, Report, SamplePred, crps_fair};
//!
//! // 3 draws of 2 functions on a 1-D grid of 4 points: samples-first [m, n, d].
//! let (m, n, d) = (3, 2, 4);
//! let target = [1.0f32, 2.0, 3.0, 4.0, 0.5, 0.5, 0.5, 0.5];
//! let samples: Vec<f32> = (0..m * n * d)
//!     .map(|k| target[k % (n * d)] + 0.1 * (k / (n * d)) as f32 - 0.1)
//!     .collect();
//! let pred = SamplePred::new(&samples, m, n, d)?;
//! let crps = crps_fair(&pred, &target)?;
//! assert!(crps >= 0.0);
//!
//! let report = Report::from_samples(&pred, &target, &Domain::unit(&[d], 1)?)?;
//! assert_eq!(report.crps_fair, Some(crps));
//! let json = serde_json::to_string(&report).unwrap();
//! assert!(json.contains("\"coverage_95\""));
//! # Ok::<(), pno_metrics::Error>(())
//! ```

mod accuracy;
mod calibration;
mod coverage;
mod crps;
mod domain;
mod drift;
mod energy;
mod error;
mod nll;
mod normal;
mod pit;
mod quantile;
mod report;
mod spread;
mod view;

pub use accuracy::{h1_rel, l2_abs, mse, rel_l2, rmse};
pub use calibration::{
    CalibrationCurve, DEFAULT_CALIBRATION_LEVELS, calibration_curve, calibration_error,
    miscalibration_area,
};
pub use coverage::{
    COVERAGE_LEVELS, coverage, coverage_levels, function_coverage, interval_score,
    interval_score_levels, interval_width, mean_interval_score, winkler_point,
};
pub use crps::{
    Estimator, crps_ensemble, crps_ensemble_sorted, crps_fair, crps_gaussian, crps_gaussian_point,
    crps_samples,
};
pub use domain::Domain;
pub use drift::{
    Correction, DriftOptions, DriftReport, FeatureDrift, KS_EXACT_MAX_N, KsMethod, KsTest,
    MMD_MAX_ROWS, MmdTest, PSI_BINS, PSI_EPSILON, PSI_MAJOR, PSI_MIN_PER_BIN, PSI_MODERATE,
    PsiBand, benjamini_hochberg, bonferroni, drift_report, ks_2samp, ks_statistic,
    median_bandwidth, mmd_test, mmd2_unbiased, psi, psi_quantile, quantile_cuts,
};
pub use energy::energy_score;
pub use error::{Error, Result};
pub use nll::{SIGMA_MAX, SIGMA_MIN, gaussian_nll_point, nll_gaussian, nll_samples};
pub use normal::{normal_cdf, normal_pdf, normal_quantile};
pub use pit::{PitHistogram, pit_histogram, pit_values};
pub use quantile::{central_level_sorted, quantile_sorted};
pub use report::Report;
pub use spread::{sharpness, spread_skill};
pub use view::{GaussianPred, Prediction, Real, SamplePred, Shape};
