//! Bad input gives typed errors naming the argument.

use pno_metrics::*;

#[test]
fn gaussian_pred_short_std_is_length_mismatch() {
    let err = GaussianPred::new(&[0.0; 6], &[1.0; 5], 2, 3).unwrap_err();
    assert_eq!(
        err,
        Error::LengthMismatch {
            argument: "std",
            expected: 6,
            got: 5
        }
    );
}

#[test]
fn gaussian_pred_negative_std_is_negative_std_error() {
    let err = GaussianPred::new(&[0.0; 4], &[1.0, 1.0, -0.5, 1.0], 2, 2).unwrap_err();
    assert_eq!(
        err,
        Error::NegativeStd {
            argument: "std",
            index: 2,
            got: -0.5
        }
    );
}

#[test]
fn sample_pred_nan_is_non_finite_error() {
    let mut x = vec![0.0f32; 12];
    x[7] = f32::NAN;
    let err = SamplePred::new(&x, 3, 2, 2).unwrap_err();
    assert!(matches!(
        err,
        Error::NonFinite {
            argument: "samples",
            index: 7,
            ..
        }
    ));
}

#[test]
fn sample_pred_wrong_length_is_length_mismatch() {
    let err = SamplePred::new(&[0.0; 11], 3, 2, 2).unwrap_err();
    assert_eq!(
        err,
        Error::LengthMismatch {
            argument: "samples",
            expected: 12,
            got: 11
        }
    );
}

#[test]
fn crps_target_wrong_length_is_length_mismatch() {
    let x = [0.0; 12];
    let pred = SamplePred::new(&x, 3, 2, 2).unwrap();
    let err = crps_fair(&pred, &[0.0; 3]).unwrap_err();
    assert_eq!(
        err,
        Error::LengthMismatch {
            argument: "target",
            expected: 4,
            got: 3
        }
    );
}

#[test]
fn crps_target_nan_is_non_finite_error() {
    let x = [0.0; 12];
    let pred = SamplePred::new(&x, 3, 2, 2).unwrap();
    let err = crps_samples(&pred, &[0.0, f64::NAN, 0.0, 0.0]).unwrap_err();
    assert!(matches!(
        err,
        Error::NonFinite {
            argument: "target",
            index: 1,
            ..
        }
    ));
}

#[test]
fn crps_fair_single_draw_is_too_small() {
    let x = [0.0; 4];
    let pred = SamplePred::new(&x, 1, 2, 2).unwrap();
    let err = crps_fair(&pred, &[0.0; 4]).unwrap_err();
    assert_eq!(
        err,
        Error::TooSmall {
            argument: "m",
            expected: 2,
            got: 1
        }
    );
}

#[test]
fn coverage_level_outside_unit_interval_is_invalid_level() {
    let (mu, sd) = ([0.0; 4], [1.0; 4]);
    let p = Prediction::from(GaussianPred::new(&mu, &sd, 2, 2).unwrap());
    for level in [0.0, 1.0, 1.5, -0.1, f64::NAN] {
        let err = coverage(&p, &[0.0; 4], level).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidLevel {
                    argument: "level",
                    ..
                }
            ),
            "{level}"
        );
    }
    assert!(matches!(
        interval_width(&p, 1.2),
        Err(Error::InvalidLevel { .. })
    ));
}

#[test]
fn energy_score_domain_mismatch_is_invalid_domain() {
    let x = [0.0; 12];
    let pred = SamplePred::new(&x, 3, 2, 2).unwrap();
    let dom = Domain::unit(&[3], 1).unwrap();
    let err = energy_score(&pred, &[0.0; 4], &dom, Estimator::Fair).unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidDomain {
            argument: "domain",
            ..
        }
    ));
}

#[test]
fn shape_zero_functions_is_too_small() {
    assert_eq!(
        Shape::new(0, 3),
        Err(Error::TooSmall {
            argument: "n",
            expected: 1,
            got: 0
        })
    );
}

#[test]
fn pit_histogram_value_above_one_is_out_of_range() {
    let err = pit_histogram(&[0.2, 1.5], 4).unwrap_err();
    assert!(matches!(
        err,
        Error::OutOfRange {
            argument: "pit",
            index: 1,
            ..
        }
    ));
}

#[test]
fn error_message_names_argument_expected_and_got() {
    let err = GaussianPred::new(&[0.0; 6], &[1.0; 5], 2, 3).unwrap_err();
    assert_eq!(err.to_string(), "std: expected 6 elements, got 5");
}
