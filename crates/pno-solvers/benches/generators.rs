//! Generator throughput at the standard benchmark sizes, one thread, compute only (no I/O).
//!
//! `cargo bench -p pno-solvers --bench generators [-- FILTER]` prints one JSON object per case:
//! `{"case", "seconds_per_sample", "samples", "reps"}` (median over repetitions after a warm-up).
//! `bench/generators.sh` runs it beside the Python reference generators and prints the ratios.
//!
//! The `*_fft` cases time only the FFTs a sample of that case runs (the same plans, lengths and
//! counts per step, no other work): the floor that the rest of the solver's work adds to.

use std::time::Instant;

use serde_json::json;

fn cases() -> Vec<(&'static str, &'static str, serde_json::Value, u64)> {
    vec![
        ("darcy64", "darcy", json!({"resolution": 64}), 64),
        ("darcy421", "darcy", json!({"resolution": 421}), 2),
        (
            "darcy_pdebench",
            "darcy",
            json!({"recipe": "pdebench", "resolution": 128}),
            16,
        ),
        (
            "ns64_ci",
            "navier_stokes",
            json!({"resolution": 64, "t_final": 10.0}),
            1,
        ),
        ("burgers1024", "burgers", json!({"resolution": 1024}), 16),
        ("burgers8192", "burgers", json!({"resolution": 8192}), 2),
        (
            "ks256",
            "ks",
            json!({"resolution": 256, "t_final": 100.0}),
            16,
        ),
        (
            "heat64",
            "heat",
            json!({"resolution": 64, "n_times": 21}),
            256,
        ),
        (
            "wave64",
            "wave",
            json!({"resolution": 64, "n_times": 21}),
            256,
        ),
    ]
}

/// Seconds per sample spent in the FFTs alone: `steps` steps, each running `(len, count, inverse)`
/// batches of complex transforms, out of place on buffers of `count` rows.
fn fft_floor(steps: usize, batches: &[(usize, usize, bool)]) -> f64 {
    use rustfft::{FftPlanner, num_complex::Complex64};
    let mut planner = FftPlanner::<f64>::new();
    let mut plans: Vec<_> = batches
        .iter()
        .map(|&(len, count, inverse)| {
            let fft = if inverse {
                planner.plan_fft_inverse(len)
            } else {
                planner.plan_fft_forward(len)
            };
            let input: Vec<Complex64> = (0..len * count)
                .map(|i| Complex64::new((i as f64 * 0.37).sin(), (i as f64 * 0.11).cos()))
                .collect();
            let scratch = vec![Complex64::default(); fft.get_outofplace_scratch_len()];
            (fft, input, vec![Complex64::default(); len * count], scratch)
        })
        .collect();
    let mut run = |steps: usize| {
        for _ in 0..steps {
            for (fft, input, output, scratch) in plans.iter_mut() {
                fft.process_outofplace_with_scratch(input, output, scratch);
                std::hint::black_box(&output);
            }
        }
    };
    run(steps / 10);
    let t0 = Instant::now();
    run(steps);
    t0.elapsed().as_secs_f64()
}

/// `(case, steps per sample, samples timed, batches per step)`
type FftCase = (&'static str, usize, usize, Vec<(usize, usize, bool)>);

fn fft_cases() -> Vec<FftCase> {
    vec![
        // 64² Navier–Stokes, T = 10 at dt = 1e-3: per step four inverse spectra along x (33
        // rows each), two complex fields along y (64 rows each), the product along y (32 row
        // pairs) and its 22 unmasked rows along x
        (
            "ns64_ci_fft",
            10_000,
            1,
            vec![
                (64, 132, true),
                (64, 128, true),
                (64, 32, false),
                (64, 22, false),
            ],
        ),
        // Burgers 1024, T = 1 at dt = 1e-3: four evaluations per ETDRK4 step, each one inverse
        // and one forward real transform as 512-point complex ones
        (
            "burgers1024_fft",
            1_000,
            16,
            vec![(512, 4, true), (512, 4, false)],
        ),
    ]
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let reps = 3;
    for (case, pde, cfg, n) in cases() {
        if !filter.is_empty() && !filter.iter().any(|f| case.contains(f.as_str())) {
            continue;
        }
        let g = match pno_solvers::build(pde, cfg) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("{case}: {e}");
                std::process::exit(1);
            }
        };
        // warm-up: plans, page faults
        if let Err(e) = g.sample(0, 1000) {
            eprintln!("{case}: {e}");
            std::process::exit(1);
        }
        let mut times = Vec::new();
        for r in 0..reps {
            let t0 = Instant::now();
            for i in 0..n {
                std::hint::black_box(g.sample(r, i).ok());
            }
            times.push(t0.elapsed().as_secs_f64() / n as f64);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{}",
            json!({"case": case, "seconds_per_sample": times[reps as usize / 2], "samples": n, "reps": reps})
        );
    }
    for (case, steps, samples, batches) in fft_cases() {
        if !filter.is_empty() && !filter.iter().any(|f| case.contains(f.as_str())) {
            continue;
        }
        let mut times: Vec<f64> = (0..reps)
            .map(|_| fft_floor(steps * samples, &batches) / samples as f64)
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{}",
            json!({"case": case, "seconds_per_sample": times[reps as usize / 2], "samples": samples, "reps": reps})
        );
    }
}
