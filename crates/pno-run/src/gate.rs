//! The gate record a promoted version carries (`gate.json`): which gate file judged it, on which
//! frozen data, with which metrics (its own and the champion's), and the verdict. The server can
//! require a passing record before it loads a version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use pno_core::Split;

/// The gate record of a version folder.
pub const GATE_FILE: &str = "gate.json";

/// One check of a gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRow {
    /// What was checked (`rel_l2 <= 0.12`, `rel_l2 vs champion`, `coverage_90 in binomial CI`…).
    pub check: String,
    /// The metric.
    pub metric: String,
    /// The challenger's value.
    pub value: f64,
    /// The threshold it was held to (after margins; the CI bound for coverage).
    pub threshold: String,
    /// The champion's value (relative checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion: Option<f64>,
    /// Whether the check passed.
    pub passed: bool,
}

/// The champion a challenger was compared with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChampionRecord {
    /// Its version in the repository.
    pub version: u64,
    /// Its metrics on the same data, split, seed and draws.
    pub metrics: BTreeMap<String, f64>,
}

/// `gate.json`: the evidence behind a promotion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRecord {
    /// SHA-256 of the gate file (empty: promoted without a gate file, default checks only).
    pub gate_sha256: String,
    /// The gate file as given.
    pub gate_file: String,
    /// SHA-256 of the evaluation data (file, or dataset manifest).
    pub data_sha256: String,
    /// The evaluation data as given.
    pub data_path: String,
    /// Split evaluated (`None`, written `"all"`: every sample).
    #[serde(with = "pno_core::split_or_all")]
    pub split: Option<Split>,
    /// Functions evaluated.
    pub n_functions: usize,
    /// Draws per function.
    pub n_samples: usize,
    /// Seed of the draws.
    pub seed: u64,
    /// The challenger's metrics.
    pub metrics: BTreeMap<String, f64>,
    /// The champion's, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion: Option<ChampionRecord>,
    /// Every check.
    pub rows: Vec<GateRow>,
    /// The verdict: every row passed.
    pub passed: bool,
    /// When (seconds since the Unix epoch).
    pub time_unix: u64,
}

impl GateRecord {
    /// The rows that failed.
    pub fn failures(&self) -> Vec<&GateRow> {
        self.rows.iter().filter(|r| !r.passed).collect()
    }
}
