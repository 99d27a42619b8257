//! Results files and tables: `results.json`, `results.csv`, and per-PDE Markdown and LaTeX
//! tables of mean ± std over seeds with the best value of each column marked.

use std::fmt::Write as _;

use serde_json::Value;

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

/// One aggregated table: rows = methods (suite order), columns = `cols`.
#[derive(Debug, Clone)]
pub struct Table {
    /// PDE.
    pub pde: String,
    /// Method names.
    pub rows: Vec<String>,
    /// Columns.
    pub cols: Vec<Column>,
    /// `cells[row][col]` = mean, std over seeds, seeds counted.
    pub cells: Vec<Vec<Option<(f64, f64, usize)>>>,
    /// `best[col]` = the winning rows (ties all win).
    pub best: Vec<Vec<usize>>,
}

impl Table {
    /// Aggregate the results of one PDE.
    pub fn new(pde: &str, methods: &[String], cols: &[Column], results: &[CellResult]) -> Self {
        let cells: Vec<Vec<Option<(f64, f64, usize)>>> = methods
            .iter()
            .map(|m| {
                cols.iter()
                    .map(|c| {
                        let v: Vec<f64> = results
                            .iter()
                            .filter(|r| r.pde == pde && &r.method == m)
                            .filter_map(|r| r.metric(c.key))
                            .collect();
                        mean_std(&v).map(|(a, b)| (a, b, v.len()))
                    })
                    .collect()
            })
            .collect();
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
                let keys: Vec<(usize, f64)> = (0..methods.len())
                    .filter_map(|r| key(r).map(|k| (r, k)))
                    .collect();
                let min = keys.iter().map(|k| k.1).fold(f64::INFINITY, f64::min);
                keys.iter()
                    .filter(|k| k.1 <= min)
                    .map(|k| k.0)
                    .collect::<Vec<usize>>()
            })
            .collect();
        Self {
            pde: pde.to_string(),
            rows: methods.to_vec(),
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

/// `results.csv`: one row per cell.
pub fn csv(results: &[CellResult]) -> String {
    let keys = metric_keys(results);
    let mut s = String::from("pde,method,seed,kind,params,train_s,calibrate_s,eval_s");
    for k in &keys {
        s.push(',');
        s.push_str(k);
    }
    s.push('\n');
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
