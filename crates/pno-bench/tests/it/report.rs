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
        let mut metrics = serde_json::Map::new();
        metrics.insert("coverage_90".into(), serde_json::json!(cov));
        metrics.insert("rel_l2".into(), serde_json::json!(err));
        pno_bench::CellResult {
            pde: "p".into(),
            method: m.into(),
            seed,
            kind: "x".into(),
            params: 0,
            config: serde_json::Value::Null,
            timings: Default::default(),
            metrics,
            calibration: None,
            curves: pno_train::eval::Curves {
                coverage: pno_metrics::CalibrationCurve {
                    expected: vec![],
                    observed: vec![],
                },
                reliability: pno_metrics::CalibrationCurve {
                    expected: vec![],
                    observed: vec![],
                },
                pit: pno_metrics::pit_histogram(&[0.5], 2).unwrap(),
            },
            rollout: vec![],
            example: pno_bench::runner::Example {
                grid: vec![4],
                in_channels: 1,
                out_channels: 1,
                input: vec![0.0; 4],
                target: vec![0.0; 4],
                mean: vec![0.0; 4],
                std: vec![0.0; 4],
            },
            suite_sha256: String::new(),
            commit: String::new(),
        }
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
