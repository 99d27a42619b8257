//! The JSON files of a run folder and their (atomic) reading and writing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use pno_core::SplitIndices;
use pno_data::Normalizer;
use pno_models::ModelSpec;

use crate::calibration::CalibrationRecord;
use crate::error::{Result, RunError, io_err};
use crate::spec::DataSpec;

/// The run format this version writes and reads (`model.json` → `format`).
pub const FORMAT: &str = "pno-run-1";

/// `model.json`: everything needed to rebuild the model and interpret its outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    /// Format tag ([`FORMAT`]); checked on load.
    pub format: String,
    /// The model.
    pub model: ModelSpec,
    /// The training setup, as the trainer recorded it (opaque to readers of the run).
    pub train: serde_json::Value,
    /// The data setup.
    pub data: DataSpec,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Training grid.
    pub grid: Vec<usize>,
    /// SHA-256 of `weights.safetensors` (empty until the first weights are written).
    pub weights_sha256: String,
    /// Conformal multiplier of the predicted spread (1 = uncalibrated).
    pub spread_scale: f64,
    /// How `spread_scale` was calibrated (`pno calibrate`); absent when uncalibrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationRecord>,
}

/// `normalizer.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalizers {
    /// Input normaliser (None: not normalised).
    pub x: Option<Normalizer>,
    /// Target normaliser.
    pub y: Option<Normalizer>,
}

/// Where the data came from (recorded in every run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Path as given.
    pub path: PathBuf,
    /// Format.
    pub format: String,
    /// SHA-256 of the file (or of the dataset's manifest).
    pub sha256: String,
    /// Samples in the file.
    pub n_samples: usize,
    /// Input and target tensor names.
    pub tensors: [String; 2],
    /// Grid after subsampling.
    pub grid: Vec<usize>,
}

/// `provenance.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvenanceFile {
    /// The data.
    pub data: Provenance,
    /// The splits.
    pub splits: SplitIndices,
    /// pno version.
    pub version: String,
}

/// Read and parse a JSON file; a malformed file is refused naming it and `what` it should be.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let bytes = std::fs::read(path).map_err(io_err("read", path))?;
    serde_json::from_slice(&bytes).map_err(|e| RunError::Corrupt {
        path: path.to_path_buf(),
        what: what.into(),
        expected: "the JSON pno writes".into(),
        got: e.to_string(),
    })
}

/// Write a JSON file atomically (temporary file, fsync, rename, folder fsync).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| RunError::Corrupt {
        path: path.to_path_buf(),
        what: "serialisation".into(),
        expected: "JSON-serialisable".into(),
        got: e.to_string(),
    })?;
    pno_core::atomic_write(path, &bytes)?;
    Ok(())
}
