//! Production inference server for trained probabilistic neural operators.
//!
//! A library: [`app`] builds the axum `Router` from an [`AppState`]; [`serve`] runs it with
//! graceful drain. It speaks the Open Inference Protocol v2 REST API (health, server and model
//! metadata, per-version paths, inference) with Triton's binary tensor data extension, so the
//! unmodified `tritonclient[http]` works; serves a model repository
//! (`<repository>/<model>/<version>/` run folders written by `pno train`) with version policies,
//! load and unload; and wraps it in API keys with roles, rate limits and lockout, a concurrency
//! gate with a bounded queue, deadlines, input validation, a hash-chained audit log and
//! Prometheus metrics. Predictions go through the run folder's `TrainedModel::predict`, so a
//! seed gives the same numbers as `pno predict`.
//!
//! Inside, the server is in rooms: `state` (what is shared), `router` (routes, role groups,
//! fallbacks), `admission` (the layers a request passes), `handlers` (one module per resource)
//! and `listener` (the accept loop, TLS through `tls`, and drain).

// Fault injection is for test builds: a release build with it is refused.
#[cfg(all(feature = "fault-injection", not(debug_assertions)))]
compile_error!(
    "the `fault-injection` feature is for tests only and cannot be built in release mode"
);

mod admission;
pub mod alerting;
pub mod auth;
mod batching;
mod checks;
pub mod config;
pub mod dependency;
pub mod drift;
pub mod error;
pub mod failure;
#[cfg(feature = "fault-injection")]
mod faults;
pub mod feedback;
mod handlers;
pub mod limits;
mod listener;
mod metrics;
mod monitor;
pub mod openapi;
pub mod preflight;
mod protocol;
mod proxy;
pub mod reload;
pub mod replica;
pub mod repository;
mod resilience;
mod resources;
mod router;
mod routes;
pub mod routing;
mod state;
mod tls;
mod trace;
pub mod webhook;

pub use config::ServeConfig;
pub use error::{ApiError, Result, ServeError};
pub use failure::FailureClass;
pub use listener::serve;
/// The audit log (its own crate, `pno-audit`; re-exported where the server's API has it).
pub use pno_audit as audit;
pub use resilience::bulkhead::{Gate, OwnedSlot, Shed};
pub use router::app;
pub use state::{AppState, Checkpointed};
