//! One line of the timeline: what happened to one scheduled request.

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{LoadError, Result};
use crate::http::HttpResponse;

/// How a scheduled request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The server answered with an HTTP status (any status).
    Answered,
    /// Connecting, writing or reading failed, or the answer was not HTTP (`status` 0).
    Error,
    /// No complete answer before the client timeout (`status` 0).
    Hung,
    /// Not started: `--max-in-flight` requests were outstanding (`status` 0).
    ClientDropped,
}

/// One scheduled request, as written to the JSONL timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Sequence number in arrival order, from 0.
    pub id: u64,
    /// Scheduled start, ms since the run started.
    pub start_ms: f64,
    /// From the scheduled start to the end of the answer (all attempts and waits), ms; the
    /// timeout for `hung`, 0 for `client_dropped`. Measured from the schedule, not from when the
    /// client got round to it, so client lag cannot hide server latency.
    pub latency_ms: f64,
    /// HTTP status of the last attempt; 0 when there was none.
    pub status: u16,
    /// How the request ended.
    pub outcome: Outcome,
    /// `class` of a JSON error body (`input`, `security`, `transient`, `persistent`, `internal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// `breaker` of a JSON error body (e.g. `open`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<String>,
    /// `parameters.degraded` of a successful answer (false when absent).
    #[serde(default)]
    pub degraded: bool,
    /// `parameters.n_samples` of a successful answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_samples: Option<u64>,
    /// `parameters.fallback_from` of a successful answer (the version it fell back from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_from: Option<String>,
    /// The last `Retry-After` header value seen on any attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<String>,
    /// Attempts made (0 for `client_dropped`).
    pub attempts: u32,
    /// The client-side error, for `error` and `hung`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Record {
    /// A request with no answer (`status` 0).
    pub fn unanswered(id: u64, start_ms: f64, latency_ms: f64, outcome: Outcome) -> Self {
        Self {
            id,
            start_ms,
            latency_ms,
            status: 0,
            outcome,
            class: None,
            breaker: None,
            degraded: false,
            n_samples: None,
            fallback_from: None,
            retry_after: None,
            attempts: 0,
            error: None,
        }
    }

    /// A request the server answered; reads the JSON body's error or `parameters` fields.
    pub fn answered(id: u64, start_ms: f64, latency_ms: f64, resp: &HttpResponse) -> Self {
        let mut rec = Self::unanswered(id, start_ms, latency_ms, Outcome::Answered);
        rec.status = resp.status;
        // Triton's binary extension: the JSON header is the first N bytes of the body.
        let json_len = resp
            .header("inference-header-content-length")
            .and_then(|v| v.parse::<usize>().ok());
        let json = &resp.body[..json_len.unwrap_or(resp.body.len()).min(resp.body.len())];
        if let Ok(body) = serde_json::from_slice::<Body>(json) {
            if rec.is_success() {
                let params = body.parameters.unwrap_or_default();
                rec.degraded = params.degraded.unwrap_or(false);
                rec.n_samples = params.n_samples;
                rec.fallback_from = params.fallback_from.map(text);
            } else {
                rec.class = body.class;
                rec.breaker = body.breaker.map(text);
            }
        }
        rec
    }

    /// Whether the answer was 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Whether this counts against recovery: sent, and not answered 2xx or 429 (shedding by
    /// rate is the server protecting itself, not failing).
    pub fn is_failure(&self) -> bool {
        self.outcome != Outcome::ClientDropped && !self.is_success() && self.status != 429
    }
}

fn text(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

#[derive(Deserialize)]
struct Body {
    class: Option<String>,
    breaker: Option<serde_json::Value>,
    parameters: Option<Parameters>,
}

#[derive(Deserialize, Default)]
struct Parameters {
    degraded: Option<bool>,
    n_samples: Option<u64>,
    fallback_from: Option<serde_json::Value>,
}

/// Writes `records` as JSON lines.
pub fn write_timeline(path: &Path, records: &[Record]) -> Result<()> {
    let err = |source| LoadError::File {
        op: "write",
        path: path.to_owned(),
        source,
    };
    let mut out = BufWriter::new(std::fs::File::create(path).map_err(err)?);
    for rec in records {
        serde_json::to_writer(&mut out, rec).map_err(|e| err(e.into()))?;
        out.write_all(b"\n").map_err(err)?;
    }
    out.flush().map_err(err)
}

/// Reads a JSONL timeline written by [`write_timeline`] (blank lines are skipped).
pub fn read_timeline(path: &Path) -> Result<Vec<Record>> {
    let file = std::fs::File::open(path).map_err(|source| LoadError::File {
        op: "read",
        path: path.to_owned(),
        source,
    })?;
    let mut records = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| LoadError::File {
            op: "read",
            path: path.to_owned(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let rec = serde_json::from_str(&line).map_err(|source| LoadError::Json {
            path: path.to_owned(),
            line: i + 1,
            source,
        })?;
        records.push(rec);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn reads_error_and_success_bodies() {
        let r = Record::answered(
            0,
            0.0,
            1.0,
            &resp(
                503,
                r#"{"error":"open","class":"transient","breaker":"open"}"#,
            ),
        );
        assert_eq!(
            (r.class.as_deref(), r.breaker.as_deref(), r.degraded),
            (Some("transient"), Some("open"), false)
        );
        let body = r#"{"model_name":"pno","outputs":[],"parameters":{"degraded":true,"n_samples":16,"fallback_from":"2"}}"#;
        let r = Record::answered(1, 0.0, 1.0, &resp(200, body));
        assert_eq!(
            (r.degraded, r.n_samples, r.fallback_from.as_deref(), r.class),
            (true, Some(16), Some("2"), None)
        );
        let r = Record::answered(2, 0.0, 1.0, &resp(200, "not json"));
        assert_eq!((r.status, r.degraded, r.n_samples), (200, false, None));
        let json = serde_json::to_value(&r).unwrap();
        assert!(json.get("class").is_none() && json.get("n_samples").is_none());
    }
}
