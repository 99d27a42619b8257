//! The run folder: everything needed to use a trained model, self-contained.
//!
//! ```text
//! RUN/
//!   config.json         the full run config (after --set overrides)
//!   model.json          validated model/train/data specs, grid, channels, weights checksum,
//!                       conformal spread scale
//!   normalizer.json     per-channel input/target normalisers fitted on the training split
//!   weights.safetensors best weights (names = module paths; loads into PyTorch by name)
//!   laplace.json        last-layer posterior (laplace models)
//!   provenance.json     data path, format, SHA-256, splits
//!   log.jsonl           one JSON object per epoch and per event (rollbacks, resumes)
//!   summary.json        final metrics and timings
//!   checkpoints/        atomic checksummed checkpoints + index.json
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use pno_data::Normalizer;
use pno_models::burn::tensor::Device;
use pno_models::laplace::LaplacePosterior;
use pno_models::{Model, ModelSpec};

use crate::checkpoint::{from_safetensors, sha256_hex};
use crate::config::{DataSpec, TrainSpec};
use crate::data::{Provenance, Splits};
use crate::error::{Result, TrainError, io_err};

/// `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    /// Format tag.
    pub format: String,
    /// The model.
    pub model: ModelSpec,
    /// The training setup.
    pub train: TrainSpec,
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
    pub calibration: Option<crate::calibrate::CalibrationRecord>,
}

/// `normalizer.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalizers {
    /// Input normaliser (None: not normalised).
    pub x: Option<Normalizer>,
    /// Target normaliser.
    pub y: Option<Normalizer>,
}

/// `provenance.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvenanceFile {
    /// The data.
    pub data: Provenance,
    /// The splits.
    pub splits: Splits,
    /// pno version.
    pub version: String,
}

/// Paths of a run folder.
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
}

/// Read and parse a JSON file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let bytes = std::fs::read(path).map_err(io_err("read", path))?;
    serde_json::from_slice(&bytes).map_err(|e| TrainError::Corrupt {
        path: path.to_path_buf(),
        what: what.into(),
        expected: "the JSON pno writes".into(),
        got: e.to_string(),
    })
}

/// Write a JSON file atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| TrainError::Corrupt {
        path: path.to_path_buf(),
        what: "serialisation".into(),
        expected: "JSON-serialisable".into(),
        got: e.to_string(),
    })?;
    crate::checkpoint::write_atomic(path, &bytes)
}

/// A trained model loaded from its run folder, ready to predict.
#[derive(Debug)]
pub struct TrainedModel {
    /// The model (weights, Laplace posterior and spread scale applied).
    pub model: Model,
    /// `model.json`.
    pub file: ModelFile,
    /// `normalizer.json`.
    pub normalizers: Normalizers,
    /// The run folder.
    pub run: RunDir,
}

/// Load a run for inference: verifies the weights checksum, the shapes of every tensor and
/// the finiteness of every value; a corrupt or mismatched run is refused with the file named.
pub fn load_trained(dir: &Path, device: &Device) -> Result<TrainedModel> {
    load_weights(dir, device, true)
}

/// [`load_trained`], optionally without the Laplace posterior (while it is being fitted).
pub fn load_weights(dir: &Path, device: &Device, with_posterior: bool) -> Result<TrainedModel> {
    let run = RunDir::new(dir);
    if !run.model().exists() {
        return Err(TrainError::Corrupt {
            path: dir.to_path_buf(),
            what: "run folder".into(),
            expected: "model.json, normalizer.json and weights.safetensors written by `pno train`"
                .into(),
            got: "no model.json".into(),
        });
    }
    let file: ModelFile = read_json(&run.model(), "model.json")?;
    let normalizers: Normalizers = read_json(&run.normalizer(), "normalizer.json")?;
    let bytes = std::fs::read(run.weights()).map_err(io_err("read", &run.weights()))?;
    let sum = sha256_hex(&bytes);
    if sum != file.weights_sha256 {
        return Err(TrainError::Corrupt {
            path: run.weights(),
            what: "checksum".into(),
            expected: format!("sha256 {} (model.json)", file.weights_sha256),
            got: sum,
        });
    }
    let (tensors, _) = from_safetensors(&bytes, &run.weights())?;
    let mut model = file.model.init(0, device);
    model = pno_models::weights::load_named(model, &tensors).map_err(|e| match e {
        pno_models::ModelError::Weights {
            name,
            expected,
            got,
        } => TrainError::Corrupt {
            path: run.weights(),
            what: format!("tensor {name}"),
            expected,
            got,
        },
        other => TrainError::Model(other),
    })?;
    if with_posterior && file.model.kind == pno_models::Kind::Laplace {
        let post: LaplacePosterior = read_json(&run.laplace(), "laplace.json")?;
        model.laplace = Some(post);
    }
    if !(file.spread_scale.is_finite() && file.spread_scale > 0.0) {
        return Err(TrainError::Corrupt {
            path: run.model(),
            what: "spread_scale".into(),
            expected: "a positive number".into(),
            got: file.spread_scale.to_string(),
        });
    }
    model.spread_scale = file.spread_scale;
    Ok(TrainedModel {
        model,
        file,
        normalizers,
        run,
    })
}
