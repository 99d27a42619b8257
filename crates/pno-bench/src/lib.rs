//! Benchmark suites for probabilistic neural operators: methods × PDEs × seeds, each cell
//! trained and evaluated (one-step metrics, calibration curves, rollouts) raw and, for every
//! probabilistic method, split-conformally calibrated ([`conformal`]), resumable after a crash;
//! results as JSON and CSV, Markdown and LaTeX tables of mean ± std with the best value marked
//! (each method's raw and calibrated rows side by side), SVG/PNG plots (coverage against level,
//! raw and calibrated) and an HTML page showing them under a reading guide ([`guide`]) that names
//! the best-calibrated and the sharpest calibrated method of each PDE.
//!
//! ```no_run
//! use pno_bench::{RunOptions, Suite, run_suite, write_report};
//!
//! let suite = Suite::load("configs/suite_smoke.toml".as_ref())?;
//! let out = std::path::Path::new("reports/smoke");
//! let opts = RunOptions { device: Default::default(), batch: 16, part: None };
//! let results = run_suite(&suite, out, &opts, &mut |line| eprintln!("{line}"))?;
//! write_report(&suite, &results, out)?;
//! # Ok::<(), pno_bench::BenchError>(())
//! ```

pub mod conformal;
pub mod error;
pub mod guide;
pub mod merge;
pub mod plots;
pub mod report;
pub mod runner;
pub mod suite;
pub mod tables;

pub use error::{BenchError, Result};
pub use merge::merge;
pub use report::{ReportFiles, write_report};
pub use runner::{CellResult, RunOptions, run_suite};
pub use suite::Part;
pub use suite::Suite;
