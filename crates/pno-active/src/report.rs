//! Learning curves: per-round rows of every arm, their mean ± std over seeds per acquisition,
//! the labelled-sample count each acquisition needs to reach a target test error, and the
//! files (`curve.csv`, `curve.json`, `table.md`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::acquisition::Acquisition;
use crate::error::Result;
use crate::plan::Plan;
use crate::runner::ArmState;

/// One round of one arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveRow {
    /// Acquisition.
    pub acquisition: Acquisition,
    /// Seed.
    pub seed: u64,
    /// Round.
    pub round: usize,
    /// Labelled samples.
    pub n_labels: usize,
    /// Test rel-L2.
    pub rel_l2: f64,
    /// Test CRPS.
    pub crps: f64,
    /// Test coverage of the 90 % interval.
    pub coverage_90: f64,
    /// Test NLL.
    pub nll: f64,
}

/// Mean and sample standard deviation (0 for one value) of a metric over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (n − 1).
    pub std: f64,
    /// Values.
    pub n: usize,
}

impl MeanStd {
    /// Of `v` (empty: NaN).
    pub fn of(v: &[f64]) -> Self {
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Self { mean, std, n }
    }
}

/// One point of an acquisition's mean curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Acquisition.
    pub acquisition: Acquisition,
    /// Round.
    pub round: usize,
    /// Labelled samples.
    pub n_labels: usize,
    /// Test rel-L2 over seeds.
    pub rel_l2: MeanStd,
    /// Test CRPS over seeds.
    pub crps: MeanStd,
    /// Test 90 % coverage over seeds.
    pub coverage_90: MeanStd,
}

/// Labelled samples an acquisition needs to reach a target test rel-L2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelsToTarget {
    /// The target rel-L2.
    pub target: f64,
    /// Where the target came from (`--target-rel-l2`, or the random baseline's curve).
    pub source: String,
    /// Acquisition.
    pub acquisition: Acquisition,
    /// Per seed (plan order): the first labelled count whose test rel-L2 ≤ target (`None`:
    /// not reached within the budget).
    pub per_seed: Vec<Option<usize>>,
    /// Mean ± std over the seeds that reached it.
    pub reached: Option<MeanStd>,
    /// The first labelled count at which the mean curve is ≤ target.
    pub mean_curve: Option<usize>,
}

/// Everything `curve.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curves {
    /// Per-round rows of every arm.
    pub rows: Vec<CurveRow>,
    /// Mean ± std over seeds.
    pub mean: Vec<CurvePoint>,
    /// Labels to target.
    pub labels_to_target: Vec<LabelsToTarget>,
}

/// Rows of every arm, in plan order.
pub fn rows(arms: &[ArmState]) -> Vec<CurveRow> {
    arms.iter()
        .flat_map(|a| {
            a.rounds.iter().map(|r| CurveRow {
                acquisition: a.acquisition,
                seed: a.seed,
                round: r.round,
                n_labels: r.n_labels,
                rel_l2: r.metrics.rel_l2,
                crps: r.metrics.crps,
                coverage_90: r.metrics.coverage_90,
                nll: r.metrics.nll,
            })
        })
        .collect()
}

/// Mean ± std per acquisition and round over the seeds that completed the round.
pub fn mean_curves(plan: &Plan, rows: &[CurveRow]) -> Vec<CurvePoint> {
    let mut out = Vec::new();
    for &acq in &plan.acquisitions {
        for round in 0..plan.rounds() {
            let sel: Vec<&CurveRow> = rows
                .iter()
                .filter(|r| r.acquisition == acq && r.round == round)
                .collect();
            if sel.is_empty() {
                continue;
            }
            let col = |f: fn(&CurveRow) -> f64| {
                MeanStd::of(&sel.iter().map(|r| f(r)).collect::<Vec<_>>())
            };
            out.push(CurvePoint {
                acquisition: acq,
                round,
                n_labels: sel[0].n_labels,
                rel_l2: col(|r| r.rel_l2),
                crps: col(|r| r.crps),
                coverage_90: col(|r| r.coverage_90),
            });
        }
    }
    out
}

/// The targets: `given`, or (none given) the random baseline's mean test rel-L2 at the budget
/// and at the round halfway there (what the other acquisitions need to match random), or the
/// first acquisition's when random is not compared.
pub fn targets(plan: &Plan, mean: &[CurvePoint], given: &[f64]) -> Vec<(f64, String)> {
    if !given.is_empty() {
        return given
            .iter()
            .map(|&t| (t, "--target-rel-l2".to_string()))
            .collect();
    }
    let base = if plan.acquisitions.contains(&Acquisition::Random) {
        Acquisition::Random
    } else {
        plan.acquisitions[0]
    };
    let curve: Vec<&CurvePoint> = mean.iter().filter(|p| p.acquisition == base).collect();
    let Some(last) = curve.last() else {
        return Vec::new();
    };
    let mid = curve[(curve.len() - 1) / 2];
    let mut t = vec![(
        last.rel_l2.mean,
        format!("{base} at {} labels", last.n_labels),
    )];
    if mid.round != last.round {
        t.insert(
            0,
            (
                mid.rel_l2.mean,
                format!("{base} at {} labels", mid.n_labels),
            ),
        );
    }
    t
}

/// Labels to each target for each acquisition.
pub fn labels_to_target(
    plan: &Plan,
    rows: &[CurveRow],
    mean: &[CurvePoint],
    targets: &[(f64, String)],
) -> Vec<LabelsToTarget> {
    let mut out = Vec::new();
    for (target, source) in targets {
        for &acq in &plan.acquisitions {
            let per_seed: Vec<Option<usize>> = plan
                .seeds
                .iter()
                .map(|&s| {
                    rows.iter()
                        .filter(|r| r.acquisition == acq && r.seed == s)
                        .find(|r| r.rel_l2 <= *target)
                        .map(|r| r.n_labels)
                })
                .collect();
            let reached: Vec<f64> = per_seed.iter().flatten().map(|&n| n as f64).collect();
            out.push(LabelsToTarget {
                target: *target,
                source: source.clone(),
                acquisition: acq,
                reached: (!reached.is_empty()).then(|| MeanStd::of(&reached)),
                per_seed,
                mean_curve: mean
                    .iter()
                    .filter(|p| p.acquisition == acq)
                    .find(|p| p.rel_l2.mean <= *target)
                    .map(|p| p.n_labels),
            });
        }
    }
    out
}

/// All curves of `arms` with labels to `given` targets (see [`targets`]).
pub fn curves(plan: &Plan, arms: &[ArmState], given: &[f64]) -> Curves {
    let rows = rows(arms);
    let mean = mean_curves(plan, &rows);
    let t = targets(plan, &mean, given);
    let labels_to_target = labels_to_target(plan, &rows, &mean, &t);
    Curves {
        rows,
        mean,
        labels_to_target,
    }
}

fn pm(m: &MeanStd, digits: usize) -> String {
    if m.n > 1 {
        format!("{:.digits$} ± {:.digits$}", m.mean, m.std)
    } else {
        format!("{:.digits$}", m.mean)
    }
}

fn sci(m: &MeanStd) -> String {
    if m.n > 1 {
        format!("{:.3e} ± {:.1e}", m.mean, m.std)
    } else {
        format!("{:.3e}", m.mean)
    }
}

/// The Markdown table: one row per labelled count, rel-L2 / CRPS / 90 % coverage of each
/// acquisition side by side (mean ± std over seeds), then labels to each target.
pub fn markdown(plan: &Plan, c: &Curves) -> String {
    let mut s = String::new();
    let seeds: Vec<String> = plan.seeds.iter().map(u64::to_string).collect();
    let _ = writeln!(
        s,
        "Test metrics against labelled samples on {} ({} test samples; mean ± std over seeds {}; \
         {}-{} batches from a pool of {}):\n",
        plan.pde,
        plan.test,
        seeds.join(", "),
        plan.batch_rule.describe(),
        plan.batch,
        plan.pool
    );
    let mut head = "| labels |".to_string();
    let mut rule = "|---:|".to_string();
    for metric in ["rel-L2", "CRPS", "cov90"] {
        for a in &plan.acquisitions {
            let _ = write!(head, " {metric} {a} |");
            rule.push_str("---:|");
        }
    }
    let _ = writeln!(s, "{head}\n{rule}");
    for round in 0..plan.rounds() {
        let pts: Vec<Option<&CurvePoint>> = plan
            .acquisitions
            .iter()
            .map(|&a| {
                c.mean
                    .iter()
                    .find(|p| p.acquisition == a && p.round == round)
            })
            .collect();
        let Some(n) = pts.iter().flatten().next().map(|p| p.n_labels) else {
            continue;
        };
        let mut line = format!("| {n} |");
        for f in [0, 1, 2] {
            for p in &pts {
                let cell = match p {
                    None => "–".to_string(),
                    Some(p) => match f {
                        0 => pm(&p.rel_l2, 4),
                        1 => sci(&p.crps),
                        _ => pm(&p.coverage_90, 3),
                    },
                };
                let _ = write!(line, " {cell} |");
            }
        }
        let _ = writeln!(s, "{line}");
    }
    if !c.labels_to_target.is_empty() {
        let _ = writeln!(
            s,
            "\nLabelled samples needed to reach a test rel-L2 target (first round at or below it; \
             per seed, mean ± std over the seeds that reached it, and on the mean curve; \
             > {} = not within the budget):\n",
            plan.budget
        );
        let _ = writeln!(
            s,
            "| target rel-L2 | from | acquisition | per seed | mean ± std (reached) | mean curve |"
        );
        let _ = writeln!(s, "|---:|---|---|---|---:|---:|");
        for l in &c.labels_to_target {
            let per: Vec<String> = l
                .per_seed
                .iter()
                .map(|v| v.map_or(format!(">{}", plan.budget), |n| n.to_string()))
                .collect();
            let reached = l.reached.as_ref().map_or("–".to_string(), |m| {
                format!("{} ({}/{})", pm(m, 1), m.n, l.per_seed.len())
            });
            let _ = writeln!(
                s,
                "| {:.4} | {} | {} | {} | {} | {} |",
                l.target,
                l.source,
                l.acquisition,
                per.join(", "),
                reached,
                l.mean_curve
                    .map_or(format!(">{}", plan.budget), |n| n.to_string())
            );
        }
    }
    s
}

/// `curve.csv`: one line per arm and round.
pub fn csv(rows: &[CurveRow]) -> String {
    let mut s = "acquisition,seed,round,n_labels,rel_l2,crps,coverage_90,nll\n".to_string();
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{}",
            r.acquisition, r.seed, r.round, r.n_labels, r.rel_l2, r.crps, r.coverage_90, r.nll
        );
    }
    s
}

/// Paths of the written report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportFiles {
    /// `curve.csv`.
    pub csv: PathBuf,
    /// `curve.json`.
    pub json: PathBuf,
    /// `table.md`.
    pub markdown: PathBuf,
}

/// Write `curve.csv`, `curve.json` and `table.md` into `out` (atomically).
pub fn write(plan: &Plan, c: &Curves, out: &Path) -> Result<ReportFiles> {
    let files = ReportFiles {
        csv: out.join("curve.csv"),
        json: out.join("curve.json"),
        markdown: out.join("table.md"),
    };
    let put = |p: &Path, s: &str| {
        pno_core::atomic_write(p, s.as_bytes()).map_err(|e| crate::error::ActiveError::Io {
            op: "write",
            path: p.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })
    };
    put(&files.csv, &csv(&c.rows))?;
    pno_run::write_json(&files.json, c)?;
    put(&files.markdown, &markdown(plan, c))?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(acq: Acquisition, seed: u64, round: usize, rel: f64) -> CurveRow {
        CurveRow {
            acquisition: acq,
            seed,
            round,
            n_labels: 4 + 2 * round,
            rel_l2: rel,
            crps: rel / 10.0,
            coverage_90: 0.9,
            nll: 0.0,
        }
    }

    fn plan() -> Plan {
        Plan {
            pde: "darcy".into(),
            generator: Default::default(),
            data_seed: 0,
            run_config: serde_json::json!({}),
            acquisitions: vec![Acquisition::Variance, Acquisition::Random],
            seeds: vec![0, 1],
            initial: 4,
            budget: 8,
            batch: 2,
            pool: 10,
            test: 4,
            draws: 2,
            eval_samples: 2,
            warm_start: false,
            batch_rule: crate::BatchRule::Greedy,
        }
    }

    #[test]
    fn mean_std_and_labels_to_target_by_hand() {
        let m = MeanStd::of(&[1.0, 3.0]);
        assert_eq!((m.mean, m.std, m.n), (2.0, 2f64.sqrt(), 2));
        assert_eq!(MeanStd::of(&[5.0]).std, 0.0);
        let (v, r) = (Acquisition::Variance, Acquisition::Random);
        let rows = vec![
            row(v, 0, 0, 0.5),
            row(v, 0, 1, 0.3),
            row(v, 0, 2, 0.2),
            row(v, 1, 0, 0.5),
            row(v, 1, 1, 0.4),
            row(v, 1, 2, 0.25),
            row(r, 0, 0, 0.5),
            row(r, 0, 1, 0.45),
            row(r, 0, 2, 0.3),
            row(r, 1, 0, 0.5),
            row(r, 1, 1, 0.4),
            row(r, 1, 2, 0.3),
        ];
        let p = plan();
        let mean = mean_curves(&p, &rows);
        assert_eq!(mean.len(), 6);
        assert!((mean[1].rel_l2.mean - 0.35).abs() < 1e-12);
        assert_eq!(mean[1].n_labels, 6);
        // Default targets: random's mean at the budget (0.3) and halfway (round 1: 0.425).
        let t = targets(&p, &mean, &[]);
        assert_eq!(t.len(), 2);
        assert!((t[0].0 - 0.425).abs() < 1e-12 && (t[1].0 - 0.3).abs() < 1e-12);
        let l = labels_to_target(&p, &rows, &mean, &t);
        // variance reaches 0.3 at 6 (seed 0) and 8 (seed 1); random at 8 and 8.
        let var03 = &l[2];
        assert_eq!(var03.acquisition, v);
        assert_eq!(var03.per_seed, vec![Some(6), Some(8)]);
        assert_eq!(var03.reached.map(|m| m.mean), Some(7.0));
        assert_eq!(var03.mean_curve, Some(8)); // mean 0.35 at 6, 0.225 at 8
        assert_eq!(l[3].per_seed, vec![Some(8), Some(8)]);
        let given = labels_to_target(&p, &rows, &mean, &[(0.1, "x".into())]);
        assert_eq!(given[0].per_seed, vec![None, None]);
        assert!(given[0].reached.is_none());
        let c = Curves {
            rows: rows.clone(),
            mean,
            labels_to_target: l,
        };
        let md = markdown(&p, &c);
        assert!(
            md.contains("| 6 | 0.3500 ± 0.0707 | 0.4250 ± 0.0354 |"),
            "{md}"
        );
        assert!(
            md.contains("| 0.3000 | random at 8 labels | variance | 6, 8 | 7.0 ± 1.4 (2/2) | 8 |"),
            "{md}"
        );
        assert_eq!(csv(&rows).lines().count(), 13);
    }
}
