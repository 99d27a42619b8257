//! Dataset format, external readers and the data-quality gate.
//!
//! - Our format: a folder with `manifest.json` and safetensors files, written by
//!   [`DatasetWriter`] (atomically, byte-reproducibly, shardable) and read by [`Dataset`].
//! - Readers for `.npy`/`.npz`, neuraloperator `.pt` and PDEBench HDF5, behind [`open_any`];
//!   writers for `.npy`/`.npz` ([`write_npy`], [`write_npz`]), byte-compatible with numpy.
//! - [`convert`] into our format, [`info`] summaries, and [`check`], the data-quality gate.
//! - [`drift_features`]: per-sample mean, std and spectral band energies for drift detection.
//! - [`Normalizer`]: per-channel unit-Gaussian normalisation (neuraloperator's
//!   `UnitGaussianNormalizer`).

mod check;
mod convert;
mod dataset;
mod drift;
mod error;
mod hdf5;
mod info;
mod manifest;
mod normalizer;
mod npy;
mod npz;
mod pickle;
mod pt;
mod source;
mod stats;
mod tensor;
mod writer;

pub use check::{
    CheckOptions, CheckReport, CheckResult, HISTOGRAM_BINS, LeakageSplits, QUANTILE_LEVELS,
    STATS_FILE, Status, check,
};
pub use convert::convert;
pub use hdf5::{Hdf5Contents, read_hdf5};
pub use info::{Info, TensorInfo, info};
pub use npy::{NpyData, npy_bytes, parse_npy, read_npy, write_npy};
pub use npz::{read_npz, write_npz};
pub use pt::{PtContents, read_pt};
pub use source::{Format, SUPPORTED_FORMATS, SampleSet, Source, open_any};

pub use dataset::{Dataset, merge};
pub use drift::{DEFAULT_BANDS, DriftFeatures, drift_features, field_features};
pub use error::{Error, Result};
pub use manifest::{
    DatasetHeader, FORMAT_NAME, FORMAT_VERSION, FileEntry, MANIFEST_FILE, Manifest, TensorEntry,
    TensorSpec, manifest_file_name,
};
pub use normalizer::Normalizer;
pub use pno_core::{sha256_file, sha256_hex};
pub use stats::Moments;
pub use tensor::{DType, Tensor, TensorData, f16_to_f32};
pub use writer::DatasetWriter;
