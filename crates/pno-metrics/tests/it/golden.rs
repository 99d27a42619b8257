//! Golden values from properscoring, scoringrules, uncertainty-toolbox, scipy and numpy
//! (tests/golden/gen_golden.py, seed and versions in golden.json).

use pno_core::testing::assert_close;
use pno_metrics::*;
use serde_json::Value;

const RTOL: f64 = 1e-6;
const ATOL: f64 = 1e-12;

struct Golden {
    n: usize,
    d: usize,
    m: usize,
    inputs: Value,
    outputs: Value,
}

impl Golden {
    fn load() -> Self {
        let v: Value = serde_json::from_str(include_str!("../golden/golden.json")).unwrap();
        let u = |k: &str| v[k].as_u64().unwrap() as usize;
        Self {
            n: u("n"),
            d: u("d"),
            m: u("m"),
            inputs: v["inputs"].clone(),
            outputs: v["outputs"].clone(),
        }
    }
    fn input(&self, k: &str) -> Vec<f64> {
        serde_json::from_value(self.inputs[k].clone()).unwrap()
    }
    fn out(&self, k: &str) -> f64 {
        self.outputs[k]
            .as_f64()
            .unwrap_or_else(|| panic!("missing {k}"))
    }
    fn outs(&self, k: &str) -> Vec<f64> {
        serde_json::from_value(self.outputs[k].clone()).unwrap()
    }
}

fn check(name: &str, got: f64, expected: f64) {
    assert!(
        pno_core::testing::close(got, expected, RTOL, ATOL),
        "{name}: got {got:e}, expected {expected:e}"
    );
}

#[test]
fn golden_gaussian_metrics_match_python_libraries() {
    let g = Golden::load();
    let (y, mu, sd) = (g.input("target"), g.input("mean"), g.input("std"));
    let pred = GaussianPred::new(&mu, &sd, g.n, g.d).unwrap();
    let p = Prediction::from(pred);
    check(
        "crps_gaussian",
        crps_gaussian(&pred, &y).unwrap(),
        g.out("crps_gaussian"),
    );
    check(
        "nll_gaussian",
        nll_gaussian(&pred, &y).unwrap(),
        g.out("nll_gaussian"),
    );
    check("mace", calibration_error(&p, &y).unwrap(), g.out("ut_mace"));
    check(
        "miscal_area",
        miscalibration_area(&p, &y).unwrap(),
        g.out("ut_miscal_area"),
    );
    check("sharpness", sharpness(&p), g.out("ut_sharpness"));
    check(
        "ut_interval_score",
        mean_interval_score(&p, &y).unwrap(),
        g.out("ut_interval_score"),
    );
    assert_close(
        &coverage_levels(&p, &y, &COVERAGE_LEVELS).unwrap(),
        &g.outs("gauss_coverage"),
        RTOL,
        ATOL,
    );
    check(
        "winkler_90",
        interval_score(&p, &y, 0.9).unwrap(),
        g.out("gauss_winkler_90"),
    );
    check(
        "width_90",
        interval_width(&p, 0.9).unwrap(),
        g.out("gauss_width_90"),
    );
    assert_close(
        &pit_values(&p, &y).unwrap(),
        &g.outs("gauss_pit"),
        RTOL,
        ATOL,
    );
}

#[test]
fn golden_ensemble_metrics_match_python_libraries() {
    let g = Golden::load();
    let (y, x) = (g.input("target"), g.input("samples"));
    let pred = SamplePred::new(&x, g.m, g.n, g.d).unwrap();
    let p = Prediction::from(pred);
    let crps = crps_samples(&pred, &y).unwrap();
    check(
        "crps properscoring",
        crps,
        g.out("crps_ensemble_properscoring"),
    );
    check("crps scoringrules nrg", crps, g.out("crps_ensemble_sr_nrg"));
    check(
        "crps_fair",
        crps_fair(&pred, &y).unwrap(),
        g.out("crps_ensemble_sr_fair"),
    );
    let eu = Domain::euclidean(g.d).unwrap();
    check(
        "es nrg",
        energy_score(&pred, &y, &eu, Estimator::Standard).unwrap(),
        g.out("energy_sr_nrg"),
    );
    check(
        "es fair",
        energy_score(&pred, &y, &eu, Estimator::Fair).unwrap(),
        g.out("energy_sr_fair"),
    );
    check(
        "nll_samples",
        nll_samples(&pred, &y).unwrap(),
        g.out("nll_samples"),
    );
    assert_close(
        &coverage_levels(&p, &y, &COVERAGE_LEVELS).unwrap(),
        &g.outs("sample_coverage"),
        RTOL,
        ATOL,
    );
    check(
        "winkler_90",
        interval_score(&p, &y, 0.9).unwrap(),
        g.out("sample_winkler_90"),
    );
    check(
        "width_90",
        interval_width(&p, 0.9).unwrap(),
        g.out("sample_width_90"),
    );
    let curve = calibration_curve(&p, &y, 100).unwrap();
    check(
        "mace",
        curve.mean_absolute_error(),
        g.out("sample_mace_numpy"),
    );
    check(
        "miscal_area",
        curve.miscalibration_area(),
        g.out("sample_miscal_area_ut"),
    );
    check("sharpness", sharpness(&p), g.out("sample_sharpness"));
    check(
        "spread_skill",
        spread_skill(&p, &y).unwrap(),
        g.out("sample_spread_skill"),
    );
    check(
        "function_coverage",
        function_coverage(&p, &y, 0.95).unwrap(),
        g.out("sample_function_coverage_95"),
    );
}

#[test]
fn golden_point_metrics_and_report_match_numpy() {
    let g = Golden::load();
    let (y, x) = (g.input("target"), g.input("samples"));
    let pred = SamplePred::new(&x, g.m, g.n, g.d).unwrap();
    let (mean, _) = pred.mean_std();
    let shape = Shape::new(g.n, g.d).unwrap();
    let unit = Domain::unit(&[g.d], 1).unwrap();
    check("rel_l2", rel_l2(&mean, &y, shape).unwrap(), g.out("rel_l2"));
    check("mse", mse(&mean, &y, shape).unwrap(), g.out("mse"));
    check(
        "l2_abs",
        l2_abs(&mean, &y, shape, &unit).unwrap(),
        g.out("l2_abs_unit"),
    );
    let r = Report::from_samples(&pred, &y, &unit).unwrap();
    check("report.rel_l2", r.rel_l2, g.out("rel_l2"));
    check("report.crps", r.crps, g.out("crps_ensemble_properscoring"));
    check(
        "report.crps_fair",
        r.crps_fair.unwrap(),
        g.out("crps_ensemble_sr_fair"),
    );
    check("report.nll", r.nll, g.out("nll_samples"));
    check(
        "report.coverage_95",
        r.coverage_95,
        g.outs("sample_coverage")[3],
    );
    check(
        "report.interval_score_90",
        r.interval_score_90,
        g.out("sample_winkler_90"),
    );
    check(
        "report.calibration_error",
        r.calibration_error,
        g.out("sample_mace_numpy"),
    );
    // energy score with the unit-domain measure = Euclidean value · sqrt(1/D)
    let es = g.out("energy_sr_fair") * (1.0 / g.d as f64).sqrt();
    check("report.energy_score", r.energy_score.unwrap(), es);
}

#[test]
fn golden_drift_statistics_match_scipy() {
    let g = Golden::load();
    let (a, b, e) = (g.input("drift_a"), g.input("drift_b"), g.input("psi_edges"));
    check("ks", ks_statistic(&a, &b).unwrap(), g.out("ks_2samp"));
    check("psi", psi(&a, &b, &e).unwrap(), g.out("psi"));
}

#[test]
fn report_json_has_exactly_the_documented_keys() {
    let g = Golden::load();
    let (y, x) = (g.input("target"), g.input("samples"));
    let pred = SamplePred::new(&x, g.m, g.n, g.d).unwrap();
    let r = Report::from_samples(&pred, &y, &Domain::unit(&[g.d], 1).unwrap()).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = vec![
        "rel_l2",
        "l2_abs",
        "rmse",
        "mse",
        "h1_rel",
        "nll",
        "crps",
        "crps_fair",
        "energy_score",
        "coverage_50",
        "coverage_80",
        "coverage_90",
        "coverage_95",
        "coverage_99",
        "function_coverage_95",
        "interval_width_90",
        "interval_score_90",
        "calibration_error",
        "miscalibration_area",
        "sharpness",
        "spread_skill",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    let (mu, sd) = (g.input("mean"), g.input("std"));
    let gr = Report::from_gaussian(
        &GaussianPred::new(&mu, &sd, g.n, g.d).unwrap(),
        &y,
        &Domain::unit(&[g.d], 1).unwrap(),
    )
    .unwrap();
    check("gaussian report crps", gr.crps, g.out("crps_gaussian"));
    assert_eq!(gr.energy_score, None);
}
