//! Results files and tables: `results.json`, `results.csv`, and per-PDE Markdown and LaTeX
//! tables of mean ± std over seeds with the best value of each column marked.
//!
//! Each method with a calibrated variant has two adjacent rows, `pno_d` and
//! `pno_d (conformal)`; the calibrated row shows `=` in the columns calibration leaves
//! unchanged ([`crate::conformal::INVARIANT`]: the raw row holds that value and competes for
//! best) and its own values, ranked with every other row, in the others.

use std::fmt::Write as _;

use serde_json::Value;

use crate::conformal::{CURVE_LEVELS, invariant};
use crate::runner::CellResult;

/// How the best value of a column is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Best {
    /// Smallest mean.
    Lower,
    /// Mean closest to a target (nominal coverage, spread–skill 1).
    Closest(f64),
    /// Not ranked (sharpness alone is not a virtue).
    None,
}

/// A table column.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Metric key.
    pub key: &'static str,
    /// Header.
    pub header: &'static str,
    /// Ranking.
    pub best: Best,
}

/// Columns of the one-step tables.
pub const COLUMNS: &[Column] = &[
    Column {
        key: "rel_l2",
        header: "rel-L2",
        best: Best::Lower,
    },
    Column {
        key: "l2_abs",
        header: "L2 (abs)",
        best: Best::Lower,
    },
    Column {
        key: "crps",
        header: "CRPS",
        best: Best::Lower,
    },
    Column {
        key: "energy_score",
        header: "ES",
        best: Best::Lower,
    },
    Column {
        key: "nll",
        header: "NLL",
        best: Best::Lower,
    },
    Column {
        key: "coverage_90",
        header: "cov 90",
        best: Best::Closest(0.9),
    },
    Column {
        key: "coverage_95",
        header: "cov 95",
        best: Best::Closest(0.95),
    },
    Column {
        key: "interval_width_90",
        header: "width 90",
        best: Best::None,
    },
    Column {
        key: "interval_score_90",
        header: "IS 90",
        best: Best::Lower,
    },
    Column {
        key: "calibration_error",
        header: "cal. err",
        best: Best::Lower,
    },
    Column {
        key: "spread_skill",
        header: "spread/skill",
        best: Best::Closest(1.0),
    },
    Column {
        key: "train_s",
        header: "train (s)",
        best: Best::None,
    },
];

/// Columns of the rollout tables (metrics at the last step).
pub const ROLLOUT_COLUMNS: &[Column] = &[
    Column {
        key: "rollout_rel_l2",
        header: "rel-L2 @K",
        best: Best::Lower,
    },
    Column {
        key: "rollout_crps",
        header: "CRPS @K",
        best: Best::Lower,
    },
    Column {
        key: "rollout_coverage_90",
        header: "cov 90 @K",
        best: Best::Closest(0.9),
    },
    Column {
        key: "diverged_fraction",
        header: "diverged",
        best: Best::Lower,
    },
];

/// Means within this relative distance of the best are tied with it (all marked): the same
/// predictor evaluated along two paths (a calibrated variant and the calibrated run) differs
/// by float rounding only.
pub const TIE_RELATIVE: f64 = 1e-6;

/// Mean and sample std (n − 1) of the finite values.
pub fn mean_std(v: &[f64]) -> Option<(f64, f64)> {
    let f: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if f.is_empty() {
        return None;
    }
    let m = f.iter().sum::<f64>() / f.len() as f64;
    let s = if f.len() > 1 {
        (f.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (f.len() - 1) as f64).sqrt()
    } else {
        0.0
    };
    Some((m, s))
}

/// One aggregated table: rows = methods (suite order), each followed by its calibrated variant
/// where the results have one; columns = `cols`.
#[derive(Debug, Clone)]
pub struct Table {
    /// PDE.
    pub pde: String,
    /// Row labels (`method`, `method (conformal)`).
    pub rows: Vec<String>,
    /// Whether each row is a calibrated variant.
    pub conformal: Vec<bool>,
    /// Columns.
    pub cols: Vec<Column>,
    /// `cells[row][col]` = mean, std over seeds, seeds counted.
    pub cells: Vec<Vec<Option<(f64, f64, usize)>>>,
    /// `best[col]` = the winning rows (ties all win).
    pub best: Vec<Vec<usize>>,
}

impl Table {
    /// Aggregate the results of one PDE: a row per method, and after it a row for its
    /// calibrated variant when some of its cells have one with a value in a column that
    /// calibration changes.
    pub fn new(pde: &str, methods: &[String], cols: &[Column], results: &[CellResult]) -> Self {
        let agg = |m: &String, conformal: bool| -> Vec<Option<(f64, f64, usize)>> {
            cols.iter()
                .map(|c| {
                    if conformal && invariant(c.key) {
                        return None;
                    }
                    let v: Vec<f64> = results
                        .iter()
                        .filter(|r| r.pde == pde && &r.method == m)
                        .filter_map(|r| {
                            if conformal {
                                r.conformal_metric(c.key)
                            } else {
                                r.metric(c.key)
                            }
                        })
                        .collect();
                    mean_std(&v).map(|(a, b)| (a, b, v.len()))
                })
                .collect()
        };
        let (mut rows, mut flags, mut cells) = (Vec::new(), Vec::new(), Vec::new());
        for m in methods {
            rows.push(m.clone());
            flags.push(false);
            cells.push(agg(m, false));
            let cal = agg(m, true);
            if cal.iter().any(Option::is_some) {
                rows.push(conformal_label(m));
                flags.push(true);
                cells.push(cal);
            }
        }
        let best = cols
            .iter()
            .enumerate()
            .map(|(j, c)| {
                let key = |r: usize| -> Option<f64> {
                    let (m, _, _) = cells[r][j]?;
                    match c.best {
                        Best::Lower => Some(m),
                        Best::Closest(t) => Some((m - t).abs()),
                        Best::None => None,
                    }
                };
                let keys: Vec<(usize, f64)> = (0..rows.len())
                    .filter_map(|r| key(r).map(|k| (r, k)))
                    .collect();
                let min = keys.iter().map(|k| k.1).fold(f64::INFINITY, f64::min);
                let slack = TIE_RELATIVE
                    * match c.best {
                        Best::Closest(t) => t.abs(),
                        _ => min.abs(),
                    };
                keys.iter()
                    .filter(|k| k.1 <= min + slack)
                    .map(|k| k.0)
                    .collect::<Vec<usize>>()
            })
            .collect();
        Self {
            pde: pde.to_string(),
            rows,
            conformal: flags,
            cols: cols.to_vec(),
            cells,
            best,
        }
    }

    /// Whether any row has a value.
    pub fn is_empty(&self) -> bool {
        self.cells.iter().flatten().all(Option::is_none)
    }

    fn text(&self, r: usize, j: usize) -> String {
        if self.conformal[r] && invariant(self.cols[j].key) {
            return "=".into();
        }
        match self.cells[r][j] {
            None => "–".into(),
            Some((m, s, n)) => {
                if n > 1 {
                    format!("{} ± {}", num(m), num(s))
                } else {
                    num(m)
                }
            }
        }
    }

    /// Markdown table; the best value of each ranked column in bold.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = write!(s, "| method |");
        for c in &self.cols {
            let _ = write!(s, " {} |", c.header);
        }
        let _ = write!(s, "\n|---|");
        for _ in &self.cols {
            let _ = write!(s, "---:|");
        }
        s.push('\n');
        for (r, name) in self.rows.iter().enumerate() {
            let _ = write!(s, "| {name} |");
            for j in 0..self.cols.len() {
                let t = self.text(r, j);
                if self.best[j].contains(&r) {
                    let _ = write!(s, " **{t}** |");
                } else {
                    let _ = write!(s, " {t} |");
                }
            }
            s.push('\n');
        }
        s
    }

    /// LaTeX `tabular` (booktabs); the best value of each ranked column in bold.
    pub fn latex(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "\\begin{{tabular}}{{l{}}}", "r".repeat(self.cols.len()));
        let _ = writeln!(s, "\\toprule");
        let heads: Vec<String> = self.cols.iter().map(|c| latex_escape(c.header)).collect();
        let _ = writeln!(s, "method & {} \\\\", heads.join(" & "));
        let _ = writeln!(s, "\\midrule");
        for (r, name) in self.rows.iter().enumerate() {
            let vals: Vec<String> = (0..self.cols.len())
                .map(|j| {
                    let t = latex_escape(&self.text(r, j)).replace('±', "$\\pm$");
                    if self.best[j].contains(&r) {
                        format!("\\textbf{{{t}}}")
                    } else {
                        t
                    }
                })
                .collect();
            let _ = writeln!(s, "{} & {} \\\\", latex_escape(name), vals.join(" & "));
        }
        let _ = writeln!(s, "\\bottomrule");
        let _ = writeln!(s, "\\end{{tabular}}");
        s
    }

    /// HTML table (best values in `<strong>`).
    pub fn html(&self) -> String {
        let mut s = String::from("<table><thead><tr><th>method</th>");
        for c in &self.cols {
            let _ = write!(s, "<th>{}</th>", html_escape(c.header));
        }
        s.push_str("</tr></thead><tbody>");
        for (r, name) in self.rows.iter().enumerate() {
            let _ = write!(s, "<tr><th>{}</th>", html_escape(name));
            for j in 0..self.cols.len() {
                let t = html_escape(&self.text(r, j));
                if self.best[j].contains(&r) {
                    let _ = write!(s, "<td><strong>{t}</strong></td>");
                } else {
                    let _ = write!(s, "<td>{t}</td>");
                }
            }
            s.push_str("</tr>");
        }
        s.push_str("</tbody></table>");
        s
    }
}

/// Four significant digits, scientific outside [1e-3, 1e5).
pub fn num(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    if (1e-3..1e5).contains(&a) {
        let digits = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
        format!("{x:.digits$}")
    } else {
        format!("{x:.3e}")
    }
}

/// Escape LaTeX specials.
pub fn latex_escape(s: &str) -> String {
    let mut o = String::new();
    for ch in s.chars() {
        match ch {
            '_' | '%' | '&' | '#' | '$' | '{' | '}' => {
                o.push('\\');
                o.push(ch);
            }
            '~' => o.push_str("\\textasciitilde{}"),
            '^' => o.push_str("\\textasciicircum{}"),
            '\\' => o.push_str("\\textbackslash{}"),
            c => o.push(c),
        }
    }
    o
}

/// Escape HTML specials.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Metric keys present in any result, in a stable order (report keys first).
pub fn metric_keys(results: &[CellResult]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for r in results {
        for (k, v) in &r.metrics {
            if v.is_number() && !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    keys
}

/// Metric keys of the calibrated variants, in a stable order.
fn conformal_keys(results: &[CellResult]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for r in results {
        for (k, v) in r.conformal.iter().flat_map(|c| &c.metrics) {
            if v.is_number() && !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    keys
}

/// `results.csv`: one row per cell. After the raw metrics: the coverage curve
/// (`curve_coverage_<level>`), the calibrated variant (`conformal_level`, `conformal_scale`,
/// `conformal_n_functions`, `conformal_<metric>`, `conformal_curve_coverage_<level>`) and
/// `conformal_note` (why a cell has none); empty where a cell lacks them.
pub fn csv(results: &[CellResult]) -> String {
    let keys = metric_keys(results);
    let ckeys = conformal_keys(results);
    let mut s = String::from("pde,method,seed,kind,params,train_s,calibrate_s,eval_s");
    for k in &keys {
        s.push(',');
        s.push_str(k);
    }
    for l in CURVE_LEVELS {
        let _ = write!(s, ",curve_coverage_{l}");
    }
    s.push_str(",conformal_level,conformal_scale,conformal_n_functions");
    for k in &ckeys {
        let _ = write!(s, ",conformal_{k}");
    }
    for l in CURVE_LEVELS {
        let _ = write!(s, ",conformal_curve_coverage_{l}");
    }
    s.push_str(",conformal_note\n");
    for r in results {
        let _ = write!(
            s,
            "{},{},{},{},{},{},{},{}",
            csv_field(&r.pde),
            csv_field(&r.method),
            r.seed,
            r.kind,
            r.params,
            r.timings.train_s,
            r.timings.calibrate_s,
            r.timings.eval_s
        );
        for k in &keys {
            s.push(',');
            if let Some(v) = r.metrics.get(k).and_then(Value::as_f64) {
                let _ = write!(s, "{v}");
            }
        }
        let curve = |s: &mut String, c: Option<&pno_metrics::CalibrationCurve>| {
            for l in CURVE_LEVELS {
                s.push(',');
                if let Some(c) = c
                    && let Some(k) = c.expected.iter().position(|&e| e == l)
                    && let Some(v) = c.observed.get(k)
                {
                    let _ = write!(s, "{v}");
                }
            }
        };
        curve(&mut s, r.coverage_curve.as_ref());
        match &r.conformal {
            Some(c) => {
                let _ = write!(s, ",{},{},{}", c.level, c.spread_scale, c.n_functions);
            }
            None => s.push_str(",,,"),
        }
        for k in &ckeys {
            s.push(',');
            if let Some(v) = r
                .conformal
                .as_ref()
                .and_then(|c| c.metrics.get(k))
                .and_then(Value::as_f64)
            {
                let _ = write!(s, "{v}");
            }
        }
        curve(&mut s, r.conformal.as_ref().map(|c| &c.coverage_curve));
        s.push(',');
        s.push_str(&csv_field(r.conformal_note.as_deref().unwrap_or("")));
        s.push('\n');
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Label of the calibrated variant of `method`.
pub fn conformal_label(method: &str) -> String {
    format!("{method} (conformal)")
}
