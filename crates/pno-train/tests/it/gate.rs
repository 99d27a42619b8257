//! Quality gates: parsing, every kind of check on hand-made evidence, and the Wilson interval
//! against scipy.

use std::collections::BTreeMap;
use std::path::Path;

use pno_train::gate::{Performance, wilson_interval};
use pno_train::{Evidence, Gate};

fn evidence(pairs: &[(&str, f64)], n: usize) -> Evidence {
    Evidence {
        metrics: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<BTreeMap<_, _>>(),
        n_functions: n,
        n_points: n * 256,
        performance: None,
    }
}

/// A gate from TOML text, through the file loader (which also hashes the bytes).
fn gate(text: &str) -> Gate {
    let p = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(p.path(), text).unwrap();
    let (g, sha) = Gate::load(p.path()).unwrap();
    assert_eq!(sha, pno_core::sha256_hex(text.as_bytes()));
    g
}

#[test]
fn wilson_interval_matches_scipy() {
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("../golden/wilson.json")).unwrap();
    for c in golden["cases"].as_array().unwrap() {
        let (k, n) = (
            c["k"].as_u64().unwrap() as f64,
            c["n"].as_u64().unwrap() as usize,
        );
        let (lo, hi) = wilson_interval(k / n as f64, n, c["confidence"].as_f64().unwrap());
        for (got, want) in [
            (lo, c["low"].as_f64().unwrap()),
            (hi, c["high"].as_f64().unwrap()),
        ] {
            assert!(
                (got - want).abs() <= 1e-9 + 1e-9 * want.abs(),
                "{c}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn shipped_gate_configs_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut seen = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("gate_") && name.ends_with(".toml") {
            let (g, _) = Gate::load(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                g.has_relative() && g.coverage.is_some() && g.performance.is_some(),
                "{name}"
            );
            seen += 1;
        }
    }
    assert!(seen >= 1);
}

#[test]
fn absolute_and_finite_checks() {
    let g = gate("[absolute]\nrel_l2 = { max = 0.12 }\ncoverage_90 = { min = 0.8, max = 0.98 }\n");
    let rows = g.check(
        &evidence(&[("rel_l2", 0.1), ("coverage_90", 0.9), ("nll", -3.0)], 50),
        None,
    );
    assert!(rows.iter().all(|r| r.passed), "{rows:?}");
    let rows = g.check(
        &evidence(
            &[("rel_l2", 0.13), ("coverage_90", 0.99), ("nll", -3.0)],
            50,
        ),
        None,
    );
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.metric.as_str())
        .collect();
    assert_eq!(failed, ["coverage_90", "rel_l2"]);
    // A NaN metric fails the finite row (and any bound on it).
    let rows = g.check(
        &evidence(
            &[("rel_l2", f64::NAN), ("coverage_90", 0.9), ("nll", 1.0)],
            50,
        ),
        None,
    );
    assert!(
        !rows[0].passed && rows[0].metric == "rel_l2",
        "{:?}",
        rows[0]
    );
    assert!(rows.iter().filter(|r| !r.passed).count() == 2);
}

#[test]
fn coverage_must_be_consistent_with_nominal() {
    let g = gate("[coverage]\nlevel = 0.9\nconfidence = 0.99\n");
    // 72 of 80 functions: Wilson 99 % interval [0.781, 0.958] holds 0.9.
    let ok = g.check(&evidence(&[("coverage_90", 0.9)], 80), None);
    assert!(ok.iter().all(|r| r.passed), "{ok:?}");
    let low = g.check(&evidence(&[("coverage_90", 0.7)], 80), None);
    assert!(!low[1].passed, "{:?}", low[1]);
    // Over-coverage fails too: 0.99 on 400 functions excludes 0.9.
    let high = g.check(&evidence(&[("coverage_90", 0.99)], 400), None);
    assert!(!high[1].passed, "{:?}", high[1]);
    // With few functions the interval is wide: 0.7 on 5 functions is still consistent.
    let few = g.check(&evidence(&[("coverage_90", 0.7)], 5), None);
    assert!(few[1].passed, "{:?}", few[1]);
    // Points as the unit: many points make the same coverage inconsistent.
    let g = gate("[coverage]\nlevel = 0.9\nunit = \"points\"\n");
    let pts = g.check(&evidence(&[("coverage_90", 0.88)], 80), None);
    assert!(!pts[1].passed, "{:?}", pts[1]);
}

#[test]
fn relative_checks_against_the_champion() {
    let g = gate(
        "[relative]\nrel_l2 = { rel_margin = 0.1 }\nnll = { abs_margin = 0.5 }\ncoverage = { level = 0.9, tolerance = 0.01 }\n",
    );
    let champion = evidence(&[("rel_l2", 0.2), ("nll", -2.0), ("coverage_90", 0.85)], 50);
    let same = g.check(&champion, Some(&champion));
    assert!(same.iter().all(|r| r.passed), "{same:?}");
    let within = evidence(
        &[("rel_l2", 0.219), ("nll", -1.6), ("coverage_90", 0.95)],
        50,
    );
    assert!(g.check(&within, Some(&champion)).iter().all(|r| r.passed));
    let worse = evidence(
        &[("rel_l2", 0.221), ("nll", -1.4), ("coverage_90", 0.97)],
        50,
    );
    let failed: Vec<String> = g
        .check(&worse, Some(&champion))
        .into_iter()
        .filter(|r| !r.passed)
        .map(|r| r.metric)
        .collect();
    assert_eq!(failed, ["nll", "rel_l2", "coverage_90"]);
    // No champion: the relative checks are skipped, only the finite row remains.
    assert_eq!(g.check(&worse, None).len(), 1);
}

#[test]
fn performance_rows_fail_when_unmeasured_or_over() {
    let g = gate(
        "[performance]\nbatch = 4\np99_predict_ms = { max = 100 }\npeak_rss_mb = { max = 500 }\n",
    );
    let mut e = evidence(&[("rel_l2", 0.1)], 10);
    let rows = g.check(&e, None);
    assert!(
        rows[1..].iter().all(|r| !r.passed),
        "unmeasured must fail: {rows:?}"
    );
    e.performance = Some(Performance {
        p99_predict_ms: 80.0,
        peak_rss_mb: Some(600.0),
    });
    let rows = g.check(&e, None);
    assert!(rows[1].passed && !rows[2].passed, "{rows:?}");
}
