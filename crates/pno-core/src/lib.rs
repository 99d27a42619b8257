//! Shared vocabulary of pno-physics-bench.
//!
//! What the crates above agree on lives here: the [`Grid1d`]/[`Grid2d`] sample-point
//! conventions, [`ShardSpec`] for splitting sample index ranges across cluster jobs, the
//! [`Split`] names with contiguous [`SplitFractions`] and the seeded [`SplitPlan`] training
//! carves, [`seed`] derivation with named salts, [`sha256_hex`] checksums, [`atomic_write`] for
//! crash-safe files (retrying transient I/O errors, see [`retry`]), the process's memory
//! budget ([`resources`]), and (behind the `testing` feature) explicit rel+abs tolerance checks.
//!
//! ```
//! use pno_core::ShardSpec;
//! let shard: ShardSpec = "1/3".parse().unwrap();
//! assert_eq!(shard.range(10), 3..6);
//! ```

mod atomic;
mod checksum;
mod error;
mod grid;
pub mod resources;
pub mod retry;
pub mod seed;
mod shard;
mod split;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use atomic::{
    atomic_write, atomic_write_private, atomic_write_retries, atomic_write_with,
    set_atomic_write_observer,
};
pub use checksum::{sha256_file, sha256_hex};
pub use error::{Error, Result};
pub use grid::{Grid1d, Grid2d, GridKind};
pub use shard::ShardSpec;
pub use split::{Split, SplitFractions, SplitIndices, SplitPlan, split_or_all};
