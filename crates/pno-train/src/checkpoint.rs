//! Atomic, checksummed training checkpoints.
//!
//! A checkpoint is one safetensors file holding the model parameters (`model.<name>`), the
//! optimiser moments (`optim.m.<name>`, `optim.v.<name>`) and, in its metadata, the JSON
//! [`TrainState`] (epoch, step, learning-rate state, early-stopping state, best metric, the
//! data-order seed). Files are written to a temporary name, fsynced and renamed; then
//! `checkpoints/index.json` (also atomic) records each file's SHA-256. A `kill -9` at any moment
//! leaves either the old index (pointing at intact older files) or the new one. On load every
//! file is verified against its checksum; a corrupted or truncated newest checkpoint is
//! reported and the previous good one is used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use pno_models::weights::NamedTensor;

use pno_core::{atomic_write, sha256_hex};
use pno_run::{from_safetensors, to_safetensors};

use crate::error::{Result, TrainError, io_err};

/// Everything but the tensors needed to continue a run exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Completed epochs.
    pub epoch: usize,
    /// Completed optimiser steps.
    pub step: u64,
    /// Learning rate before rollbacks and schedule (the config value).
    pub base_lr: f64,
    /// Multiplier from rollbacks (`lr_backoff` per rollback).
    pub lr_scale: f64,
    /// Multiplier from a plateau schedule.
    pub plateau_scale: f64,
    /// Epochs since the plateau schedule last improved.
    pub plateau_wait: usize,
    /// Best validation metric so far.
    pub best: f64,
    /// Epoch of the best metric.
    pub best_epoch: usize,
    /// Epochs without improvement (early stopping).
    pub wait: usize,
    /// Rollbacks so far.
    pub rollbacks: usize,
    /// Whether training has finished (early stop or last epoch).
    pub finished: bool,
}

impl TrainState {
    /// The state before the first epoch, with the configured learning rate.
    pub fn fresh(base_lr: f64) -> Self {
        Self {
            epoch: 0,
            step: 0,
            base_lr,
            lr_scale: 1.0,
            plateau_scale: 1.0,
            plateau_wait: 0,
            best: f64::INFINITY,
            best_epoch: 0,
            wait: 0,
            rollbacks: 0,
            finished: false,
        }
    }
}

/// One entry of `checkpoints/index.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// File name inside `checkpoints/`.
    pub file: String,
    /// Epoch it was written after.
    pub epoch: usize,
    /// SHA-256 of the file.
    pub sha256: String,
}

/// The checkpoint folder of a run.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    dir: PathBuf,
    keep: usize,
}

/// A checkpoint read back and verified.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Tensors (model and optimiser).
    pub tensors: BTreeMap<String, NamedTensor>,
    /// The state.
    pub state: TrainState,
    /// The file it came from.
    pub file: PathBuf,
    /// Newer checkpoints that failed verification, with the reason.
    pub skipped: Vec<String>,
}

impl Checkpoints {
    /// `run/checkpoints`, keeping the newest `keep` files.
    pub fn new(run: &Path, keep: usize) -> Self {
        Self {
            dir: run.join("checkpoints"),
            keep,
        }
    }

    /// The index path.
    pub fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    /// Entries of the index (empty if there is none).
    pub fn index(&self) -> Result<Vec<IndexEntry>> {
        let p = self.index_path();
        if !p.exists() {
            return Ok(Vec::new());
        }
        let text = std::fs::read(&p).map_err(io_err("read", &p))?;
        serde_json::from_slice(&text).map_err(|e| TrainError::Corrupt {
            path: p.clone(),
            what: "checkpoint index".into(),
            expected: "a JSON list of {file, epoch, sha256}".into(),
            got: e.to_string(),
        })
    }

    /// Save a checkpoint after `state.epoch` and prune old ones.
    pub fn save(
        &self,
        tensors: &BTreeMap<String, NamedTensor>,
        state: &TrainState,
    ) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.dir).map_err(io_err("create", &self.dir))?;
        let mut meta = BTreeMap::new();
        meta.insert("format".to_string(), "pno-checkpoint-1".to_string());
        meta.insert(
            "state".to_string(),
            serde_json::to_string(state).unwrap_or_default(),
        );
        let bytes = to_safetensors(tensors, meta)?;
        let file = format!("ckpt-{:06}.safetensors", state.epoch);
        let path = self.dir.join(&file);
        atomic_write(&path, &bytes)?;
        let mut index = self.index().unwrap_or_default();
        index.retain(|e| e.file != file);
        index.push(IndexEntry {
            file,
            epoch: state.epoch,
            sha256: sha256_hex(&bytes),
        });
        index.sort_by_key(|e| e.epoch);
        let drop = index.len().saturating_sub(self.keep);
        let removed: Vec<IndexEntry> = index.drain(..drop).collect();
        let json = serde_json::to_vec_pretty(&index).unwrap_or_default();
        atomic_write(&self.index_path(), &json)?;
        for e in removed {
            let _ = std::fs::remove_file(self.dir.join(e.file));
        }
        Ok(path)
    }

    /// The newest checkpoint that verifies; newer ones that fail (checksum mismatch,
    /// truncation, unreadable) are listed in [`Loaded::skipped`]. `None` if there is none.
    pub fn load_latest(&self) -> Result<Option<Loaded>> {
        let index = self.index()?;
        let mut skipped = Vec::new();
        for e in index.iter().rev() {
            let path = self.dir.join(&e.file);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(err) => {
                    skipped.push(format!("{}: unreadable ({err})", path.display()));
                    continue;
                }
            };
            let sum = sha256_hex(&bytes);
            if sum != e.sha256 {
                skipped.push(format!(
                    "{}: checksum mismatch (expected {}, got {sum}; {} bytes)",
                    path.display(),
                    e.sha256,
                    bytes.len()
                ));
                continue;
            }
            let (tensors, meta) = match from_safetensors(&bytes, &path) {
                Ok(x) => x,
                Err(err) => {
                    skipped.push(err.to_string());
                    continue;
                }
            };
            let state: TrainState = match meta.get("state").map(|s| serde_json::from_str(s)) {
                Some(Ok(s)) => s,
                _ => {
                    skipped.push(format!(
                        "{}: missing or malformed training state",
                        path.display()
                    ));
                    continue;
                }
            };
            return Ok(Some(Loaded {
                tensors,
                state,
                file: path,
                skipped,
            }));
        }
        if !skipped.is_empty() {
            return Err(TrainError::Corrupt {
                path: self.dir.clone(),
                what: "checkpoints".into(),
                expected: "at least one checkpoint that verifies".into(),
                got: skipped.join("; "),
            });
        }
        Ok(None)
    }
}
