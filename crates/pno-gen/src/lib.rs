//! Writing a seeded dataset with one of the built-in PDE generators (what `pno generate` and the
//! benchmark suites run): samples are computed in parallel in chunks and written in index order
//! by a writer thread, so memory stays bounded and the files do not depend on the thread count.
//!
//! Sits between the solvers and the dataset format (which never depend on each other) and below
//! the benchmark harness and the CLI.

use std::path::Path;
use std::time::Instant;

use pno_core::ShardSpec;
use pno_data::{DatasetHeader, DatasetWriter, TensorSpec};
use rayon::prelude::*;
use serde_json::{Map, Value};

/// What can go wrong generating a dataset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenError {
    /// A dataset key of the generator config has a bad value.
    #[error("config key `{key}`: expected {expected}, got {got}")]
    Key {
        /// The key.
        key: &'static str,
        /// Expectation.
        expected: &'static str,
        /// What was found.
        got: String,
    },
    /// The generator refused its parameters or failed on a sample (a CFL violation…).
    #[error(transparent)]
    Solver(#[from] pno_solvers::Error),
    /// The dataset could not be written.
    #[error(transparent)]
    Data(#[from] pno_data::Error),
    /// The worker threads or the writer thread failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// Operation.
        op: &'static str,
        /// Output folder.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for `pno-gen`.
pub type Result<T, E = GenError> = std::result::Result<T, E>;

/// A generation job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Canonical PDE name.
    pub pde: &'static str,
    /// Generator parameters (the config file without the dataset keys).
    pub params: Map<String, Value>,
    /// Samples of the whole dataset.
    pub n: usize,
    /// Dataset seed.
    pub seed: u64,
    /// Which part to write.
    pub shard: ShardSpec,
    /// Samples per shard file (default: ~512 MiB per file, at most 1024).
    pub samples_per_file: Option<usize>,
    /// Worker threads (default: rayon's).
    pub threads: Option<usize>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// Recipe.
    pub recipe: String,
    /// Samples written.
    pub samples: usize,
    /// First sample index.
    pub first_sample: usize,
    /// Tensor names and per-sample shapes.
    pub tensors: Vec<(String, Vec<usize>)>,
    /// Wall time.
    pub seconds: f64,
    /// Threads used.
    pub threads: usize,
}

/// The dataset keys of a generator config (everything else is a generator parameter).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatasetKeys {
    /// `pde`.
    pub pde: Option<String>,
    /// `n`.
    pub n: Option<u64>,
    /// `seed`.
    pub seed: Option<u64>,
    /// `samples_per_file`.
    pub samples_per_file: Option<u64>,
}

/// Remove and return the dataset keys (`pde`, `n`, `seed`, `samples_per_file`) of a generator
/// config, checking their types.
pub fn take_dataset_keys(cfg: &mut Map<String, Value>) -> Result<DatasetKeys> {
    let mut take = |key: &'static str| -> Result<Option<u64>> {
        match cfg.remove(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| GenError::Key {
                key,
                expected: "a non-negative integer",
                got: v.to_string(),
            }),
        }
    };
    let (n, seed, spf) = (take("n")?, take("seed")?, take("samples_per_file")?);
    let pde = match cfg.remove("pde") {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(v) => {
            return Err(GenError::Key {
                key: "pde",
                expected: "a PDE name",
                got: v.to_string(),
            });
        }
    };
    Ok(DatasetKeys {
        pde,
        n,
        seed,
        samples_per_file: spf,
    })
}

/// Generate `job` into the dataset folder `out`; `progress(k)` is called as samples finish.
pub fn generate(job: &Job, out: &Path, progress: &(dyn Fn(u64) + Sync)) -> Result<Written> {
    let generator = pno_solvers::build(job.pde, Value::Object(job.params.clone()))?;
    let layout = generator.layout();
    let bytes_per_sample: usize = layout.iter().map(|t| t.len() * 4).sum();
    let samples_per_file = job
        .samples_per_file
        .unwrap_or_else(|| (512 * 1024 * 1024 / bytes_per_sample.max(1)).clamp(1, 1024));
    let range = job.shard.range(job.n);
    let header = DatasetHeader {
        pde: job.pde.to_string(),
        recipe: generator.recipe().to_string(),
        solver: generator.solver(),
        parameters: generator.parameters(),
        seed: job.seed,
        n_samples: job.n,
        tensors: layout
            .iter()
            .map(|t| TensorSpec {
                name: t.name.clone(),
                shape: t.shape.clone(),
            })
            .collect(),
        times: generator.times(),
        shard: job.shard,
        generator: format!("pno-physics-bench {}", env!("CARGO_PKG_VERSION")),
    };
    let mut b = rayon::ThreadPoolBuilder::new();
    if let Some(t) = job.threads {
        b = b.num_threads(t);
    }
    let pool = b.build().map_err(|e| GenError::Io {
        op: "start worker threads for",
        path: out.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let threads = pool.current_num_threads();
    let mut writer = DatasetWriter::create(out, header, samples_per_file)?;
    let started = Instant::now();
    let chunk = (threads * 8).max(8);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Vec<Vec<f32>>>>(2);
    std::thread::scope(|scope| -> Result<()> {
        let writer_thread = scope.spawn(move || -> Result<()> {
            for samples in rx {
                for s in &samples {
                    writer.push(s)?;
                }
            }
            writer.finish()?;
            Ok(())
        });
        let mut next = range.start;
        let mut produced: Result<()> = Ok(());
        while next < range.end {
            let end = (next + chunk).min(range.end);
            let computed: std::result::Result<Vec<Vec<Vec<f32>>>, _> = pool.install(|| {
                (next..end)
                    .into_par_iter()
                    .map(|i| {
                        let s = generator.sample(job.seed, i as u64).map(|tensors| {
                            tensors
                                .into_iter()
                                .map(|v| v.into_iter().map(|x| x as f32).collect())
                                .collect()
                        });
                        progress(1);
                        s
                    })
                    .collect()
            });
            match computed {
                Ok(samples) => {
                    if tx.send(samples).is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    produced = Err(e.into());
                    break;
                }
            }
            next = end;
        }
        drop(tx);
        let written = writer_thread.join().map_err(|_| GenError::Io {
            op: "write",
            path: out.to_path_buf(),
            source: std::io::Error::other("the dataset writer thread panicked"),
        })?;
        produced?;
        written
    })?;
    Ok(Written {
        recipe: generator.recipe().to_string(),
        samples: range.len(),
        first_sample: range.start,
        tensors: layout
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect(),
        seconds: started.elapsed().as_secs_f64(),
        threads,
    })
}
