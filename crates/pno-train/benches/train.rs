//! Training-throughput, inference-latency and peak-memory benchmark of one model configuration
//! (the Rust side of `bench/train.sh`; the PyTorch peer is `bench/peers/train_peer.py` with the same
//! flags). One configuration per process so the peak RSS is the configuration's own.
//!
//! ```text
//! cargo bench -p pno-train --bench train -- --model fno --dim 2 --res 64 --batch 16 \
//!     --hidden 32 --layers 4 --modes 12 12 --lifting 256 --projection 256 --steps 10
//! ```
//! Prints one JSON line. `--device cuda[:N]` (a build with `--features cuda`) runs it on a GPU
//! (`bench/gpu.sh`); every timed step ends by reading a value back, which waits for the device.
//! `first_step_ms` is the first training step's time (on a GPU: kernel compilation and tuning).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

/// The `pno` binary's allocator, so the bench measures what users run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use pno_models::burn::module::Module;
use pno_models::burn::optim::GradientsParams;
use pno_models::burn::tensor::{Device, Tensor, TensorData};
use pno_models::config::ModelConfig;
use pno_models::losses::{self, LossGrid};
use pno_train::optim::{AdamConfig, AdamState, adam_step};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// `cpu`, or `cuda` / `cuda:N` in a CUDA build.
fn select_device(name: &str) -> Device {
    match name {
        "cpu" | "flex" => Device::flex(),
        #[cfg(feature = "cuda")]
        s if s == "cuda" || s.starts_with("cuda:") => Device::cuda(
            s.strip_prefix("cuda:")
                .map_or(0, |i| i.parse().expect("--device cuda:N with N an integer")),
        ),
        other => panic!(
            "--device: expected cpu{}, got {other:?}",
            if cfg!(feature = "cuda") {
                ", cuda or cuda:N"
            } else {
                " (cuda needs `--features cuda`)"
            }
        ),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model: String = arg(&args, "--model", "fno".to_string());
    let dim: usize = arg(&args, "--dim", 2);
    let res: usize = arg(&args, "--res", 64);
    let batch: usize = arg(&args, "--batch", 16);
    let hidden: usize = arg(&args, "--hidden", 32);
    let layers: usize = arg(&args, "--layers", 4);
    let lifting: usize = arg(&args, "--lifting", 256);
    let projection: usize = arg(&args, "--projection", 256);
    let dropout: f64 = arg(&args, "--dropout", 0.2);
    let steps: usize = arg(&args, "--steps", 10);
    let warmup: usize = arg(&args, "--warmup", 2);
    let infer_samples: usize = arg(&args, "--infer-samples", 32);
    let modes: Vec<usize> = match args.iter().position(|a| a == "--modes") {
        Some(i) => args[i + 1..]
            .iter()
            .take(dim)
            .filter_map(|v| v.parse().ok())
            .collect(),
        None => vec![12; dim],
    };
    let grid: Vec<usize> = vec![res; dim];
    let cfg = ModelConfig {
        kind: Some(model.clone()),
        hidden_channels: Some(hidden),
        n_layers: Some(layers),
        n_modes: Some(modes),
        lifting_channels: Some(lifting),
        projection_channels: Some(projection),
        dropout: (model == "pno_d").then_some(dropout),
        ..Default::default()
    };
    let spec = cfg.validate(1, 1, &grid).expect("config");
    let device_name: String = arg(&args, "--device", "cpu".to_string());
    let device = select_device(&device_name).autodiff();
    let mut net = spec.init(0, &device);
    let params = net.num_params();
    let p: usize = grid.iter().product();
    let data = |seed: u64, n: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f64 * 0.618 + seed as f64).sin() * 0.5) as f32)
            .collect()
    };
    let lg = LossGrid::unit(&grid);
    let mut adam = AdamState::default();
    let cfg_adam = AdamConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
    };
    let rows: Vec<u64> = (0..batch as u64).collect();
    let mut times = Vec::new();
    let mut first_ms = f64::NAN;
    for step in 0..warmup + steps {
        let x = Tensor::<3>::from_data(
            TensorData::new(data(step as u64, batch * p), [batch, 1, p]),
            &device,
        );
        let y = Tensor::<3>::from_data(
            TensorData::new(data(step as u64 + 100, batch * p), [batch, 1, p]),
            &device,
        );
        let t0 = Instant::now();
        let (samples, _) = net.train_forward(0, x, &grid, step as u64, &rows);
        let loss = if model == "pno_d" {
            losses::energy_score(samples, y, &lg)
        } else {
            losses::l2_rel(samples.mean_dim(0).squeeze_dim::<3>(0), y)
        };
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        let (next, _) = adam_step(net, grads, &mut adam, cfg_adam, 1e-3, 1.0);
        net = next;
        let dt = t0.elapsed().as_secs_f64();
        if step == 0 {
            first_ms = dt * 1e3;
        }
        if step >= warmup {
            times.push(dt);
        }
    }
    let train_ms = median(times) * 1e3;
    // Inference: one batch, `infer_samples` draws (one draw for the deterministic FNO), one
    // batch of rows per forward pass (as the PyTorch peer loops over draws).
    let valid = net.valid();
    let inner = device.inner();
    let k = if valid.is_stochastic() {
        infer_samples
    } else {
        1
    };
    let mut itimes = Vec::new();
    for r in 0..4 {
        let x = Tensor::<3>::from_data(TensorData::new(data(r, batch * p), [batch, 1, p]), &inner);
        let t0 = Instant::now();
        let pred = valid.predict(x, &grid, k, r, 0, batch).expect("predict");
        std::hint::black_box(&pred.mean);
        if r > 0 {
            itimes.push(t0.elapsed().as_secs_f64());
        }
    }
    let infer_ms = median(itimes) * 1e3;
    println!(
        "{}",
        serde_json::json!({
            "peer": if device_name == "cpu" { "pno (burn flex)" } else { "pno (burn cuda)" },
            "device": device_name, "first_step_ms": first_ms, "model": model, "dim": dim, "res": res, "batch": batch, "params": params,
            "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "train_step_ms_median": train_ms, "train_samples_per_s": batch as f64 / (train_ms / 1e3),
            "infer_ms_median": infer_ms, "infer_samples": k, "peak_rss_mb": peak_rss_mb(),
        })
    );
}
