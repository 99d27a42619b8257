//! The audit log, its Merkle tree and signed checkpoints against independent implementations
//! (pymerkle, Python `cryptography`; see `tests/golden/gen_golden.py`), and tampering detected.
#![allow(clippy::unwrap_used)]

mod log;
mod merkle;
mod replica;
