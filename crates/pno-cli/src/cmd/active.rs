//! `pno active`: uncertainty-driven active learning with our own solvers.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Map, Value, json};

use pno_active::report::{CurvePoint, Curves};
use pno_active::runner::{ActiveProgress, ArmState, RoundRecord};
use pno_active::{Acquisition, ActiveOptions, BatchRule, Plan};
use pno_bench::plots::{Band, band_panels};
use pno_train::Progress;

use crate::config::{apply_set, read_toml};

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  pno active --config configs/darcy16_pno_d.toml --pde darcy --resolution 16 \\
      --initial 8 --budget 40 --batch 8 --acquisition variance --seeds 0,1,2 --out runs/al_darcy
  pno active --config configs/heat32_pno_d.toml --pde heat --data-config configs/heat64.toml \\
      --resolution 32 --budget 40 --batch 8 --acquisition variance,energy,bald --out runs/al_heat
  pno active ...same command...        # after a crash: continues where it stopped

The loop, per acquisition and seed: train (pno train's loop, a run folder per round) on the
labelled set, evaluate on the fixed test set (rel-L2, CRPS, 90% coverage), score the
remaining pool, take the top --batch candidates, label them by running the solver for
exactly those sample indices, and repeat until --budget labelled samples (the initial ones
included). Every acquisition of a seed starts from the same initial set and pool; random
acquisition (--compare random, the default) runs alongside as the baseline.

Samples are indices of the generator's stream --data-seed: the test set is 0..test, seed s
takes its initial set and pool from its own block after it, so none overlap. Candidates are
drawn without solving (Darcy: the coefficient; heat: the initial condition).

Acquisitions (scores from --draws predictive draws X_1..X_M of each candidate):
  variance  mean predictive variance over the output values
  energy    E||X - X'||, the energy score's spread term: mean RMS distance over draw pairs
  bald      mutual information I(y; theta | x) under a Gaussian approximation, per output
            value, averaged: mean 0.5 ln(1 + v_epistemic / v_aleatoric). With a Gaussian
            head (ensemble heads, pno_r, vi_pno) v_aleatoric is the mean head variance and
            v_epistemic = total - aleatoric; for purely epistemic draws (pno_d, mc_dropout,
            ensembles, laplace) v_epistemic is the draws' variance and v_aleatoric one noise
            variance: the mean squared residual of the predictive mean on the labelled set
  random    seeded uniform choice
The batch (--batch-rule): greedy (default) takes the top --batch scores, ties to the smaller
sample index; power draws --batch candidates without replacement with probabilities
proportional to score^beta (--power-beta, default 1; stochastic batch acquisition, Kirsch et
al. 2023), so a batch is not --batch near-copies of the most uncertain input. Random ignores
the rule.

State is written atomically after every round (OUT/arms/*/state.json) and training resumes
from its checkpoints: re-running the same command continues, with the results an
uninterrupted run gives. Outputs: OUT/curve.csv, curve.json, table.md (mean +- std over
seeds, labelled samples needed to reach --target-rel-l2, or by default the random
baseline's test rel-L2 at the budget and halfway), curve.svg and curve.png.")]
pub(crate) struct ActiveArgs {
    /// Run config of every round ([data], [model], [train]; as for pno train).
    #[arg(long, short)]
    config: PathBuf,
    /// PDE whose solver labels the data: darcy, heat, ks, burgers, navier_stokes, wave
    /// [default: the `pde` key of --data-config].
    #[arg(long)]
    pde: Option<String>,
    /// Generator config (as for pno generate; its `seed` is the default --data-seed, `n` is
    /// ignored).
    #[arg(long, value_name = "TOML")]
    data_config: Option<PathBuf>,
    /// Output resolution of the generator (grid points per axis).
    #[arg(long, short)]
    resolution: Option<usize>,
    /// Override a generator key, e.g. --data-set nu=0.02 (repeatable).
    #[arg(long = "data-set", value_name = "KEY=VALUE")]
    data_set: Vec<String>,
    /// Override a run-config key, e.g. --set train.epochs=5 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Labelled samples at the end, the initial ones included.
    #[arg(long)]
    budget: usize,
    /// Samples labelled per round.
    #[arg(long)]
    batch: usize,
    /// Acquisition(s): variance, energy, bald, random (comma-separated for several).
    #[arg(long, value_delimiter = ',', required = true)]
    acquisition: Vec<String>,
    /// Baselines run alongside: random (default), other acquisitions, or none. Entries equal
    /// to an --acquisition are skipped.
    #[arg(long, value_delimiter = ',', default_value = "random")]
    compare: Vec<String>,
    /// Labelled samples to start from.
    #[arg(long, default_value_t = 8)]
    initial: usize,
    /// Candidate inputs per seed.
    #[arg(long, default_value_t = 256)]
    pool: usize,
    /// Test samples (fixed for every round, acquisition and seed).
    #[arg(long, default_value_t = 64)]
    test: usize,
    /// Experiment seeds (training seed, initial set, pool, random stream); curves are mean +- std
    /// over them.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    seeds: Vec<u64>,
    /// Seed of the generator's sample streams [default: the data config's seed, else 0].
    #[arg(long)]
    data_seed: Option<u64>,
    /// Predictive draws per candidate for the scores.
    #[arg(long, default_value_t = 16)]
    draws: usize,
    /// Predictive draws per test input for the metrics.
    #[arg(long, default_value_t = 32)]
    eval_samples: usize,
    /// Start each round's training from the previous round's best weights.
    #[arg(long)]
    warm_start: bool,
    /// How a batch is chosen from the scores: greedy (the top scores) or power (drawn with
    /// probabilities proportional to score^beta).
    #[arg(long, default_value = "greedy", value_parser = ["greedy", "power"])]
    batch_rule: String,
    /// The exponent beta of --batch-rule power.
    #[arg(long, value_name = "BETA")]
    power_beta: Option<f64>,
    /// Report the labelled samples needed to reach this test rel-L2 (repeatable or
    /// comma-separated) [default: the random baseline's rel-L2 at the budget and halfway].
    #[arg(long, value_delimiter = ',')]
    target_rel_l2: Vec<f64>,
    /// Output folder (new, or the folder of an interrupted run to continue it).
    #[arg(long, short)]
    out: PathBuf,
    /// Backend: cpu, or cuda / cuda:N in a CUDA build.
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn acquisitions(flag: &str, names: &[String]) -> Result<Vec<Acquisition>> {
    names
        .iter()
        .map(|n| {
            Acquisition::parse(n.trim()).with_context(|| {
                format!("{flag}: expected variance, energy, bald or random, got {n:?}")
            })
        })
        .collect()
}

fn plan(args: &ActiveArgs) -> Result<Plan> {
    let mut generator = match &args.data_config {
        Some(p) => read_toml(p)?,
        None => Map::new(),
    };
    for s in &args.data_set {
        apply_set(&mut generator, s).context("--data-set")?;
    }
    let keys = pno_gen::take_dataset_keys(&mut generator)?;
    generator.remove("samples_per_file");
    let pde = match (&args.pde, &keys.pde) {
        (Some(p), named) => {
            let p = pno_solvers::canonical_pde(p).context("--pde")?;
            if let Some(n) = named
                && pno_solvers::canonical_pde(n).ok() != Some(p)
            {
                bail!(
                    "config key `pde`: the --data-config file is for {n}, but --pde asked for {p}"
                );
            }
            p
        }
        (None, Some(n)) => pno_solvers::canonical_pde(n).context("config key `pde`")?,
        (None, None) => {
            bail!(
                "--pde: expected a PDE name (darcy, heat, ks, burgers, navier_stokes, wave), got none"
            )
        }
    };
    if let Some(r) = args.resolution {
        generator.insert("resolution".into(), json!(r));
    }
    let mut run_config = read_toml(&args.config)?;
    for s in &args.set {
        apply_set(&mut run_config, s).context("--set")?;
    }
    let mut acqs = acquisitions("--acquisition", &args.acquisition)?;
    let compare: Vec<String> = args
        .compare
        .iter()
        .filter(|c| c.trim() != "none")
        .cloned()
        .collect();
    for c in acquisitions("--compare", &compare)? {
        if !acqs.contains(&c) {
            acqs.push(c);
        }
    }
    let batch_rule = match (args.batch_rule.as_str(), args.power_beta) {
        ("power", beta) => BatchRule::Power {
            beta: beta.unwrap_or(1.0),
        },
        (_, Some(b)) => {
            bail!("--power-beta: expected it only with --batch-rule power, got {b} with greedy")
        }
        _ => BatchRule::Greedy,
    };
    Ok(Plan {
        batch_rule,
        pde: pde.to_string(),
        generator,
        data_seed: args.data_seed.or(keys.seed).unwrap_or(0),
        run_config: Value::Object(run_config),
        acquisitions: acqs,
        seeds: args.seeds.clone(),
        initial: args.initial,
        budget: args.budget,
        batch: args.batch,
        pool: args.pool,
        test: args.test,
        draws: args.draws,
        eval_samples: args.eval_samples,
        warm_start: args.warm_start,
    })
}

/// Per-round lines on stderr; training itself is quiet (one line per epoch would drown them).
struct Lines {
    hidden: bool,
    trainer: TrainLines,
}

struct TrainLines {
    hidden: bool,
}

impl Progress for TrainLines {
    fn event(&mut self, message: &str) {
        if !self.hidden && (message.starts_with("resumed") || message.starts_with("rollback")) {
            eprintln!("  {message}");
        }
    }
}

impl ActiveProgress for Lines {
    fn trainer(&mut self) -> &mut dyn Progress {
        &mut self.trainer
    }
    fn event(&mut self, message: &str) {
        if !self.hidden {
            eprintln!("{message}");
        }
    }
    fn round(&mut self, arm: &ArmState, r: &RoundRecord) {
        if self.hidden {
            return;
        }
        let next = r.next.as_ref().map_or(String::new(), |s| {
            format!("; next {} chosen", s.chosen.len())
        });
        eprintln!(
            "{:<16} round {:>2}: {:>4} labels  test rel-L2 {:.4}  CRPS {:.3e}  cov90 {:.3}  ({} epochs; train {:.1} s, score {:.1} s){next}",
            ArmState::name(arm.acquisition, arm.seed),
            r.round,
            r.n_labels,
            r.metrics.rel_l2,
            r.metrics.crps,
            r.metrics.coverage_90,
            r.epochs,
            r.seconds.train,
            r.seconds.score,
        );
    }
}

fn bands(c: &Curves, plan: &Plan, f: fn(&CurvePoint) -> (f64, f64)) -> Vec<Band> {
    plan.acquisitions
        .iter()
        .map(|&a| {
            let pts = c
                .mean
                .iter()
                .filter(|p| p.acquisition == a)
                .map(|p| {
                    let (m, s) = f(p);
                    (p.n_labels as f64, m, s)
                })
                .collect();
            (a.name().to_string(), pts)
        })
        .collect()
}

pub(crate) fn run(args: ActiveArgs, json_out: bool, quiet: bool) -> Result<()> {
    let plan = plan(&args)?;
    if let Some(&t) = args
        .target_rel_l2
        .iter()
        .find(|t| !(t.is_finite() && **t > 0.0))
    {
        bail!("--target-rel-l2: expected a positive number, got {t}");
    }
    let device = crate::device::select_device(&args.device)?;
    let opts = ActiveOptions {
        out: args.out.clone(),
        device,
    };
    let hidden = quiet || json_out;
    let mut progress = Lines {
        hidden,
        trainer: TrainLines { hidden },
    };
    let arms = pno_active::run(&plan, &opts, &mut progress)
        .with_context(|| format!("active learning in {}", args.out.display()))?;
    let curves = pno_active::curves(&plan, &arms, &args.target_rel_l2);
    let files = pno_active::report::write(&plan, &curves, &args.out)?;
    let stem = args.out.join("curve");
    let panels = vec![
        (
            format!("{}: test rel-L2", plan.pde),
            ("labelled samples".to_string(), "rel-L2".to_string()),
            bands(&curves, &plan, |p| (p.rel_l2.mean, p.rel_l2.std)),
        ),
        (
            format!("{}: test CRPS", plan.pde),
            ("labelled samples".to_string(), "CRPS".to_string()),
            bands(&curves, &plan, |p| (p.crps.mean, p.crps.std)),
        ),
        (
            format!("{}: 90% coverage", plan.pde),
            ("labelled samples".to_string(), "coverage".to_string()),
            bands(&curves, &plan, |p| (p.coverage_90.mean, p.coverage_90.std)),
        ),
    ];
    let plots = band_panels(&stem, &panels, false)?;
    if json_out {
        println!(
            "{}",
            json!({
                "out": args.out,
                "plan": plan,
                "mean": curves.mean,
                "labels_to_target": curves.labels_to_target,
                "files": {
                    "csv": files.csv, "json": files.json, "markdown": files.markdown,
                    "svg": plots[0], "png": plots[1],
                },
            })
        );
    } else {
        print!("{}", pno_active::report::markdown(&plan, &curves));
        println!(
            "\nwrote {}, {}, {}, {}, {}",
            files.csv.display(),
            files.json.display(),
            files.markdown.display(),
            plots[0].display(),
            plots[1].display()
        );
    }
    Ok(())
}
