//! The report's reading guide: one paragraph per PDE, generated from the numbers, naming the
//! best-calibrated method and the sharpest one at equal calibration.
//!
//! - **Best calibrated**: the lowest calibration error (`calibration_error`, the mean absolute
//!   gap between the coverage of central intervals and their nominal level over 100 levels in
//!   [0, 1] — the table's "cal. err" column), mean over seeds, among every probabilistic variant
//!   (raw, `(conformal)`, and methods with their own `conformal` table).
//! - **Sharpest at equal calibration**: the narrowest mean 90 % interval (`interval_width_90`)
//!   among the probabilistic variants whose mean 90 % coverage is within
//!   [`COVERAGE_TOLERANCE`] of 0.90, raw variants included (a raw method that is already
//!   calibrated competes as it is).
//!
//! Deterministic methods (zero spread) are named and not ranked; ties (within
//! [`TIE_RELATIVE`]) are all named.

use std::fmt::Write as _;

use crate::runner::CellResult;
use crate::tables::{TIE_RELATIVE, mean_std, num};

/// How far from 0.90 the mean 90 % coverage of a variant may be for it to count as calibrated
/// in the sharpness comparison (absolute, i.e. ±2 percentage points).
pub const COVERAGE_TOLERANCE: f64 = 0.02;

/// One probabilistic variant of a method on a PDE, averaged over seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Row label (`pno_d`, `pno_d (conformal)`).
    pub label: String,
    /// Mean calibration error.
    pub calibration_error: f64,
    /// Mean 90 % coverage.
    pub coverage_90: f64,
    /// Mean 90 % interval width.
    pub width_90: f64,
}

pub use crate::tables::conformal_label;

fn mean(v: &[f64]) -> Option<f64> {
    mean_std(v).map(|(m, _)| m)
}

/// The probabilistic variants of `methods` on `pde` (suite order, raw before calibrated) with
/// all three numbers.
pub fn candidates(pde: &str, methods: &[String], results: &[CellResult]) -> Vec<Candidate> {
    let mut out = Vec::new();
    for m in methods {
        let cells: Vec<&CellResult> = results
            .iter()
            .filter(|r| r.pde == pde && &r.method == m && r.probabilistic())
            .collect();
        for conformal in [false, true] {
            let get = |key: &str| -> Option<f64> {
                let v: Vec<f64> = cells
                    .iter()
                    .filter_map(|c| {
                        if conformal {
                            c.conformal_metric(key)
                        } else {
                            c.metric(key)
                        }
                    })
                    .collect();
                mean(&v)
            };
            if let (Some(e), Some(c), Some(w)) = (
                get("calibration_error"),
                get("coverage_90"),
                get("interval_width_90"),
            ) {
                out.push(Candidate {
                    label: if conformal {
                        conformal_label(m)
                    } else {
                        m.clone()
                    },
                    calibration_error: e,
                    coverage_90: c,
                    width_90: w,
                });
            }
        }
    }
    out
}

/// The candidates with the smallest `key` (ties, within [`TIE_RELATIVE`], all).
fn argmin<'a>(c: &[&'a Candidate], key: impl Fn(&Candidate) -> f64) -> Vec<&'a Candidate> {
    let min = c.iter().map(|x| key(x)).fold(f64::INFINITY, f64::min);
    c.iter()
        .copied()
        .filter(|x| key(x) <= min + TIE_RELATIVE * min.abs())
        .collect()
}

/// "is" for one, "are" for several.
fn is(c: &[&Candidate]) -> &'static str {
    if c.len() > 1 { "are" } else { "is" }
}

fn names(c: &[&Candidate]) -> String {
    let v: Vec<&str> = c.iter().map(|x| x.label.as_str()).collect();
    match v.as_slice() {
        [] => String::new(),
        [a] => (*a).to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Whether a mean 90 % coverage counts as calibrated for the sharpness comparison.
pub fn within_tolerance(coverage_90: f64) -> bool {
    (coverage_90 - 0.9).abs() <= COVERAGE_TOLERANCE + 1e-12
}

/// The reading-guide paragraph of `pde` (plain text). `no_split` names the methods whose runs
/// have no calibration split.
pub fn paragraph(
    pde: &str,
    methods: &[String],
    results: &[CellResult],
    no_split: &[String],
) -> String {
    let all = candidates(pde, methods, results);
    let refs: Vec<&Candidate> = all.iter().collect();
    let mut s = format!("{pde}: ");
    if refs.is_empty() {
        s.push_str("no probabilistic method has results here, so nothing is ranked.");
    } else {
        let best = argmin(&refs, |c| c.calibration_error);
        let _ = write!(
            s,
            "best calibrated {} {} (calibration error {}, the mean |coverage − level| over 100 \
             levels; mean over seeds)",
            is(&best),
            names(&best),
            num(best[0].calibration_error)
        );
        let rest: Vec<&Candidate> = refs
            .iter()
            .copied()
            .filter(|c| !best.iter().any(|b| b.label == c.label))
            .collect();
        if let Some(next) = argmin(&rest, |c| c.calibration_error).first() {
            let _ = write!(
                s,
                ", ahead of {} ({})",
                next.label,
                num(next.calibration_error)
            );
        }
        s.push_str(". ");
        let ok: Vec<&Candidate> = refs
            .iter()
            .copied()
            .filter(|c| within_tolerance(c.coverage_90))
            .collect();
        if ok.is_empty() {
            let closest = argmin(&refs, |c| (c.coverage_90 - 0.9).abs());
            let _ = write!(
                s,
                "No method has a 90 % coverage within ±{} of 0.90 (closest: {} at {}), so none \
                 is compared for sharpness at equal calibration.",
                COVERAGE_TOLERANCE,
                names(&closest),
                num(closest[0].coverage_90)
            );
        } else {
            let sharp = argmin(&ok, |c| c.width_90);
            let _ = write!(
                s,
                "Among the methods whose 90 % coverage is within ±{} of 0.90, the sharpest {} {} \
                 (90 % interval width {} at coverage {})",
                COVERAGE_TOLERANCE,
                is(&sharp),
                names(&sharp),
                num(sharp[0].width_90),
                num(sharp[0].coverage_90)
            );
            let others: Vec<String> = ok
                .iter()
                .filter(|c| !sharp.iter().any(|b| b.label == c.label))
                .map(|c| format!("{} {}", c.label, num(c.width_90)))
                .collect();
            if others.is_empty() {
                s.push_str(if sharp.len() == 1 {
                    ", the only one within it."
                } else {
                    "."
                });
            } else {
                let _ = write!(s, "; the others within it: {}.", others.join(", "));
            }
        }
    }
    let mut moved = Vec::new();
    for m in methods {
        let cells: Vec<&CellResult> = results
            .iter()
            .filter(|r| r.pde == pde && &r.method == m && r.conformal.is_some())
            .collect();
        let raw: Vec<f64> = cells
            .iter()
            .filter_map(|c| c.metric("coverage_90"))
            .collect();
        let cal: Vec<f64> = cells
            .iter()
            .filter_map(|c| c.conformal_metric("coverage_90"))
            .collect();
        let k: Vec<f64> = cells
            .iter()
            .filter_map(|c| c.conformal.as_ref().map(|v| v.spread_scale))
            .collect();
        if let (Some(a), Some(b), Some(k)) = (mean(&raw), mean(&cal), mean(&k)) {
            moved.push(format!("{m} {} → {} (×{})", num(a), num(b), num(k)));
        }
    }
    if !moved.is_empty() {
        let _ = write!(
            s,
            " Conformal calibration moved the 90 % coverage (spread scale): {}.",
            moved.join(", ")
        );
    }
    let det: Vec<&String> = methods
        .iter()
        .filter(|m| {
            let cells: Vec<&CellResult> = results
                .iter()
                .filter(|r| r.pde == pde && &r.method == *m)
                .collect();
            !cells.is_empty() && cells.iter().all(|c| !c.probabilistic())
        })
        .collect();
    if !det.is_empty() {
        let v: Vec<&str> = det.iter().map(|m| m.as_str()).collect();
        let _ = write!(
            s,
            " Deterministic (no spread), not ranked: {}.",
            v.join(", ")
        );
    }
    if !no_split.is_empty() {
        let _ = write!(
            s,
            " No calibration split for {} (data.n_calibration = 0): reported raw only; set \
             data.n_calibration to add the calibrated variant.",
            no_split.join(", ")
        );
    }
    s
}
