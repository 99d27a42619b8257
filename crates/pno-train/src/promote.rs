//! Promotion: a challenger run becomes the next version of a model in a repository only if it
//! passes its gate on frozen data, judged side by side with the current champion.
//!
//! Both are evaluated on exactly the same samples (the challenger's split of the data, or every
//! sample of another file), with the same seed and number of draws. A champion that trained on
//! any of those samples cannot be judged fairly and is refused, naming how many it saw. On pass
//! the run is published atomically as the next version, with its [`GateRecord`] as `gate.json`;
//! on failure nothing is written.

use std::path::{Path, PathBuf};

use pno_core::Split;
use pno_models::burn::tensor::Device;
use pno_run::{
    ChampionRecord, GateRecord, TrainedModel, load_trained, publish, version_dir, versions,
};

use crate::error::{Result, TrainError};
use crate::eval::{EvalOptions, Evaluation, evaluate};
use crate::gate::{Evidence, Gate, measure};

/// What to promote, where, judged how.
#[derive(Debug, Clone)]
pub struct PromoteOptions {
    /// The challenger's run folder.
    pub run: PathBuf,
    /// The model repository.
    pub repository: PathBuf,
    /// The model's name in it.
    pub model: String,
    /// The gate and the SHA-256 of its file (`None`: [`Gate::default`]).
    pub gate: Option<(Gate, PathBuf, String)>,
    /// Evaluation data (default: the data the challenger was trained on).
    pub data: Option<PathBuf>,
    /// Split of the data (`None`: every sample); on another file every sample is used.
    pub split: Option<Split>,
    /// Draws per input.
    pub samples: usize,
    /// Seed of the draws.
    pub seed: u64,
    /// Inputs per forward pass.
    pub batch: usize,
}

/// The outcome of a promotion.
#[derive(Debug, Clone)]
pub struct Promotion {
    /// The evidence and verdict.
    pub record: GateRecord,
    /// The version written (None: refused, nothing written).
    pub version: Option<u64>,
    /// The champion's version, when there was one.
    pub champion: Option<u64>,
}

/// Evaluate the challenger (and the champion) and publish the challenger on pass.
pub fn promote(opts: &PromoteOptions, device: &Device) -> Result<Promotion> {
    pno_run::check_model_name(&opts.model).map_err(|got| TrainError::Option {
        option: "--model".into(),
        expected: "a model name".into(),
        got,
    })?;
    let challenger = load_trained(&opts.run, device)?;
    let data = match &opts.data {
        Some(d) => d.clone(),
        None => challenger.run.read_provenance()?.data.path,
    };
    let default_gate = Gate::default();
    let (gate, gate_file, gate_sha) = match &opts.gate {
        Some((g, p, sha)) => (g, p.display().to_string(), sha.clone()),
        None => (&default_gate, String::new(), String::new()),
    };
    let eval_opts = EvalOptions {
        split: opts.split,
        samples: opts.samples,
        seed: opts.seed,
        batch: opts.batch,
        ..EvalOptions::default()
    };
    let ec = evaluate(&challenger, &data, &eval_opts, device)?;
    let data_sha256 = data_sha(&challenger, &data)?;
    let mut evidence = Evidence::of(&ec)?;
    if let Some(p) = &gate.performance {
        evidence.performance = Some(measure(
            &challenger,
            &ec.x,
            &ec.grid,
            p,
            opts.samples,
            device,
        )?);
    }
    let champion_version = versions(&opts.repository, &opts.model)?.last().copied();
    let champion = match champion_version {
        None => None,
        Some(v) => {
            let dir = version_dir(&opts.repository, &opts.model, v);
            let e = champion_evidence(&dir, &data, &data_sha256, &ec, &eval_opts, device)?;
            Some((v, e))
        }
    };
    let rows = gate.check(&evidence, champion.as_ref().map(|(_, e)| e));
    let passed = rows.iter().all(|r| r.passed);
    let mut metrics = evidence.metrics.clone();
    if let Some(p) = evidence.performance {
        metrics.insert("p99_predict_ms".into(), p.p99_predict_ms);
        if let Some(m) = p.peak_rss_mb {
            metrics.insert("peak_rss_mb".into(), m);
        }
    }
    let record = GateRecord {
        gate_sha256: gate_sha,
        gate_file,
        data_sha256,
        data_path: data.display().to_string(),
        split: ec.split,
        n_functions: ec.n,
        n_samples: opts.samples,
        seed: opts.seed,
        metrics,
        champion: champion.as_ref().map(|(v, e)| ChampionRecord {
            version: *v,
            metrics: e.metrics.clone(),
        }),
        rows,
        passed,
        time_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let version = if passed {
        Some(publish(&opts.run, &opts.repository, &opts.model, &record)?)
    } else {
        None
    };
    Ok(Promotion {
        record,
        version,
        champion: champion_version,
    })
}

/// The champion in `dir` evaluated on exactly the samples, seed and draws of the challenger's
/// evaluation `e` (made with `opts` on `data`, whose SHA-256 is `data_sha256`); a champion that
/// trained on any of those samples is refused.
pub fn champion_evidence(
    dir: &Path,
    data: &Path,
    data_sha256: &str,
    e: &Evaluation,
    opts: &EvalOptions,
    device: &Device,
) -> Result<Evidence> {
    let t = load_trained(dir, device)?;
    refuse_leaky_champion(&t, dir, data_sha256, e)?;
    let same = EvalOptions {
        indices: Some(e.indices.clone()),
        split: e.split,
        rollout: 0,
        ..opts.clone()
    };
    Evidence::of(&evaluate(&t, data, &same, device)?)
}

/// SHA-256 of `data` as the run reads it (the file, or a dataset's manifest).
pub fn data_sha(trained: &TrainedModel, data: &Path) -> Result<String> {
    let (_, prov) = crate::eval::run_fields(trained, data)?;
    Ok(prov.sha256)
}

/// A champion that trained, validated or calibrated on any evaluation sample of the same file is
/// refused: its metrics there would be in-sample.
fn refuse_leaky_champion(
    champion: &TrainedModel,
    dir: &Path,
    data_sha256: &str,
    e: &Evaluation,
) -> Result<()> {
    let prov = champion.run.read_provenance()?;
    if prov.data.sha256 != data_sha256 {
        return Ok(());
    }
    let s = &prov.splits;
    let seen = e
        .indices
        .iter()
        .filter(|i| s.train.contains(i) || s.val.contains(i) || s.calibration.contains(i))
        .count();
    if seen > 0 {
        return Err(TrainError::Option {
            option: "--data".into(),
            expected: format!(
                "evaluation samples the champion ({}) never trained, validated or calibrated on; pass a held-out file with --data",
                dir.display()
            ),
            got: format!(
                "{seen} of the {} samples were in its training splits",
                e.indices.len()
            ),
        });
    }
    Ok(())
}
