//! The calibrated variant without running anything: the coverage curve and the rescaling on a
//! hand-computed example, tables with raw and calibrated rows, the reading guide on constructed
//! results whose answers are known, and results files of an older version.

use pno_bench::conformal::{CURVE_LEVELS, coverage_curve, rescale};
use pno_bench::guide::{COVERAGE_TOLERANCE, candidates, paragraph};
use pno_bench::tables::{COLUMNS, Table, csv};
use pno_metrics::SamplePred;

use crate::{calibrated, result};

/// Draws 0, 1, …, 10 at each of 4 points (one function): the central interval at level `p` is
/// `(5 − 5p, 5 + 5p)` (linear interpolation, `Q(q) = 10q`), so a target at distance `r` from 5
/// is covered iff `r < 5p`. Targets at distances 0.2, 1.3, 2.8, 4.9 (two below the mean).
fn example() -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (m, d) = (11, 4);
    let mut samples = vec![0.0f32; m * d];
    for k in 0..m {
        for j in 0..d {
            samples[k * d + j] = k as f32;
        }
    }
    (samples, vec![5.0; d], vec![5.2, 3.7, 7.8, 0.1])
}

#[test]
fn the_coverage_curve_matches_a_hand_computed_example() {
    let (samples, _, y) = example();
    let c = coverage_curve(&SamplePred::new(&samples, 11, 1, 4).unwrap(), &y).unwrap();
    assert_eq!(c.expected, CURVE_LEVELS.to_vec());
    // 5p = 0.5 1.0 1.5 2.0 2.5 3.0 3.5 4.0 4.5 4.75 4.95
    let want = [0.25, 0.25, 0.5, 0.5, 0.5, 0.75, 0.75, 0.75, 0.75, 0.75, 1.0];
    assert_eq!(c.observed, want.to_vec());
}

#[test]
fn rescaling_by_k_widens_every_interval_by_k_about_the_mean() {
    let (mut samples, mean, y) = example();
    rescale(&mut samples, &mean, 2.0);
    assert_eq!(samples[..4], [-5.0; 4]);
    assert_eq!(samples[40..], [15.0; 4]);
    // Now covered iff r < 10p: 10p = 1 2 3 4 5 6 …
    let c = coverage_curve(&SamplePred::new(&samples, 11, 1, 4).unwrap(), &y).unwrap();
    let want = [0.25, 0.5, 0.75, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
    assert_eq!(c.observed, want.to_vec());
    // Shrinking: k = 0.5, covered iff r < 2.5p (0.25 0.5 … 1.25 1.5 … 2.475): 0.2 always,
    // 1.3 from p = 0.6 on, 2.8 and 4.9 never.
    let (mut samples, mean, y) = example();
    rescale(&mut samples, &mean, 0.5);
    let c = coverage_curve(&SamplePred::new(&samples, 11, 1, 4).unwrap(), &y).unwrap();
    let want = [0.25, 0.25, 0.25, 0.25, 0.25, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5];
    assert_eq!(c.observed, want.to_vec());
}

/// Four methods on one PDE, two seeds: a deterministic `fno`; `a`, overconfident raw and well
/// calibrated but wide after calibration; `b`, nearly calibrated raw and sharper after; `c`,
/// the sharpest of all but badly calibrated and never calibrated.
fn zoo() -> Vec<pno_bench::CellResult> {
    let mut out = Vec::new();
    for seed in [0, 1] {
        let j = seed as f64 * 0.002; // seed-to-seed variation, symmetric about the means below
        let s = if seed == 0 { -1.0 } else { 1.0 };
        out.push(result(
            "p",
            "fno",
            seed,
            &[
                ("rel_l2", 0.05),
                ("coverage_90", 0.0),
                ("interval_width_90", 0.0),
                ("calibration_error", 0.5),
                ("sharpness", 0.0),
            ],
        ));
        let raw = |cov: f64, w: f64, e: f64, l2: f64| {
            vec![
                ("rel_l2", l2 + j),
                ("crps", 0.1),
                ("coverage_90", cov + s * 0.001),
                ("interval_width_90", w + s * 0.01),
                ("calibration_error", e + s * 0.001),
                ("sharpness", w / 3.0),
            ]
        };
        out.push(calibrated(
            result("p", "a", seed, &raw(0.70, 1.0, 0.08, 0.04)),
            1.6,
            &[
                ("rel_l2", 0.5),
                ("crps", 0.08),
                ("coverage_90", 0.905 + s * 0.001),
                ("interval_width_90", 1.6 + s * 0.01),
                ("calibration_error", 0.01 + s * 0.001),
            ],
        ));
        out.push(calibrated(
            result("p", "b", seed, &raw(0.915, 1.2, 0.03, 0.06)),
            0.92,
            &[
                ("crps", 0.09),
                ("coverage_90", 0.89 + s * 0.001),
                ("interval_width_90", 1.1 + s * 0.01),
                ("calibration_error", 0.02 + s * 0.001),
            ],
        ));
        out.push(result("p", "c", seed, &raw(0.5, 0.3, 0.2, 0.07)));
    }
    out
}

fn names() -> Vec<String> {
    ["fno", "a", "b", "c"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn the_reading_guide_names_the_best_calibrated_and_the_sharpest_calibrated_method() {
    let results = zoo();
    let c = candidates("p", &names(), &results);
    let labels: Vec<&str> = c.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(labels, ["a", "a (conformal)", "b", "b (conformal)", "c"]);
    assert!((c[1].calibration_error - 0.01).abs() < 1e-12);
    assert_eq!(COVERAGE_TOLERANCE, 0.02);
    let text = paragraph("p", &names(), &results, &[]);
    assert_eq!(
        text,
        "p: best calibrated is a (conformal) (calibration error 0.01000, the mean |coverage − \
         level| over 100 levels; mean over seeds), ahead of b (conformal) (0.02000). Among the \
         methods whose 90 % coverage is within ±0.02 of 0.90, the sharpest is b (conformal) (90 % \
         interval width 1.100 at coverage 0.8900); the others within it: a (conformal) 1.600, b \
         1.200. Conformal calibration moved the 90 % coverage (spread scale): a 0.7000 → 0.9050 \
         (×1.600), b 0.9150 → 0.8900 (×0.9200). Deterministic (no spread), not ranked: fno."
    );
}

#[test]
fn the_reading_guide_says_when_no_method_is_calibrated_enough_and_which_lack_a_split() {
    // Only raw rows, none within ±0.02 of 0.90: c is the sharpest but is not named as such.
    let results: Vec<_> = zoo()
        .into_iter()
        .map(|mut r| {
            r.conformal = None;
            r
        })
        .filter(|r| r.method != "b")
        .collect();
    let text = paragraph("p", &names(), &results, &["a".into(), "c".into()]);
    assert_eq!(
        text,
        "p: best calibrated is a (calibration error 0.08000, the mean |coverage − level| over \
         100 levels; mean over seeds), ahead of c (0.2000). No method has a 90 % coverage \
         within ±0.02 of 0.90 (closest: a at 0.7000), so none is compared for sharpness at \
         equal calibration. Deterministic (no spread), not ranked: fno. No calibration split \
         for a, c (data.n_calibration = 0): reported raw only; set data.n_calibration to add \
         the calibrated variant."
    );
    // Ties are all named.
    let tie = vec![
        result(
            "q",
            "x",
            0,
            &[
                ("coverage_90", 0.9),
                ("interval_width_90", 1.0),
                ("calibration_error", 0.01),
                ("sharpness", 0.3),
            ],
        ),
        result(
            "q",
            "y",
            0,
            &[
                ("coverage_90", 0.9),
                ("interval_width_90", 1.0),
                ("calibration_error", 0.01),
                ("sharpness", 0.3),
            ],
        ),
    ];
    let text = paragraph("q", &["x".into(), "y".into()], &tie, &[]);
    assert!(
        text.starts_with("q: best calibrated are x and y (calibration error 0.01000")
            && text.contains(
                "the sharpest are x and y (90 % interval width 1.000 at coverage 0.9000)."
            ),
        "{text}"
    );
    assert_eq!(
        paragraph("q", &["z".into()], &tie, &[]),
        "q: no probabilistic method has results here, so nothing is ranked."
    );
}

#[test]
fn tables_put_the_calibrated_row_after_its_method_and_rank_it_with_the_others() {
    let results = zoo();
    let cols: Vec<_> = COLUMNS
        .iter()
        .copied()
        .filter(|c| ["rel_l2", "crps", "coverage_90", "interval_width_90"].contains(&c.key))
        .collect();
    let t = Table::new("p", &names(), &cols, &results);
    assert_eq!(
        t.rows,
        ["fno", "a", "a (conformal)", "b", "b (conformal)", "c"]
    );
    assert_eq!(t.conformal, [false, false, true, false, true, false]);
    // rel-L2: a's 0.041 is best; the calibrated rows do not compete (the 0.5 recorded for
    // a (conformal) is ignored: the point prediction is the raw row's).
    assert_eq!(t.best[0], vec![1]);
    // CRPS: a (conformal) 0.08; coverage: a (conformal), 0.905 is closest to 0.9.
    assert_eq!(t.best[1], vec![2]);
    assert_eq!(t.best[2], vec![2]);
    let md = t.markdown();
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(
        lines[4],
        "| a (conformal) | = | **0.08000 ± 0** | **0.9050 ± 0.001414** | 1.600 ± 0.01414 |",
        "{md}"
    );
    assert_eq!(
        lines[3],
        "| a | **0.04100 ± 0.001414** | 0.1000 ± 0 | 0.7000 ± 0.001414 | 1.000 ± 0.01414 |",
        "{md}"
    );
    let tex = t.latex();
    assert!(
        tex.contains("a (conformal) & = & \\textbf{0.08000 $\\pm$ 0} &"),
        "{tex}"
    );
    assert!(t.html().contains("<tr><th>a (conformal)</th><td>=</td>"));
    // c has no calibrated variant, so no row; nor does any method in the rollout table.
    let r = Table::new("p", &names(), pno_bench::tables::ROLLOUT_COLUMNS, &results);
    assert_eq!(r.rows, ["fno", "a", "b", "c"]);
}

#[test]
fn results_of_an_older_version_load_and_go_into_the_files() {
    let mut r = result("p", "a", 0, &[("coverage_90", 0.8), ("sharpness", 0.1)]);
    r.coverage_curve = Some(pno_metrics::CalibrationCurve {
        expected: CURVE_LEVELS.to_vec(),
        observed: vec![0.5; CURVE_LEVELS.len()],
    });
    let r = calibrated(r, 1.25, &[("coverage_90", 0.9)]);
    let mut v = serde_json::to_value(&r).unwrap();
    for k in ["coverage_curve", "conformal", "conformal_note"] {
        v.as_object_mut().unwrap().remove(k);
    }
    let old: pno_bench::CellResult = serde_json::from_value(v).unwrap();
    assert!(old.coverage_curve.is_none() && old.conformal.is_none());
    let text = csv(&[r, old]);
    let lines: Vec<&str> = text.lines().collect();
    let head: Vec<&str> = lines[0].split(',').collect();
    let col = |name: &str| head.iter().position(|h| *h == name).unwrap();
    let row = |i: usize| -> Vec<&str> { lines[i].split(',').collect() };
    assert_eq!(row(1).len(), head.len());
    assert_eq!(row(2).len(), head.len());
    assert_eq!(row(1)[col("conformal_scale")], "1.25");
    assert_eq!(row(1)[col("conformal_coverage_90")], "0.9");
    assert_eq!(row(1)[col("curve_coverage_0.95")], "0.5");
    assert_eq!(row(2)[col("conformal_scale")], "");
    assert_eq!(row(2)[col("curve_coverage_0.95")], "");
}
