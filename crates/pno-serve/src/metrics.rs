//! Prometheus text exposition (`/metrics`), hand-rolled on shared state: counters, gauges and
//! histograms with explicit buckets, labelled by model and version. Names follow Triton's set
//! (`pno_inference_request_success_total` ↔ `nv_inference_request_success`, …).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

/// Latency buckets (seconds).
pub(crate) const BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, Clone, Default)]
struct Hist {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

type Key = (&'static str, String);

#[derive(Debug, Default)]
struct Inner {
    counters: BTreeMap<Key, f64>,
    hists: BTreeMap<Key, Hist>,
}

/// The server's metrics.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    inner: Mutex<Inner>,
    /// HTTP requests being handled.
    pub(crate) in_flight: AtomicI64,
}

const HELP: &[(&str, &str, &str)] = &[
    (
        "pno_inference_request_success_total",
        "counter",
        "Successful inference requests.",
    ),
    (
        "pno_inference_request_failure_total",
        "counter",
        "Failed inference requests, by reason.",
    ),
    (
        "pno_inference_count_total",
        "counter",
        "Inputs inferred (batch elements).",
    ),
    (
        "pno_inference_exec_count_total",
        "counter",
        "Model executions.",
    ),
    (
        "pno_batches_total",
        "counter",
        "Batches of concurrent requests computed together (dynamic batching).",
    ),
    (
        "pno_batched_requests_total",
        "counter",
        "Requests computed in a batch (divided by pno_batches_total: the mean batch size).",
    ),
    (
        "pno_http_requests_total",
        "counter",
        "HTTP requests by route class and status.",
    ),
    (
        "pno_failures_total",
        "counter",
        "Failed requests by failure class (input, security, transient, persistent, internal), model and version.",
    ),
    (
        "pno_breaker_transitions_total",
        "counter",
        "Circuit breaker state changes by model, version and new state.",
    ),
    (
        "pno_fallback_total",
        "counter",
        "Requests served by an older version because the newest one's breaker was open.",
    ),
    (
        "pno_degraded_total",
        "counter",
        "Requests answered with fewer draws under pressure, by reason (queue, latency, work).",
    ),
    (
        "pno_shed_total",
        "counter",
        "Inference requests refused to protect the server (queue full, queue deadline, pressure).",
    ),
    (
        "pno_cancelled_total",
        "counter",
        "Inferences stopped before finishing, by reason (deadline, disconnect).",
    ),
    (
        "pno_connections_refused_total",
        "counter",
        "Connections refused at the open-connection cap.",
    ),
    (
        "pno_tls_handshake_failures_total",
        "counter",
        "TLS connections that never reached HTTP, by reason (plain_http, timeout, handshake, closed).",
    ),
    (
        "pno_audit_checkpoint_webhook_deliveries_total",
        "counter",
        "Signed audit checkpoints delivered to audit.checkpoint_webhook.",
    ),
    (
        "pno_audit_checkpoint_webhook_failures_total",
        "counter",
        "Signed audit checkpoints whose delivery to the webhook failed after retries.",
    ),
    (
        "pno_audit_append_failures_total",
        "counter",
        "Audit records that could not be written after retries.",
    ),
    (
        "pno_rollbacks_total",
        "counter",
        "Automated rollbacks: a version's unpinned traffic moved to an older one (to=\"none\": nowhere to go, the model is degraded).",
    ),
    (
        "pno_alert_notifications_total",
        "counter",
        "Alert notifications by receiver and outcome (delivered, failed after retries, dropped on a full queue).",
    ),
    (
        "pno_inference_request_duration_seconds",
        "histogram",
        "End-to-end inference request time.",
    ),
    (
        "pno_inference_queue_duration_seconds",
        "histogram",
        "Time waiting for a compute slot.",
    ),
    (
        "pno_inference_compute_duration_seconds",
        "histogram",
        "Model compute time.",
    ),
];

/// Labels `model="…",version="…"`.
pub(crate) fn model_labels(model: &str, version: &str) -> String {
    format!(
        "model=\"{}\",version=\"{}\"",
        escape(model),
        escape(version)
    )
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Add to a counter.
    pub(crate) fn inc(&self, name: &'static str, labels: String, by: f64) {
        debug_assert!(
            HELP.iter().any(|(n, ..)| *n == name),
            "counter {name} has no HELP entry: it would never be rendered"
        );
        let mut i = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *i.counters.entry((name, labels)).or_default() += by;
    }

    /// Observe a duration (seconds) in a histogram.
    pub(crate) fn observe(&self, name: &'static str, labels: String, seconds: f64) {
        let mut i = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let h = i.hists.entry((name, labels)).or_default();
        for (c, b) in h.counts.iter_mut().zip(BUCKETS) {
            if seconds <= b {
                *c += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// Render the text format; `gauges` are extra `(name, help, labels, value)` lines. Every
    /// series gets the label `replica="<replica>"`, last in its label set (so sums over replicas
    /// are `sum without (replica)`), and `pno_replica_info` names the replica and the server's
    /// version.
    pub(crate) fn render(&self, replica: &str, gauges: &[(&str, &str, String, f64)]) -> String {
        let i = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let r = format!("replica=\"{}\"", escape(replica));
        // `{labels,replica="…"}` (or `{replica="…"}`).
        let set = |labels: &str| {
            if labels.is_empty() {
                format!("{{{r}}}")
            } else {
                format!("{{{labels},{r}}}")
            }
        };
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            if *kind == "counter" {
                for ((n, l), v) in i.counters.iter().filter(|((n, _), _)| n == name) {
                    let _ = writeln!(out, "{n}{} {v}", set(l));
                }
            } else {
                for ((n, l), h) in i.hists.iter().filter(|((n, _), _)| n == name) {
                    let le = |b: &str| {
                        if l.is_empty() {
                            set(&format!("le=\"{b}\""))
                        } else {
                            set(&format!("{l},le=\"{b}\""))
                        }
                    };
                    for (c, b) in h.counts.iter().zip(BUCKETS) {
                        let _ = writeln!(out, "{n}_bucket{} {c}", le(&b.to_string()));
                    }
                    let _ = writeln!(out, "{n}_bucket{} {}", le("+Inf"), h.count);
                    let _ = writeln!(out, "{n}_sum{} {}", set(l), h.sum);
                    let _ = writeln!(out, "{n}_count{} {}", set(l), h.count);
                }
            }
        }
        let (rss, cpu) = process_stats();
        let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
        let fixed: [(&str, &str, &str, &str, f64); 4] = [
            (
                "pno_replica_info",
                "gauge",
                "This server process: its replica id and version (labels; always 1).",
                &version,
                1.0,
            ),
            (
                "pno_http_in_flight_requests",
                "gauge",
                "HTTP requests being handled.",
                "",
                self.in_flight.load(Ordering::SeqCst) as f64,
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                "",
                rss as f64,
            ),
            (
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                "",
                cpu,
            ),
        ];
        let mut last = "";
        let read_now = gauges
            .iter()
            .map(|(name, help, labels, v)| (*name, "gauge", *help, labels.as_str(), *v));
        for (name, kind, help, labels, v) in read_now.chain(fixed) {
            if name != last {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                last = name;
            }
            let _ = writeln!(out, "{name}{} {v}", set(labels));
        }
        out
    }
}

/// Resident memory (bytes) and CPU time (seconds) of this process, from `/proc` (0 elsewhere).
pub(crate) fn process_stats() -> (u64, f64) {
    let rss = pno_core::resources::rss_bytes().map_or(0, |(now, _)| now);
    (rss, pno_core::resources::cpu_seconds().unwrap_or(0.0))
}
