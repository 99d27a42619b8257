//! Running a suite: data, then every cell (train → calibrate → evaluate → the conformally
//! calibrated variant), resumable.
//!
//! ```text
//! OUT/
//!   suite.toml                   copy of the suite file
//!   data/<pde>/                  generated dataset (+ data/<pde>.job.json: how)
//!   cells/<pde>/<method>/seed<k>/
//!     run/                       the run folder (`pno train` layout; derived methods: a copy)
//!     cell.json                  config, seed, timings, metrics, curves, rollout, example
//! ```
//!
//! A cell whose `cell.json` exists is not recomputed; a cell interrupted while training resumes
//! from its newest good checkpoint. A cell recorded by a version without the coverage curve and
//! the calibrated variant gets them added from its run folder (no retraining).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use pno_core::Split;
use pno_metrics::{CalibrationCurve, SamplePred};
use pno_models::burn::tensor::Device;
use pno_run::{CalibrationRecord, TrainedModel, load_trained};
use pno_train::eval::{Curves, Draws, RolloutStep, predict_on_split};
use pno_train::{CalibrateOptions, EvalOptions, Quiet, TrainOptions, calibrate, evaluate, train};

use crate::conformal::{Conformalized, TestDraws, conformalize, coverage_curve};
use crate::error::{BenchError, Result, io_err};
use crate::suite::{Cell, DataSource, Suite};

/// Wall-clock seconds of each phase of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Timings {
    /// Training (0 for a derived method).
    pub train_s: f64,
    /// Conformal calibration.
    pub calibrate_s: f64,
    /// Evaluation (prediction, metrics, rollout).
    pub eval_s: f64,
    /// Of which prediction on the test split.
    pub predict_s: f64,
    /// CPU seconds the process used for the whole cell (all threads; absent in older cells).
    #[serde(default)]
    pub cpu_s: f64,
    /// Peak resident memory of the process after the cell, MiB (absent in older cells).
    #[serde(default)]
    pub peak_rss_mb: f64,
}

/// The first test function of a cell, for the field plots (`[c, points]` each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Model grid.
    pub grid: Vec<usize>,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Input.
    pub input: Vec<f32>,
    /// Target.
    pub target: Vec<f32>,
    /// Predictive mean.
    pub mean: Vec<f32>,
    /// Predictive std.
    pub std: Vec<f32>,
}

/// Everything recorded for one cell (`cell.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    /// PDE name.
    pub pde: String,
    /// Method name.
    pub method: String,
    /// Training seed.
    pub seed: u64,
    /// Model kind.
    pub kind: String,
    /// Trainable parameters.
    pub params: usize,
    /// The run config.
    pub config: Value,
    /// Timings.
    pub timings: Timings,
    /// Metric name → value (the `pno eval` keys).
    pub metrics: Map<String, Value>,
    /// Conformal calibration, when the method has it.
    pub calibration: Option<CalibrationRecord>,
    /// Calibration curves.
    pub curves: Curves,
    /// Rollout steps.
    pub rollout: Vec<RolloutStep>,
    /// First test function.
    pub example: Example,
    /// Fingerprint of the suite that produced it ([`Suite::sha256`]; empty in older records).
    #[serde(default)]
    pub suite_sha256: String,
    /// The git commit of the `pno` that computed it.
    #[serde(default)]
    pub commit: String,
    /// Coverage of central intervals at [`crate::conformal::CURVE_LEVELS`] (absent in cells
    /// recorded before it).
    #[serde(default)]
    pub coverage_curve: Option<CalibrationCurve>,
    /// The conformally calibrated variant ([`crate::conformal`]); `None`: see `conformal_note`.
    #[serde(default)]
    pub conformal: Option<Conformalized>,
    /// Why the cell has no calibrated variant (deterministic, no calibration split, calibration
    /// off or the method's own `conformal`); `None` when it has one, or in older cells.
    #[serde(default)]
    pub conformal_note: Option<String>,
}

impl CellResult {
    /// A metric as a number (`None` when absent or not numeric).
    pub fn metric(&self, name: &str) -> Option<f64> {
        match name {
            "train_s" => Some(self.timings.train_s),
            "eval_s" => Some(self.timings.eval_s),
            _ => self.metrics.get(name).and_then(Value::as_f64),
        }
    }

    /// A metric of the calibrated variant (`None` without one; invariant metrics are the raw
    /// ones, [`crate::conformal::INVARIANT`]).
    pub fn conformal_metric(&self, name: &str) -> Option<f64> {
        let c = self.conformal.as_ref()?;
        if crate::conformal::invariant(name) {
            return self.metric(name);
        }
        c.metrics.get(name).and_then(Value::as_f64)
    }

    /// Whether the prediction has a spread (not a deterministic model).
    pub fn probabilistic(&self) -> bool {
        self.metric("sharpness").is_some_and(|s| s > 0.0)
    }
}

/// Options of [`run_suite`].
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Backend device.
    pub device: Device,
    /// Inputs per forward pass in evaluation.
    pub batch: usize,
    /// Run only this part of the cells (job arrays); `None`: every cell.
    pub part: Option<crate::suite::Part>,
}

fn read_cell(path: &Path) -> Result<Option<CellResult>> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(io_err("read", path))?;
    match serde_json::from_slice(&bytes) {
        Ok(c) => Ok(Some(c)),
        // A torn or stale record is recomputed rather than trusted.
        Err(_) => Ok(None),
    }
}

/// Path of a cell's folder.
pub fn cell_dir(out: &Path, suite: &Suite, c: Cell) -> PathBuf {
    out.join("cells")
        .join(&suite.pdes[c.pde].name)
        .join(&suite.methods[c.method].name)
        .join(format!("seed{}", c.seed))
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| BenchError::Corrupt {
        path: path.to_path_buf(),
        expected: "serialisable results".into(),
        got: e.to_string(),
    })?;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(io_err("create", d))?;
    }
    pno_core::atomic_write(path, &bytes)?;
    Ok(())
}

/// The dataset of PDE `i`, generating it into `OUT/data/<pde>` when needed. A dataset generated
/// by an earlier (interrupted) run is reused only if it was generated by the same job.
pub fn ensure_data(
    suite: &Suite,
    i: usize,
    out: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    let p = &suite.pdes[i];
    let job = match &p.source {
        DataSource::File(f) => return Ok(f.clone()),
        DataSource::Generate(job) => job,
    };
    let dir = out.join("data").join(&p.name);
    let stamp = out.join("data").join(format!("{}.job.json", p.name));
    let want = json!({"pde": job.pde, "n": job.n, "seed": job.seed, "params": job.params});
    let matches = |stamp: &Path| -> Result<Option<Value>> {
        if !stamp.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(stamp).map_err(io_err("read", stamp))?;
        Ok(Some(serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    };
    if dir.join("manifest.json").exists() {
        match matches(&stamp)? {
            Some(got) if got == want => return Ok(dir),
            Some(got) => {
                return Err(BenchError::Corrupt {
                    path: dir,
                    expected: format!("data generated by this suite's job {want}"),
                    got: format!("data generated by {got}; remove it or use another --out"),
                });
            }
            // A dataset without its stamp was never completed by a suite: regenerate.
            None => std::fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))?,
        }
    }
    // Parts of a suite may race here: each generates into its own temporary folder, writes the
    // stamp, then renames the dataset into place; the loser of the rename drops its copy and
    // uses the winner's (the same seeded job gives the same bytes).
    log(&format!("generating {} ({} × {})", p.name, job.n, job.pde));
    let parent = out.join("data");
    std::fs::create_dir_all(&parent).map_err(io_err("create", &parent))?;
    let tmp = parent.join(format!(".{}.tmp-{}", p.name, std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err("remove", &tmp))?;
    }
    pno_gen::generate(job, &tmp, &|_| {})?;
    write_json(&stamp, &want)?;
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        if !(dir.join("manifest.json").exists() && matches(&stamp)?.as_ref() == Some(&want)) {
            return Err(BenchError::Corrupt {
                path: dir,
                expected: "the dataset another part generated".into(),
                got: "a folder that is neither this job's dataset nor free".into(),
            });
        }
    }
    Ok(dir)
}

fn copy_run(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(io_err("create", to))?;
    for f in pno_run::PUBLISHED {
        let src = from.join(f);
        if src.exists() {
            let dst = to.join(f);
            let bytes = std::fs::read(&src).map_err(io_err("read", &src))?;
            pno_core::atomic_write(&dst, &bytes)?;
        }
    }
    Ok(())
}

/// Run one cell (or return its recorded result).
pub fn run_cell(
    suite: &Suite,
    c: Cell,
    data: &Path,
    out: &Path,
    opts: &RunOptions,
    log: &mut dyn FnMut(&str),
) -> Result<CellResult> {
    let dir = cell_dir(out, suite, c);
    let record = dir.join("cell.json");
    if let Some(done) = read_cell(&record)? {
        if !done.suite_sha256.is_empty() && done.suite_sha256 != suite.sha256 {
            return Err(BenchError::Corrupt {
                path: record,
                expected: format!("a cell of this suite (sha256 {})", suite.sha256),
                got: format!(
                    "a cell of another version of the suite (sha256 {}); use another --out",
                    done.suite_sha256
                ),
            });
        }
        log(&format!("{}: done earlier, kept", suite.cell_id(c)));
        return upgrade(suite, c, data, done, &dir, opts, log);
    }
    let m = &suite.methods[c.method];
    let cfg = suite.run_config(c)?;
    let run = dir.join("run");
    let mut timings = Timings::default();
    let cpu0 = pno_core::resources::cpu_seconds().unwrap_or(0.0);
    match m.base {
        Some(b) => {
            let base_run = cell_dir(out, suite, Cell { method: b, ..c }).join("run");
            copy_run(&base_run, &run)?;
        }
        None => {
            let started = Instant::now();
            let resume = run.join("model.json").exists();
            log(&format!(
                "{}: {}training",
                suite.cell_id(c),
                if resume { "resuming " } else { "" }
            ));
            let topts = TrainOptions {
                data: data.to_path_buf(),
                out: run.clone(),
                resume,
                device: opts.device.clone(),
                data_parallel: Vec::new(),
            };
            train(
                if resume { None } else { Some(cfg.clone()) },
                &topts,
                &mut Quiet,
            )?;
            timings.train_s = started.elapsed().as_secs_f64();
        }
    }
    let calibration = match m.conformal {
        None => None,
        Some(conf) => {
            let started = Instant::now();
            let rec = calibrate(
                &run,
                data,
                &CalibrateOptions {
                    split: Some(Split::Calibration),
                    level: conf.level,
                    mode: conf.mode,
                    samples: suite.samples,
                    seed: c.seed,
                    batch: opts.batch,
                },
                &opts.device,
            )?;
            timings.calibrate_s = started.elapsed().as_secs_f64();
            Some(rec)
        }
    };
    let started = Instant::now();
    let trained = load_trained(&run, &opts.device)?;
    let windowed = trained.file.data.window.is_some();
    let eo = EvalOptions {
        split: Some(Split::Test),
        samples: suite.samples,
        seed: c.seed,
        batch: opts.batch,
        rollout: if windowed { suite.rollout } else { 0 },
        ..EvalOptions::default()
    };
    let mut e = evaluate(&trained, data, &eo, &opts.device)?;
    timings.eval_s = started.elapsed().as_secs_f64();
    timings.predict_s = e.predict_seconds;
    let started = Instant::now();
    let (cin, cout) = (trained.file.in_channels, trained.file.out_channels);
    let p: usize = e.grid.iter().product();
    let example = Example {
        grid: e.grid.clone(),
        in_channels: cin,
        out_channels: cout,
        input: e.x[..cin * p].to_vec(),
        target: e.y[..cout * p].to_vec(),
        mean: e.pred.mean[..cout * p].to_vec(),
        std: e.pred.std[..cout * p].to_vec(),
    };
    let variants = variants(suite, c, &trained, data, &mut e.pred, &e.y, opts, log)?;
    timings.calibrate_s += started.elapsed().as_secs_f64();
    timings.cpu_s = pno_core::resources::cpu_seconds().unwrap_or(0.0) - cpu0;
    timings.peak_rss_mb =
        pno_core::resources::rss_bytes().map_or(0.0, |(_, peak)| peak as f64 / 1048576.0);
    let mut metrics = match serde_json::to_value(&e.report) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    if let Some(d) = &e.decomposition
        && let Ok(Value::Object(dm)) = serde_json::to_value(d)
    {
        metrics.extend(dm);
    }
    metrics.insert("n".into(), json!(e.n));
    if let Some(last) = e.rollout.last() {
        metrics.insert("rollout_rel_l2".into(), json!(last.report.rel_l2));
        metrics.insert("rollout_crps".into(), json!(last.report.crps));
        metrics.insert("rollout_coverage_90".into(), json!(last.report.coverage_90));
        metrics.insert("diverged_fraction".into(), json!(last.diverged_fraction));
    }
    let params = read_params(&run);
    let result = CellResult {
        pde: suite.pdes[c.pde].name.clone(),
        method: m.name.clone(),
        seed: c.seed,
        kind: trained.file.model.kind.name().to_string(),
        params,
        config: serde_json::to_value(&cfg).unwrap_or(Value::Null),
        timings,
        metrics,
        calibration,
        curves: e.curves,
        rollout: e.rollout,
        example,
        suite_sha256: suite.sha256.clone(),
        commit: env!("PNO_GIT_COMMIT").to_string(),
        coverage_curve: Some(variants.curve),
        conformal: variants.conformal,
        conformal_note: variants.note,
    };
    write_json(&record, &result)?;
    Ok(result)
}

/// The coverage curve of a cell's test draws and its calibrated variant.
struct Variants {
    curve: CalibrationCurve,
    conformal: Option<Conformalized>,
    note: Option<String>,
}

/// The raw coverage curve of `pred` against `y`, then (rescaling `pred`'s draws in place) the
/// calibrated variant the suite asks for.
#[allow(clippy::too_many_arguments)]
fn variants(
    suite: &Suite,
    c: Cell,
    trained: &TrainedModel,
    data: &Path,
    pred: &mut pno_models::Predictive,
    y: &[f32],
    opts: &RunOptions,
    log: &mut dyn FnMut(&str),
) -> Result<Variants> {
    let (m, d) = (pred.n_samples, pred.per_function());
    let n = y.len() / d.max(1);
    let curve = coverage_curve(&SamplePred::new(&pred.samples, m, n, d)?, y)?;
    let Some(conf) = suite.default_conformal(c) else {
        let note = if suite.conformal.is_none() {
            "calibration off in the suite (conformal = false)"
        } else {
            "calibrated by the method's own conformal table"
        };
        return Ok(Variants {
            curve,
            conformal: None,
            note: Some(note.into()),
        });
    };
    let test = TestDraws {
        y,
        samples: &mut pred.samples,
        mean: &pred.mean,
        std: &pred.std,
        grid: &pred.grid,
        channels: pred.channels,
    };
    let draws = Draws {
        samples: suite.samples,
        seed: c.seed,
        batch: opts.batch,
    };
    Ok(
        match conformalize(trained, data, conf, test, draws, &opts.device)? {
            Ok(v) => {
                log(&format!(
                    "{}: conformal scale {:.4} (coverage 90 % {:.3} → {:.3})",
                    suite.cell_id(c),
                    v.spread_scale,
                    curve.observed[8],
                    v.coverage_curve.observed[8]
                ));
                Variants {
                    curve,
                    conformal: Some(v),
                    note: None,
                }
            }
            Err(why) => Variants {
                curve,
                conformal: None,
                note: Some(why),
            },
        },
    )
}

/// A cell recorded before the coverage curve and the calibrated variant existed gets them from
/// its run folder: the same seeded test draws again, then the calibration. Without its run
/// folder (or when that fails) it is kept as it is; the report shows what it has.
fn upgrade(
    suite: &Suite,
    c: Cell,
    data: &Path,
    mut done: CellResult,
    dir: &Path,
    opts: &RunOptions,
    log: &mut dyn FnMut(&str),
) -> Result<CellResult> {
    let run = dir.join("run");
    let record = dir.join("cell.json");
    if done.coverage_curve.is_some() || !run.join("model.json").exists() {
        return Ok(done);
    }
    let attempt = |log: &mut dyn FnMut(&str)| -> Result<Variants> {
        let trained = load_trained(&run, &opts.device)?;
        let draws = Draws {
            samples: suite.samples,
            seed: c.seed,
            batch: opts.batch,
        };
        let mut sp =
            predict_on_split(&trained, data, Some(Split::Test), None, draws, &opts.device)?;
        variants(suite, c, &trained, data, &mut sp.pred, &sp.y, opts, log)
    };
    match attempt(log) {
        Ok(v) => {
            log(&format!(
                "{}: recorded by an older version; added the coverage curve{}",
                suite.cell_id(c),
                if v.conformal.is_some() {
                    " and the calibrated variant"
                } else {
                    ""
                }
            ));
            done.coverage_curve = Some(v.curve);
            done.conformal = v.conformal;
            done.conformal_note = v.note;
            write_json(&record, &done)?;
        }
        Err(e) => log(&format!(
            "{}: recorded by an older version; could not add the calibrated variant ({e}); kept as it is",
            suite.cell_id(c)
        )),
    }
    Ok(done)
}

fn read_params(run: &Path) -> usize {
    std::fs::read(run.join("summary.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["params"].as_u64())
        .unwrap_or(0) as usize
}

/// Run every cell of `suite` into `out` (resumable); `log` receives one line per step.
pub fn run_suite(
    suite: &Suite,
    out: &Path,
    opts: &RunOptions,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<CellResult>> {
    std::fs::create_dir_all(out).map_err(io_err("create", out))?;
    let copy = out.join("suite.toml");
    let text = std::fs::read(&suite.path).map_err(io_err("read", &suite.path))?;
    pno_core::atomic_write(&copy, &text)?;
    let mut results = Vec::new();
    let cells: Vec<Cell> = suite
        .cells()
        .into_iter()
        .filter(|&c| {
            opts.part
                .is_none_or(|p| suite.part_of(c, p.count) == p.index)
        })
        .collect();
    let total = cells.len();
    let mut data: Vec<Option<PathBuf>> = vec![None; suite.pdes.len()];
    for (k, c) in cells.into_iter().enumerate() {
        let path = match &data[c.pde] {
            Some(p) => p.clone(),
            None => {
                let p = ensure_data(suite, c.pde, out, log)?;
                data[c.pde] = Some(p.clone());
                p
            }
        };
        log(&format!("[{}/{total}] {}", k + 1, suite.cell_id(c)));
        // One span per cell with its key numbers (exported when the CLI installed an OTLP
        // exporter; free otherwise).
        let span = tracing::info_span!(
            "cell",
            cell = %suite.cell_id(c),
            index = k + 1,
            total,
            params = tracing::field::Empty,
            train_s = tracing::field::Empty,
            eval_s = tracing::field::Empty,
            cpu_s = tracing::field::Empty,
            peak_rss_mb = tracing::field::Empty,
            rel_l2 = tracing::field::Empty,
            crps = tracing::field::Empty,
            nll = tracing::field::Empty,
            coverage_90 = tracing::field::Empty,
        );
        let r = span
            .in_scope(|| run_cell(suite, c, &path, out, opts, log))
            .map_err(|e| suite.cell_err(c, e))?;
        span.record("params", r.params);
        span.record("train_s", r.timings.train_s);
        span.record("eval_s", r.timings.eval_s);
        span.record("cpu_s", r.timings.cpu_s);
        span.record("peak_rss_mb", r.timings.peak_rss_mb);
        for key in ["rel_l2", "crps", "nll", "coverage_90"] {
            if let Some(v) = r.metrics.get(key).and_then(Value::as_f64) {
                span.record(key, v);
            }
        }
        results.push(r);
    }
    Ok(results)
}
