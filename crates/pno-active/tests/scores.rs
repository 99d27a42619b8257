//! The batches `pno_active::run` chose are the top scores of the acquisition, recomputed here
//! independently: candidate inputs cut from fully solved samples (not `Generator::input`),
//! the round's model loaded from its run folder, the scores written out by hand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pno_active::acquisition::power_b;
use pno_active::runner::{ActiveProgress, ScoresFile, power_seed, score_seed};
use pno_active::{Acquisition, ActiveOptions, BatchRule, Plan};
use pno_models::burn::tensor::Device;
use pno_run::PredictRequest;
use pno_train::{Progress, Quiet};
use serde_json::json;

struct Silent(Quiet);
impl ActiveProgress for Silent {
    fn trainer(&mut self) -> &mut dyn Progress {
        &mut self.0
    }
}

fn plan() -> Plan {
    Plan {
        pde: "darcy".into(),
        generator: json!({"resolution": 12}).as_object().cloned().unwrap(),
        data_seed: 5,
        run_config: json!({
            "data": {"val_fraction": 0.2},
            "model": {"kind": "pno_d", "hidden_channels": 6, "n_layers": 2, "n_modes": [3, 3],
                      "lifting_channels": 8, "projection_channels": 8, "dropout": 0.2},
            "train": {"epochs": 2, "batch_size": 4},
        }),
        acquisitions: vec![
            Acquisition::Variance,
            Acquisition::Energy,
            Acquisition::Bald,
        ],
        seeds: vec![3],
        initial: 5,
        budget: 8,
        batch: 3,
        pool: 12,
        test: 4,
        draws: 5,
        eval_samples: 4,
        warm_start: true,
        batch_rule: BatchRule::Greedy,
    }
}

#[test]
fn chosen_batches_are_the_top_of_independently_recomputed_scores() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan();
    let device = Device::flex();
    let opts = ActiveOptions {
        out: dir.path().to_path_buf(),
        device: device.clone(),
    };
    let arms = pno_active::run(&p, &opts, &mut Silent(Quiet)).unwrap();
    assert_eq!(arms.len(), 3);
    let g = pno_solvers::build("darcy", json!({"resolution": 12})).unwrap();
    let pool = p.pool_indices(3).unwrap();
    // x of the fully solved samples, as f32 (what the trainer reads once labelled).
    let x: Vec<f32> = pool
        .iter()
        .flat_map(|&i| {
            g.sample(5, i)
                .unwrap()
                .remove(0)
                .into_iter()
                .map(|v| v as f32)
        })
        .collect();
    let (n, d) = (pool.len(), 144);
    for arm in &arms {
        let acq = arm.acquisition;
        let rdir = dir
            .path()
            .join(format!("arms/{}-seed3/round-000", acq.name()));
        let trained = pno_run::load_trained(&rdir.join("run"), &device).unwrap();
        let pred = trained
            .predict(
                &PredictRequest {
                    x: &x,
                    n,
                    grid: &[12, 12],
                    n_samples: 5,
                    seed: score_seed(3, 0),
                    batch: 7, // a different batching: rows keep their own noise streams
                    cancel: None,
                },
                &device,
            )
            .unwrap();
        let file: ScoresFile =
            serde_json::from_slice(&std::fs::read(rdir.join("scores.json")).unwrap()).unwrap();
        assert_eq!(file.pool, pool);
        let want: Vec<f64> = (0..n)
            .map(|i| match acq {
                Acquisition::Variance => {
                    (0..d)
                        .map(|k| f64::from(pred.std[i * d + k]).powi(2))
                        .sum::<f64>()
                        / d as f64
                }
                Acquisition::Energy => {
                    let mut sum = 0.0;
                    for a in 0..5 {
                        for b in 0..5 {
                            if a == b {
                                continue;
                            }
                            let sq: f64 = (0..d)
                                .map(|k| {
                                    let u = f64::from(pred.samples[(a * n + i) * d + k]);
                                    let v = f64::from(pred.samples[(b * n + i) * d + k]);
                                    (u - v).powi(2)
                                })
                                .sum();
                            sum += (sq / d as f64).sqrt();
                        }
                    }
                    sum / 20.0
                }
                _ => {
                    let s2 = file.noise_var.expect("pno_d has no head: a noise variance");
                    (0..d)
                        .map(|k| 0.5 * (1.0 + f64::from(pred.std[i * d + k]).powi(2) / s2).ln())
                        .sum::<f64>()
                        / d as f64
                }
            })
            .collect();
        for (i, (got, w)) in file.scores.iter().zip(&want).enumerate() {
            assert!(
                (got - w).abs() <= 1e-9 * w.abs().max(1e-30) + 1e-300,
                "{acq} candidate {i}: {got} vs {w}"
            );
        }
        // The chosen batch: the 3 best, best first.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| want[b].total_cmp(&want[a]).then(pool[a].cmp(&pool[b])));
        let top: Vec<u64> = order[..3].iter().map(|&k| pool[k]).collect();
        assert_eq!(arm.rounds[0].next.as_ref().unwrap().chosen, top, "{acq}");
        assert_eq!(arm.labelled[5..], top[..]);
        // Scores are spread (the choice is not decided by ties).
        assert!(
            want.iter()
                .any(|w| (w - want[0]).abs() > 1e-12 * want[0].abs())
        );
    }
    // bald's noise variance is the mean squared residual on the labelled set.
    let bald = dir.path().join("arms/bald-seed3/round-000");
    let file: ScoresFile =
        serde_json::from_slice(&std::fs::read(bald.join("scores.json")).unwrap()).unwrap();
    let trained = pno_run::load_trained(&bald.join("run"), &device).unwrap();
    let initial = p.initial_indices(3).unwrap();
    let xs: Vec<f32> = initial
        .iter()
        .flat_map(|&i| {
            g.sample(5, i)
                .unwrap()
                .remove(0)
                .into_iter()
                .map(|v| v as f32)
        })
        .collect();
    let ys: Vec<f32> = initial
        .iter()
        .flat_map(|&i| {
            g.sample(5, i)
                .unwrap()
                .remove(1)
                .into_iter()
                .map(|v| v as f32)
        })
        .collect();
    let pred = trained
        .predict(
            &PredictRequest {
                x: &xs,
                n: 5,
                grid: &[12, 12],
                n_samples: 5,
                seed: score_seed(3, 0),
                batch: 16,
                cancel: None,
            },
            &device,
        )
        .unwrap();
    let mse: f64 = pred
        .mean
        .iter()
        .zip(&ys)
        .map(|(&m, &y)| (f64::from(m) - f64::from(y)).powi(2))
        .sum::<f64>()
        / ys.len() as f64;
    let got = file.noise_var.unwrap();
    assert!((got - mse).abs() <= 1e-9 * mse, "{got} vs {mse}");
}

#[test]
fn power_batches_are_drawn_from_the_recorded_scores_with_the_rounds_own_stream() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = plan();
    p.acquisitions = vec![Acquisition::Variance];
    p.batch_rule = BatchRule::Power { beta: 1.0 };
    p.warm_start = false;
    let opts = ActiveOptions {
        out: dir.path().to_path_buf(),
        device: Device::flex(),
    };
    let arms = pno_active::run(&p, &opts, &mut Silent(Quiet)).unwrap();
    let arm = &arms[0];
    let file: ScoresFile = serde_json::from_slice(
        &std::fs::read(dir.path().join("arms/variance-seed3/round-000/scores.json")).unwrap(),
    )
    .unwrap();
    let chosen = &arm.rounds[0].next.as_ref().unwrap().chosen;
    let want: Vec<u64> = power_b(
        Acquisition::Variance,
        &file.scores,
        &file.pool,
        3,
        1.0,
        power_seed(3, 0),
    )
    .unwrap()
    .into_iter()
    .map(|k| file.pool[k])
    .collect();
    assert_eq!(chosen, &want);
    let mut distinct = chosen.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3);
    assert!(chosen.iter().all(|c| file.pool.contains(c)));
    // The plan on disk says which rule chose the batches.
    let active = std::fs::read_to_string(dir.path().join("active.json")).unwrap();
    assert!(active.contains("\"power\""), "{active}");
}
