//! The run folder: the artifact that training writes and everything else reads.
//!
//! `pno train` writes a run through this crate; `pno eval`, `pno calibrate`, `pno predict`, the
//! benchmark harness and the server read it through this crate. It owns the files
//! ([`RunDir`]: `model.json`, `config.json`, `normalizer.json`, `weights.safetensors`,
//! `provenance.json`, the [`CalibrationRecord`], a promoted version's [`GateRecord`]), the model
//! repository layout ([`versions`], [`publish`]), the [`FORMAT`] tag (a run of another format
//! is refused with a clear message), the data setup ([`DataSpec`]), and [`TrainedModel`] with
//! its [`TrainedModel::predict`] in physical units — the one code path behind `pno predict` and
//! the server, so a seed gives the same numbers in both — and its [`TrainedModel::footprint`],
//! the memory one request takes (the server's memory budget sums them).
//!
//! It depends on `pno-core`, `pno-data` (normalisers) and `pno-models` only: never on training,
//! evaluation or the server stack.

mod calibration;
mod dir;
mod error;
mod files;
mod footprint;
mod gate;
pub mod reference;
mod repository;
mod spec;
mod trained;
mod weights;

pub use calibration::{CalibrationRecord, ConformalMode};
pub use dir::RunDir;
pub use error::{Result, RunError};
pub use files::{
    FORMAT, ModelFile, Normalizers, Provenance, ProvenanceFile, read_json, write_json,
};
pub use footprint::{Footprint, FootprintAsk};
pub use gate::{ChampionRecord, GATE_FILE, GateRecord, GateRow};
pub use repository::{PUBLISHED, check_model_name, publish, version_dir, versions};
pub use spec::{DataSpec, Window, WindowLayout};
pub use trained::{PredictRequest, TrainedModel, load_trained, load_weights};
pub use weights::{from_safetensors, to_safetensors};
