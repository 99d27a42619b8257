//! Dataset format, external readers and the data-quality gate.
//!
//! - Our format: a folder with `manifest.json` and safetensors files, written by
//!   [`DatasetWriter`] (atomically, byte-reproducibly, shardable) and read by [`Dataset`].
//! - Readers for `.npy`/`.npz`, neuraloperator `.pt` and PDEBench HDF5, behind [`open_any`].
//! - [`convert`] into our format, [`info`] summaries, and [`check`], the data-quality gate.

mod checksum;
mod dataset;
mod error;
mod manifest;
mod stats;
mod tensor;
mod writer;

pub use checksum::{sha256_file, sha256_hex};
pub use dataset::{Dataset, merge};
pub use error::{Error, Result};
pub use manifest::{
    DatasetHeader, FORMAT_NAME, FORMAT_VERSION, FileEntry, MANIFEST_FILE, Manifest, TensorEntry, TensorSpec,
    manifest_file_name,
};
pub use stats::Moments;
pub use tensor::{DType, Tensor, TensorData, f16_to_f32};
pub use writer::DatasetWriter;
