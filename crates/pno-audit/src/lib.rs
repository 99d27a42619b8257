//! The audit log of `pno serve`: tamper-evident by construction, verifiable by anyone.
//!
//! - [`AuditLog`]: one hash-chained JSON record per line, appended with an fsync policy and
//!   rotated into numbered segments; [`verify`] streams over every segment in constant memory
//!   and names the first bad record.
//! - [`merkle`]: the RFC 9162 Merkle tree over the records, with inclusion and consistency
//!   proofs and their verification.
//! - [`checkpoint`]: Ed25519-signed tree heads in the C2SP `tlog-checkpoint` note format; a
//!   checkpoint kept anywhere else detects truncation and rewriting of everything it covers.
//! - [`report`]: counts by actor, role, action, outcome and status for compliance reviews.

// Fault injection is for test builds: a release build with it is refused.
#[cfg(all(feature = "fault-injection", not(debug_assertions)))]
compile_error!(
    "the `fault-injection` feature is for tests only and cannot be built in release mode"
);

pub mod checkpoint;
mod error;
mod log;
pub mod merkle;
pub mod report;

pub use error::{AuditError, Result};
pub use log::{
    AuditEvent, AuditLog, AuditRecord, FsyncPolicy, GENESIS, LogOptions, Verified, check_replica,
    leaves, scan, scan_upto, segments, verify,
};
