//! The active-learning loop: per acquisition and seed (an *arm*), train on the labelled set,
//! evaluate on the fixed test set, score the pool, label the chosen batch with the solver,
//! repeat until the budget; state written atomically after every round, so a killed run
//! continues where it stopped (training itself resumes from its checkpoints) and gives the
//! results of an uninterrupted one.
//!
//! Output folder:
//!
//! ```text
//! OUT/active.json                      the plan (settings); a re-run must match it
//! OUT/test/                            the test set (a pno dataset, indices 0..test)
//! OUT/arms/<acq>-seed<s>/state.json    labelled indices, remaining pool, one record per round
//! OUT/arms/<acq>-seed<s>/round-KKK/    data/ (the labelled set), run/ (pno train's run folder),
//!                                      scores.json (every candidate's score, not for random)
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use pno_core::seed::mix;
use pno_models::burn::tensor::Device;
use pno_run::{PredictRequest, TrainedModel, read_json, write_json};
use pno_train::{EvalOptions, Progress, TrainOptions};

use crate::acquisition::{
    Acquisition, BatchRule, Noise, bald_scores, energy_scores, power_b, random_positions, top_b,
    variance_scores,
};
use crate::error::{ActiveError, Result, io_err, option_err};
use crate::plan::{Plan, Setup};
use crate::pool::write_labelled;

/// Format tag of `active.json` and `state.json`.
pub const FORMAT: &str = "pno-active-1";

/// Salt of the scoring draws' seed.
const SALT_SCORE: u64 = 0xac71;
/// Salt of the random acquisition's stream.
const SALT_RANDOM: u64 = 0xac72;
/// Salt of the power batch rule's Gumbel stream.
const SALT_POWER: u64 = 0xac73;
/// Inputs per forward pass when predicting.
const PREDICT_BATCH: usize = 16;

/// `active.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanFile {
    /// [`FORMAT`].
    pub format: String,
    /// The settings.
    pub plan: Plan,
}

/// Test metrics of one round (physical units; see `pno_metrics::Report`). A non-finite value
/// (JSON has none) is written as `null` and read back as NaN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundMetrics {
    /// Relative L² of the predictive mean.
    #[serde(deserialize_with = "nan_if_null")]
    pub rel_l2: f64,
    /// CRPS.
    #[serde(deserialize_with = "nan_if_null")]
    pub crps: f64,
    /// Pointwise coverage of the central 90 % interval.
    #[serde(deserialize_with = "nan_if_null")]
    pub coverage_90: f64,
    /// Gaussian NLL.
    #[serde(deserialize_with = "nan_if_null")]
    pub nll: f64,
    /// Energy score (sample predictions).
    pub energy_score: Option<f64>,
    /// Mean width of the 90 % interval.
    #[serde(deserialize_with = "nan_if_null")]
    pub interval_width_90: f64,
    /// Mean absolute calibration error.
    #[serde(deserialize_with = "nan_if_null")]
    pub calibration_error: f64,
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// What the scores of a round chose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// Sample indices chosen for labelling, best first (random: in the order drawn).
    pub chosen: Vec<u64>,
    /// Their scores (empty for random).
    pub chosen_scores: Vec<f64>,
    /// Mean score over the pool scored (`None` for random).
    pub pool_mean_score: Option<f64>,
    /// Candidates scored.
    pub pool_size: usize,
    /// `bald` without a Gaussian head: the homoscedastic noise variance used.
    pub noise_var: Option<f64>,
}

/// One round of one arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    /// Round (0: the initial set).
    pub round: usize,
    /// Labelled samples trained on.
    pub n_labels: usize,
    /// Test metrics.
    pub metrics: RoundMetrics,
    /// Epochs trained.
    pub epochs: usize,
    /// Best (kept) epoch.
    pub best_epoch: usize,
    /// The batch chosen for the next round (`None` at the budget).
    pub next: Option<Selection>,
    /// Seconds: labelling, training, evaluation, scoring (this invocation's work; a round
    /// resumed after a crash counts only what ran after it).
    pub seconds: Timing,
}

/// Where a round's time went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Solving the new labels and writing the dataset.
    pub label: f64,
    /// Training.
    pub train: f64,
    /// Test evaluation.
    pub eval: f64,
    /// Scoring the pool.
    pub score: f64,
}

/// The state of one arm (`state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmState {
    /// [`FORMAT`].
    pub format: String,
    /// Acquisition.
    pub acquisition: Acquisition,
    /// Seed.
    pub seed: u64,
    /// Labelled sample indices, in the order labelled.
    pub labelled: Vec<u64>,
    /// Candidates not yet labelled, in pool order.
    pub pool: Vec<u64>,
    /// Completed rounds.
    pub rounds: Vec<RoundRecord>,
    /// The budget is reached.
    pub finished: bool,
}

impl ArmState {
    /// Folder name of an arm.
    pub fn name(acquisition: Acquisition, seed: u64) -> String {
        format!("{}-seed{seed}", acquisition.name())
    }
}

/// Progress callbacks.
pub trait ActiveProgress {
    /// The sink for each round's training progress.
    fn trainer(&mut self) -> &mut dyn Progress;
    /// A message (test set generated, arm resumed, ...).
    fn event(&mut self, _message: &str) {}
    /// After a round was recorded.
    fn round(&mut self, _arm: &ArmState, _record: &RoundRecord) {}
}

/// How to run.
#[derive(Debug, Clone)]
pub struct ActiveOptions {
    /// Output folder (new, or one written by the same plan: then it continues).
    pub out: PathBuf,
    /// Backend device.
    pub device: Device,
}

/// Run (or continue) every arm of `plan` in `opts.out`. Returns the arms' states.
pub fn run(
    plan: &Plan,
    opts: &ActiveOptions,
    progress: &mut dyn ActiveProgress,
) -> Result<Vec<ArmState>> {
    let setup = plan.validate()?;
    open_out(plan, &opts.out, progress)?;
    let test = opts.out.join("test");
    ensure_test_set(plan, &test, progress)?;
    let mut arms = Vec::new();
    for &seed in &plan.seeds {
        for &acq in &plan.acquisitions {
            arms.push(run_arm(plan, &setup, opts, acq, seed, progress)?);
        }
    }
    Ok(arms)
}

/// Read the arms' states of a finished (or partial) output folder, in plan order.
pub fn load_arms(out: &Path) -> Result<(Plan, Vec<ArmState>)> {
    let pf: PlanFile = read_json(&out.join("active.json"), "active.json")?;
    let mut arms = Vec::new();
    for &seed in &pf.plan.seeds {
        for &acq in &pf.plan.acquisitions {
            let p = arm_dir(out, acq, seed).join("state.json");
            if p.exists() {
                arms.push(read_json(&p, "state.json")?);
            }
        }
    }
    Ok((pf.plan, arms))
}

fn arm_dir(out: &Path, acq: Acquisition, seed: u64) -> PathBuf {
    out.join("arms").join(ArmState::name(acq, seed))
}

fn open_out(plan: &Plan, out: &Path, progress: &mut dyn ActiveProgress) -> Result<()> {
    let path = out.join("active.json");
    if path.exists() {
        let pf: PlanFile = read_json(&path, "active.json")?;
        if pf.format != FORMAT {
            return Err(ActiveError::Corrupt {
                path,
                expected: format!("format {FORMAT}"),
                got: pf.format,
            });
        }
        pf.plan.compare(plan, &path)?;
        progress.event(&format!("continuing the run in {}", out.display()));
        return Ok(());
    }
    if out.exists()
        && std::fs::read_dir(out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(option_err(
            "--out",
            "a new or empty folder, or one written by pno active (to continue it)",
            format!("{} is not empty and has no active.json", out.display()),
        ));
    }
    std::fs::create_dir_all(out).map_err(io_err("create", out))?;
    write_json(
        &path,
        &PlanFile {
            format: FORMAT.into(),
            plan: plan.clone(),
        },
    )?;
    Ok(())
}

fn ensure_test_set(plan: &Plan, test: &Path, progress: &mut dyn ActiveProgress) -> Result<()> {
    if test.join("manifest.json").exists() {
        return Ok(());
    }
    if test.exists() {
        std::fs::remove_dir_all(test).map_err(io_err("remove the partial test set", test))?;
    }
    let job = pno_gen::Job {
        pde: pno_solvers::canonical_pde(&plan.pde)?,
        params: plan.generator.clone(),
        n: plan.test,
        seed: plan.data_seed,
        shard: pno_core::ShardSpec::WHOLE,
        samples_per_file: None,
        threads: None,
    };
    let w = pno_gen::generate(&job, test, &|_| {})?;
    progress.event(&format!(
        "test set: {} {} samples (indices 0..{}) in {:.2} s",
        w.samples, plan.pde, plan.test, w.seconds
    ));
    Ok(())
}

fn run_arm(
    plan: &Plan,
    setup: &Setup,
    opts: &ActiveOptions,
    acq: Acquisition,
    seed: u64,
    progress: &mut dyn ActiveProgress,
) -> Result<ArmState> {
    let dir = arm_dir(&opts.out, acq, seed);
    let state_path = dir.join("state.json");
    let mut st: ArmState = if state_path.exists() {
        let st: ArmState = read_json(&state_path, "state.json")?;
        if st.format != FORMAT || st.acquisition != acq || st.seed != seed {
            return Err(ActiveError::Corrupt {
                path: state_path,
                expected: format!("{FORMAT} state of {}", ArmState::name(acq, seed)),
                got: format!(
                    "{} state of {}",
                    st.format,
                    ArmState::name(st.acquisition, st.seed)
                ),
            });
        }
        if !st.finished {
            progress.event(&format!(
                "{}: continuing at round {}",
                ArmState::name(acq, seed),
                st.rounds.len()
            ));
        }
        st
    } else {
        std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let st = ArmState {
            format: FORMAT.into(),
            acquisition: acq,
            seed,
            labelled: plan.initial_indices(seed)?,
            pool: plan.pool_indices(seed)?,
            rounds: Vec::new(),
            finished: false,
        };
        write_json(&state_path, &st)?;
        st
    };
    let test = opts.out.join("test");
    while !st.finished {
        let k = st.rounds.len();
        let rdir = dir.join(format!("round-{k:03}"));
        let (data, run) = (rdir.join("data"), rdir.join("run"));
        let n = st.labelled.len();
        let mut timing = Timing::default();

        let t = Instant::now();
        let prev = (k > 0).then(|| dir.join(format!("round-{:03}/data", k - 1)));
        let prev_n = if k > 0 { plan.labels_at(k - 1) } else { 0 };
        write_labelled(
            setup.generator.as_ref(),
            plan.data_seed,
            &st.labelled,
            prev.as_deref().map(|p| (p, prev_n)),
            &data,
        )?;
        timing.label = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let init = (plan.warm_start && k > 0).then(|| dir.join(format!("round-{:03}/run", k - 1)));
        let (epochs, best_epoch) =
            train_round(setup, opts, seed, &data, &run, init.as_deref(), progress)?;
        timing.train = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let trained = pno_run::load_trained(&run, &opts.device)?;
        let ev = pno_train::evaluate(
            &trained,
            &test,
            &EvalOptions {
                split: None,
                samples: plan.eval_samples,
                seed,
                batch: PREDICT_BATCH,
                ..EvalOptions::default()
            },
            &opts.device,
        )?;
        let r = &ev.report;
        let metrics = RoundMetrics {
            rel_l2: r.rel_l2,
            crps: r.crps,
            coverage_90: r.coverage_90,
            nll: r.nll,
            energy_score: r.energy_score,
            interval_width_90: r.interval_width_90,
            calibration_error: r.calibration_error,
        };
        timing.eval = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let next = if n >= plan.budget {
            None
        } else {
            let b = plan.batch.min(plan.budget - n);
            Some(select(
                plan, setup, opts, &st, k, b, &trained, &data, &rdir,
            )?)
        };
        timing.score = t.elapsed().as_secs_f64();

        let record = RoundRecord {
            round: k,
            n_labels: n,
            metrics,
            epochs,
            best_epoch,
            next: next.clone(),
            seconds: timing,
        };
        match next {
            Some(sel) => {
                st.pool.retain(|i| !sel.chosen.contains(i));
                st.labelled.extend(&sel.chosen);
            }
            None => st.finished = true,
        }
        st.rounds.push(record);
        write_json(&state_path, &st)?;
        if let Some(rec) = st.rounds.last() {
            progress.round(&st, rec);
        }
    }
    Ok(st)
}

fn train_round(
    setup: &Setup,
    opts: &ActiveOptions,
    seed: u64,
    data: &Path,
    run: &Path,
    init: Option<&Path>,
    progress: &mut dyn ActiveProgress,
) -> Result<(usize, usize)> {
    let summary = run.join("summary.json");
    if !summary.exists() {
        // model.json is written last of a new run's files: with it the run can resume.
        let resume = run.join("model.json").exists();
        if !resume && run.exists() {
            std::fs::remove_dir_all(run).map_err(io_err("remove the partial run", run))?;
        }
        let mut config = setup.config.clone();
        config.train.seed = Some(seed);
        config.data.n_test = Some(0);
        pno_train::train_from(
            Some(config),
            &TrainOptions {
                data: data.to_path_buf(),
                out: run.to_path_buf(),
                resume,
                device: opts.device.clone(),
                data_parallel: Vec::new(),
            },
            init,
            progress.trainer(),
        )?;
    }
    let s: serde_json::Value = read_json(&summary, "summary.json")?;
    let field = |k: &str| s.get(k).and_then(|v| v.as_u64()).unwrap_or(0) as usize;
    Ok((field("epochs"), field("best_epoch")))
}

/// Scores of every remaining candidate, written beside the round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoresFile {
    /// Acquisition.
    pub acquisition: Acquisition,
    /// Candidate sample indices (pool order).
    pub pool: Vec<u64>,
    /// Their scores.
    pub scores: Vec<f64>,
    /// Seed of the predictive draws.
    pub draw_seed: u64,
    /// Draws per candidate.
    pub draws: usize,
    /// `bald` without a Gaussian head: the noise variance.
    pub noise_var: Option<f64>,
}

/// The seed of round `round`'s scoring draws for experiment seed `seed`.
pub fn score_seed(seed: u64, round: usize) -> u64 {
    mix(&[seed, round as u64, SALT_SCORE])
}

/// The seed of round `round`'s power-rule Gumbel stream for experiment seed `seed`.
pub fn power_seed(seed: u64, round: usize) -> u64 {
    mix(&[seed, round as u64, SALT_POWER])
}

/// The seed of round `round`'s random choice for experiment seed `seed`.
pub fn random_seed(seed: u64, round: usize) -> u64 {
    mix(&[seed, round as u64, SALT_RANDOM])
}

#[allow(clippy::too_many_arguments)]
fn select(
    plan: &Plan,
    setup: &Setup,
    opts: &ActiveOptions,
    st: &ArmState,
    k: usize,
    b: usize,
    trained: &TrainedModel,
    data: &Path,
    rdir: &Path,
) -> Result<Selection> {
    let acq = st.acquisition;
    if acq == Acquisition::Random {
        let chosen: Vec<u64> = random_positions(st.pool.len(), b, random_seed(st.seed, k))
            .into_iter()
            .map(|p| st.pool[p])
            .collect();
        return Ok(Selection {
            chosen,
            chosen_scores: Vec::new(),
            pool_mean_score: None,
            pool_size: st.pool.len(),
            noise_var: None,
        });
    }
    let g = setup.generator.as_ref();
    let x = setup.inputs.model_inputs(g, plan.data_seed, &st.pool)?;
    let draw_seed = score_seed(st.seed, k);
    let (scores, noise_var) = score_candidates(
        acq,
        trained,
        &x,
        st.pool.len(),
        &setup.inputs.model_grid,
        plan.draws,
        draw_seed,
        || labelled_noise(trained, data, plan.draws, draw_seed, &opts.device),
        &opts.device,
    )?;
    let positions = match plan.batch_rule {
        BatchRule::Greedy => top_b(acq, &scores, &st.pool, b)?,
        BatchRule::Power { beta } => {
            power_b(acq, &scores, &st.pool, b, beta, power_seed(st.seed, k))?
        }
    };
    write_json(
        &rdir.join("scores.json"),
        &ScoresFile {
            acquisition: acq,
            pool: st.pool.clone(),
            scores: scores.clone(),
            draw_seed,
            draws: plan.draws,
            noise_var,
        },
    )?;
    Ok(Selection {
        chosen: positions.iter().map(|&p| st.pool[p]).collect(),
        chosen_scores: positions.iter().map(|&p| scores[p]).collect(),
        pool_mean_score: Some(scores.iter().sum::<f64>() / scores.len().max(1) as f64),
        pool_size: st.pool.len(),
        noise_var,
    })
}

/// The scores of `n` candidate inputs `x` (`[n, in, points]`, physical units) under `trained`:
/// `draws` predictive draws seeded `draw_seed`. `noise` gives the homoscedastic noise
/// variance `bald` needs for a model without a Gaussian head (called only then). Returns
/// the scores and that noise variance.
#[allow(clippy::too_many_arguments)]
pub fn score_candidates(
    acq: Acquisition,
    trained: &TrainedModel,
    x: &[f32],
    n: usize,
    grid: &[usize],
    draws: usize,
    draw_seed: u64,
    noise: impl FnOnce() -> Result<f64>,
    device: &Device,
) -> Result<(Vec<f64>, Option<f64>)> {
    let pred = trained.predict(
        &PredictRequest {
            x,
            n,
            grid,
            n_samples: draws,
            seed: draw_seed,
            batch: PREDICT_BATCH,
            cancel: None,
        },
        device,
    )?;
    let d = pred.per_function();
    Ok(match acq {
        Acquisition::Variance => (variance_scores(&pred.std, n, d), None),
        Acquisition::Energy => (energy_scores(&pred.samples, draws, n, d), None),
        Acquisition::Bald => match &pred.aleatoric_var {
            Some(a) => (bald_scores(&pred.std, Noise::Head(a), n, d), None),
            None => {
                let s2 = noise()?;
                (
                    bald_scores(&pred.std, Noise::Homoscedastic(s2), n, d),
                    Some(s2),
                )
            }
        },
        Acquisition::Random => (vec![0.0; n], None),
    })
}

/// The mean squared residual of the predictive mean on the labelled samples in `data`
/// (every sample, windows cut as in training): the homoscedastic noise variance of `bald`.
pub fn labelled_noise(
    trained: &TrainedModel,
    data: &Path,
    draws: usize,
    seed: u64,
    device: &Device,
) -> Result<f64> {
    let (fields, _) = pno_train::eval::run_fields(trained, data)?;
    let all: Vec<usize> = (0..fields.n).collect();
    let (x, y) = fields.gather(&all);
    let pred = trained.predict(
        &PredictRequest {
            x: &x,
            n: fields.n,
            grid: &fields.grid,
            n_samples: draws,
            seed,
            batch: PREDICT_BATCH,
            cancel: None,
        },
        device,
    )?;
    let sq: f64 = pred
        .mean
        .iter()
        .zip(&y)
        .map(|(&m, &t)| (f64::from(m) - f64::from(t)).powi(2))
        .sum();
    let mean_sq: f64 = y.iter().map(|&t| f64::from(t).powi(2)).sum::<f64>() / y.len().max(1) as f64;
    // A model that fits its labels exactly still gets a noise floor (1e-12 of the signal).
    Ok((sq / y.len().max(1) as f64)
        .max(1e-12 * mean_sq)
        .max(1e-300))
}
