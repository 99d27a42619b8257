//! [`check`]: the data-quality gate, and the summary statistics (`stats.json`) it stores for
//! later drift detection.
//!
//! Our format is streamed file by file: memory holds one file plus a 16-byte hash per sample.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use pno_core::{Split, SplitFractions, SplitIndices, SplitPlan};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::manifest::{MANIFEST_FILE, manifest_file_name};
use crate::source::{Format, SampleSet, open_any};
use crate::stats::Moments;
use crate::tensor::Tensor;
use pno_core::sha256_file;

/// File name of the stored statistics, next to the manifest.
pub const STATS_FILE: &str = "stats.json";
/// Quantile levels stored in `stats.json`.
pub const QUANTILE_LEVELS: [f64; 9] = [0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999];
/// Number of histogram bins stored in `stats.json` (edges evenly spaced from min to max).
pub const HISTOGRAM_BINS: usize = 20;
/// Fine bins used to estimate quantiles in one streaming pass (resolution (max−min)/1000).
const FINE_BINS: usize = 1000;
/// At most this many indices are listed in a detail.
const LIST: usize = 10;

/// The splits the leakage check compares.
#[derive(Debug, Clone, PartialEq)]
pub enum LeakageSplits {
    /// Contiguous fractions in sample order.
    Fractions(SplitFractions),
    /// The seeded plan training carves (`pno train` checks its data with its own plan, so the
    /// gate tests the splits training really uses).
    Plan(SplitPlan),
    /// The indices a run recorded (`provenance.json` → `splits`).
    Indices(SplitIndices),
}

impl Default for LeakageSplits {
    fn default() -> Self {
        Self::Fractions(SplitFractions::default())
    }
}

impl LeakageSplits {
    /// The split of every sample `0..n` (`None`: used by no split).
    fn labels(&self, n: usize) -> Result<Vec<Option<Split>>> {
        Ok(match self {
            Self::Fractions(f) => {
                f.validate()?;
                f.labels(n)
            }
            Self::Plan(p) => p.carve(n)?.labels(n),
            Self::Indices(s) => {
                if let Some(&bad) = Split::ALL
                    .into_iter()
                    .flat_map(|sp| s.get(sp))
                    .find(|&&i| i >= n)
                {
                    return Err(pno_core::Error::Invalid {
                        field: "splits",
                        expected: format!("sample indices below the dataset's {n} samples"),
                        got: bad.to_string(),
                    }
                    .into());
                }
                s.labels(n)
            }
        })
    }

    /// How the splits were laid out, for the report.
    fn describe(&self, labels: &[Option<Split>]) -> String {
        let count = |s: Split| labels.iter().filter(|l| **l == Some(s)).count();
        let parts: Vec<String> = Split::ALL
            .into_iter()
            .filter(|&s| count(s) > 0)
            .map(|s| match self {
                Self::Fractions(f) => f
                    .ranges(labels.len())
                    .into_iter()
                    .find(|(sp, _)| *sp == s)
                    .map_or(String::new(), |(_, r)| {
                        format!("{} {}..{}", s.name(), r.start, r.end)
                    }),
                Self::Plan(_) | Self::Indices(_) => format!("{} {}", s.name(), count(s)),
            })
            .collect();
        match self {
            Self::Fractions(_) => parts.join(", "),
            Self::Plan(p) => format!("{}; seeded plan, seed {}", parts.join(", "), p.seed),
            Self::Indices(_) => format!("{}; recorded indices", parts.join(", ")),
        }
    }
}

/// Options of [`check`].
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The splits of the leakage check (default: contiguous train 0.8 / test 0.2).
    pub splits: LeakageSplits,
    /// Where to write `stats.json` for a non-directory input (directories get `<dir>/stats.json`).
    pub stats_out: Option<PathBuf>,
    /// Whether to write statistics at all when every check passes.
    pub write_stats: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            splits: LeakageSplits::default(),
            stats_out: None,
            write_stats: true,
        }
    }
}

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Pass,
    /// Suspicious but not disqualifying.
    Warn,
    /// The dataset must not be used as is.
    Fail,
    /// Not applicable to this input.
    Skip,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        })
    }
}

/// One named check with a precise detail.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// Check name (`finite`, `checksums`, `leakage`, ...).
    pub name: String,
    /// Outcome.
    pub status: Status,
    /// What was found: files, tensors, sample indices, expected vs found.
    pub detail: String,
}

/// The result of [`check`].
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The path checked.
    pub path: String,
    /// Its format.
    pub format: Format,
    /// Samples seen.
    pub n_samples: usize,
    /// Every check, in a fixed order.
    pub checks: Vec<CheckResult>,
    /// Where `stats.json` was written, if it was.
    pub stats_file: Option<String>,
}

impl CheckReport {
    /// `true` unless some check failed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }

    /// The check called `name`.
    pub fn get(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The failed checks.
    pub fn failures(&self) -> Vec<&CheckResult> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .collect()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "check {} ({}, {} samples)",
            self.path, self.format, self.n_samples
        )?;
        for c in &self.checks {
            writeln!(f, "  {} {:<16} {}", c.status, c.name, c.detail)?;
        }
        if let Some(s) = &self.stats_file {
            writeln!(f, "statistics written to {s}")?;
        }
        let fails = self.failures().len();
        if fails == 0 {
            write!(f, "result: passed")
        } else {
            write!(
                f,
                "result: FAILED ({fails} check{})",
                if fails == 1 { "" } else { "s" }
            )
        }
    }
}

/// One chunk of samples: origin (a file), global index of the first sample, tensors.
type Chunk = (String, usize, Vec<(String, Tensor)>);

/// Where samples come from: a dataset folder (streamed) or an in-memory sample view.
enum Chunks {
    Dataset(Box<Dataset>),
    Memory(SampleSet, String),
}

impl Chunks {
    fn count(&self) -> usize {
        match self {
            Chunks::Dataset(d) => d.manifest().files.len(),
            Chunks::Memory(..) => 1,
        }
    }

    /// Chunk `i`: its origin (a file), global index of its first sample and its tensors.
    fn load(&self, i: usize) -> Result<Chunk> {
        match self {
            Chunks::Dataset(d) => {
                let e = d
                    .manifest()
                    .files
                    .get(i)
                    .ok_or_else(|| Error::invalid("file index", "in range", i.to_string()))?;
                let origin = d.dir().join(&e.path).display().to_string();
                Ok((origin, e.first_sample, d.read_file(i)?))
            }
            Chunks::Memory(s, origin) => Ok((origin.clone(), 0, s.tensors.clone())),
        }
    }
}

/// Per-tensor accumulators of the first pass.
#[derive(Default, Clone)]
struct TensorAcc {
    name: String,
    dtype: String,
    sample_shape: Vec<usize>,
    moments: Moments,
    channels: Vec<Moments>,
    nan: u64,
    inf: u64,
    first_bad: Option<usize>,
    bad_samples: u64,
    constant: Vec<usize>,
    n_constant: usize,
}

fn list(v: &[usize]) -> String {
    let shown: Vec<String> = v.iter().take(LIST).map(|i| i.to_string()).collect();
    if v.len() > LIST {
        format!("[{}, … {} more]", shown.join(", "), v.len() - LIST)
    } else {
        format!("[{}]", shown.join(", "))
    }
}

fn result(name: &str, status: Status, detail: impl Into<String>) -> CheckResult {
    CheckResult {
        name: name.to_string(),
        status,
        detail: detail.into(),
    }
}

/// Channel axis of a per-sample shape: 1 for trajectories `[t, c, ...]`, else 0 (`[c, ...]`).
fn channel_layout(sample_shape: &[usize], trajectory: bool) -> (usize, usize) {
    let axis = if trajectory { 1 } else { 0 };
    if sample_shape.len() < axis + 2 {
        return (1, sample_shape.iter().product::<usize>().max(1));
    }
    let c = sample_shape.get(axis).copied().unwrap_or(1).max(1);
    let inner: usize = sample_shape
        .get(axis + 1..)
        .unwrap_or_default()
        .iter()
        .product::<usize>()
        .max(1);
    (c, inner)
}

/// Runs the data-quality gate on `path` (any format [`open_any`] reads).
///
/// Checks: `shard_parts`, `sample_counts`, `checksums`, `shapes_dtypes`, `finite`, `ranges`,
/// `constant_samples`, `duplicates`, `leakage`. Only I/O-level problems (a missing path, an
/// unreadable external file) are errors; everything wrong with the data is a failed check.
/// When every check passes and `opts.write_stats`, writes `stats.json` next to the manifest
/// (or to `opts.stats_out` for a single-file input).
pub fn check(path: &Path, opts: &CheckOptions) -> Result<CheckReport> {
    if let LeakageSplits::Fractions(f) = &opts.splits {
        f.validate()?;
    }
    let mut checks = Vec::new();
    let is_dir = path.is_dir();
    let (chunks, format, n_samples, trajectory, stored) = if is_dir {
        let (ds, count, missing) = Dataset::open_lenient(path)?;
        let m = ds.manifest().clone();
        if missing.is_empty() {
            checks.push(result(
                "shard_parts",
                Status::Pass,
                format!("{count} part(s) present"),
            ));
        } else {
            let names: Vec<String> = missing
                .iter()
                .map(|&i| manifest_file_name(pno_core::ShardSpec { index: i, count }))
                .collect();
            checks.push(result(
                "shard_parts",
                Status::Fail,
                format!(
                    "{} of {count} parts missing: {}",
                    missing.len(),
                    names.join(", ")
                ),
            ));
        }
        let present: usize = m.files.iter().map(|f| f.n_samples).sum();
        let coverage = if missing.is_empty() {
            m.validate(&path.join(MANIFEST_FILE)).err()
        } else {
            None
        };
        match coverage {
            _ if present != m.n_samples => checks.push(result(
                "sample_counts",
                Status::Fail,
                format!(
                    "manifest n_samples {} but files hold {present}",
                    m.n_samples
                ),
            )),
            Some(e) => checks.push(result("sample_counts", Status::Fail, e.to_string())),
            None => checks.push(result(
                "sample_counts",
                Status::Pass,
                format!("{present} samples in {} file(s)", m.files.len()),
            )),
        }
        let mut bad = Vec::new();
        for e in &m.files {
            let fp = path.join(&e.path);
            match sha256_file(&fp) {
                Ok(got) if got == e.sha256 => {}
                Ok(got) => bad.push(format!(
                    "{}: expected sha256 {}, got {got}",
                    fp.display(),
                    e.sha256
                )),
                Err(err) => bad.push(err.to_string()),
            }
        }
        if bad.is_empty() {
            checks.push(result(
                "checksums",
                Status::Pass,
                format!("{} file(s) verified", m.files.len()),
            ));
        } else {
            checks.push(result("checksums", Status::Fail, bad.join("; ")));
        }
        let trajectory = m.times.is_some();
        let stored: Vec<(String, Moments)> = m
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.stats))
            .collect();
        let n = m.n_samples;
        (
            Chunks::Dataset(Box::new(ds)),
            Format::Pno,
            n,
            trajectory,
            Some(stored),
        )
    } else {
        let src = open_any(path)?;
        let samples = src.to_samples()?;
        for name in ["shard_parts", "checksums"] {
            checks.push(result(name, Status::Skip, "no manifest"));
        }
        checks.push(result(
            "sample_counts",
            Status::Pass,
            format!(
                "{} samples (leading axis of every sample tensor)",
                samples.n_samples
            ),
        ));
        let trajectory = samples.times.is_some();
        let n = samples.n_samples;
        let stored = src.manifest.as_ref().map(|m| {
            m.tensors
                .iter()
                .map(|t| (t.name.clone(), t.stats))
                .collect()
        });
        (
            Chunks::Memory(samples, path.display().to_string()),
            src.format,
            n,
            trajectory,
            stored,
        )
    };

    // First pass: shapes, finiteness, moments, constant samples, input hashes.
    let mut accs: Vec<TensorAcc> = Vec::new();
    let mut shape_problems = Vec::new();
    // (global sample index, hash of its input tensor); grows with the data actually read.
    let mut hashes: Vec<(usize, [u8; 16])> = Vec::new();
    for i in 0..chunks.count() {
        let (origin, first, tensors) = match chunks.load(i) {
            Ok(c) => c,
            Err(e) => {
                shape_problems.push(e.to_string());
                continue;
            }
        };
        if accs.is_empty() {
            accs = tensors
                .iter()
                .map(|(name, t)| {
                    let sample_shape = t.shape().get(1..).unwrap_or_default().to_vec();
                    let (c, _) = channel_layout(&sample_shape, trajectory);
                    TensorAcc {
                        name: name.clone(),
                        dtype: t.dtype().name().to_string(),
                        sample_shape,
                        channels: vec![Moments::default(); c],
                        ..TensorAcc::default()
                    }
                })
                .collect();
        }
        for (ti, (name, t)) in tensors.iter().enumerate() {
            let Some(acc) = accs.get_mut(ti).filter(|a| a.name == *name) else {
                shape_problems.push(format!(
                    "{origin}: tensor {name} not expected at position {ti}"
                ));
                continue;
            };
            let sample_shape = t.shape().get(1..).unwrap_or_default();
            if sample_shape != acc.sample_shape.as_slice() || t.dtype().name() != acc.dtype {
                shape_problems.push(format!(
                    "{origin}: tensor {name}: expected {} {:?} per sample, got {} {:?}",
                    acc.dtype,
                    acc.sample_shape,
                    t.dtype(),
                    sample_shape
                ));
                continue;
            }
            let m = t.shape().first().copied().unwrap_or(0);
            let per: usize = sample_shape.iter().product();
            let (c, inner) = channel_layout(sample_shape, trajectory);
            let values = t.to_f64_vec();
            for s in 0..m {
                let global = first + s;
                let Some(sample) = values.get(s * per..(s + 1) * per) else {
                    continue;
                };
                let mut bad = false;
                for (k, &v) in sample.iter().enumerate() {
                    if v.is_nan() {
                        acc.nan += 1;
                        bad = true;
                    } else if v.is_infinite() {
                        acc.inf += 1;
                        bad = true;
                    }
                    acc.moments.push(v);
                    if let Some(ch) = acc.channels.get_mut((k / inner) % c) {
                        ch.push(v);
                    }
                }
                if bad {
                    acc.bad_samples += 1;
                    acc.first_bad.get_or_insert(global);
                }
                if per > 1 && sample.iter().all(|&v| v == sample[0]) {
                    acc.n_constant += 1;
                    if acc.constant.len() < LIST {
                        acc.constant.push(global);
                    }
                }
                if ti == 0 {
                    let mut hasher = Sha256::new();
                    for v in sample {
                        hasher.update(v.to_le_bytes());
                    }
                    let d = hasher.finalize();
                    let mut a = [0u8; 16];
                    a.copy_from_slice(d.get(..16).unwrap_or(&[0u8; 16]));
                    hashes.push((global, a));
                }
            }
        }
    }
    if shape_problems.is_empty() {
        let desc: Vec<String> = accs
            .iter()
            .map(|a| format!("{}: {} {:?}", a.name, a.dtype, a.sample_shape))
            .collect();
        checks.push(result(
            "shapes_dtypes",
            Status::Pass,
            format!("per sample {}", desc.join(", ")),
        ));
    } else {
        checks.push(result(
            "shapes_dtypes",
            Status::Fail,
            shape_problems.join("; "),
        ));
    }

    // Finite values.
    let bad: Vec<String> = accs
        .iter()
        .filter(|a| a.nan + a.inf > 0)
        .map(|a| {
            format!(
                "tensor {}: {} NaN, {} Inf in {} sample(s), first at sample {}",
                a.name,
                a.nan,
                a.inf,
                a.bad_samples,
                a.first_bad.unwrap_or(0)
            )
        })
        .collect();
    checks.push(if bad.is_empty() {
        result("finite", Status::Pass, "no NaN or Inf")
    } else {
        result("finite", Status::Fail, bad.join("; "))
    });

    // Ranges against the manifest's stored statistics.
    match &stored {
        None => checks.push(result("ranges", Status::Skip, "no stored statistics")),
        Some(stored) => {
            let mut fails = Vec::new();
            let mut warns = Vec::new();
            for a in &accs {
                let Some((_, s)) = stored.iter().find(|(n, _)| *n == a.name) else {
                    continue;
                };
                let m = &a.moments;
                let tol = |x: f64| 1e-6 * x.abs().max(1.0);
                if m.count > 0 && (m.min < s.min - tol(s.min) || m.max > s.max + tol(s.max)) {
                    fails.push(format!(
                        "tensor {}: values in [{:e}, {:e}] outside the manifest's [{:e}, {:e}]",
                        a.name, m.min, m.max, s.min, s.max
                    ));
                } else if m.count != s.count
                    || (m.mean - s.mean).abs() > tol(s.mean) * 10.0
                    || (m.std - s.std).abs() > tol(s.std) * 10.0
                {
                    warns.push(format!(
                        "tensor {}: count/mean/std {}/{:e}/{:e} differ from the manifest's {}/{:e}/{:e}",
                        a.name, m.count, m.mean, m.std, s.count, s.mean, s.std
                    ));
                }
            }
            checks.push(if !fails.is_empty() {
                result("ranges", Status::Fail, fails.join("; "))
            } else if !warns.is_empty() {
                result("ranges", Status::Warn, warns.join("; "))
            } else {
                result(
                    "ranges",
                    Status::Pass,
                    "values within the manifest's min/max; mean/std agree",
                )
            });
        }
    }

    // Constant samples.
    let consts: Vec<String> = accs
        .iter()
        .filter(|a| a.n_constant > 0)
        .map(|a| {
            format!(
                "tensor {}: {} constant sample(s) {}",
                a.name,
                a.n_constant,
                list(&a.constant)
            )
        })
        .collect();
    checks.push(if consts.is_empty() {
        result("constant_samples", Status::Pass, "every sample varies")
    } else {
        result("constant_samples", Status::Warn, consts.join("; "))
    });

    // Duplicates and leakage on the input tensor (the first one).
    let labels = opts.splits.labels(n_samples)?;
    let split_of = |i: usize| labels.get(i).copied().flatten();
    let mut seen: HashMap<[u8; 16], usize> = HashMap::new();
    let mut dups = Vec::new();
    let mut leaks = Vec::new();
    let mut n_dups = 0usize;
    let mut n_leaks = 0usize;
    for (i, h) in &hashes {
        let i = *i;
        match seen.get(h) {
            Some(&j) => {
                let (sj, si) = (split_of(j), split_of(i));
                if let (Some(sj), Some(si)) = (sj, si)
                    && sj != si
                {
                    n_leaks += 1;
                    if leaks.len() < LIST {
                        leaks.push(format!(
                            "{} sample {j} = {} sample {i}",
                            sj.name(),
                            si.name()
                        ));
                    }
                } else {
                    n_dups += 1;
                    if dups.len() < LIST {
                        dups.push(format!("{j} = {i}"));
                    }
                }
            }
            None => {
                seen.insert(*h, i);
            }
        }
    }
    let input = accs.first().map_or("?".to_string(), |a| a.name.clone());
    checks.push(if n_dups == 0 {
        result(
            "duplicates",
            Status::Pass,
            format!("no duplicate {input} within a split"),
        )
    } else {
        result(
            "duplicates",
            Status::Warn,
            format!(
                "{n_dups} duplicate {input} within a split: {}",
                dups.join(", ")
            ),
        )
    });
    let split_desc = opts.splits.describe(&labels);
    checks.push(if n_leaks == 0 {
        result(
            "leakage",
            Status::Pass,
            format!("no identical {input} across splits ({split_desc})"),
        )
    } else {
        result(
            "leakage",
            Status::Fail,
            format!(
                "{n_leaks} identical {input} across splits ({split_desc}): {}",
                leaks.join(", ")
            ),
        )
    });

    let mut report = CheckReport {
        path: path.display().to_string(),
        format,
        n_samples,
        checks,
        stats_file: None,
    };
    if report.passed() && opts.write_stats {
        let target = if is_dir {
            Some(path.join(STATS_FILE))
        } else {
            opts.stats_out.clone()
        };
        if let Some(target) = target {
            let stats = summary_stats(&chunks, &accs, trajectory, path, n_samples)?;
            let mut bytes = serde_json::to_vec_pretty(&stats)
                .map_err(|e| Error::invalid("statistics", "serialisable values", e.to_string()))?;
            bytes.push(b'\n');
            pno_core::atomic_write(&target, &bytes)?;
            report.stats_file = Some(target.display().to_string());
        }
    }
    Ok(report)
}

/// Histogram with fixed, evenly spaced edges.
#[derive(Debug, Clone, Serialize)]
struct Histogram {
    edges: Vec<f64>,
    counts: Vec<u64>,
}

#[derive(Debug, Clone, Serialize)]
struct SummaryEntry {
    #[serde(flatten)]
    moments: Moments,
    quantiles: Vec<f64>,
    histogram: Histogram,
}

#[derive(Debug, Clone, Serialize)]
struct TensorSummary {
    name: String,
    sample_shape: Vec<usize>,
    #[serde(flatten)]
    all: SummaryEntry,
    channels: Vec<SummaryEntry>,
}

#[derive(Debug, Clone, Serialize)]
struct StatsFile {
    format: &'static str,
    version: u32,
    source: String,
    n_samples: usize,
    quantile_levels: Vec<f64>,
    histogram_bins: usize,
    tensors: Vec<TensorSummary>,
}

/// Fine-binned histogram over [min, max] for quantile estimation.
struct Fine {
    min: f64,
    max: f64,
    counts: Vec<u64>,
}

impl Fine {
    fn new(m: &Moments) -> Self {
        Self {
            min: m.min,
            max: m.max,
            counts: vec![0; FINE_BINS],
        }
    }

    fn push(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        let w = self.max - self.min;
        let b = if w > 0.0 {
            (((v - self.min) / w) * FINE_BINS as f64).floor() as isize
        } else {
            0
        };
        let b = b.clamp(0, FINE_BINS as isize - 1) as usize;
        if let Some(c) = self.counts.get_mut(b) {
            *c += 1;
        }
    }

    fn finish(&self, m: &Moments) -> SummaryEntry {
        let total: u64 = self.counts.iter().sum();
        let w = (self.max - self.min) / FINE_BINS as f64;
        let quantiles = QUANTILE_LEVELS
            .iter()
            .map(|&q| {
                if total == 0 || w <= 0.0 {
                    return self.min;
                }
                let target = q * total as f64;
                let mut acc = 0u64;
                for (b, &c) in self.counts.iter().enumerate() {
                    if c > 0 && (acc + c) as f64 >= target {
                        let frac = ((target - acc as f64) / c as f64).clamp(0.0, 1.0);
                        return self.min + (b as f64 + frac) * w;
                    }
                    acc += c;
                }
                self.max
            })
            .collect();
        let per = FINE_BINS / HISTOGRAM_BINS;
        let edges = (0..=HISTOGRAM_BINS)
            .map(|k| self.min + (self.max - self.min) * k as f64 / HISTOGRAM_BINS as f64)
            .collect();
        let counts = self.counts.chunks(per).map(|c| c.iter().sum()).collect();
        SummaryEntry {
            moments: *m,
            quantiles,
            histogram: Histogram { edges, counts },
        }
    }
}

fn summary_stats(
    chunks: &Chunks,
    accs: &[TensorAcc],
    trajectory: bool,
    path: &Path,
    n: usize,
) -> Result<StatsFile> {
    let mut fine: Vec<(Fine, Vec<Fine>)> = accs
        .iter()
        .map(|a| {
            (
                Fine::new(&a.moments),
                a.channels.iter().map(Fine::new).collect(),
            )
        })
        .collect();
    for i in 0..chunks.count() {
        let (_, _, tensors) = chunks.load(i)?;
        for ((_, t), (all, chans)) in tensors.iter().zip(&mut fine) {
            let (c, inner) = channel_layout(t.shape().get(1..).unwrap_or_default(), trajectory);
            for (k, v) in t.to_f64_vec().into_iter().enumerate() {
                all.push(v);
                if let Some(ch) = chans.get_mut((k / inner) % c) {
                    ch.push(v);
                }
            }
        }
    }
    let tensors = accs
        .iter()
        .zip(&fine)
        .map(|(a, (all, chans))| TensorSummary {
            name: a.name.clone(),
            sample_shape: a.sample_shape.clone(),
            all: all.finish(&a.moments),
            channels: chans
                .iter()
                .zip(&a.channels)
                .map(|(f, m)| f.finish(m))
                .collect(),
        })
        .collect();
    Ok(StatsFile {
        format: "pno-stats",
        version: 1,
        source: path.display().to_string(),
        n_samples: n,
        quantile_levels: QUANTILE_LEVELS.to_vec(),
        histogram_bins: HISTOGRAM_BINS,
        tensors,
    })
}
