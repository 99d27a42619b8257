//! A whole tiny suite: cells, resume, tables, plots, and the HTML page in headless Chromium.

use std::path::Path;

use pno_bench::tables::{Best, Column, Table, latex_escape, mean_std, num};
use pno_bench::{run_suite, write_report};

use crate::{finished_suite, opts};

#[test]
fn every_cell_records_finite_metrics_its_seed_and_rollouts_where_due() {
    let f = finished_suite();
    assert_eq!(f.results.len(), 12);
    for r in &f.results {
        for key in ["rel_l2", "crps", "coverage_90", "energy_score", "nll"] {
            let v = r
                .metric(key)
                .unwrap_or_else(|| panic!("{} {key}", r.method));
            assert!(v.is_finite(), "{} {key} {v}", r.method);
        }
        assert_eq!(r.config["train"]["seed"], serde_json::json!(r.seed));
        if r.pde == "ks32" {
            assert_eq!(r.rollout.len(), 2, "{}", r.method);
            assert!(r.metric("diverged_fraction").is_some());
        } else {
            assert!(r.rollout.is_empty());
        }
        if r.method == "fno" {
            assert_eq!(r.metric("coverage_90"), Some(0.0));
            assert_eq!(r.metric("sharpness"), Some(0.0));
        }
    }
}

#[test]
fn a_conformal_cell_reuses_its_base_run_with_a_rescaled_spread() {
    let f = finished_suite();
    for pde in ["darcy16", "ks32"] {
        let get = |m: &str| {
            f.results
                .iter()
                .find(|r| r.pde == pde && r.method == m && r.seed == 0)
                .unwrap()
        };
        let (base, conf) = (get("pno_d"), get("pno_d+conformal"));
        let rec = conf.calibration.as_ref().unwrap();
        let (a, b) = (
            base.metric("rel_l2").unwrap(),
            conf.metric("rel_l2").unwrap(),
        );
        assert!((a - b).abs() <= 1e-6 * a, "{a} vs {b}");
        assert_eq!(conf.timings.train_s, 0.0);
        let ratio = conf.metric("sharpness").unwrap() / base.metric("sharpness").unwrap();
        assert!(
            (ratio / rec.spread_scale - 1.0).abs() < 1e-3,
            "{ratio} {rec:?}"
        );
    }
}

#[test]
fn a_rerun_keeps_finished_cells_and_recomputes_a_removed_one_identically() {
    let f = finished_suite();
    let kept = |lines: &[String]| lines.iter().filter(|l| l.contains("done earlier")).count();
    let victim =
        pno_bench::runner::cell_dir(&f.out, &f.suite, f.suite.cells()[4]).join("cell.json");
    let before = std::fs::read(&victim).unwrap();
    std::fs::remove_file(&victim).unwrap();
    let mut lines = Vec::new();
    let again = run_suite(&f.suite, &f.out, &opts(), &mut |l| {
        lines.push(l.to_string())
    })
    .unwrap();
    assert_eq!(kept(&lines), 11, "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("generating")), "{lines:?}");
    let r_old: pno_bench::CellResult = serde_json::from_slice(&before).unwrap();
    let r_new = &again[4];
    // Same run, same draws: equal up to the order of parallel sums.
    assert_eq!(r_old.metrics.len(), r_new.metrics.len());
    for (k, v) in &r_old.metrics {
        let (a, b) = (v.as_f64().unwrap(), r_new.metrics[k].as_f64().unwrap());
        assert!(
            (a - b).abs() <= 1e-12 * a.abs().max(1e-300),
            "{k}: {a} vs {b}"
        );
    }
}

#[test]
fn the_report_writes_every_file_table_and_plot() {
    let f = finished_suite();
    let out = &f.out;
    let files = write_report(&f.suite, &f.results, out).unwrap();
    for f in &files.files {
        let p = out.join(f);
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            bytes.len() > 100,
            "{} is {} bytes",
            p.display(),
            bytes.len()
        );
        match p.extension().and_then(|e| e.to_str()) {
            Some("png") => assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", p.display()),
            Some("svg") => assert!(String::from_utf8_lossy(&bytes).contains("<svg")),
            _ => {}
        }
    }
    for name in [
        "results.json",
        "results.csv",
        "tables.md",
        "tables.tex",
        "index.html",
        "plots/fields_darcy16_pno_d.png",
        "plots/fields_ks32_pno_d.svg",
        "plots/reliability_darcy16.png",
        "plots/coverage_ks32.svg",
        "plots/rollout_ks32.png",
        "plots/seeds_darcy16.png",
    ] {
        assert!(out.join(name).exists(), "{name} missing");
    }
    assert!(!out.join("plots/rollout_darcy16.png").exists());
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 13);
    assert!(csv.starts_with("pde,method,seed,kind,params,train_s"));
    let md = std::fs::read_to_string(out.join("tables.md")).unwrap();
    assert!(
        md.contains("## darcy16") && md.contains("| pno_d+conformal |"),
        "{md}"
    );
    assert!(md.contains("rollout, step 2"));
    let tex = std::fs::read_to_string(out.join("tables.tex")).unwrap();
    assert!(tex.contains("pno\\_d+conformal") && tex.contains("\\textbf{"));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["cells"].as_array().unwrap().len(), 12);
}

#[test]
fn the_report_page_renders_in_headless_chromium() {
    let f = finished_suite();
    write_report(&f.suite, &f.results, &f.out).unwrap();
    renders_in_chromium(&f.out.join("index.html"));
}

/// Whether a missing Chromium fails the render check: `PNO_REQUIRE_CHROMIUM` or `CI` set to
/// anything but empty, `0` or `false`.
fn chromium_required() -> bool {
    ["PNO_REQUIRE_CHROMIUM", "CI"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false")))
}

/// Every image of the page loads in headless Chromium. Prints `render check: ran, N/N images
/// loaded`, or, on a machine without Chromium, `render check: SKIPPED: chromium not found` —
/// which is a failure when [`chromium_required`].
fn renders_in_chromium(page: &Path) {
    let browser = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    let Some(browser) = browser else {
        let why = "chromium not found (chromium, chromium-browser or google-chrome on PATH)";
        assert!(
            !chromium_required(),
            "render check: FAILED: {why}, and PNO_REQUIRE_CHROMIUM or CI is set"
        );
        eprintln!("render check: SKIPPED: {why}");
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            "--virtual-time-budget=10000",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
        ])
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let attr = |name: &str| -> usize {
        let key = format!("{name}=\"");
        let start = dom
            .find(&key)
            .unwrap_or_else(|| panic!("{name} not in {dom}"))
            + key.len();
        dom[start..start + dom[start..].find('"').unwrap()]
            .parse()
            .unwrap()
    };
    let (total, loaded) = (attr("data-images-total"), attr("data-images-loaded"));
    eprintln!("render check: ran, {loaded}/{total} images loaded ({browser})");
    assert!(total >= 10, "only {total} images on the page");
    assert_eq!(loaded, total, "images that failed to load in Chromium");
}

#[test]
fn tables_aggregate_over_seeds_and_mark_the_best() {
    assert_eq!(mean_std(&[1.0, 3.0]), Some((2.0, 2f64.sqrt())));
    assert_eq!(mean_std(&[f64::NAN]), None);
    assert_eq!(num(0.123456), "0.1235");
    assert_eq!(num(1234.5), "1234");
    assert_eq!(num(2.5e-5), "2.500e-5");
    assert_eq!(latex_escape("pno_d+10%"), "pno\\_d+10\\%");
    let mk = |m: &str, seed: u64, cov: f64, err: f64| {
        crate::result("p", m, seed, &[("coverage_90", cov), ("rel_l2", err)])
    };
    let results = vec![
        mk("a", 0, 0.70, 0.10),
        mk("a", 1, 0.72, 0.12),
        mk("b", 0, 0.99, 0.20),
        mk("b", 1, 0.97, 0.22),
        mk("c", 0, 0.88, 0.30),
    ];
    let cols = [
        Column {
            key: "rel_l2",
            header: "rel-L2",
            best: Best::Lower,
        },
        Column {
            key: "coverage_90",
            header: "cov",
            best: Best::Closest(0.9),
        },
    ];
    let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let t = Table::new("p", &names, &cols, &results);
    assert_eq!(t.best, vec![vec![0], vec![2]]);
    let (m, s, n) = t.cells[0][0].unwrap();
    assert!((m - 0.11).abs() < 1e-12 && (s - 0.02f64.sqrt() / 10.0).abs() < 1e-12 && n == 2);
    // The three renderings, byte for byte: bold marks the best mean of each column.
    assert_eq!(
        t.markdown(),
        "| method | rel-L2 | cov |\n\
         |---|---:|---:|\n\
         | a | **0.1100 ± 0.01414** | 0.7100 ± 0.01414 |\n\
         | b | 0.2100 ± 0.01414 | 0.9800 ± 0.01414 |\n\
         | c | 0.3000 | **0.8800** |\n"
    );
    assert_eq!(
        t.latex(),
        r"\begin{tabular}{lrr}
\toprule
method & rel-L2 & cov \\
\midrule
a & \textbf{0.1100 $\pm$ 0.01414} & 0.7100 $\pm$ 0.01414 \\
b & 0.2100 $\pm$ 0.01414 & 0.9800 $\pm$ 0.01414 \\
c & 0.3000 & \textbf{0.8800} \\
\bottomrule
\end{tabular}
"
    );
    assert_eq!(
        t.html(),
        "<table><thead><tr><th>method</th><th>rel-L2</th><th>cov</th></tr></thead><tbody>\
         <tr><th>a</th><td><strong>0.1100 ± 0.01414</strong></td><td>0.7100 ± 0.01414</td></tr>\
         <tr><th>b</th><td>0.2100 ± 0.01414</td><td>0.9800 ± 0.01414</td></tr>\
         <tr><th>c</th><td>0.3000</td><td><strong>0.8800</strong></td></tr></tbody></table>"
    );
}

/// `a` and `b` agree to `rel` relative and `abs` absolute.
fn near(a: f64, b: f64, rel: f64, abs: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()) + abs
}

#[test]
fn every_probabilistic_cell_is_also_reported_calibrated_like_the_conformal_method() {
    let f = finished_suite();
    for r in &f.results {
        let curve = r.coverage_curve.as_ref().expect("a coverage curve");
        assert_eq!(curve.expected, pno_bench::conformal::CURVE_LEVELS.to_vec());
        // The curve passes through the table's coverage columns (same intervals).
        assert!(near(
            curve.observed[8],
            r.metric("coverage_90").unwrap(),
            0.0,
            1e-12
        ));
        assert!(near(
            curve.observed[9],
            r.metric("coverage_95").unwrap(),
            0.0,
            1e-12
        ));
        match r.method.as_str() {
            "fno" => {
                assert!(r.conformal.is_none());
                assert!(
                    r.conformal_note
                        .as_deref()
                        .unwrap()
                        .contains("deterministic")
                );
            }
            "pno_d+conformal" => {
                assert!(r.conformal.is_none());
                assert!(
                    r.conformal_note
                        .as_deref()
                        .unwrap()
                        .contains("own conformal")
                );
            }
            _ => {
                let v = r.conformal.as_ref().expect("a calibrated variant");
                assert!(r.conformal_note.is_none());
                assert!(near(
                    v.coverage_curve.observed[8],
                    r.conformal_metric("coverage_90").unwrap(),
                    0.0,
                    1e-12
                ));
                // The point prediction is unchanged …
                let l2 = v.metrics["rel_l2"].as_f64().unwrap();
                assert!(near(l2, r.metric("rel_l2").unwrap(), 1e-5, 0.0), "{l2}");
                // … the widths scale by k exactly (affine map of the draws) …
                let w = |m: Option<f64>| m.unwrap();
                assert!(near(
                    w(r.conformal_metric("interval_width_90")),
                    v.spread_scale * w(r.metric("interval_width_90")),
                    1e-5,
                    0.0
                ));
                // … and the variant is what the conformal method gets by calibrating its run
                // and predicting again: the same scale, the same metrics up to rounding.
                let twin = f
                    .results
                    .iter()
                    .find(|t| t.pde == r.pde && t.seed == r.seed && t.method == "pno_d+conformal")
                    .unwrap();
                let rec = twin.calibration.as_ref().unwrap();
                assert!(
                    near(v.spread_scale, rec.spread_scale, 1e-12, 0.0),
                    "{} vs {}",
                    v.spread_scale,
                    rec.spread_scale
                );
                for key in [
                    "coverage_90",
                    "coverage_95",
                    "interval_width_90",
                    "interval_score_90",
                    "crps",
                    "nll",
                    "energy_score",
                    "calibration_error",
                    "sharpness",
                ] {
                    let (a, b) = (r.conformal_metric(key).unwrap(), twin.metric(key).unwrap());
                    assert!(near(a, b, 1e-3, 3e-3), "{} {key}: {a} vs {b}", r.pde);
                }
            }
        }
    }
}

#[test]
fn the_report_shows_raw_and_calibrated_rows_the_dashed_curves_and_the_reading_guide() {
    let f = finished_suite();
    write_report(&f.suite, &f.results, &f.out).unwrap();
    let md = std::fs::read_to_string(f.out.join("tables.md")).unwrap();
    let lines: Vec<&str> = md.lines().collect();
    let at = |prefix: &str| lines.iter().position(|l| l.starts_with(prefix)).unwrap();
    assert_eq!(at("| pno_d (conformal) |"), at("| pno_d |") + 1, "{md}");
    assert!(!md.contains("| fno (conformal) |") && !md.contains("| pno_d+conformal (conformal) |"));
    assert!(
        md.contains("Reading guide: darcy16: best calibrated "),
        "{md}"
    );
    let html = std::fs::read_to_string(f.out.join("index.html")).unwrap();
    assert!(html.contains("<h2>Reading guide</h2>"));
    for pde in ["darcy16", "ks32"] {
        assert!(
            html.contains(&format!("<p>{pde}: best calibrated ")),
            "{pde}"
        );
    }
    assert!(html.contains("Deterministic (no spread), not ranked: fno."));
    let svg = std::fs::read_to_string(f.out.join("plots/coverage_darcy16.svg")).unwrap();
    assert!(svg.contains("pno_d (conformal)"));
    let csv = std::fs::read_to_string(f.out.join("results.csv")).unwrap();
    assert!(csv.lines().next().unwrap().contains(",conformal_scale,"));
}

#[test]
fn a_cell_from_an_older_version_gets_its_calibrated_variant_without_retraining() {
    let f = finished_suite();
    let i = 1; // darcy16/pno_d/seed0
    assert_eq!(f.suite.cell_id(f.suite.cells()[i]), "darcy16/pno_d/seed0");
    let path = pno_bench::runner::cell_dir(&f.out, &f.suite, f.suite.cells()[i]).join("cell.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for k in ["coverage_curve", "conformal", "conformal_note"] {
        v.as_object_mut().unwrap().remove(k);
    }
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    let mut lines = Vec::new();
    let again = run_suite(&f.suite, &f.out, &opts(), &mut |l| {
        lines.push(l.to_string())
    })
    .unwrap();
    assert!(!lines.iter().any(|l| l.contains("training")), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("recorded by an older version")),
        "{lines:?}"
    );
    let (old, new) = (&f.results[i], &again[i]);
    let (a, b) = (
        old.conformal.as_ref().unwrap(),
        new.conformal.as_ref().unwrap(),
    );
    assert_eq!(a.spread_scale, b.spread_scale);
    assert_eq!(old.coverage_curve, new.coverage_curve);
    for (k, x) in &a.metrics {
        let (x, y) = (x.as_f64().unwrap(), b.metrics[k].as_f64().unwrap());
        assert!(near(x, y, 1e-12, 1e-300), "{k}: {x} vs {y}");
    }
    // The upgrade is written back: a third run keeps every cell as it is.
    let mut lines = Vec::new();
    run_suite(&f.suite, &f.out, &opts(), &mut |l| {
        lines.push(l.to_string())
    })
    .unwrap();
    assert!(
        !lines.iter().any(|l| l.contains("older version")),
        "{lines:?}"
    );
}

#[test]
fn a_pde_without_a_calibration_split_is_reported_raw_and_the_report_says_so() {
    let dir = tempfile::tempdir().unwrap();
    crate::file(
        dir.path(),
        "darcy.toml",
        "pde = \"darcy\"\nrecipe = \"fno\"\nn = 24\nseed = 0\nresolution = 16\n",
    );
    let p = crate::file(
        dir.path(),
        "s.toml",
        r#"[suite]
name = "nosplit"
seeds = [0]
samples = 4

[[pde]]
name = "d"
generator = "darcy.toml"
data = { n_test = 4, check = false }
model = { hidden_channels = 4, n_layers = 1, n_modes = [2, 2], lifting_channels = 4, projection_channels = 4 }
train = { epochs = 1, batch_size = 8 }

[[method]]
name = "pno_d"
model = { kind = "pno_d", dropout = 0.1 }
"#,
    );
    let suite = pno_bench::Suite::load(&p).unwrap();
    let out = dir.path().join("out");
    let results = run_suite(&suite, &out, &opts(), &mut |_| {}).unwrap();
    assert!(results[0].conformal.is_none());
    assert!(
        results[0]
            .conformal_note
            .as_deref()
            .unwrap()
            .contains("no calibration split")
    );
    let files = write_report(&suite, &results, &out).unwrap();
    assert!(
        files.markdown.contains("No calibration split for pno_d"),
        "{}",
        files.markdown
    );
    assert!(!files.markdown.contains("(conformal) |"));
}
