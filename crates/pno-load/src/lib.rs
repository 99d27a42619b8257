//! `pno-load`: an open-loop HTTP load generator for chaos and overload benchmarks of
//! `pno serve`, on loopback only.
//!
//! - [`run`]: requests start at a fixed rate (evenly spaced or Poisson) for a fixed time,
//!   whatever the server does, so overload shows as shedding rather than as a slower client.
//!   Each is bounded by a client timeout (`hung` when it passes) and by `max_in_flight`
//!   (`client_dropped` beyond it); one [`Record`] per arrival.
//! - [`send_with_retry_after`]: the reference client behaviour for 429/503 with `Retry-After`.
//! - [`Summary`]: counts by status and error class, goodput, nearest-rank [`percentile`]s and a
//!   per-second series; [`mttr`]: recovery time after each injected fault.
//! - [`Client`] and [`Target`]: a small HTTP/1.1 client over `tokio::net::TcpStream` that
//!   refuses any host but `127.0.0.1`, `localhost` and `::1`.

mod error;
mod http;
mod mttr;
mod record;
mod retry;
mod run;
mod summary;

pub use error::{LoadError, Result};
pub use http::{Client, HttpResponse, Target, parse_header};
pub use mttr::{Fault, MttrReport, Recovery, mttr, read_faults};
pub use record::{Outcome, Record, read_timeline, write_timeline};
pub use retry::{Attempted, RetryPolicy, parse_retry_after, send_with_retry_after};
pub use run::{RunConfig, arrivals, run};
pub use summary::{Latency, Second, Summary, percentile};
