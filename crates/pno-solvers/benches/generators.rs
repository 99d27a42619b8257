//! Generator throughput at the standard benchmark sizes, one thread, compute only (no I/O).
//!
//! `cargo bench -p pno-solvers --bench generators [-- FILTER]` prints one JSON object per case:
//! `{"case", "seconds_per_sample", "samples", "reps"}` (median over repetitions after a warm-up).
//! `bench/generators.sh` runs it beside the Python reference generators and prints the ratios.

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
}
