//! Joining the parts of a suite run on a job array: every cell present exactly once, all from
//! this very suite.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{BenchError, Result, io_err};
use crate::runner::{CellResult, cell_dir};
use crate::suite::Suite;

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
