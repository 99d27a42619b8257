//! Drift statistics against scipy/numpy (tests/golden/gen_drift_golden.py → drift_golden.json,
//! seed and versions inside) and statistical properties of the MMD permutation test.

use pno_metrics::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::Value;

fn golden() -> Value {
    let v: Value = serde_json::from_str(include_str!("../golden/drift_golden.json")).unwrap();
    v["outputs"].clone()
}

fn floats(v: &Value) -> Vec<f64> {
    serde_json::from_value(v.clone()).unwrap()
}

fn close(got: f64, want: f64, rtol: f64, atol: f64) -> bool {
    pno_core::testing::close(got, want, rtol, atol)
}

/// Exact path: the same recursions as scipy in the same order.
const EXACT_RTOL: f64 = 1e-12;
const EXACT_ATOL: f64 = 1e-15;

#[test]
fn ks_2samp_matches_scipy_on_stored_samples() {
    for (i, c) in golden()["ks_random"].as_array().unwrap().iter().enumerate() {
        let (a, b) = (floats(&c["a"]), floats(&c["b"]));
        let t = ks_2samp(&a, &b).unwrap();
        let (d, p) = (
            c["statistic"].as_f64().unwrap(),
            c["pvalue"].as_f64().unwrap(),
        );
        assert_eq!(t.method, KsMethod::Exact, "case {i}");
        assert!(
            close(t.statistic, d, 1e-12, 1e-15),
            "case {i}: D {} vs {d}",
            t.statistic
        );
        assert!(
            close(t.p_value, p, EXACT_RTOL, EXACT_ATOL),
            "case {i} ({}, {}): p {:e} vs scipy {p:e}",
            a.len(),
            b.len(),
            t.p_value
        );
    }
}

/// Large samples rebuilt from (n1, n2, scale, shift). Asymptotic path: scipy's `kstwo.sf` at the
/// effective size, which this crate evaluates with the same large-n formulas (1e-9 relative),
/// except where scipy uses the Durbin matrix (p > 0.9; 1e-5 absolute). Where scipy's auto rule
/// would use `kstwo` with n <= 140 this crate stays exact: compared with `method='exact'`.
#[test]
fn ks_2samp_matches_scipy_on_large_grids() {
    for c in golden()["ks_grid"].as_array().unwrap() {
        let n1 = c["n1"].as_u64().unwrap() as usize;
        let n2 = c["n2"].as_u64().unwrap() as usize;
        let (scale, shift) = (c["scale"].as_f64().unwrap(), c["shift"].as_f64().unwrap());
        let a: Vec<f64> = (0..n1).map(|i| i as f64 / n1 as f64).collect();
        let b: Vec<f64> = (0..n2)
            .map(|j| j as f64 / n2 as f64 * scale + shift)
            .collect();
        let t = ks_2samp(&a, &b).unwrap();
        let d = c["statistic"].as_f64().unwrap();
        assert!(
            close(t.statistic, d, 1e-12, 1e-15),
            "{c}: D {}",
            t.statistic
        );
        let (want, rtol, atol) = match (c.get("exact_p"), c["method"].as_str().unwrap()) {
            (Some(p), _) => {
                assert_eq!(t.method, KsMethod::Exact);
                (p.as_f64().unwrap(), EXACT_RTOL, EXACT_ATOL)
            }
            (None, "exact") => {
                assert_eq!(t.method, KsMethod::Exact);
                (c["pvalue"].as_f64().unwrap(), EXACT_RTOL, EXACT_ATOL)
            }
            (None, _) => {
                assert_eq!(t.method, KsMethod::Asymptotic);
                (c["pvalue"].as_f64().unwrap(), 1e-9, 1e-5)
            }
        };
        assert!(
            close(
                t.p_value,
                want,
                rtol,
                if want > 0.9 { atol } else { EXACT_ATOL }
            ),
            "{c}: p {:e} vs scipy {want:e}",
            t.p_value
        );
    }
}

#[test]
fn corrections_match_scipy() {
    let g = golden();
    let c = &g["corrections"];
    let p = floats(&c["p"]);
    pno_core::testing::assert_close(
        &benjamini_hochberg(&p).unwrap(),
        &floats(&c["bh"]),
        1e-14,
        0.0,
    );
    pno_core::testing::assert_close(
        &Correction::Fdr.adjust(&p).unwrap(),
        &floats(&c["bh"]),
        1e-14,
        0.0,
    );
    pno_core::testing::assert_close(
        &bonferroni(&p).unwrap(),
        &floats(&c["bonferroni"]),
        1e-14,
        0.0,
    );
}

#[test]
fn psi_quantile_matches_numpy() {
    for c in golden()["psi_quantile"].as_array().unwrap() {
        let (r, x) = (floats(&c["reference"]), floats(&c["current"]));
        let bins = c["bins"].as_u64().unwrap() as usize;
        pno_core::testing::assert_close(
            &quantile_cuts(&r, bins).unwrap(),
            &floats(&c["cuts"]),
            1e-14,
            1e-15,
        );
        let got = psi_quantile(&r, &x, bins).unwrap();
        let want = c["psi"].as_f64().unwrap();
        assert!(
            close(got, want, 1e-12, 1e-15),
            "bins {bins}: {got} vs {want}"
        );
    }
}

#[test]
fn mmd_statistic_and_bandwidth_match_numpy() {
    for c in golden()["mmd"].as_array().unwrap() {
        let (x, y) = (floats(&c["x"]), floats(&c["y"]));
        let d = c["d"].as_u64().unwrap() as usize;
        let sigma = median_bandwidth(&x, &y, d).unwrap();
        assert!(close(sigma, c["bandwidth"].as_f64().unwrap(), 1e-13, 0.0));
        let mmd2 = mmd2_unbiased(&x, &y, d, sigma).unwrap();
        assert!(
            close(mmd2, c["mmd2"].as_f64().unwrap(), 1e-10, 1e-14),
            "{mmd2} vs {}",
            c["mmd2"]
        );
        let t = mmd_test(&x, &y, d, 20, 1).unwrap();
        assert_eq!(t.bandwidth, sigma);
        assert_eq!(t.mmd2, mmd2);
    }
}

fn normal_rows(rng: &mut ChaCha8Rng, n: usize, d: usize, shift: f64) -> Vec<f64> {
    (0..n * d)
        .map(|_| {
            let z: f64 = StandardNormal.sample(rng);
            z + shift
        })
        .collect()
}

/// Under "same distribution" the permutation p-value is (super-)uniform: over 200 seeded
/// replicates its mean is near 1/2 and about 5 % fall below 0.05 (binomial sd ≈ 1.5 %).
#[test]
fn mmd_p_value_is_roughly_uniform_under_no_drift() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let reps = 200;
    let p: Vec<f64> = (0..reps)
        .map(|r| {
            let x = normal_rows(&mut rng, 20, 3, 0.0);
            let y = normal_rows(&mut rng, 24, 3, 0.0);
            mmd_test(&x, &y, 3, 99, r).unwrap().p_value
        })
        .collect();
    let mean = p.iter().sum::<f64>() / reps as f64;
    let small = p.iter().filter(|&&v| v < 0.05).count() as f64 / reps as f64;
    assert!((0.42..0.58).contains(&mean), "mean p {mean}");
    assert!(small <= 0.10, "share of p < 0.05: {small}");
    // and the KS p-values of the same kind of data are uniform too (scipy-exact null)
    let ks = ks_2samp(
        &p,
        &(0..reps)
            .map(|i| (i as f64 + 0.5) / reps as f64)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(ks.p_value > 0.01, "p-values not uniform: {ks:?}");
}

#[test]
fn mmd_detects_a_mean_shift() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for r in 0..10 {
        let x = normal_rows(&mut rng, 30, 3, 0.0);
        let y = normal_rows(&mut rng, 30, 3, 1.0);
        let t = mmd_test(&x, &y, 3, 199, r).unwrap();
        assert!(t.p_value <= 0.01, "replicate {r}: {t:?}");
        assert!(t.p_value >= 1.0 / 200.0);
    }
}

#[test]
fn ks_p_value_is_uniform_under_no_drift_and_small_under_shift() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let p: Vec<f64> = (0..300)
        .map(|_| {
            let a = normal_rows(&mut rng, 30, 1, 0.0);
            let b = normal_rows(&mut rng, 40, 1, 0.0);
            ks_2samp(&a, &b).unwrap().p_value
        })
        .collect();
    let small = p.iter().filter(|&&v| v < 0.05).count() as f64 / p.len() as f64;
    assert!(small <= 0.09, "share of p < 0.05 under no drift: {small}");
    let a = normal_rows(&mut rng, 64, 1, 0.0);
    let b = normal_rows(&mut rng, 64, 1, 1.0);
    assert!(ks_2samp(&a, &b).unwrap().p_value < 1e-4);
}

#[test]
fn drift_report_flags_a_shifted_feature_only_there() {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let reference = normal_rows(&mut rng, 128, 3, 0.0);
    let same = normal_rows(&mut rng, 128, 3, 0.0);
    let mut shifted = normal_rows(&mut rng, 128, 3, 0.0);
    for row in shifted.chunks_exact_mut(3) {
        row[1] += 1.0;
    }
    let opts = DriftOptions::default();
    let quiet = drift_report(&names, &reference, &same, &opts).unwrap();
    assert!(!quiet.drift, "{:?}", quiet.reasons);
    assert_eq!(quiet.psi_bins, 4);
    assert!(quiet.psi_votes);
    let loud = drift_report(&names, &reference, &shifted, &opts).unwrap();
    assert!(loud.drift);
    assert!(loud.features[1].drift && loud.features[1].psi_band == PsiBand::Major);
    assert!(!loud.features[0].drift && !loud.features[2].drift);
    assert!(loud.mmd.p_value < 0.05);
    let bonf = drift_report(
        &names,
        &reference,
        &shifted,
        &DriftOptions {
            correction: Correction::Bonferroni,
            ..opts
        },
    )
    .unwrap();
    assert_eq!(
        bonf.features[1].p_corrected,
        (bonf.features[1].p_value * 3.0).min(1.0)
    );
}
