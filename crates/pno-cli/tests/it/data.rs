//! `pno data info|convert|check` on the pno-data fixtures.

use crate::{pno, pno_err, pno_ok};

fn fixture(name: &str) -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../pno-data/tests/fixtures/").to_string() + name
}

#[test]
fn data_info_pt_prints_tensors() {
    let out = pno_ok(&["data", "info", &fixture("pt_burgers.pt")]);
    assert!(
        out.contains("x") && out.contains("f64") && out.contains("[8, 16]"),
        "{out}"
    );
}

#[test]
fn data_info_json_is_one_object() {
    let out = pno_ok(&["--json", "data", "info", &fixture("pdebench_flat.hdf5")]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["format"], "hdf5");
    assert_eq!(v["n_samples"], 4);
}

#[test]
fn data_convert_then_check_passes_and_writes_stats() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("darcy");
    let out_s = out.to_str().unwrap();
    pno_ok(&["data", "convert", &fixture("pt_darcy_bool.pt"), out_s]);
    assert!(out.join("manifest.json").is_file());
    let report = pno_ok(&["data", "check", out_s]);
    assert!(report.contains("passed"), "{report}");
    assert!(out.join("stats.json").is_file());
    let json = pno_ok(&[
        "--json",
        "data",
        "check",
        out_s,
        "--splits",
        "train=0.6,test=0.4",
    ]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["passed"], true);
    let info = pno_ok(&["data", "info", out_s]);
    assert!(info.contains("[5, 1, 4, 3]"), "{info}");
}

#[test]
fn data_check_corrupted_file_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    let out_s = out.to_str().unwrap();
    pno_ok(&["data", "convert", &fixture("npz_stored.npz"), out_s]);
    let file = out.join("data-00000.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x10;
    std::fs::write(&file, bytes).unwrap();
    let out = pno(&["data", "check", out_s]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("FAIL") && stdout.contains("checksums"),
        "{stdout}"
    );
    assert!(
        stderr.contains("data-00000.safetensors") && stderr.contains("sha256"),
        "{stderr}"
    );
}

#[test]
fn data_check_bad_splits_rejected() {
    let err = pno_err(&[
        "data",
        "check",
        &fixture("npy_f4.npy"),
        "--splits",
        "train=0.5,test=0.2",
    ]);
    assert!(err.contains("splits") || err.contains("sum"), "{err}");
}

#[test]
fn data_info_corrupted_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("broken.npy");
    let bytes = std::fs::read(fixture("npy_f8.npy")).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
    let err = pno_err(&["data", "info", p.to_str().unwrap()]);
    assert!(err.contains("broken.npy") && err.contains("bytes"), "{err}");
    let err = pno_err(&["data", "info", &fixture("pt_legacy.pt")]);
    assert!(
        err.contains("pt_legacy.pt") && err.contains("legacy"),
        "{err}"
    );
}

#[test]
fn data_convert_into_existing_dataset_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out_s = dir.path().to_str().unwrap();
    pno_ok(&["data", "convert", &fixture("npy_f4.npy"), out_s]);
    let err = pno_err(&["data", "convert", &fixture("npy_f4.npy"), out_s]);
    assert!(
        err.contains("manifest.json") && err.contains("exists"),
        "{err}"
    );
}

#[test]
fn data_help_has_examples() {
    for sub in ["info", "convert", "check"] {
        let out = pno_ok(&["data", sub, "--help"]);
        assert!(
            out.contains("Examples:") && out.contains("pno data"),
            "{sub}: {out}"
        );
    }
}
