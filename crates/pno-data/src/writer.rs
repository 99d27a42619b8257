//! [`DatasetWriter`]: writes samples into safetensors files and a manifest, atomically.

use std::fs;
use std::path::{Path, PathBuf};

use pno_core::ShardSpec;
use safetensors::{Dtype, tensor::TensorView};

use crate::error::{Error, Result};
use crate::manifest::{
    DatasetHeader, FORMAT_NAME, FORMAT_VERSION, FileEntry, Manifest, TensorEntry,
    manifest_file_name, resolution, valid_name,
};
use crate::stats::Moments;
use crate::tensor::numel;
use pno_core::sha256_hex;

/// Writes one dataset (or one shard of it) in our format.
///
/// Files go to a hidden temporary subfolder; [`DatasetWriter::finish`] moves them into place and
/// writes the manifest last. Dropping a writer without finishing removes the temporary folder,
/// so a failed run leaves nothing behind. The same pushes give byte-identical files.
///
/// ```
/// use pno_data::{Dataset, DatasetHeader, DatasetWriter, TensorSpec};
/// let dir = tempfile::tempdir()?;
/// let header = DatasetHeader {
///     pde: "heat".into(), recipe: "demo".into(), solver: "exact".into(),
///     parameters: serde_json::json!({"kappa": 0.1}), seed: 7, n_samples: 3,
///     tensors: vec![TensorSpec { name: "x".into(), shape: vec![1, 2] }],
///     times: None, shard: pno_core::ShardSpec::WHOLE, generator: "doc".into(),
/// };
/// let mut w = DatasetWriter::create(dir.path(), header, 2)?;
/// for i in 0..3 {
///     w.push(&[vec![i as f32, 1.0]])?;
/// }
/// let manifest = w.finish()?;
/// assert_eq!(manifest.files.len(), 2);
/// let ds = Dataset::open(dir.path())?;
/// assert_eq!(ds.read_tensor("x")?.shape(), &[3, 1, 2]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct DatasetWriter {
    dir: PathBuf,
    tmp: TempDir,
    header: DatasetHeader,
    samples_per_file: usize,
    numels: Vec<usize>,
    buffers: Vec<Vec<f32>>,
    buffered: usize,
    pushed: usize,
    files: Vec<FileEntry>,
    stats: Vec<Moments>,
}

/// A folder removed on drop unless disarmed.
#[derive(Debug)]
struct TempDir {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

fn file_name(shard: ShardSpec, index: usize) -> String {
    if shard.count == 1 {
        format!("data-{index:05}.safetensors")
    } else {
        format!(
            "data.part-{}-of-{}-{index:05}.safetensors",
            shard.index, shard.count
        )
    }
}

impl DatasetWriter {
    /// Starts writing `header`'s shard into `dir` (created if missing), at most
    /// `samples_per_file` samples per safetensors file.
    ///
    /// Errors if the manifest of this part already exists (remove it to regenerate).
    pub fn create(dir: &Path, header: DatasetHeader, samples_per_file: usize) -> Result<Self> {
        if samples_per_file == 0 {
            return Err(Error::invalid("samples_per_file", ">= 1", "0"));
        }
        ShardSpec::new(header.shard.index, header.shard.count)?;
        if header.tensors.is_empty() {
            return Err(Error::invalid("tensors", "at least one tensor", "none"));
        }
        let mut numels = Vec::new();
        for (i, t) in header.tensors.iter().enumerate() {
            if !valid_name(&t.name) || header.tensors[..i].iter().any(|o| o.name == t.name) {
                return Err(Error::invalid(
                    format!("tensors[{i}].name"),
                    "a unique name of letters, digits, '_', '-', '.'",
                    t.name.clone(),
                ));
            }
            match numel(&t.shape) {
                Some(n) if n > 0 => numels.push(n),
                _ => {
                    return Err(Error::invalid(
                        format!("tensors[{i}].shape"),
                        "a non-empty shape",
                        format!("{:?}", t.shape),
                    ));
                }
            }
        }
        if let Some(times) = &header.times
            && times.iter().any(|t| !t.is_finite())
        {
            return Err(Error::invalid(
                "times",
                "finite values",
                format!("{times:?}"),
            ));
        }
        fs::create_dir_all(dir).map_err(Error::io("create folder", dir))?;
        let manifest_path = dir.join(manifest_file_name(header.shard));
        if manifest_path.exists() {
            return Err(Error::Exists {
                path: manifest_path,
            });
        }
        let tmp_path = dir.join(format!(
            ".pno-tmp-{}-of-{}-{}",
            header.shard.index,
            header.shard.count,
            std::process::id()
        ));
        if tmp_path.exists() {
            fs::remove_dir_all(&tmp_path)
                .map_err(Error::io("remove stale temp folder", &tmp_path))?;
        }
        fs::create_dir(&tmp_path).map_err(Error::io("create temp folder", &tmp_path))?;
        let n = header.tensors.len();
        Ok(Self {
            dir: dir.to_path_buf(),
            tmp: TempDir {
                path: tmp_path,
                armed: true,
            },
            header,
            samples_per_file,
            numels,
            buffers: vec![Vec::new(); n],
            buffered: 0,
            pushed: 0,
            files: Vec::new(),
            stats: vec![Moments::default(); n],
        })
    }

    /// Number of samples this shard must receive.
    pub fn expected_samples(&self) -> usize {
        self.header.shard.range(self.header.n_samples).len()
    }

    /// Appends one sample: one flat `f32` vector per tensor, in header order, each of the
    /// spec's element count. Samples are pushed in index order of the shard's range.
    pub fn push(&mut self, sample: &[Vec<f32>]) -> Result<()> {
        if sample.len() != self.numels.len() {
            return Err(Error::invalid(
                "sample",
                format!("{} tensors", self.numels.len()),
                sample.len().to_string(),
            ));
        }
        if self.pushed >= self.expected_samples() {
            return Err(Error::invalid(
                "sample count",
                format!(
                    "{} samples for shard {}",
                    self.expected_samples(),
                    self.header.shard
                ),
                format!("sample number {}", self.pushed + 1),
            ));
        }
        for ((v, &n), spec) in sample.iter().zip(&self.numels).zip(&self.header.tensors) {
            if v.len() != n {
                return Err(Error::invalid(
                    format!("sample {} tensor {}", self.pushed, spec.name),
                    format!("{n} values (shape {:?})", spec.shape),
                    v.len().to_string(),
                ));
            }
        }
        for ((v, buf), st) in sample.iter().zip(&mut self.buffers).zip(&mut self.stats) {
            buf.extend_from_slice(v);
            st.extend_f32(v);
        }
        self.buffered += 1;
        self.pushed += 1;
        if self.buffered == self.samples_per_file {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.buffered == 0 {
            return Ok(());
        }
        let name = file_name(self.header.shard, self.files.len());
        let path = self.tmp.path.join(&name);
        let mut byte_bufs = Vec::with_capacity(self.buffers.len());
        for buf in &self.buffers {
            byte_bufs.push(
                buf.iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect::<Vec<u8>>(),
            );
        }
        let mut views = Vec::with_capacity(self.buffers.len());
        for (spec, bytes) in self.header.tensors.iter().zip(&byte_bufs) {
            let mut shape = vec![self.buffered];
            shape.extend_from_slice(&spec.shape);
            let view = TensorView::new(Dtype::F32, shape, bytes).map_err(|e| {
                Error::invalid(
                    format!("tensor {}", spec.name),
                    "a valid safetensors view",
                    e.to_string(),
                )
            })?;
            views.push((spec.name.clone(), view));
        }
        let bytes = safetensors::serialize(views, None).map_err(|e| {
            Error::invalid("safetensors file", "serialisable tensors", e.to_string())
        })?;
        pno_core::atomic_write(&path, &bytes)?;
        let first =
            self.header.shard.range(self.header.n_samples).start + self.pushed - self.buffered;
        self.files.push(FileEntry {
            path: name,
            first_sample: first,
            n_samples: self.buffered,
            sha256: sha256_hex(&bytes),
        });
        for b in &mut self.buffers {
            b.clear();
        }
        self.buffered = 0;
        Ok(())
    }

    /// Writes the last file, moves the files into place and writes the manifest last.
    pub fn finish(mut self) -> Result<Manifest> {
        if self.pushed != self.expected_samples() {
            return Err(Error::invalid(
                "sample count",
                format!(
                    "{} samples for shard {}",
                    self.expected_samples(),
                    self.header.shard
                ),
                self.pushed.to_string(),
            ));
        }
        self.flush()?;
        let manifest_path = self.dir.join(manifest_file_name(self.header.shard));
        if manifest_path.exists() {
            return Err(Error::Exists {
                path: manifest_path,
            });
        }
        let h = &self.header;
        let trajectory = h.times.is_some();
        let manifest = Manifest {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            pde: h.pde.clone(),
            recipe: h.recipe.clone(),
            solver: h.solver.clone(),
            parameters: h.parameters.clone(),
            seed: h.seed,
            n_samples: h.n_samples,
            resolution: h
                .tensors
                .first()
                .map(|t| resolution(&t.shape, trajectory))
                .unwrap_or_default(),
            tensors: h
                .tensors
                .iter()
                .zip(&self.stats)
                .map(|(t, s)| TensorEntry {
                    name: t.name.clone(),
                    dtype: "f32".into(),
                    shape: t.shape.clone(),
                    stats: *s,
                })
                .collect(),
            times: h.times.clone(),
            shard: h.shard,
            generator: h.generator.clone(),
            writer: concat!("pno-data ", env!("CARGO_PKG_VERSION")).into(),
            files: self.files.clone(),
        };
        manifest.validate(&manifest_path)?;
        let mut moved = Vec::new();
        let placed = (|| {
            for f in &self.files {
                let from = self.tmp.path.join(&f.path);
                let to = self.dir.join(&f.path);
                fs::rename(&from, &to).map_err(Error::io("move into place", &to))?;
                moved.push(to);
            }
            pno_core::atomic_write(&manifest_path, &manifest.to_json_bytes())?;
            Ok::<(), Error>(())
        })();
        if let Err(e) = placed {
            for p in &moved {
                let _ = fs::remove_file(p);
            }
            return Err(e);
        }
        fs::remove_dir_all(&self.tmp.path)
            .map_err(Error::io("remove temp folder", &self.tmp.path))?;
        self.tmp.armed = false;
        Ok(manifest)
    }
}
