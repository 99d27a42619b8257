//! Counts, goodput, latency percentiles and per-second series of a timeline.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::record::{Outcome, Record};

/// The nearest-rank percentile: the smallest value with at least `p` % of the values at or
/// below it, i.e. the `⌈p/100 · n⌉`-th smallest (1-based; the smallest for `p` = 0). Always one
/// of the values, never interpolated. `None` when `values` is empty; `p` is clamped to
/// `[0, 100]`; NaNs sort last.
///
/// ```
/// // The worked example of the nearest-rank method: 15, 20, 35, 40, 50.
/// let v = [50.0, 15.0, 40.0, 20.0, 35.0];
/// assert_eq!(pno_load::percentile(&v, 30.0), Some(20.0));
/// assert_eq!(pno_load::percentile(&v, 50.0), Some(35.0));
/// ```
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile_sorted(&sorted, p)
}

fn percentile_sorted(sorted: &[f64], p: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    // p·n first, then /100: exact for integer p, so 90 % of 10 is rank 9, not 10.
    let rank = (p.clamp(0.0, 100.0) * n as f64 / 100.0).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// Latency distribution of a set of requests, ms (nearest-rank percentiles).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Requests counted.
    pub n: u64,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl Latency {
    fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Self {
            n: values.len() as u64,
            p50: percentile_sorted(&values, 50.0),
            p90: percentile_sorted(&values, 90.0),
            p99: percentile_sorted(&values, 99.0),
            max: values.last().copied(),
        }
    }
}

/// Requests by the second of their scheduled start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// Whole seconds since the run started.
    pub second: u64,
    /// Answered 2xx.
    pub successes: u64,
    /// Sent and not answered 2xx (other statuses, errors, hung).
    pub failures: u64,
    /// Answered 2xx with `degraded: true`.
    pub degraded: u64,
    /// Not started (`client_dropped`).
    pub client_dropped: u64,
}

/// What a run did, from its timeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Arrivals scheduled.
    pub scheduled: u64,
    /// Requests started (scheduled minus client-dropped).
    pub sent: u64,
    /// Answered 2xx.
    pub succeeded: u64,
    /// Answered 2xx with `degraded: true`.
    pub degraded: u64,
    /// Sent and not answered 2xx.
    pub failed: u64,
    /// Non-2xx answers by status code.
    pub failed_by_status: BTreeMap<String, u64>,
    /// Non-2xx answers by the error body's `class` (`unclassified` without one).
    pub failed_by_class: BTreeMap<String, u64>,
    /// Connection, I/O or protocol errors (no HTTP answer).
    pub connection_errors: u64,
    /// No complete answer within the client timeout.
    pub hung: u64,
    /// Not started because `--max-in-flight` requests were outstanding.
    pub client_dropped: u64,
    /// Requests that needed more than one attempt.
    pub retried: u64,
    /// The arrival window, s.
    pub duration_s: f64,
    /// 2xx answers per second of the arrival window.
    pub goodput_rps: f64,
    /// Latency of 2xx answers, ms.
    pub latency_success_ms: Latency,
    /// Latency of every HTTP answer (any status), ms.
    pub latency_all_ms: Latency,
    /// Per-second series by scheduled start, every second of the run present.
    pub per_second: Vec<Second>,
}

impl Summary {
    /// Summarises `records` of a run whose arrivals lasted `duration_s` seconds.
    pub fn of(records: &[Record], duration_s: f64) -> Self {
        let mut s = Self {
            scheduled: records.len() as u64,
            duration_s,
            ..Self::default()
        };
        let (mut ok_ms, mut all_ms) = (Vec::new(), Vec::new());
        let seconds = records
            .iter()
            .map(|r| (r.start_ms / 1e3) as usize + 1)
            .max()
            .unwrap_or(0);
        s.per_second = (0..seconds as u64)
            .map(|second| Second {
                second,
                ..Second::default()
            })
            .collect();
        for r in records {
            let sec = &mut s.per_second[(r.start_ms / 1e3) as usize];
            s.retried += u64::from(r.attempts > 1);
            match r.outcome {
                Outcome::ClientDropped => {
                    s.client_dropped += 1;
                    sec.client_dropped += 1;
                    continue;
                }
                Outcome::Hung => s.hung += 1,
                Outcome::Error => s.connection_errors += 1,
                Outcome::Answered => all_ms.push(r.latency_ms),
            }
            s.sent += 1;
            if r.is_success() {
                s.succeeded += 1;
                sec.successes += 1;
                ok_ms.push(r.latency_ms);
                if r.degraded {
                    s.degraded += 1;
                    sec.degraded += 1;
                }
                continue;
            }
            s.failed += 1;
            sec.failures += 1;
            if r.outcome == Outcome::Answered {
                *s.failed_by_status.entry(r.status.to_string()).or_default() += 1;
                let class = r.class.clone().unwrap_or_else(|| "unclassified".into());
                *s.failed_by_class.entry(class).or_default() += 1;
            }
        }
        s.goodput_rps = if duration_s > 0.0 {
            s.succeeded as f64 / duration_s
        } else {
            0.0
        };
        s.latency_success_ms = Latency::of(ok_ms);
        s.latency_all_ms = Latency::of(all_ms);
        s
    }

    /// The summary as Markdown tables.
    pub fn markdown(&self) -> String {
        let mut out = String::from("| metric | value |\n|---|---|\n");
        let counts = [
            ("scheduled", self.scheduled),
            ("sent", self.sent),
            ("succeeded (2xx)", self.succeeded),
            ("degraded (2xx)", self.degraded),
            ("failed", self.failed),
            ("connection errors", self.connection_errors),
            ("hung", self.hung),
            ("client dropped", self.client_dropped),
            ("retried", self.retried),
        ];
        for (name, n) in counts {
            let _ = writeln!(out, "| {name} | {n} |");
        }
        for (status, n) in &self.failed_by_status {
            let _ = writeln!(out, "| failed: status {status} | {n} |");
        }
        for (class, n) in &self.failed_by_class {
            let _ = writeln!(out, "| failed: class {class} | {n} |");
        }
        let _ = writeln!(
            out,
            "| goodput | {:.2} /s over {} s |",
            self.goodput_rps, self.duration_s
        );
        out.push_str("\n| latency (ms) | n | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|\n");
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        for (name, l) in [
            ("2xx", &self.latency_success_ms),
            ("all answers", &self.latency_all_ms),
        ] {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} |",
                l.n,
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.max)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HttpResponse;

    #[test]
    fn nearest_rank_percentiles_match_hand_computed_values() {
        // Worked by hand: n = 5, rank = ⌈p·5/100⌉ → p5: 1, p30: 2, p40: 2, p50: 3, p100: 5.
        let v = [20.0, 50.0, 35.0, 15.0, 40.0];
        let got: Vec<_> = [0.0, 5.0, 30.0, 40.0, 50.0, 100.0]
            .iter()
            .map(|&p| percentile(&v, p))
            .collect();
        assert_eq!(got, [15.0, 15.0, 20.0, 20.0, 35.0, 50.0].map(Some));
        // 1..=10: p90 is rank 9 exactly (no float round-up to 10), p91 is rank 10.
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(
            (percentile(&v, 90.0), percentile(&v, 91.0)),
            (Some(9.0), Some(10.0))
        );
        // 1..=100: p99 = 99, p50 = 50.
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(
            (percentile(&v, 50.0), percentile(&v, 99.0)),
            (Some(50.0), Some(99.0))
        );
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn counts_every_outcome() {
        let ok = HttpResponse {
            status: 200,
            headers: vec![],
            body: br#"{"parameters":{"degraded":true}}"#.to_vec(),
        };
        let shed = HttpResponse {
            status: 503,
            headers: vec![],
            body: br#"{"error":"x","class":"transient"}"#.to_vec(),
        };
        let mut records = vec![
            Record::answered(0, 0.0, 10.0, &ok),
            Record::answered(1, 500.0, 30.0, &shed),
            Record::unanswered(2, 1100.0, 100.0, Outcome::Hung),
            Record::unanswered(3, 1200.0, 0.0, Outcome::ClientDropped),
            Record::unanswered(4, 1300.0, 1.0, Outcome::Error),
        ];
        records[1].attempts = 4;
        let s = Summary::of(&records, 2.0);
        assert_eq!(
            (s.scheduled, s.sent, s.succeeded, s.degraded, s.failed),
            (5, 4, 1, 1, 3)
        );
        assert_eq!(
            (s.hung, s.client_dropped, s.connection_errors, s.retried),
            (1, 1, 1, 1)
        );
        assert_eq!(s.failed_by_status["503"], 1);
        assert_eq!(s.failed_by_class["transient"], 1);
        assert_eq!(s.goodput_rps, 0.5);
        assert_eq!((s.latency_all_ms.n, s.latency_all_ms.max), (2, Some(30.0)));
        assert_eq!(s.per_second.len(), 2);
        assert_eq!(
            (
                s.per_second[0].successes,
                s.per_second[0].failures,
                s.per_second[0].degraded
            ),
            (1, 1, 1)
        );
        assert_eq!(
            (s.per_second[1].failures, s.per_second[1].client_dropped),
            (2, 1)
        );
        assert!(s.markdown().contains("| hung | 1 |"));
    }
}
