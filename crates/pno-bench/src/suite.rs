//! Suite files: methods × PDEs × seeds, validated before anything runs.
//!
//! ```toml
//! [suite]
//! name = "smoke"
//! seeds = [0, 1]
//! samples = 32          # predictive draws per test input (default 100)
//! rollout = 3           # autoregressive steps for PDEs trained on trajectory windows (default 0)
//!
//! [[pde]]
//! name = "darcy"
//! generator = "darcy64.toml"          # a `pno generate` config, relative to the suite file
//! set = { n = 160, resolution = 32 }  # overrides of the generator config
//! data = { n_test = 32, n_calibration = 32 }           # the run config's [data] …
//! model = { hidden_channels = 16, n_modes = [8, 8] }   # … base [model] …
//! train = { epochs = 8 }                               # … and base [train]
//!
//! [[method]]
//! name = "pno_d"
//! model = { kind = "pno_d", dropout = 0.1 }            # merged over the PDE's tables
//!
//! [[method]]
//! name = "pno_d+conformal"
//! base = "pno_d"                                       # reuses the trained pno_d run
//! conformal = { level = 0.9, mode = "pointwise" }      # split-conformal on data.n_calibration
//! ```
//!
//! Every probabilistic method is also reported conformally calibrated, by default: in each cell
//! its test draws are rescaled about the mean by the split-conformal scale fitted on the PDE's
//! calibration split (`data.n_calibration` samples), and the cell records both variants. The
//! header key `conformal` sets how (`conformal = { level = 0.9, mode = "pointwise" }`, the
//! default; `mode = "function"` takes `delta`) or turns it off (`conformal = false`). A PDE
//! without a calibration split is not given one behind the user's back (that would change the
//! training data): its methods are reported raw only and the report says why. A method with its
//! own `conformal` table is already calibrated and gets no second variant.
//!
//! Instead of `generator`, a PDE may name an existing dataset with `path` (any supported format).
//! Every cell's run config is `PDE tables ⊕ method tables ⊕ {train.seed = seed}` and is validated
//! when the suite is loaded; unknown keys are refused by their dotted name.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use pno_run::ConformalMode;
use pno_train::RunConfig;

use crate::error::{BenchError, Result, io_err};
use pno_gen::{Job, take_dataset_keys};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    suite: RawHeader,
    #[serde(default)]
    pde: Vec<RawPde>,
    #[serde(default)]
    method: Vec<RawMethod>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    seeds: Vec<u64>,
    samples: Option<usize>,
    rollout: Option<usize>,
    description: Option<String>,
    /// `false`, or a table like a method's `conformal`.
    conformal: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPde {
    name: String,
    generator: Option<PathBuf>,
    path: Option<PathBuf>,
    #[serde(default)]
    set: Map<String, Value>,
    #[serde(default)]
    data: Map<String, Value>,
    #[serde(default)]
    model: Map<String, Value>,
    #[serde(default)]
    train: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMethod {
    name: String,
    #[serde(default)]
    data: Map<String, Value>,
    #[serde(default)]
    model: Map<String, Value>,
    #[serde(default)]
    train: Map<String, Value>,
    base: Option<String>,
    conformal: Option<RawConformal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConformal {
    level: Option<f64>,
    mode: Option<String>,
    delta: Option<f64>,
}

/// Where a PDE's data comes from.
#[derive(Debug, Clone)]
pub enum DataSource {
    /// Generated into the suite's output folder.
    Generate(Job),
    /// An existing dataset.
    File(PathBuf),
}

/// One PDE of a suite.
#[derive(Debug, Clone)]
pub struct PdeEntry {
    /// Name (folder and table name).
    pub name: String,
    /// Its data.
    pub source: DataSource,
    /// Base run config `{data, model, train}`.
    pub base: Value,
}

/// Split-conformal calibration of a method.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Conformal {
    /// Nominal level.
    pub level: f64,
    /// Quantile rule.
    pub mode: ConformalMode,
}

/// The default conformal calibration of a suite's cells: level 0.9, pointwise.
pub const DEFAULT_CONFORMAL: Conformal = Conformal {
    level: 0.9,
    mode: ConformalMode::Pointwise,
};

/// One method of a suite.
#[derive(Debug, Clone)]
pub struct MethodEntry {
    /// Name.
    pub name: String,
    /// Overrides `{data, model, train}` merged over the PDE's tables.
    pub overrides: Value,
    /// Method whose trained run this one reuses.
    pub base: Option<usize>,
    /// Post-hoc conformal calibration.
    pub conformal: Option<Conformal>,
}

/// One cell: a method on a PDE with a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// PDE index.
    pub pde: usize,
    /// Method index.
    pub method: usize,
    /// Training seed.
    pub seed: u64,
}

/// A validated suite.
#[derive(Debug, Clone)]
pub struct Suite {
    /// Name.
    pub name: String,
    /// One line about it.
    pub description: String,
    /// The file it came from.
    pub path: PathBuf,
    /// Training seeds.
    pub seeds: Vec<u64>,
    /// Predictive draws per test input.
    pub samples: usize,
    /// Rollout steps for windowed PDEs.
    pub rollout: usize,
    /// How every probabilistic method is also calibrated in each cell (`None`: raw only).
    pub conformal: Option<Conformal>,
    /// PDEs.
    pub pdes: Vec<PdeEntry>,
    /// Methods.
    pub methods: Vec<MethodEntry>,
    /// SHA-256 of everything that determines the cells' results (seeds, draws, rollout, every
    /// PDE's data source and tables, every method): parts of a suite run on different machines
    /// merge only when it matches.
    pub sha256: String,
}

fn merge(a: &mut Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b.clone(),
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A `conformal = { level, mode, delta }` table; `key` prefixes the dotted names in errors.
fn conformal_of(
    c: RawConformal,
    key: &dyn Fn(&str) -> String,
    err: &dyn Fn(&str, &str, String) -> BenchError,
) -> Result<Conformal> {
    let level = c.level.unwrap_or(0.9);
    if !(level > 0.0 && level < 1.0) {
        return Err(err(&key("level"), "a level in (0, 1)", level.to_string()));
    }
    let mode = match c.mode.as_deref().unwrap_or("pointwise") {
        "pointwise" => ConformalMode::Pointwise,
        "function" => {
            let delta = c.delta.unwrap_or(0.1);
            if !(delta > 0.0 && delta < 1.0) {
                return Err(err(
                    &key("delta"),
                    "a probability in (0, 1)",
                    delta.to_string(),
                ));
            }
            ConformalMode::Function { delta }
        }
        o => {
            return Err(err(
                &key("mode"),
                "\"pointwise\" or \"function\"",
                format!("{o:?}"),
            ));
        }
    };
    Ok(Conformal { level, mode })
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.'))
        && !s.starts_with('.')
}

impl Suite {
    /// Read and validate a suite file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_err("read", path))?;
        let err = |key: &str, expected: &str, got: String| BenchError::Suite {
            path: path.to_path_buf(),
            key: key.to_string(),
            expected: expected.to_string(),
            got,
        };
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| err("(file)", "valid TOML", e.to_string()))?;
        let value = serde_json::to_value(table)
            .map_err(|e| err("(file)", "a TOML table", e.to_string()))?;
        let raw: RawSuite = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            err(
                &key,
                "the documented suite keys ([suite], [[pde]], [[method]])",
                e.into_inner().to_string(),
            )
        })?;
        let h = raw.suite;
        if !valid_name(&h.name) {
            return Err(err(
                "suite.name",
                "letters, digits, _ - + . (≤ 64)",
                format!("{:?}", h.name),
            ));
        }
        if h.seeds.is_empty() || h.seeds.len() > 100 {
            return Err(err(
                "suite.seeds",
                "1 to 100 seeds",
                format!("{:?}", h.seeds),
            ));
        }
        let mut sorted = h.seeds.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != h.seeds.len() {
            return Err(err(
                "suite.seeds",
                "distinct seeds",
                format!("{:?}", h.seeds),
            ));
        }
        let samples = h.samples.unwrap_or(100);
        if !(2..=10_000).contains(&samples) {
            return Err(err("suite.samples", "2..=10000", samples.to_string()));
        }
        let rollout = h.rollout.unwrap_or(0);
        if rollout > 1000 {
            return Err(err("suite.rollout", "0..=1000", rollout.to_string()));
        }
        let conformal = match h.conformal {
            None | Some(Value::Bool(true)) => Some(DEFAULT_CONFORMAL),
            Some(Value::Bool(false)) => None,
            Some(v @ Value::Object(_)) => {
                let raw: RawConformal = serde_path_to_error::deserialize(v).map_err(|e| {
                    err(
                        &format!("suite.conformal.{}", e.path()),
                        "the keys level, mode, delta",
                        e.into_inner().to_string(),
                    )
                })?;
                Some(conformal_of(
                    raw,
                    &|k| format!("suite.conformal.{k}"),
                    &err,
                )?)
            }
            Some(v) => {
                return Err(err(
                    "suite.conformal",
                    "false, or a table { level, mode, delta }",
                    v.to_string(),
                ));
            }
        };
        if raw.pde.is_empty() || raw.method.is_empty() {
            return Err(err(
                "pde / method",
                "at least one [[pde]] and one [[method]]",
                format!("{} and {}", raw.pde.len(), raw.method.len()),
            ));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut pdes = Vec::new();
        for (i, p) in raw.pde.into_iter().enumerate() {
            let key = |k: &str| format!("pde[{i}].{k}");
            if !valid_name(&p.name) || pdes.iter().any(|q: &PdeEntry| q.name == p.name) {
                return Err(err(
                    &key("name"),
                    "a unique name of letters, digits, _ - + .",
                    format!("{:?}", p.name),
                ));
            }
            let source = match (p.generator, p.path) {
                (Some(g), None) => {
                    let gpath = dir.join(&g);
                    let text = std::fs::read_to_string(&gpath).map_err(io_err("read", &gpath))?;
                    let t: toml::Table = toml::from_str(&text).map_err(|e| {
                        err(&key("generator"), "a TOML generator config", e.to_string())
                    })?;
                    let mut cfg = match serde_json::to_value(t) {
                        Ok(Value::Object(m)) => m,
                        _ => Map::new(),
                    };
                    let mut cfgv = Value::Object(std::mem::take(&mut cfg));
                    merge(&mut cfgv, &Value::Object(p.set));
                    let Value::Object(mut cfg) = cfgv else {
                        unreachable!("merging objects gives an object")
                    };
                    let keys = take_dataset_keys(&mut cfg)
                        .map_err(|e| err(&key("set"), "valid dataset keys", e.to_string()))?;
                    let (pde, n, seed, spf) = (keys.pde, keys.n, keys.seed, keys.samples_per_file);
                    let pde = pde.ok_or_else(|| {
                        err(
                            &key("generator"),
                            "a config with a `pde` key",
                            gpath.display().to_string(),
                        )
                    })?;
                    let pde = pno_solvers::canonical_pde(&pde)
                        .map_err(|e| err(&key("generator"), "a known PDE", chain(&e)))?;
                    // Build once to validate the parameters now rather than mid-suite.
                    pno_solvers::build(pde, Value::Object(cfg.clone())).map_err(|e| {
                        err(
                            &key("set"),
                            "valid generator parameters (generator file + set)",
                            chain(&e),
                        )
                    })?;
                    let n = n.unwrap_or(0) as usize;
                    if n < 4 {
                        return Err(err(&key("set.n"), "at least 4 samples", n.to_string()));
                    }
                    DataSource::Generate(Job {
                        pde,
                        params: cfg,
                        n,
                        seed: seed.unwrap_or(0),
                        shard: pno_core::ShardSpec::default(),
                        samples_per_file: spf.map(|v| v as usize),
                        threads: None,
                    })
                }
                (None, Some(f)) => DataSource::File(dir.join(f)),
                (g, f) => {
                    return Err(err(
                        &key("generator"),
                        "exactly one of `generator` and `path`",
                        format!("generator {g:?}, path {f:?}"),
                    ));
                }
            };
            pdes.push(PdeEntry {
                name: p.name,
                source,
                base: json!({"data": p.data, "model": p.model, "train": p.train}),
            });
        }
        let names: Vec<String> = raw.method.iter().map(|m| m.name.clone()).collect();
        let mut methods = Vec::new();
        for (i, m) in raw.method.into_iter().enumerate() {
            let key = |k: &str| format!("method[{i}].{k}");
            if !valid_name(&m.name) || names[..i].contains(&m.name) {
                return Err(err(
                    &key("name"),
                    "a unique name of letters, digits, _ - + .",
                    format!("{:?}", m.name),
                ));
            }
            let base = match &m.base {
                None => None,
                Some(b) => {
                    let j = names[..i].iter().position(|n| n == b).ok_or_else(|| {
                        err(
                            &key("base"),
                            "the name of a method listed before it",
                            format!("{b:?}"),
                        )
                    })?;
                    if methods
                        .get(j)
                        .is_some_and(|x: &MethodEntry| x.base.is_some())
                    {
                        return Err(err(
                            &key("base"),
                            "a method that trains its own run",
                            format!("{b:?} (itself derived)"),
                        ));
                    }
                    if !(m.model.is_empty() && m.train.is_empty() && m.data.is_empty()) {
                        return Err(err(
                            &key("model"),
                            "no model/train/data tables on a method with `base` (it reuses the base run)",
                            "tables".into(),
                        ));
                    }
                    Some(j)
                }
            };
            let conformal = match m.conformal {
                None => None,
                Some(c) => Some(conformal_of(c, &|k| key(&format!("conformal.{k}")), &err)?),
            };
            methods.push(MethodEntry {
                name: m.name,
                overrides: json!({"data": m.data, "model": m.model, "train": m.train}),
                base,
                conformal,
            });
        }
        let mut suite = Suite {
            name: h.name,
            description: h.description.unwrap_or_default(),
            path: path.to_path_buf(),
            seeds: h.seeds,
            samples,
            rollout,
            conformal,
            pdes,
            methods,
            sha256: String::new(),
        };
        suite.sha256 = suite.fingerprint();
        // Every cell's run config must validate now.
        for cell in suite.cells() {
            let cfg = suite.run_config(cell)?;
            let ds = cfg
                .data_spec()
                .map_err(|e| suite.cell_err(cell, e.into()))?;
            let m = &suite.methods[cell.method];
            if m.conformal.is_some() && ds.n_calibration == 0 {
                return Err(err(
                    &format!("pde[{}].data.n_calibration", cell.pde),
                    &format!(
                        "calibration samples (> 0) for the conformal method {}",
                        m.name
                    ),
                    "0".into(),
                ));
            }
        }
        Ok(suite)
    }

    /// SHA-256 of the canonical JSON of what determines the results (not the description).
    fn fingerprint(&self) -> String {
        let pdes: Vec<Value> = self
            .pdes
            .iter()
            .map(|p| {
                let source = match &p.source {
                    DataSource::Generate(j) => json!({"pde": j.pde, "n": j.n, "seed": j.seed,
                        "params": j.params, "samples_per_file": j.samples_per_file}),
                    DataSource::File(f) => json!({"file": f}),
                };
                json!({"name": p.name, "source": source, "base": p.base})
            })
            .collect();
        let methods: Vec<Value> = self
            .methods
            .iter()
            .map(|m| {
                json!({"name": m.name, "overrides": m.overrides, "base": m.base,
                       "conformal": m.conformal})
            })
            .collect();
        let mut v = json!({"name": self.name, "seeds": self.seeds, "samples": self.samples,
                       "rollout": self.rollout, "pdes": pdes, "methods": methods});
        // The default calibration leaves the fingerprint of suites written before it unchanged,
        // so their finished cells are kept (and given the calibrated variant) on a rerun.
        if self.conformal != Some(DEFAULT_CONFORMAL) {
            v["conformal"] = json!({"default": self.conformal});
        }
        pno_core::sha256_hex(v.to_string().as_bytes())
    }

    /// The unit a cell is scheduled with: its PDE, seed and the method that trains (a derived
    /// method runs in the same part as its base, which it reuses).
    pub fn unit_id(&self, c: Cell) -> String {
        let root = self.methods[c.method].base.unwrap_or(c.method);
        format!(
            "{}/{}/seed{}",
            self.pdes[c.pde].name, self.methods[root].name, c.seed
        )
    }

    /// The part (0-based, of `count`) that runs cell `c`: a hash of its unit's identity, so
    /// adding a seed, method or PDE never moves the other cells between parts.
    pub fn part_of(&self, c: Cell, count: usize) -> usize {
        let h = pno_core::sha256_hex(self.unit_id(c).as_bytes());
        let v = u64::from_str_radix(&h[..16], 16).unwrap_or(0);
        (v % count.max(1) as u64) as usize
    }

    /// All cells: for each PDE and seed, the methods in suite order (bases come first).
    pub fn cells(&self) -> Vec<Cell> {
        let mut out = Vec::new();
        for pde in 0..self.pdes.len() {
            for &seed in &self.seeds {
                for method in 0..self.methods.len() {
                    out.push(Cell { pde, method, seed });
                }
            }
        }
        out
    }

    /// `pde/method/seedK`.
    pub fn cell_id(&self, c: Cell) -> String {
        format!(
            "{}/{}/seed{}",
            self.pdes[c.pde].name, self.methods[c.method].name, c.seed
        )
    }

    pub(crate) fn cell_err(&self, c: Cell, e: BenchError) -> BenchError {
        BenchError::Cell {
            cell: self.cell_id(c),
            source: Box::new(e),
        }
    }

    /// The conformal calibration a cell reports beside its raw prediction: the suite's, for a
    /// method without its own `conformal` (whether the model has a spread and the PDE a
    /// calibration split is decided when the cell runs).
    pub fn default_conformal(&self, c: Cell) -> Option<Conformal> {
        if self.methods[c.method].conformal.is_some() {
            return None;
        }
        self.conformal
    }

    /// Calibration samples of a cell's run (`data.n_calibration`; 0 when there is no split).
    pub fn n_calibration(&self, c: Cell) -> usize {
        self.run_config(c)
            .ok()
            .and_then(|cfg| cfg.data_spec().ok())
            .map_or(0, |ds| ds.n_calibration)
    }

    /// The run config of a cell (for a derived method, its base's).
    pub fn run_config(&self, c: Cell) -> Result<RunConfig> {
        let m = &self.methods[c.method];
        let trained = m.base.unwrap_or(c.method);
        let mut v = self.pdes[c.pde].base.clone();
        merge(&mut v, &self.methods[trained].overrides);
        merge(&mut v, &json!({"train": {"seed": c.seed}}));
        RunConfig::from_value(v).map_err(|e| self.cell_err(c, e.into()))
    }
}

/// Part `index` (0-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// 0-based part index.
    pub index: usize,
    /// Number of parts.
    pub count: usize,
}

fn part_err(got: impl Into<String>) -> BenchError {
    BenchError::Option {
        option: "--cells".into(),
        expected: "I/K with 0 <= I < K <= 100000 (part I, 0-based, of K)".into(),
        got: got.into(),
    }
}

impl FromStr for Part {
    type Err = BenchError;
    fn from_str(s: &str) -> Result<Self> {
        let (i, k) = s.split_once('/').ok_or_else(|| part_err(s))?;
        let (index, count): (usize, usize) = (
            i.trim().parse().map_err(|_| part_err(s))?,
            k.trim().parse().map_err(|_| part_err(s))?,
        );
        if count == 0 || count > 100_000 || index >= count {
            return Err(part_err(s));
        }
        Ok(Part { index, count })
    }
}

impl Part {
    /// The part a job-array task runs, from its environment: Slurm (`SLURM_ARRAY_TASK_ID`
    /// relative to `SLURM_ARRAY_TASK_MIN`, of `SLURM_ARRAY_TASK_COUNT`) or a Kubernetes Indexed
    /// Job (`JOB_COMPLETION_INDEX` of `PNO_CELLS_COUNT`). `None` outside a job array.
    pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Option<Result<Part>> {
        let num = |k: &str| -> Option<Result<usize>> {
            get(k).map(|v| {
                v.trim().parse::<usize>().map_err(|_| BenchError::Option {
                    option: k.to_string(),
                    expected: "a non-negative integer".into(),
                    got: v,
                })
            })
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID") {
            let run = || -> Result<Part> {
                let id = id?;
                let min = num("SLURM_ARRAY_TASK_MIN").transpose()?.unwrap_or(0);
                let count = num("SLURM_ARRAY_TASK_COUNT").transpose()?.ok_or_else(|| {
                    part_err("SLURM_ARRAY_TASK_ID without SLURM_ARRAY_TASK_COUNT")
                })?;
                format!("{}/{count}", id.saturating_sub(min)).parse()
            };
            return Some(run());
        }
        if let Some(idx) = num("JOB_COMPLETION_INDEX") {
            let run = || -> Result<Part> {
                let idx = idx?;
                let count = num("PNO_CELLS_COUNT").transpose()?.ok_or_else(|| {
                    part_err("JOB_COMPLETION_INDEX without PNO_CELLS_COUNT (the job's completions)")
                })?;
                format!("{idx}/{count}").parse()
            };
            return Some(run());
        }
        None
    }
}
