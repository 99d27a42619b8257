//! Property and invariant tests, seeded loops over random inputs.

use pno_core::testing::close;
use pno_metrics::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, StandardNormal};

fn normals(rng: &mut ChaCha8Rng, k: usize) -> Vec<f64> {
    (0..k).map(|_| StandardNormal.sample(rng)).collect()
}

#[test]
fn crps_random_inputs_is_nonnegative() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for _ in 0..50 {
        let (m, n, d) = (
            rng.random_range(2..12),
            rng.random_range(1..4),
            rng.random_range(1..6),
        );
        let x = normals(&mut rng, m * n * d);
        let y = normals(&mut rng, n * d);
        let pred = SamplePred::new(&x, m, n, d).unwrap();
        assert!(crps_samples(&pred, &y).unwrap() >= 0.0);
        // the fair estimator can dip below 0 only by rounding when all draws are equal to y
        assert!(crps_fair(&pred, &y).unwrap() >= -1e-12);
        let sd: Vec<f64> = normals(&mut rng, n * d).iter().map(|v| v.abs()).collect();
        let mu = normals(&mut rng, n * d);
        assert!(crps_gaussian(&GaussianPred::new(&mu, &sd, n, d).unwrap(), &y).unwrap() >= 0.0);
    }
}

#[test]
fn crps_gaussian_vanishing_sigma_tends_to_absolute_error() {
    for (mu, y) in [(0.0, 1.3), (2.0, -0.5), (0.7, 0.7)] {
        for sigma in [1e-3, 1e-6, 1e-9] {
            let c = crps_gaussian_point(mu, sigma, y);
            assert!((c - (y - mu).abs()).abs() <= sigma, "σ = {sigma}");
        }
        assert_eq!(crps_gaussian_point(mu, 0.0, y), (y - mu).abs());
    }
}

#[test]
fn crps_repeated_single_value_is_absolute_error() {
    let (m, x, y) = (7, 1.25f64, -0.5f64);
    let xs = vec![x; m];
    let pred = SamplePred::new(&xs, m, 1, 1).unwrap();
    assert!(close(
        crps_samples(&pred, &[y]).unwrap(),
        (x - y).abs(),
        1e-14,
        0.0
    ));
    assert!(close(
        crps_fair(&pred, &[y]).unwrap(),
        (x - y).abs(),
        1e-14,
        0.0
    ));
}

#[test]
fn crps_fair_large_gaussian_ensemble_tends_to_closed_form() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (mu, sigma, m) = (0.3, 1.7, 20_000);
    let dist = Normal::new(mu, sigma).unwrap();
    let xs: Vec<f64> = (0..m).map(|_| dist.sample(&mut rng)).collect();
    let pred = SamplePred::new(&xs, m, 1, 1).unwrap();
    for y in [-2.0, 0.3, 1.0, 4.0] {
        let exact = crps_gaussian_point(mu, sigma, y);
        let est = crps_fair(&pred, &[y]).unwrap();
        // Monte-Carlo error ~ σ/√m ≈ 0.012; allow 3 %
        assert!(close(est, exact, 0.03, 0.0), "y = {y}: {est} vs {exact}");
    }
}

#[test]
fn energy_score_one_dimension_equals_crps() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..20 {
        let (m, n) = (rng.random_range(2..15), rng.random_range(1..5));
        let x = normals(&mut rng, m * n);
        let y = normals(&mut rng, n);
        let pred = SamplePred::new(&x, m, n, 1).unwrap();
        let eu = Domain::euclidean(1).unwrap();
        for est in [Estimator::Standard, Estimator::Fair] {
            let es = energy_score(&pred, &y, &eu, est).unwrap();
            let crps = crps_ensemble(&pred, &y, est).unwrap();
            assert!(close(es, crps, 1e-10, 1e-12), "{est:?}: {es} vs {crps}");
        }
    }
}

#[test]
fn energy_score_matches_direct_pairwise_sum() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (m, n, d) = (6, 3, 16);
    let x: Vec<f64> = normals(&mut rng, m * n * d)
        .iter()
        .map(|v| v + 100.0)
        .collect();
    let y: Vec<f64> = normals(&mut rng, n * d).iter().map(|v| v + 100.0).collect();
    let pred = SamplePred::new(&x, m, n, d).unwrap();
    let dom = Domain::unit(&[4, 4], 1).unwrap();
    let w = dom.cell_volume().sqrt();
    let norm = |a: &[f64], b: &[f64]| {
        w * a
            .iter()
            .zip(b)
            .map(|(p, q)| (p - q) * (p - q))
            .sum::<f64>()
            .sqrt()
    };
    let mut total = 0.0;
    for j in 0..n {
        let yj = &y[j * d..(j + 1) * d];
        let a: f64 = (0..m).map(|k| norm(pred.draw(k, j), yj)).sum::<f64>() / m as f64;
        let mut p = 0.0;
        for k in 0..m {
            for l in 0..m {
                p += norm(pred.draw(k, j), pred.draw(l, j));
            }
        }
        total += a - p / (2.0 * (m * (m - 1)) as f64);
    }
    let es = energy_score(&pred, &y, &dom, Estimator::Fair).unwrap();
    assert!(close(es, total / n as f64, 1e-10, 1e-12));
}

#[test]
fn energy_score_identical_draws_is_distance_to_target() {
    let (m, d) = (4, 9);
    let draw: Vec<f64> = (0..d).map(|i| 1e3 + i as f64).collect();
    let x: Vec<f64> = draw.iter().cycle().take(m * d).copied().collect();
    let y = vec![1e3; d];
    let pred = SamplePred::new(&x, m, 1, d).unwrap();
    let eu = Domain::euclidean(d).unwrap();
    let exact = (0..d).map(|i| (i * i) as f64).sum::<f64>().sqrt();
    assert!(close(
        energy_score(&pred, &y, &eu, Estimator::Fair).unwrap(),
        exact,
        1e-12,
        0.0
    ));
}

#[test]
fn coverage_increasing_level_is_non_decreasing() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let levels: Vec<f64> = (1..100).map(|k| k as f64 / 100.0).collect();
    for _ in 0..10 {
        let (m, n, d) = (rng.random_range(2..30), 3, 20);
        let x = normals(&mut rng, m * n * d);
        let y = normals(&mut rng, n * d);
        let p = Prediction::from(SamplePred::new(&x, m, n, d).unwrap());
        let c = coverage_levels(&p, &y, &levels).unwrap();
        assert!(c.windows(2).all(|w| w[0] <= w[1]), "{c:?}");
        let mu = normals(&mut rng, n * d);
        let sd: Vec<f64> = normals(&mut rng, n * d).iter().map(|v| v.abs()).collect();
        let g = Prediction::from(GaussianPred::new(&mu, &sd, n, d).unwrap());
        let c = coverage_levels(&g, &y, &levels).unwrap();
        assert!(c.windows(2).all(|w| w[0] <= w[1]), "{c:?}");
    }
}

#[test]
fn calibration_error_true_distribution_tends_to_zero() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let (n, d) = (50, 200);
    let mu = normals(&mut rng, n * d);
    let sd: Vec<f64> = (0..n * d).map(|_| rng.random_range(0.5..2.0)).collect();
    let y: Vec<f64> = mu
        .iter()
        .zip(&sd)
        .map(|(m, s)| {
            m + s * {
                let z: f64 = StandardNormal.sample(&mut rng);
                z
            }
        })
        .collect();
    let g = Prediction::from(GaussianPred::new(&mu, &sd, n, d).unwrap());
    // 10 000 points: binomial standard error of a proportion ≤ 0.005
    let ce = calibration_error(&g, &y).unwrap();
    assert!(ce < 0.01, "gaussian {ce}");
    // draws from the same distribution: finite-ensemble quantiles cost a little more
    let m = 200;
    let x: Vec<f64> = (0..m * n * d)
        .map(|k| {
            let i = k % (n * d);
            mu[i]
                + sd[i] * {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    z
                }
        })
        .collect();
    let s = Prediction::from(SamplePred::new(&x, m, n, d).unwrap());
    let ce = calibration_error(&s, &y).unwrap();
    assert!(ce < 0.02, "samples {ce}");
    let ss = spread_skill(&s, &y).unwrap();
    assert!(close(ss, 1.0, 0.05, 0.0), "spread_skill {ss}");
    let pit = pit_values(&s, &y).unwrap();
    let h = pit_histogram(&pit, 10).unwrap();
    assert!(
        h.density.iter().all(|&v| (v - 1.0).abs() < 0.1),
        "{:?}",
        h.density
    );
}

#[test]
fn rel_l2_target_against_itself_is_zero() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let y = normals(&mut rng, 4 * 10);
    let s = Shape::new(4, 10).unwrap();
    assert_eq!(rel_l2(&y, &y, s).unwrap(), 0.0);
    let dom = Domain::new(&[5, 2], &[1.0, 2.0], 1, false).unwrap();
    assert_eq!(h1_rel(&y, &y, s, &dom).unwrap(), 0.0);
}

#[test]
fn f32_and_f64_inputs_give_the_same_crps() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let x32: Vec<f32> = normals(&mut rng, 5 * 2 * 3)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let x64: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
    let y = [0.1f32, 0.2, -0.3, 0.4, 0.0, 1.0];
    let a = crps_fair(&SamplePred::new(&x32, 5, 2, 3).unwrap(), &y).unwrap();
    let b = crps_fair(&SamplePred::new(&x64, 5, 2, 3).unwrap(), &y).unwrap();
    assert_eq!(a, b);
}

#[test]
fn psi_and_ks_shifted_sample_detect_drift() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let a = normals(&mut rng, 2000);
    let b: Vec<f64> = normals(&mut rng, 2000).iter().map(|v| v + 1.0).collect();
    let a2 = normals(&mut rng, 2000);
    let edges: Vec<f64> = (-4..=4).map(|k| k as f64).collect();
    assert!(psi(&a, &b, &edges).unwrap() > 0.25);
    assert!(psi(&a, &a2, &edges).unwrap() < 0.1);
    assert!(ks_statistic(&a, &b).unwrap() > 0.3);
    assert!(ks_statistic(&a, &a2).unwrap() < 0.06);
}
