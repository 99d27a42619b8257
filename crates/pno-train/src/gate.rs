//! Quality gates: a TOML file of checks a run's evaluation must pass before it is promoted.
//!
//! ```toml
//! [absolute]                      # thresholds on any metric `pno eval --json` reports
//! rel_l2 = { max = 0.12 }
//! calibration_error = { max = 0.05 }
//! coverage_90 = { min = 0.8, max = 0.98 }
//!
//! [coverage]                      # nominal coverage inside its binomial confidence interval
//! level = 0.9                     # one of 0.5, 0.8, 0.9, 0.95, 0.99 (checks coverage_90)
//! confidence = 0.99               # Wilson score interval at this confidence (default 0.99)
//! unit = "functions"              # effective sample size: functions (default) or points
//!
//! [performance]                   # measured on the evaluation inputs
//! batch = 16                      # inputs per predict call (default 16)
//! repeats = 20                    # predict calls timed (default 20)
//! p99_predict_ms = { max = 2000 }
//! peak_rss_mb = { max = 4000 }    # the process's high-water mark (Linux)
//!
//! [relative]                      # non-inferiority against the champion (same data and draws)
//! rel_l2 = { rel_margin = 0.02 }  # challenger ≤ champion × (1 + 0.02)
//! nll = { abs_margin = 0.1 }      # challenger ≤ champion + 0.1
//! coverage = { level = 0.9, tolerance = 0.01 }  # |cov − 0.9| ≤ |cov_champion − 0.9| + 0.01
//! ```
//!
//! Every gate also checks that every metric is finite. Unknown keys, unknown metrics, values out
//! of range and contradictory bounds are refused naming the key.
//!
//! The binomial check treats the pointwise coverage `p̂` of `n` evaluated functions (or points)
//! as a binomial proportion and passes when the nominal level lies inside the Wilson score
//! interval `(p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)`, `z = Φ⁻¹((1 + c)/2)`. Points of
//! one function are correlated, so `functions` (the default) is the conservative choice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;

use pno_models::burn::tensor::Device;
use pno_run::{GateRow, PredictRequest, TrainedModel};

use crate::error::{Result, TrainError};
use crate::eval::Evaluation;

/// Metrics where lower is better (the ones a relative margin may be put on).
pub const LOWER_IS_BETTER: [&str; 14] = [
    "rel_l2",
    "l2_abs",
    "rmse",
    "mse",
    "h1_rel",
    "nll",
    "crps",
    "crps_fair",
    "energy_score",
    "interval_width_90",
    "interval_score_90",
    "calibration_error",
    "miscalibration_area",
    "sharpness",
];

/// Every metric a gate may name (the keys of `pno eval --json`).
pub const METRICS: [&str; 21] = [
    "rel_l2",
    "l2_abs",
    "rmse",
    "mse",
    "h1_rel",
    "nll",
    "crps",
    "crps_fair",
    "energy_score",
    "coverage_50",
    "coverage_80",
    "coverage_90",
    "coverage_95",
    "coverage_99",
    "function_coverage_95",
    "interval_width_90",
    "interval_score_90",
    "calibration_error",
    "miscalibration_area",
    "sharpness",
    "spread_skill",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GateToml {
    #[serde(default)]
    absolute: BTreeMap<String, BoundToml>,
    coverage: Option<CoverageToml>,
    performance: Option<PerformanceToml>,
    #[serde(default)]
    relative: BTreeMap<String, MarginToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BoundToml {
    min: Option<f64>,
    max: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CoverageToml {
    level: f64,
    confidence: Option<f64>,
    unit: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PerformanceToml {
    batch: Option<usize>,
    repeats: Option<usize>,
    p99_predict_ms: Option<BoundToml>,
    peak_rss_mb: Option<BoundToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MarginToml {
    rel_margin: Option<f64>,
    abs_margin: Option<f64>,
    level: Option<f64>,
    tolerance: Option<f64>,
}

/// A bound on one value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    /// Lower bound (inclusive).
    pub min: Option<f64>,
    /// Upper bound (inclusive).
    pub max: Option<f64>,
}

impl Bound {
    fn holds(&self, v: f64) -> bool {
        v.is_finite() && self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }

    fn describe(&self, name: &str) -> String {
        match (self.min, self.max) {
            (Some(a), Some(b)) => format!("{a} <= {name} <= {b}"),
            (Some(a), None) => format!("{name} >= {a}"),
            (None, Some(b)) => format!("{name} <= {b}"),
            (None, None) => format!("{name} finite"),
        }
    }
}

/// Effective sample size of the binomial coverage check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoverageUnit {
    /// Evaluated functions (conservative: points of a function are correlated).
    Functions,
    /// Evaluated points.
    Points,
}

/// The binomial coverage check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoverageGate {
    /// Nominal level.
    pub level: f64,
    /// Confidence of the Wilson interval.
    pub confidence: f64,
    /// Effective sample size.
    pub unit: CoverageUnit,
}

/// The latency and memory checks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerformanceGate {
    /// Inputs per predict call.
    pub batch: usize,
    /// Predict calls timed.
    pub repeats: usize,
    /// Bound on the 99th-percentile predict latency (ms).
    pub p99_predict_ms: Option<Bound>,
    /// Bound on the process's peak resident memory (MiB).
    pub peak_rss_mb: Option<Bound>,
}

/// A non-inferiority margin against the champion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Margin {
    /// challenger ≤ champion × (1 + m).
    Relative(f64),
    /// challenger ≤ champion + m.
    Absolute(f64),
}

/// A validated gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// Absolute bounds per metric.
    pub absolute: BTreeMap<String, Bound>,
    /// The binomial coverage check.
    pub coverage: Option<CoverageGate>,
    /// Latency and memory.
    pub performance: Option<PerformanceGate>,
    /// Non-inferiority margins per metric.
    pub relative: BTreeMap<String, Margin>,
    /// Coverage not further from nominal than the champion's (level, tolerance).
    pub relative_coverage: Option<(f64, f64)>,
}

impl Default for Gate {
    /// The checks `pno promote` applies without a gate file: finite metrics and
    /// non-inferiority against the champion (rel-L2 and CRPS within 5 %, NLL within 0.5,
    /// 90 % coverage not more than 0.05 further from nominal).
    fn default() -> Self {
        Self {
            absolute: BTreeMap::new(),
            coverage: None,
            performance: None,
            relative: BTreeMap::from([
                ("rel_l2".to_string(), Margin::Relative(0.05)),
                ("crps".to_string(), Margin::Relative(0.05)),
                ("nll".to_string(), Margin::Absolute(0.5)),
            ]),
            relative_coverage: Some((0.9, 0.05)),
        }
    }
}

fn coverage_metric(level: f64) -> Option<&'static str> {
    [
        (0.5, "coverage_50"),
        (0.8, "coverage_80"),
        (0.9, "coverage_90"),
        (0.95, "coverage_95"),
        (0.99, "coverage_99"),
    ]
    .into_iter()
    .find(|(l, _)| (l - level).abs() < 1e-9)
    .map(|(_, m)| m)
}

impl Gate {
    /// Reads and validates a gate file (TOML) and returns it with the SHA-256 of its bytes.
    pub fn load(path: &Path) -> Result<(Gate, String)> {
        let bytes = std::fs::read(path).map_err(|source| TrainError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        })?;
        let text =
            std::str::from_utf8(&bytes).map_err(|e| gate_err(path, "file", "UTF-8 text", e))?;
        let value: serde_json::Value =
            toml_to_json(text).map_err(|e| gate_err(path, "file", "a TOML document", e))?;
        Ok((Gate::from_value(value, path)?, pno_core::sha256_hex(&bytes)))
    }

    /// Validates a gate given as a JSON value (a parsed TOML document); `path` names it in errors.
    pub fn from_value(value: serde_json::Value, path: &Path) -> Result<Gate> {
        let raw: GateToml = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            gate_err(
                path,
                if key == "." { "file" } else { &key },
                "the documented keys: [absolute], [coverage], [performance], [relative]",
                e.into_inner(),
            )
        })?;
        let bound = |key: &str, b: &BoundToml| -> Result<Bound> {
            for (k, v) in [("min", b.min), ("max", b.max)] {
                if let Some(v) = v
                    && !v.is_finite()
                {
                    return Err(gate_err(path, &format!("{key}.{k}"), "a finite number", v));
                }
            }
            match (b.min, b.max) {
                (None, None) => Err(gate_err(path, key, "min and/or max", "neither")),
                (Some(a), Some(c)) if a > c => Err(gate_err(
                    path,
                    key,
                    "min <= max",
                    format!("min {a} > max {c}"),
                )),
                _ => Ok(Bound {
                    min: b.min,
                    max: b.max,
                }),
            }
        };
        let mut absolute = BTreeMap::new();
        for (name, b) in &raw.absolute {
            let key = format!("absolute.{name}");
            if !METRICS.contains(&name.as_str()) {
                return Err(gate_err(
                    path,
                    &key,
                    format!("a metric ({})", METRICS.join(", ")),
                    name,
                ));
            }
            absolute.insert(name.clone(), bound(&key, b)?);
        }
        let level_ok = |key: &str, l: f64| -> Result<f64> {
            coverage_metric(l)
                .map(|_| l)
                .ok_or_else(|| gate_err(path, key, "one of 0.5, 0.8, 0.9, 0.95, 0.99", l))
        };
        let coverage = match &raw.coverage {
            None => None,
            Some(c) => {
                let level = level_ok("coverage.level", c.level)?;
                let confidence = c.confidence.unwrap_or(0.99);
                if !(confidence > 0.0 && confidence < 1.0) {
                    return Err(gate_err(
                        path,
                        "coverage.confidence",
                        "a probability in (0, 1)",
                        confidence,
                    ));
                }
                let unit = match c.unit.as_deref().unwrap_or("functions") {
                    "functions" => CoverageUnit::Functions,
                    "points" => CoverageUnit::Points,
                    o => return Err(gate_err(path, "coverage.unit", "functions or points", o)),
                };
                Some(CoverageGate {
                    level,
                    confidence,
                    unit,
                })
            }
        };
        let performance = match &raw.performance {
            None => None,
            Some(p) => {
                let batch = p.batch.unwrap_or(16);
                if !(1..=4096).contains(&batch) {
                    return Err(gate_err(path, "performance.batch", "1..=4096", batch));
                }
                let repeats = p.repeats.unwrap_or(20);
                if !(1..=10_000).contains(&repeats) {
                    return Err(gate_err(path, "performance.repeats", "1..=10000", repeats));
                }
                let p99 = p
                    .p99_predict_ms
                    .as_ref()
                    .map(|b| bound("performance.p99_predict_ms", b))
                    .transpose()?;
                let rss = p
                    .peak_rss_mb
                    .as_ref()
                    .map(|b| bound("performance.peak_rss_mb", b))
                    .transpose()?;
                if p99.is_none() && rss.is_none() {
                    return Err(gate_err(
                        path,
                        "performance",
                        "p99_predict_ms and/or peak_rss_mb",
                        "neither",
                    ));
                }
                Some(PerformanceGate {
                    batch,
                    repeats,
                    p99_predict_ms: p99,
                    peak_rss_mb: rss,
                })
            }
        };
        let mut relative = BTreeMap::new();
        let mut relative_coverage = None;
        for (name, m) in &raw.relative {
            let key = format!("relative.{name}");
            if name == "coverage" {
                if m.rel_margin.is_some() || m.abs_margin.is_some() {
                    return Err(gate_err(
                        path,
                        &key,
                        "level and tolerance (no margins)",
                        "a margin",
                    ));
                }
                let level = level_ok(
                    &format!("{key}.level"),
                    m.level.ok_or_else(|| {
                        gate_err(path, &format!("{key}.level"), "a nominal level", "none")
                    })?,
                )?;
                let tol = m.tolerance.unwrap_or(0.0);
                if !(0.0..=1.0).contains(&tol) {
                    return Err(gate_err(
                        path,
                        &format!("{key}.tolerance"),
                        "a number in [0, 1]",
                        tol,
                    ));
                }
                relative_coverage = Some((level, tol));
                continue;
            }
            if !LOWER_IS_BETTER.contains(&name.as_str()) {
                return Err(gate_err(
                    path,
                    &key,
                    format!(
                        "coverage or a lower-is-better metric ({})",
                        LOWER_IS_BETTER.join(", ")
                    ),
                    name,
                ));
            }
            if m.level.is_some() || m.tolerance.is_some() {
                return Err(gate_err(
                    path,
                    &key,
                    "rel_margin or abs_margin",
                    "level/tolerance",
                ));
            }
            let margin = match (m.rel_margin, m.abs_margin) {
                (Some(r), None) if r.is_finite() && r >= 0.0 => Margin::Relative(r),
                (None, Some(a)) if a.is_finite() && a >= 0.0 => Margin::Absolute(a),
                (Some(_), Some(_)) => {
                    return Err(gate_err(
                        path,
                        &key,
                        "one of rel_margin and abs_margin",
                        "both",
                    ));
                }
                (None, None) => {
                    return Err(gate_err(path, &key, "rel_margin or abs_margin", "neither"));
                }
                (r, a) => {
                    return Err(gate_err(
                        path,
                        &key,
                        "a non-negative finite margin",
                        r.or(a).unwrap_or(f64::NAN),
                    ));
                }
            };
            relative.insert(name.clone(), margin);
        }
        Ok(Gate {
            absolute,
            coverage,
            performance,
            relative,
            relative_coverage,
        })
    }

    /// Whether the gate compares against a champion.
    pub fn has_relative(&self) -> bool {
        !self.relative.is_empty() || self.relative_coverage.is_some()
    }

    /// Every check of the gate on `challenger` (and `champion`, when there is one; without one
    /// the relative checks are skipped).
    pub fn check(&self, challenger: &Evidence, champion: Option<&Evidence>) -> Vec<GateRow> {
        let m = &challenger.metrics;
        let get = |e: &Evidence, k: &str| e.metrics.get(k).copied().unwrap_or(f64::NAN);
        let mut rows = Vec::new();
        let bad: Vec<&String> = m
            .iter()
            .filter(|(_, v)| !v.is_finite())
            .map(|(k, _)| k)
            .collect();
        rows.push(GateRow {
            check: "every metric finite".into(),
            metric: if bad.is_empty() {
                "all".into()
            } else {
                bad.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            value: bad.len() as f64,
            threshold: "0 non-finite".into(),
            champion: None,
            passed: bad.is_empty(),
        });
        for (name, b) in &self.absolute {
            let v = get(challenger, name);
            rows.push(GateRow {
                check: b.describe(name),
                metric: name.clone(),
                value: v,
                threshold: b.describe(name),
                champion: None,
                passed: b.holds(v),
            });
        }
        if let Some(c) = &self.coverage
            && let Some(metric) = coverage_metric(c.level)
        {
            let v = get(challenger, metric);
            let (n, unit) = match c.unit {
                CoverageUnit::Functions => (challenger.n_functions, "functions"),
                CoverageUnit::Points => (challenger.n_points, "points"),
            };
            let (lo, hi) = wilson_interval(v, n, c.confidence);
            rows.push(GateRow {
                check: format!("{metric} consistent with nominal {}", c.level),
                metric: metric.into(),
                value: v,
                threshold: format!(
                    "{} in [{lo:.4}, {hi:.4}] (Wilson {}%, n = {n} {unit})",
                    c.level,
                    c.confidence * 100.0
                ),
                champion: None,
                passed: lo <= c.level && c.level <= hi,
            });
        }
        if let Some(p) = &self.performance {
            let perf = challenger.performance;
            if let Some(b) = &p.p99_predict_ms {
                let v = perf.map_or(f64::NAN, |x| x.p99_predict_ms);
                rows.push(GateRow {
                    check: format!("{} at batch {}", b.describe("p99_predict_ms"), p.batch),
                    metric: "p99_predict_ms".into(),
                    value: v,
                    threshold: b.describe("p99_predict_ms"),
                    champion: None,
                    passed: b.holds(v),
                });
            }
            if let Some(b) = &p.peak_rss_mb {
                let v = perf.and_then(|x| x.peak_rss_mb).unwrap_or(f64::NAN);
                rows.push(GateRow {
                    check: format!("{} (process high-water mark)", b.describe("peak_rss_mb")),
                    metric: "peak_rss_mb".into(),
                    value: v,
                    threshold: b.describe("peak_rss_mb"),
                    champion: None,
                    passed: b.holds(v),
                });
            }
        }
        if let Some(ch) = champion {
            for (name, margin) in &self.relative {
                let (v, c) = (get(challenger, name), get(ch, name));
                let limit = match margin {
                    Margin::Relative(r) => c + c.abs() * r,
                    Margin::Absolute(a) => c + a,
                };
                let desc = match margin {
                    Margin::Relative(r) => format!("<= champion × (1 + {r}) = {limit:.6e}"),
                    Margin::Absolute(a) => format!("<= champion + {a} = {limit:.6e}"),
                };
                rows.push(GateRow {
                    check: format!("{name} not worse than the champion"),
                    metric: name.clone(),
                    value: v,
                    threshold: desc,
                    champion: Some(c),
                    passed: v.is_finite() && v <= limit,
                });
            }
            if let Some((level, tol)) = self.relative_coverage
                && let Some(metric) = coverage_metric(level)
            {
                let (v, c) = (get(challenger, metric), get(ch, metric));
                let limit = (c - level).abs() + tol;
                rows.push(GateRow {
                    check: format!("{metric} not further from {level} than the champion"),
                    metric: metric.into(),
                    value: v,
                    threshold: format!("|{metric} - {level}| <= {limit:.4}"),
                    champion: Some(c),
                    passed: v.is_finite() && (v - level).abs() <= limit + 1e-12,
                });
            }
        }
        rows
    }
}

/// Latency and memory measured for a gate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Performance {
    /// 99th-percentile wall time of one predict call (ms).
    pub p99_predict_ms: f64,
    /// Peak resident memory of the process (MiB), where the platform reports it.
    pub peak_rss_mb: Option<f64>,
}

/// What a gate judges: the metrics of an evaluation and how many functions and points they
/// cover, plus latency and memory when measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// Metrics by name (`pno eval --json` keys).
    pub metrics: BTreeMap<String, f64>,
    /// Functions evaluated.
    pub n_functions: usize,
    /// Points evaluated (functions × channels × grid points).
    pub n_points: usize,
    /// Latency and memory.
    pub performance: Option<Performance>,
}

impl Evidence {
    /// The evidence of an evaluation.
    pub fn of(e: &Evaluation) -> Result<Self> {
        let value = serde_json::to_value(&e.report).map_err(|err| TrainError::Corrupt {
            path: PathBuf::new(),
            what: "metrics".into(),
            expected: "serialisable metrics".into(),
            got: err.to_string(),
        })?;
        let metrics = value
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| {
                        Some((k.clone(), v.as_f64().unwrap_or(f64::NAN))).filter(|_| !v.is_null())
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            metrics,
            n_functions: e.n,
            n_points: e.y.len(),
            performance: None,
        })
    }
}

/// Times `gate.repeats` predict calls of `gate.batch` inputs taken (cyclically) from `x`
/// (`[n, in, points]` on `grid`) with `n_samples` draws, and reads the process's peak memory.
pub fn measure(
    trained: &TrainedModel,
    x: &[f32],
    grid: &[usize],
    gate: &PerformanceGate,
    n_samples: usize,
    device: &Device,
) -> Result<Performance> {
    let per = trained.file.in_channels * grid.iter().product::<usize>();
    let n = x.len() / per.max(1);
    if n == 0 {
        return Err(TrainError::Option {
            option: "performance".into(),
            expected: "evaluation inputs to time".into(),
            got: "none".into(),
        });
    }
    let batch: Vec<f32> = (0..gate.batch)
        .flat_map(|i| x[(i % n) * per..(i % n + 1) * per].iter().copied())
        .collect();
    let req = PredictRequest {
        x: &batch,
        n: gate.batch,
        grid,
        n_samples,
        seed: 0,
        batch: gate.batch,
        cancel: None,
    };
    let mut ms = Vec::with_capacity(gate.repeats);
    for _ in 0..gate.repeats {
        let t = Instant::now();
        trained.predict(&req, device)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    // Nearest-rank 99th percentile.
    let rank = ((0.99 * ms.len() as f64).ceil() as usize).clamp(1, ms.len());
    Ok(Performance {
        p99_predict_ms: ms[rank - 1],
        peak_rss_mb: peak_rss_mb(),
    })
}

/// The process's resident-memory high-water mark in MiB (`VmHWM`, Linux); `None` elsewhere.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Wilson score interval of a binomial proportion `p_hat` observed on `n` trials at
/// `confidence` (two-sided). `n = 0` gives `[0, 1]`.
pub fn wilson_interval(p_hat: f64, n: usize, confidence: f64) -> (f64, f64) {
    if n == 0 || !p_hat.is_finite() {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let z = pno_metrics::normal_quantile(0.5 + confidence / 2.0);
    let z2 = z * z;
    let centre = (p_hat + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z * (p_hat * (1.0 - p_hat) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

fn gate_err(
    path: &Path,
    key: &str,
    expected: impl Into<String>,
    got: impl std::fmt::Display,
) -> TrainError {
    TrainError::Gate {
        path: path.to_path_buf(),
        key: key.to_string(),
        expected: expected.into(),
        got: got.to_string(),
    }
}

fn toml_to_json(text: &str) -> std::result::Result<serde_json::Value, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    serde_json::to_value(table).map_err(|e| e.to_string())
}
