//! Throughput of every metric at the target size: n = 1000 functions, m = 100 draws,
//! d = 64² = 4096 points (samples f32, `[m, n, d]` = 1.6 GB). Prints a Markdown table of the
//! median of 3 runs per metric.
//!
//! `cargo bench -p pno-metrics --bench metrics` (set `PNO_BENCH_N` to shrink n).
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use pno_metrics::*;
use rayon::prelude::*;

/// SplitMix64 → approx. standard normal (sum of 4 uniforms, rescaled); fast, seeded, parallel.
fn fill(out: &mut [f32], seed: u64) {
    out.par_chunks_mut(1 << 16)
        .enumerate()
        .for_each(|(c, chunk)| {
            let mut s = seed ^ (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut next = || {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
            };
            for v in chunk {
                let u = next() + next() + next() + next() - 2.0;
                *v = (u * 3f64.sqrt()) as f32;
            }
        });
}

fn median_secs(mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..3)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[1]
}

fn main() {
    let n: usize = std::env::var("PNO_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let (m, side) = (100usize, 64usize);
    let d = side * side;
    let mut y = vec![0f32; n * d];
    fill(&mut y, 1);
    let mut mean = vec![0f32; n * d];
    fill(&mut mean, 2);
    mean.iter_mut()
        .zip(&y)
        .for_each(|(mu, &t)| *mu = t + 0.3 * *mu);
    let std = vec![0.3f32; n * d];
    let mut x = vec![0f32; m * n * d];
    fill(&mut x, 3);
    x.par_chunks_mut(n * d).for_each(|draw| {
        draw.iter_mut()
            .zip(&mean)
            .for_each(|(v, &mu)| *v = mu + 0.3 * *v);
    });
    let shape = Shape::new(n, d).unwrap();
    let dom = Domain::unit(&[side, side], 1).unwrap();
    let g = GaussianPred::new(&mean, &std, n, d).unwrap();
    let s = SamplePred::new(&x, m, n, d).unwrap();
    let (pg, ps) = (Prediction::from(g), Prediction::from(s));
    let flat_a = &y[..d * 50];
    let flat_b = &mean[..d * 50];
    let edges: Vec<f64> = (-4..=4).map(f64::from).collect();

    let mut rows: Vec<(&str, &str, f64)> = Vec::new();
    macro_rules! bench {
        ($name:expr, $input:expr, $e:expr) => {{
            let t = median_secs(|| {
                black_box($e);
            });
            rows.push(($name, $input, t));
            eprintln!("{:<28} {:>9.3} s", $name, t);
        }};
    }
    bench!(
        "SamplePred::new (validate)",
        "samples",
        SamplePred::new(&x, m, n, d).unwrap()
    );
    bench!("rel_l2", "mean", rel_l2(&mean, &y, shape).unwrap());
    bench!("l2_abs", "mean", l2_abs(&mean, &y, shape, &dom).unwrap());
    bench!("rmse", "mean", rmse(&mean, &y, shape).unwrap());
    bench!("h1_rel", "mean", h1_rel(&mean, &y, shape, &dom).unwrap());
    bench!("nll", "gaussian", nll_gaussian(&g, &y).unwrap());
    bench!("crps", "gaussian", crps_gaussian(&g, &y).unwrap());
    bench!(
        "coverage (5 levels)",
        "gaussian",
        coverage_levels(&pg, &y, &COVERAGE_LEVELS).unwrap()
    );
    bench!(
        "interval_score_90",
        "gaussian",
        interval_score(&pg, &y, 0.9).unwrap()
    );
    bench!(
        "calibration_error",
        "gaussian",
        calibration_error(&pg, &y).unwrap()
    );
    bench!(
        "Report::from_gaussian",
        "gaussian",
        Report::from_gaussian(&g, &y, &dom).unwrap()
    );
    bench!("nll", "samples", nll_samples(&s, &y).unwrap());
    bench!(
        "crps (standard, sorted)",
        "samples",
        crps_samples(&s, &y).unwrap()
    );
    bench!("crps_fair (sorted)", "samples", crps_fair(&s, &y).unwrap());
    bench!(
        "energy_score (fair, Gram)",
        "samples",
        energy_score(&s, &y, &dom, Estimator::Fair).unwrap()
    );
    bench!(
        "coverage (5 levels)",
        "samples",
        coverage_levels(&ps, &y, &COVERAGE_LEVELS).unwrap()
    );
    bench!(
        "interval_width_90",
        "samples",
        interval_width(&ps, 0.9).unwrap()
    );
    bench!(
        "interval_score_90",
        "samples",
        interval_score(&ps, &y, 0.9).unwrap()
    );
    bench!(
        "calibration_error",
        "samples",
        calibration_error(&ps, &y).unwrap()
    );
    bench!("pit_values", "samples", pit_values(&ps, &y).unwrap());
    bench!("sharpness", "samples", sharpness(&ps));
    bench!("spread_skill", "samples", spread_skill(&ps, &y).unwrap());
    bench!(
        "Report::from_samples",
        "samples",
        Report::from_samples(&s, &y, &dom).unwrap()
    );
    bench!(
        "ks_statistic (204800 vs 204800)",
        "flat",
        ks_statistic(flat_a, flat_b).unwrap()
    );
    bench!(
        "psi (204800 vs 204800, 8 bins)",
        "flat",
        psi(flat_a, flat_b, &edges).unwrap()
    );

    println!(
        "\nn = {n}, m = {m}, d = {d} (64²), samples f32; rayon threads = {}; median of 3 runs\n",
        rayon::current_num_threads()
    );
    println!("| metric | input | median (s) |");
    println!("|---|---|---:|");
    for (name, input, t) in rows {
        println!("| {name} | {input} | {t:.3} |");
    }
}
