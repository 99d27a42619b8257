//! The settings of an active-learning run, their validation, and which generator sample
//! indices each part of the experiment uses.

use std::ops::Range;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use pno_models::config::BackboneSpec;
use pno_solvers::Generator;
use pno_train::RunConfig;

use crate::acquisition::{Acquisition, BatchRule};
use crate::error::{ActiveError, Result, config_err, option_err};
use crate::pool::InputMap;

/// Everything that determines the results of an active-learning run (recorded in
/// `active.json`; a re-run in the same folder must give the same plan and continues it).
///
/// Sample indices of the generator stream `data_seed` (each sample depends only on its index):
/// the test set is `0..test`; seed `s` draws its initial set and its pool from its own block
/// `test + s·(initial + pool) + (0..initial + pool)`, so the sets never overlap and every
/// acquisition of one seed starts from the same initial set and pool (a paired comparison).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Canonical PDE name (`--pde`).
    pub pde: String,
    /// Generator parameters (`--data-config`, `--resolution`, `--data-set`).
    pub generator: Map<String, Value>,
    /// Seed of the generator's sample streams (`--data-seed`).
    pub data_seed: u64,
    /// The run config of every round (`--config`, `--set`) as JSON.
    pub run_config: Value,
    /// Acquisitions compared (`--acquisition` first, then `--compare`).
    pub acquisitions: Vec<Acquisition>,
    /// Experiment seeds (`--seeds`): training seed, initial set, pool, random stream.
    pub seeds: Vec<u64>,
    /// Labelled samples to start from (`--initial`).
    pub initial: usize,
    /// Labelled samples at the end, the initial ones included (`--budget`).
    pub budget: usize,
    /// Samples labelled per round (`--batch`).
    pub batch: usize,
    /// Candidate inputs per seed (`--pool`).
    pub pool: usize,
    /// Test samples (`--test`).
    pub test: usize,
    /// Predictive draws per candidate for the scores (`--draws`).
    pub draws: usize,
    /// Predictive draws per test input for the metrics (`--eval-samples`).
    pub eval_samples: usize,
    /// Each round starts from the previous round's best weights (`--warm-start`).
    pub warm_start: bool,
    /// How each batch is chosen from the scores (`--batch-rule`, `--power-beta`); plans
    /// recorded before the rule existed were greedy.
    #[serde(default)]
    pub batch_rule: BatchRule,
}

/// The command-line flags that set each field of [`Plan`] (for mismatch errors).
pub(crate) fn flag_of(field: &str) -> &'static str {
    match field {
        "pde" => "--pde",
        "generator" => "--data-config / --resolution / --data-set",
        "data_seed" => "--data-seed",
        "run_config" => "--config / --set",
        "acquisitions" => "--acquisition / --compare",
        "seeds" => "--seeds",
        "initial" => "--initial",
        "budget" => "--budget",
        "batch" => "--batch",
        "pool" => "--pool",
        "test" => "--test",
        "draws" => "--draws",
        "eval_samples" => "--eval-samples",
        "warm_start" => "--warm-start",
        "batch_rule" => "--batch-rule / --power-beta",
        _ => "the settings",
    }
}

/// A validated plan: the generator, the run config and how candidates become model inputs.
pub struct Setup {
    /// The generator (labels and candidates).
    pub generator: Box<dyn Generator>,
    /// The run config (before the per-seed training seed is set).
    pub config: RunConfig,
    /// Generator input → model input.
    pub inputs: InputMap,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("pde", &self.generator.pde())
            .field("inputs", &self.inputs)
            .finish_non_exhaustive()
    }
}

impl Plan {
    /// Range-checks every setting, builds the generator and the run config, and checks that
    /// they fit each other. Errors name the flag or config key.
    pub fn validate(&self) -> Result<Setup> {
        let at_least = |flag: &str, v: usize, min: usize, what: &str| {
            if v < min {
                Err(option_err(flag, format!("at least {min} {what}"), v))
            } else {
                Ok(())
            }
        };
        at_least(
            "--initial",
            self.initial,
            2,
            "labelled samples to start from",
        )?;
        at_least("--batch", self.batch, 1, "sample per round")?;
        at_least("--test", self.test, 2, "test samples")?;
        at_least(
            "--draws",
            self.draws,
            2,
            "predictive draws (the scores need pairs)",
        )?;
        at_least(
            "--eval-samples",
            self.eval_samples,
            2,
            "predictive draws (the metrics need pairs)",
        )?;
        if self.budget <= self.initial {
            return Err(option_err(
                "--budget",
                format!(
                    "more labelled samples than --initial = {} (the budget counts the initial ones)",
                    self.initial
                ),
                self.budget,
            ));
        }
        if self.pool < self.budget - self.initial {
            return Err(option_err(
                "--pool",
                format!(
                    "at least --budget - --initial = {} candidates",
                    self.budget - self.initial
                ),
                self.pool,
            ));
        }
        if self.draws > 100_000 || self.eval_samples > 100_000 {
            return Err(option_err(
                "--draws / --eval-samples",
                "at most 100000",
                self.draws.max(self.eval_samples),
            ));
        }
        if let BatchRule::Power { beta } = self.batch_rule
            && !(beta.is_finite() && beta > 0.0)
        {
            return Err(option_err(
                "--power-beta",
                "a positive finite exponent",
                beta,
            ));
        }
        if self.seeds.is_empty() {
            return Err(option_err("--seeds", "at least one seed", "none"));
        }
        if let Some(s) = duplicate(&self.seeds) {
            return Err(option_err(
                "--seeds",
                "distinct seeds",
                format!("{s} twice"),
            ));
        }
        if self.acquisitions.is_empty() {
            return Err(option_err("--acquisition", "an acquisition", "none"));
        }
        if let Some(a) = duplicate(&self.acquisitions) {
            return Err(option_err(
                "--compare",
                "acquisitions other than --acquisition, each once",
                format!("{a} twice"),
            ));
        }
        for &s in &self.seeds {
            self.block(s)?;
        }
        let generator = pno_solvers::build(&self.pde, Value::Object(self.generator.clone()))?;
        let config = RunConfig::from_value(self.run_config.clone())?;
        if config.data.n_test.is_some_and(|n| n > 0) {
            return Err(config_err(
                "data.n_test",
                "unset or 0 (pno active keeps its own test set, see --test)",
                config.data.n_test.unwrap_or(0),
            ));
        }
        if let Some(n) = config.data.n_train {
            return Err(config_err(
                "data.n_train",
                "unset (pno active trains on every labelled sample; see --budget)",
                n,
            ));
        }
        let spec = config.data_spec()?;
        let inputs = InputMap::new(&spec, generator.as_ref())?;
        // The model and training settings, checked now rather than at the first round.
        let model = config
            .model
            .validate(inputs.channels, inputs.out_channels, &inputs.model_grid)
            .map_err(pno_train::TrainError::from)?;
        let gaussian_head = matches!(&model.backbone, BackboneSpec::Fno(f) if f.std_head)
            || matches!(&model.backbone, BackboneSpec::Deeponet(d) if d.std_head);
        config.train_spec(model.kind, gaussian_head)?;
        Ok(Setup {
            generator,
            config,
            inputs,
        })
    }

    /// Test sample indices.
    pub fn test_indices(&self) -> Range<u64> {
        0..self.test as u64
    }

    /// First index of seed `seed`'s block (initial set, then pool).
    fn block(&self, seed: u64) -> Result<u64> {
        let per = (self.initial + self.pool) as u64;
        seed.checked_mul(per)
            .and_then(|b| b.checked_add(self.test as u64))
            .and_then(|b| b.checked_add(per).map(|_| b))
            .ok_or_else(|| {
                option_err(
                    "--seeds",
                    format!(
                        "seeds small enough that seed x (--initial + --pool) + --test fits in 64 bits (at most {})",
                        (u64::MAX - self.test as u64) / per.max(1) - 1
                    ),
                    seed,
                )
            })
    }

    /// The initial labelled indices of seed `seed`.
    pub fn initial_indices(&self, seed: u64) -> Result<Vec<u64>> {
        let b = self.block(seed)?;
        Ok((b..b + self.initial as u64).collect())
    }

    /// The candidate pool of seed `seed`.
    pub fn pool_indices(&self, seed: u64) -> Result<Vec<u64>> {
        let b = self.block(seed)? + self.initial as u64;
        Ok((b..b + self.pool as u64).collect())
    }

    /// Rounds of every arm: one at `initial` labels, then one per batch up to `budget`.
    pub fn rounds(&self) -> usize {
        1 + (self.budget - self.initial).div_ceil(self.batch.max(1))
    }

    /// The labelled count at round `k` (0-based).
    pub fn labels_at(&self, k: usize) -> usize {
        (self.initial + k * self.batch).min(self.budget)
    }

    /// The first setting in which `given` differs from `self` (the recorded plan), as an error
    /// naming its flag.
    pub(crate) fn compare(&self, given: &Plan, path: &std::path::Path) -> Result<()> {
        let (a, b) = (to_map(self), to_map(given));
        for (k, v) in &a {
            let w = b.get(k).unwrap_or(&Value::Null);
            if v != w {
                return Err(ActiveError::Mismatch {
                    flag: flag_of(k).to_string(),
                    recorded: v.to_string(),
                    given: w.to_string(),
                    path: path.to_path_buf(),
                });
            }
        }
        Ok(())
    }
}

fn to_map(p: &Plan) -> Map<String, Value> {
    match serde_json::to_value(p) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

fn duplicate<T: PartialEq + Copy>(v: &[T]) -> Option<T> {
    v.iter()
        .enumerate()
        .find(|(i, x)| v[..*i].contains(x))
        .map(|(_, x)| *x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn plan() -> Plan {
        Plan {
            pde: "darcy".into(),
            generator: json!({"resolution": 8})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            data_seed: 0,
            run_config: json!({"model": {"kind": "fno", "n_modes": [4, 4]}}),
            acquisitions: vec![Acquisition::Variance, Acquisition::Random],
            seeds: vec![0, 1],
            initial: 4,
            budget: 10,
            batch: 4,
            pool: 20,
            test: 8,
            draws: 4,
            eval_samples: 4,
            warm_start: false,
            batch_rule: BatchRule::Greedy,
        }
    }

    #[test]
    fn index_blocks_are_disjoint_and_rounds_reach_the_budget() {
        let p = plan();
        let mut all: Vec<u64> = p.test_indices().collect();
        for s in [0, 1, 5] {
            all.extend(p.initial_indices(s).unwrap());
            all.extend(p.pool_indices(s).unwrap());
        }
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
        assert_eq!(p.rounds(), 3);
        assert_eq!(
            (0..3).map(|k| p.labels_at(k)).collect::<Vec<_>>(),
            vec![4, 8, 10]
        );
        assert!(p.initial_indices(u64::MAX / 2).is_err());
    }

    #[test]
    fn bad_settings_are_refused_naming_the_flag() {
        type Edit = Box<dyn Fn(&mut Plan)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|p| p.budget = 4), "--budget"),
            (Box::new(|p| p.batch = 0), "--batch"),
            (Box::new(|p| p.pool = 5), "--pool"),
            (Box::new(|p| p.initial = 1), "--initial"),
            (Box::new(|p| p.draws = 1), "--draws"),
            (Box::new(|p| p.seeds = vec![]), "--seeds"),
            (Box::new(|p| p.seeds = vec![3, 3]), "--seeds"),
            (
                Box::new(|p| p.acquisitions = vec![Acquisition::Random, Acquisition::Random]),
                "--compare",
            ),
            (
                Box::new(|p| p.run_config = json!({"data": {"n_test": 5}})),
                "data.n_test",
            ),
            (
                Box::new(|p| p.run_config = json!({"data": {"x": "a"}})),
                "data.x",
            ),
            (
                Box::new(|p| p.run_config = json!({"data": {"window": {}, "x": "u"}})),
                "data.window",
            ),
            (Box::new(|p| p.pde = "maxwell".into()), "maxwell"),
            (
                Box::new(|p| p.run_config = json!({"model": {"n_modes": [40, 40]}})),
                "model.n_modes",
            ),
            (
                Box::new(|p| {
                    p.run_config = json!({"model": {"n_modes": [4, 4]}, "train": {"lr": -1.0}})
                }),
                "train.lr",
            ),
            (
                Box::new(|p| {
                    p.generator.insert("tau".into(), json!(-1.0));
                }),
                "tau",
            ),
            (
                Box::new(|p| p.batch_rule = BatchRule::Power { beta: 0.0 }),
                "--power-beta",
            ),
            (
                Box::new(|p| p.batch_rule = BatchRule::Power { beta: f64::NAN }),
                "--power-beta",
            ),
        ];
        for (edit, flag) in cases {
            let mut p = plan();
            edit(&mut p);
            let e = p.validate().unwrap_err().to_string();
            assert!(e.contains(flag), "{flag}: {e}");
        }
        plan().validate().unwrap();
        let mut heat = plan();
        heat.pde = "heat".into();
        heat.generator = json!({"resolution": 8, "n_times": 3})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let e = heat.validate().unwrap_err().to_string();
        assert!(e.contains("data.window"), "{e}");
        heat.run_config = json!({"data": {"x": "u", "window": {"start": 1}}});
        let e = heat.validate().unwrap_err().to_string();
        assert!(e.contains("start = 0"), "{e}");
        heat.run_config =
            json!({"data": {"x": "u", "window": {"stride": 2}}, "model": {"n_modes": [4, 4]}});
        let s = heat.validate().unwrap();
        assert_eq!((s.inputs.channels, s.inputs.model_grid), (1, vec![8, 8]));
    }

    #[test]
    fn compare_names_the_first_differing_flag() {
        let a = plan();
        let mut b = plan();
        b.budget = 12;
        let e = a
            .compare(&b, std::path::Path::new("x/active.json"))
            .unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("--budget: expected 10"), "{s}");
        a.compare(&plan(), std::path::Path::new("x")).unwrap();
        // The batch rule is part of the plan; one recorded before the rule existed is greedy.
        let mut c = plan();
        c.batch_rule = BatchRule::Power { beta: 1.0 };
        let e = a.compare(&c, std::path::Path::new("x")).unwrap_err();
        assert!(e.to_string().starts_with("--batch-rule"), "{e}");
        let mut old = to_map(&a);
        old.remove("batch_rule");
        let back: Plan = serde_json::from_value(Value::Object(old)).unwrap();
        assert_eq!(back, a);
        let power: Plan = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(power.batch_rule, BatchRule::Power { beta: 1.0 });
    }
}
