//! Time to recover from injected faults, from a timeline and the faults' windows.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{LoadError, Result};
use crate::record::Record;

/// One injected fault: a window of the run (ms since the run started).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// Name, e.g. `kill-worker` or `transient-io`.
    pub name: String,
    /// Start of the fault, ms.
    pub start_ms: f64,
    /// End of the fault, ms.
    pub end_ms: f64,
    /// Failure class the fault injects; `transient` asks for the in-window success fraction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
}

impl Fault {
    /// Transient: `class` is `transient`, or without a class, the name contains `transient`.
    pub fn is_transient(&self) -> bool {
        match &self.class {
            Some(class) => class == "transient",
            None => self.name.to_ascii_lowercase().contains("transient"),
        }
    }
}

/// Reads a JSON array of [`Fault`]s.
pub fn read_faults(path: &Path) -> Result<Vec<Fault>> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::File {
        op: "read",
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| LoadError::Json {
        path: path.to_owned(),
        line: source.line(),
        source,
    })
}

/// Recovery from one fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    /// The fault's name.
    pub name: String,
    /// The fault's window, ms.
    pub start_ms: f64,
    /// The fault's window, ms.
    pub end_ms: f64,
    /// Whether the fault counts as transient (see [`Fault::is_transient`]).
    pub transient: bool,
    /// Whether failures stopped for the quiet window before the timeline ended.
    pub recovered: bool,
    /// From the fault's end to the start of the last failing request before the quiet window
    /// (0 when none failed after the end); `None` when not recovered.
    pub mttr_ms: Option<f64>,
    /// Requests sent with a start inside the window.
    pub requests: u64,
    /// Of those, answered 2xx.
    pub succeeded: u64,
    /// `succeeded / requests`; `None` without requests.
    pub success_fraction: Option<f64>,
}

/// The recoveries of all faults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MttrReport {
    /// Failure-free time that counts as recovered, ms.
    pub quiet_ms: f64,
    /// One entry per fault, in the given order.
    pub faults: Vec<Recovery>,
}

/// For each fault: the time from its end until failures stop for `quiet_ms` (2000 in the
/// CLI), and the fraction of requests started in its window that were answered 2xx.
///
/// A failure is a sent request not answered 2xx or 429 ([`Record::is_failure`]), dated by its
/// scheduled start. Recovery happens at the fault's end `E` if no failure starts in
/// `[E, E + quiet_ms)`, else at the start `f` of the first failure (from `E` on) followed by
/// `quiet_ms` without one; `mttr_ms = f − E`. The timeline must reach `quiet_ms` past that
/// point, otherwise the fault is not recovered.
pub fn mttr(records: &[Record], faults: &[Fault], quiet_ms: f64) -> MttrReport {
    let mut failures: Vec<f64> = records
        .iter()
        .filter(|r| r.is_failure())
        .map(|r| r.start_ms)
        .collect();
    failures.sort_by(f64::total_cmp);
    let last = records
        .iter()
        .map(|r| r.start_ms)
        .fold(f64::NEG_INFINITY, f64::max);
    let faults = faults
        .iter()
        .map(|fault| {
            let mut at = fault.end_ms;
            let mut recovered = false;
            for &f in failures.iter().filter(|&&f| f >= fault.end_ms) {
                if f - at >= quiet_ms {
                    recovered = true;
                    break;
                }
                at = f;
            }
            recovered = recovered || last - at >= quiet_ms;
            let window = records.iter().filter(|r| {
                r.outcome != crate::record::Outcome::ClientDropped
                    && r.start_ms >= fault.start_ms
                    && r.start_ms < fault.end_ms
            });
            let (requests, succeeded) = window.fold((0u64, 0u64), |(n, ok), r| {
                (n + 1, ok + u64::from(r.is_success()))
            });
            Recovery {
                name: fault.name.clone(),
                start_ms: fault.start_ms,
                end_ms: fault.end_ms,
                transient: fault.is_transient(),
                recovered,
                mttr_ms: recovered.then_some(at - fault.end_ms),
                requests,
                succeeded,
                success_fraction: (requests > 0).then(|| succeeded as f64 / requests as f64),
            }
        })
        .collect();
    MttrReport { quiet_ms, faults }
}

impl MttrReport {
    /// The report as a Markdown table.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| fault | window (ms) | transient | recovered | MTTR (ms) | requests in window | 2xx in window |\n\
             |---|---|---|---|---|---|---|\n",
        );
        for f in &self.faults {
            let mttr = f
                .mttr_ms
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
            let frac = f
                .success_fraction
                .map_or_else(|| "-".to_owned(), |v| format!("{:.1} %", v * 100.0));
            let _ = writeln!(
                out,
                "| {} | {:.0}–{:.0} | {} | {} | {mttr} | {} | {frac} |",
                f.name, f.start_ms, f.end_ms, f.transient, f.recovered, f.requests
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Outcome;

    fn rec(id: u64, start_ms: f64, status: u16) -> Record {
        let mut r = Record::unanswered(id, start_ms, 1.0, Outcome::Answered);
        r.status = status;
        r
    }

    #[test]
    fn mttr_on_a_synthetic_timeline_matches_the_hand_answer() {
        // A request every 100 ms over 0..20 s, all 200 except:
        // - "outage" 5000–8000: 503 from 5000 through 9300, one straggler 500 at 10500 (1.2 s
        //   later, inside the quiet window), 429s at 11000–11500 (shedding, not failures):
        //   recovery at 10500, so MTTR = 10500 − 8000 = 2500 ms.
        // - "transient-blip" 14000–15000: every other request 503 (14100, 14300, …, 14900),
        //   none after the end: MTTR 0, 5 of 10 answered 2xx.
        // - "late" 19000–19500: 503 through 19900, the end of the timeline: not recovered.
        let records: Vec<Record> = (0..200u64)
            .map(|i| {
                let t = i as f64 * 100.0;
                let status = match i {
                    50..=93 | 105 => 503,
                    110..=115 => 429,
                    140..=149 if i % 2 == 1 => 503,
                    190.. => 503,
                    _ => 200,
                };
                rec(i, t, status)
            })
            .collect();
        let faults: Vec<Fault> = serde_json::from_str(
            r#"[{"name":"outage","start_ms":5000,"end_ms":8000},
                {"name":"transient-blip","start_ms":14000,"end_ms":15000},
                {"name":"late","start_ms":19000,"end_ms":19500,"class":"persistent"}]"#,
        )
        .unwrap();
        let report = mttr(&records, &faults, 2000.0);
        let got: Vec<_> = report
            .faults
            .iter()
            .map(|f| (f.recovered, f.mttr_ms, f.transient))
            .collect();
        assert_eq!(
            got,
            [
                (true, Some(2500.0), false),
                (true, Some(0.0), true),
                (false, None, false)
            ]
        );
        assert_eq!(
            (report.faults[1].requests, report.faults[1].succeeded),
            (10, 5)
        );
        assert_eq!(report.faults[1].success_fraction, Some(0.5));
        assert_eq!(report.faults[0].success_fraction, Some(0.0));
        assert!(
            report
                .markdown()
                .contains("| outage | 5000–8000 | false | true | 2500 |")
        );
    }
}
