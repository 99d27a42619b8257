//! Suites on job arrays: which part of a suite a process runs (`--cells I/K`, or the index a
//! Slurm array or a Kubernetes Indexed Job gives it), and merging the parts' cells into one report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{BenchError, Result, io_err};
use crate::runner::{CellResult, cell_dir};
use crate::suite::Suite;

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

/// Every cell of `suite` found under the part folders `dirs`, checked: each part ran this very
/// suite (same fingerprint), no cell is recorded twice, none is missing. Errors name the part
/// folders and cells.
pub fn merge(suite: &Suite, dirs: &[PathBuf]) -> Result<Vec<CellResult>> {
    let mut found: BTreeMap<String, (PathBuf, CellResult)> = BTreeMap::new();
    let mut missing = Vec::new();
    for &c in &suite.cells() {
        let id = suite.cell_id(c);
        for d in dirs {
            let path = cell_dir(d, suite, c).join("cell.json");
            if !path.exists() {
                continue;
            }
            let cell = read(&path)?;
            if !cell.suite_sha256.is_empty() && cell.suite_sha256 != suite.sha256 {
                return Err(BenchError::Merge {
                    what: format!(
                        "{} was recorded by another version of the suite (sha256 {} ≠ {})",
                        path.display(),
                        cell.suite_sha256,
                        suite.sha256
                    ),
                });
            }
            if let Some((other, _)) = found.get(&id) {
                if other != d {
                    return Err(BenchError::Merge {
                        what: format!(
                            "cell {id} is recorded twice: in {} and in {}",
                            other.display(),
                            d.display()
                        ),
                    });
                }
                continue;
            }
            found.insert(id.clone(), (d.clone(), cell));
        }
        if !found.contains_key(&id) {
            missing.push(id);
        }
    }
    if !missing.is_empty() {
        return Err(BenchError::Merge {
            what: format!(
                "{} of {} cells are missing from the parts ({}): {}",
                missing.len(),
                suite.cells().len(),
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                missing.join(", ")
            ),
        });
    }
    Ok(suite
        .cells()
        .iter()
        .filter_map(|&c| found.remove(&suite.cell_id(c)).map(|(_, r)| r))
        .collect())
}

fn read(path: &Path) -> Result<CellResult> {
    let bytes = std::fs::read(path).map_err(io_err("read", path))?;
    serde_json::from_slice(&bytes).map_err(|e| BenchError::Corrupt {
        path: path.to_path_buf(),
        expected: "a cell.json written by pno bench".into(),
        got: e.to_string(),
    })
}
