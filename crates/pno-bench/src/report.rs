//! The report of a suite: `results.json`, `results.csv`, `tables.md`, `tables.tex`, plots (SVG and
//! PNG) and `index.html` showing them together, opened by a reading guide (one paragraph per
//! PDE, [`crate::guide`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::error::{BenchError, Result, io_err};
use crate::guide::{COVERAGE_TOLERANCE, conformal_label, paragraph};
use crate::plots::{Band, Line, Series, band_panels, fields, unit_curves, unit_lines};
use crate::runner::CellResult;
use crate::suite::{Cell, Suite};
use crate::tables::{COLUMNS, ROLLOUT_COLUMNS, Table, csv, html_escape, mean_std};

/// Files written by [`write_report`].
#[derive(Debug, Clone, Default)]
pub struct ReportFiles {
    /// Every file, relative to the output folder.
    pub files: Vec<PathBuf>,
    /// The Markdown tables.
    pub markdown: String,
}

fn write(out: &Path, rel: &str, bytes: &[u8], files: &mut Vec<PathBuf>) -> Result<()> {
    let path = out.join(rel);
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(io_err("create", d))?;
    }
    pno_core::atomic_write(&path, bytes)?;
    files.push(PathBuf::from(rel));
    Ok(())
}

fn method_names(suite: &Suite) -> Vec<String> {
    suite.methods.iter().map(|m| m.name.clone()).collect()
}

/// Mean over seeds of a curve (all cells of one PDE and method).
fn mean_curve(
    cells: &[&CellResult],
    pick: impl Fn(&CellResult) -> (Vec<f64>, Vec<f64>),
) -> Vec<(f64, f64)> {
    let Some(first) = cells.first() else {
        return Vec::new();
    };
    let (x, _) = pick(first);
    (0..x.len())
        .map(|k| {
            let ys: Vec<f64> = cells
                .iter()
                .filter_map(|c| pick(c).1.get(k).copied())
                .collect();
            (x[k], ys.iter().sum::<f64>() / ys.len().max(1) as f64)
        })
        .collect()
}

/// Mean over seeds of the coverage curves of one method: raw (the recorded curve at
/// [`crate::conformal::CURVE_LEVELS`]; for cells recorded before it, the `pno eval` curve) and
/// calibrated.
fn coverage_lines(cells: &[&CellResult]) -> [Vec<(f64, f64)>; 2] {
    let new: Vec<&CellResult> = cells
        .iter()
        .copied()
        .filter(|c| c.coverage_curve.is_some())
        .collect();
    let raw = if new.is_empty() {
        mean_curve(cells, |c| {
            (
                c.curves.coverage.expected.clone(),
                c.curves.coverage.observed.clone(),
            )
        })
    } else {
        mean_curve(&new, |c| {
            c.coverage_curve
                .as_ref()
                .map(|v| (v.expected.clone(), v.observed.clone()))
                .unwrap_or_default()
        })
    };
    let cal: Vec<&CellResult> = cells
        .iter()
        .copied()
        .filter(|c| c.conformal.is_some())
        .collect();
    let calibrated = mean_curve(&cal, |c| {
        c.conformal
            .as_ref()
            .map(|v| {
                (
                    v.coverage_curve.expected.clone(),
                    v.coverage_curve.observed.clone(),
                )
            })
            .unwrap_or_default()
    });
    [raw, calibrated]
}

/// Methods of PDE `pde` that the suite would calibrate but whose runs have no calibration split
/// (deterministic methods, known from their results, left out).
fn without_split(suite: &Suite, pde: usize, results: &[CellResult]) -> Vec<String> {
    let Some(&seed) = suite.seeds.first() else {
        return Vec::new();
    };
    (0..suite.methods.len())
        .filter(|&method| {
            let c = Cell { pde, method, seed };
            let name = &suite.methods[method].name;
            let deterministic = {
                let mine: Vec<&CellResult> = results
                    .iter()
                    .filter(|r| r.pde == suite.pdes[pde].name && &r.method == name)
                    .collect();
                !mine.is_empty() && mine.iter().all(|r| !r.probabilistic())
            };
            suite.default_conformal(c).is_some() && suite.n_calibration(c) == 0 && !deterministic
        })
        .map(|m| suite.methods[m].name.clone())
        .collect()
}

/// What the `(conformal)` rows are, for the page and `tables.md`.
fn conformal_note(suite: &Suite) -> String {
    match suite.conformal {
        None => "Conformal calibration of the methods is off in this suite (`conformal = false`)."
            .into(),
        Some(c) => format!(
            "Each probabilistic method also has a `(conformal)` row: its test draws rescaled about \
             the mean by the split-conformal scale fitted at level {} ({}) on the PDE's calibration \
             split. `=` marks what calibration leaves unchanged (the point prediction: rel-L2, L2, \
             and training time; see the raw row); it changes coverage, interval width and score, \
             calibration error, CRPS, energy score, NLL, sharpness and spread/skill. The rollout \
             tables have no `(conformal)` rows: a calibrated rollout needs the calibrated run \
             (a method with its own `conformal` table).",
            c.level,
            match c.mode {
                pno_run::ConformalMode::Pointwise => "pointwise".to_string(),
                pno_run::ConformalMode::Function { delta } => format!("function, δ = {delta}"),
            }
        ),
    }
}

/// Markdown code spans (`` `x` ``) as `<code>x</code>`.
fn code_spans(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// Write every table, plot and the HTML index for `results` into `out`.
pub fn write_report(suite: &Suite, results: &[CellResult], out: &Path) -> Result<ReportFiles> {
    let mut files = Vec::new();
    let methods = method_names(suite);
    let json = json!({"suite": suite.name, "description": suite.description,
                      "seeds": suite.seeds, "samples": suite.samples, "rollout": suite.rollout,
                      "cells": results});
    let bytes = serde_json::to_vec_pretty(&json).map_err(|e| BenchError::Corrupt {
        path: out.join("results.json"),
        expected: "serialisable results".into(),
        got: e.to_string(),
    })?;
    write(out, "results.json", &bytes, &mut files)?;
    write(out, "results.csv", csv(results).as_bytes(), &mut files)?;

    let mut md = format!(
        "# Suite `{}`\n\n{}\n\nMean ± std over seeds {:?} ({} predictive draws per test input); **bold** = best \
         (lowest, or closest to nominal for coverage and to 1 for spread/skill). Physical units.\n\n{}\n",
        suite.name,
        suite.description,
        suite.seeds,
        suite.samples,
        conformal_note(suite)
    );
    let mut guide = String::new();
    let mut tex = String::from("% generated by `pno bench`; needs \\usepackage{booktabs}\n");
    let mut html_sections = String::new();
    std::fs::create_dir_all(out.join("plots")).map_err(io_err("create", &out.join("plots")))?;
    for (pi, pde) in suite.pdes.iter().enumerate() {
        let name = &pde.name;
        let cells: Vec<&CellResult> = results.iter().filter(|r| &r.pde == name).collect();
        if cells.is_empty() {
            continue;
        }
        let no_split = without_split(suite, pi, results);
        let para = paragraph(name, &methods, results, &no_split);
        let _ = write!(guide, "<p>{}</p>", html_escape(&para));
        let table = Table::new(name, &methods, COLUMNS, results);
        let _ = write!(
            md,
            "\n## {name}\n\n{}\nReading guide: {para}\n",
            table.markdown()
        );
        let _ = write!(tex, "\n% {name}\n{}", table.latex());
        let _ = write!(
            html_sections,
            "<section><h2>{}</h2>{}",
            html_escape(name),
            table.html()
        );
        let rollout = Table::new(name, &methods, ROLLOUT_COLUMNS, results);
        if !rollout.is_empty() {
            let _ = write!(
                md,
                "\n### {name}: rollout, step {}\n\n{}",
                suite.rollout,
                rollout.markdown()
            );
            let _ = write!(
                tex,
                "\n% {name}: rollout step {}\n{}",
                suite.rollout,
                rollout.latex()
            );
            let _ = write!(
                html_sections,
                "<h3>Rollout, metrics at step {}</h3>{}",
                suite.rollout,
                rollout.html()
            );
        }
        let mut figs: Vec<(String, String)> = Vec::new();
        // Fields of the first seed's cell of each method.
        for m in &methods {
            if let Some(c) = cells.iter().find(|c| &c.method == m) {
                let rel = format!("plots/fields_{name}_{m}");
                fields(
                    &out.join(&rel),
                    &format!("{name} · {m} · seed {} · first test function", c.seed),
                    &c.example,
                )?;
                figs.push((rel, format!("{m}: input, truth, mean, std, |error|")));
            }
        }
        let by_method = |m: &String| -> Vec<&CellResult> {
            cells.iter().copied().filter(|c| &c.method == m).collect()
        };
        let rel_series: Vec<Series> = methods
            .iter()
            .filter(|m| !by_method(m).is_empty())
            .map(|m| {
                (
                    m.clone(),
                    mean_curve(&by_method(m), |c| {
                        (
                            c.curves.reliability.expected.clone(),
                            c.curves.reliability.observed.clone(),
                        )
                    }),
                )
            })
            .collect();
        let rel = format!("plots/reliability_{name}");
        unit_curves(
            &out.join(&rel),
            &format!("{name}: quantile reliability"),
            ("predictive quantile level", "fraction of targets below"),
            &rel_series,
        )?;
        figs.push((rel, "reliability diagram (mean over seeds)".into()));
        let mut cov_lines: Vec<Line> = Vec::new();
        for (i, m) in methods
            .iter()
            .filter(|m| !by_method(m).is_empty())
            .enumerate()
        {
            let [raw, calibrated] = coverage_lines(&by_method(m));
            cov_lines.push(Line {
                name: m.clone(),
                points: raw,
                color: i,
                dashed: false,
            });
            if !calibrated.is_empty() {
                cov_lines.push(Line {
                    name: conformal_label(m),
                    points: calibrated,
                    color: i,
                    dashed: true,
                });
            }
        }
        let cov = format!("plots/coverage_{name}");
        unit_lines(
            &out.join(&cov),
            &format!("{name}: coverage of central intervals"),
            ("nominal level", "observed coverage"),
            &cov_lines,
        )?;
        figs.push((
            cov,
            "coverage against nominal level, raw (solid) and conformally calibrated (dashed), mean over seeds".into(),
        ));
        if cells.iter().any(|c| !c.rollout.is_empty()) {
            let band = |f: &dyn Fn(&pno_train::eval::RolloutStep) -> f64| -> Vec<Band> {
                methods
                    .iter()
                    .filter(|m| by_method(m).iter().any(|c| !c.rollout.is_empty()))
                    .map(|m| {
                        let cs = by_method(m);
                        let steps = cs.iter().map(|c| c.rollout.len()).max().unwrap_or(0);
                        let pts = (0..steps)
                            .filter_map(|k| {
                                let v: Vec<f64> =
                                    cs.iter().filter_map(|c| c.rollout.get(k).map(f)).collect();
                                mean_std(&v).map(|(a, b)| ((k + 1) as f64, a, b))
                            })
                            .collect();
                        (m.clone(), pts)
                    })
                    .collect()
            };
            let r = format!("plots/rollout_{name}");
            band_panels(
                &out.join(&r),
                &[
                    (
                        format!("{name}: rollout rel-L2"),
                        ("step".into(), "rel-L2 (mean ± std over seeds)".into()),
                        band(&|s| s.report.rel_l2),
                    ),
                    (
                        format!("{name}: rollout coverage at 90 %"),
                        ("step".into(), "coverage_90".into()),
                        band(&|s| s.report.coverage_90),
                    ),
                    (
                        format!("{name}: diverged trajectories"),
                        ("step".into(), "fraction".into()),
                        band(&|s| s.diverged_fraction),
                    ),
                ],
                false,
            )?;
            figs.push((r, "rollout error, coverage and divergence by step".into()));
        }
        let seed_band = |key: &str| -> Vec<Band> {
            methods
                .iter()
                .filter(|m| !by_method(m).is_empty())
                .map(|m| {
                    let pts = by_method(m)
                        .iter()
                        .filter_map(|c| c.metric(key).map(|v| (c.seed as f64, v, 0.0)))
                        .collect();
                    (m.clone(), pts)
                })
                .collect()
        };
        let s = format!("plots/seeds_{name}");
        band_panels(
            &out.join(&s),
            &[
                (
                    format!("{name}: rel-L2 by seed"),
                    ("seed".into(), "rel_l2".into()),
                    seed_band("rel_l2"),
                ),
                (
                    format!("{name}: CRPS by seed"),
                    ("seed".into(), "crps".into()),
                    seed_band("crps"),
                ),
                (
                    format!("{name}: coverage at 90 % by seed"),
                    ("seed".into(), "coverage_90".into()),
                    seed_band("coverage_90"),
                ),
            ],
            true,
        )?;
        figs.push((s, "metrics against seed".into()));
        html_sections.push_str("<div class=\"figs\">");
        for (rel, caption) in &figs {
            for ext in ["svg", "png"] {
                files.push(PathBuf::from(format!("{rel}.{ext}")));
            }
            let _ = write!(
                html_sections,
                "<figure><a href=\"{rel}.svg\"><img src=\"{rel}.png\" alt=\"{c}\"></a><figcaption>{c}</figcaption></figure>",
                c = html_escape(caption)
            );
        }
        html_sections.push_str("</div></section>");
    }
    write(out, "tables.md", md.as_bytes(), &mut files)?;
    write(out, "tables.tex", tex.as_bytes(), &mut files)?;
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>pno bench: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 14px; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }}
tbody th {{ text-align: left; }}
strong {{ color: #0a5; }}
.figs {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; }} figure img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ font-size: 13px; color: #555; }}
</style></head>
<body data-images-total="0" data-images-loaded="0">
<h1>Suite <code>{title}</code></h1>
<p>{desc}</p>
<p>Mean ± std over seeds {seeds:?}, {samples} predictive draws per test input; best value per column in bold.
Files: <a href="results.json">results.json</a>, <a href="results.csv">results.csv</a>,
<a href="tables.md">tables.md</a>, <a href="tables.tex">tables.tex</a>. Click a figure for its SVG.</p>
<section id="reading-guide"><h2>Reading guide</h2>
<p>{note} Best calibrated = lowest calibration error (cal. err: mean |coverage − level| over 100
levels), mean over seeds, among every probabilistic row. Sharpest at equal calibration = narrowest
90 % interval (width 90) among the rows whose 90 % coverage is within ±{tol} of 0.90.</p>
{guide}</section>
{sections}
<script>
window.addEventListener('load', function () {{
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) {{ return i.complete && i.naturalWidth > 0; }}).length;
  document.body.setAttribute('data-images-total', String(imgs.length));
  document.body.setAttribute('data-images-loaded', String(ok));
}});
</script>
</body></html>
"#,
        title = html_escape(&suite.name),
        desc = html_escape(&suite.description),
        seeds = suite.seeds,
        samples = suite.samples,
        note = code_spans(&html_escape(&conformal_note(suite))),
        tol = COVERAGE_TOLERANCE,
        guide = guide,
        sections = html_sections
    );
    write(out, "index.html", html.as_bytes(), &mut files)?;
    Ok(ReportFiles {
        files,
        markdown: md,
    })
}
