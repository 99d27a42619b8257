//! Shared vocabulary of pno-physics-bench.
//!
//! Everything the leaf crates (`pno-solvers`, `pno-data`, `pno-metrics`) agree on lives here:
//! the [`Grid1d`]/[`Grid2d`] sample-point conventions, [`ShardSpec`] for splitting sample index
//! ranges across cluster jobs, [`SplitFractions`] for train/validation/test splits,
//! [`atomic_write`] for crash-safe files, and (behind the `testing` feature) explicit
//! rel+abs tolerance checks.
//!
//! ```
//! use pno_core::ShardSpec;
//! let shard: ShardSpec = "1/3".parse().unwrap();
//! assert_eq!(shard.range(10), 3..6);
//! ```

mod atomic;
mod error;
mod grid;
mod shard;
mod split;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use atomic::{atomic_write, atomic_write_with};
pub use error::{Error, Result};
pub use grid::{Grid1d, Grid2d, GridKind};
pub use shard::ShardSpec;
pub use split::{Split, SplitFractions};
