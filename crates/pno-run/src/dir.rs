//! The paths of a run folder, and the updates other tools make to it.

use std::path::{Path, PathBuf};

use crate::calibration::CalibrationRecord;
use crate::error::Result;
use crate::files::{ModelFile, ProvenanceFile, read_json, write_json};

/// A run folder.
///
/// ```text
/// RUN/
///   config.json         the full run config (after --set overrides)
///   model.json          format tag, model/train/data specs, grid, channels, weights checksum,
///                       conformal spread scale and calibration record
///   normalizer.json     per-channel input/target normalisers fitted on the training split
///   weights.safetensors best weights (names = module paths; loads into PyTorch by name)
///   laplace.json        last-layer posterior (laplace models)
///   provenance.json     data path, format, SHA-256, splits
///   log.jsonl           one JSON object per epoch and per event (rollbacks, resumes)
///   summary.json        final metrics and timings
///   reference.json      drift-monitoring reference: input/prediction features and spread
///   checkpoints/        atomic checksummed checkpoints + index.json (the trainer's)
/// ```
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The folder.
    pub dir: PathBuf,
}

impl RunDir {
    /// Wrap a folder.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }
    /// `config.json`.
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    /// `model.json`.
    pub fn model(&self) -> PathBuf {
        self.dir.join("model.json")
    }
    /// `normalizer.json`.
    pub fn normalizer(&self) -> PathBuf {
        self.dir.join("normalizer.json")
    }
    /// `weights.safetensors`.
    pub fn weights(&self) -> PathBuf {
        self.dir.join("weights.safetensors")
    }
    /// `laplace.json`.
    pub fn laplace(&self) -> PathBuf {
        self.dir.join("laplace.json")
    }
    /// `provenance.json`.
    pub fn provenance(&self) -> PathBuf {
        self.dir.join("provenance.json")
    }
    /// `log.jsonl`.
    pub fn log(&self) -> PathBuf {
        self.dir.join("log.jsonl")
    }
    /// `summary.json`.
    pub fn summary(&self) -> PathBuf {
        self.dir.join("summary.json")
    }

    /// `reference.json` ([`crate::reference::ReferenceStats`]).
    pub fn reference(&self) -> PathBuf {
        crate::reference::ReferenceStats::path(&self.dir)
    }

    /// `gate.json` (a promoted version's gate record).
    pub fn gate(&self) -> PathBuf {
        self.dir.join(crate::gate::GATE_FILE)
    }

    /// The gate record, when the folder has one.
    pub fn read_gate(&self) -> Result<Option<crate::gate::GateRecord>> {
        let p = self.gate();
        if !p.exists() {
            return Ok(None);
        }
        read_json(&p, "gate.json").map(Some)
    }

    /// `model.json`, parsed.
    pub fn read_model_file(&self) -> Result<ModelFile> {
        read_json(&self.model(), "model.json")
    }

    /// `provenance.json`, parsed.
    pub fn read_provenance(&self) -> Result<ProvenanceFile> {
        read_json(&self.provenance(), "provenance.json")
    }

    /// Records a conformal calibration: sets `spread_scale` and `calibration` in `model.json`
    /// (atomically; every other field is kept as written).
    pub fn set_calibration(&self, record: &CalibrationRecord) -> Result<()> {
        let mut file = self.read_model_file()?;
        file.spread_scale = record.spread_scale;
        file.calibration = Some(record.clone());
        write_json(&self.model(), &file)
    }
}
