//! The error type of `pno-load`.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Result alias for `pno-load`.
pub type Result<T, E = LoadError> = std::result::Result<T, E>;

/// What can go wrong configuring a run, talking to the target or reading a timeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The target URL is not an `http://` URL this tool understands.
    #[error("invalid URL {url:?}: expected {expected}")]
    Url {
        /// The URL as given.
        url: String,
        /// What was expected instead.
        expected: &'static str,
    },
    /// The target host is not loopback; `pno-load` only ever sends to this machine.
    #[error(
        "refusing target host {host:?}: pno-load is a test tool and only sends to loopback \
         (127.0.0.1, localhost or ::1)"
    )]
    NotLoopback {
        /// The host that was refused.
        host: String,
    },
    /// An option is out of range.
    #[error("invalid {field}: expected {expected}, got {got}")]
    Config {
        /// The option.
        field: &'static str,
        /// The accepted range.
        expected: &'static str,
        /// The value given.
        got: String,
    },
    /// Connecting to the target failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The target address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing an open connection failed.
    #[error("connection to {addr}: {source}")]
    Io {
        /// The target address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The server's answer is not valid HTTP/1.1.
    #[error("malformed HTTP response: {what}: got {got:?}")]
    Protocol {
        /// The part that is malformed.
        what: &'static str,
        /// What was received (truncated).
        got: String,
    },
    /// The request did not complete before its deadline.
    #[error("no complete answer before the request's deadline")]
    Timeout,
    /// A file could not be read or written.
    #[error("{op} {path}: {source}")]
    File {
        /// Operation.
        op: &'static str,
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A timeline or fault file holds invalid JSON.
    #[error("{path}:{line}: {source}")]
    Json {
        /// File.
        path: PathBuf,
        /// 1-based line (1 for whole-file JSON).
        line: usize,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// A request task panicked (a bug in `pno-load`).
    #[error("request task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}
