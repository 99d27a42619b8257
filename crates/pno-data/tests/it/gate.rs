//! convert, info and check.

use pno_core::{ShardSpec, SplitFractions};
use pno_data::{CheckOptions, Dataset, Status, check, convert, info};

use crate::common::{fixture, sample, write, write_with};

#[test]
fn convert_pt_gives_dataset_with_channel_axis_and_provenance() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("ds");
    let m = convert(&fixture("pt_darcy_bool.pt"), &dir).unwrap();
    assert_eq!(m.tensors[0].shape, vec![1, 4, 3]);
    assert_eq!(m.parameters["source"]["format"], "pt");
    assert_eq!(
        m.parameters["source"]["sha256"],
        pno_data::sha256_file(&fixture("pt_darcy_bool.pt")).unwrap()
    );
    let ds = Dataset::open(&dir).unwrap();
    let x = ds.read_tensor("x").unwrap();
    let src = pno_data::read_pt(&fixture("pt_darcy_bool.pt")).unwrap();
    assert_eq!(x.to_f32_vec(), src.tensors[0].1.to_f32_vec());
}

#[test]
fn convert_pdebench_flat_keeps_times() {
    let out = tempfile::tempdir().unwrap();
    let m = convert(&fixture("pdebench_flat.hdf5"), out.path()).unwrap();
    assert_eq!(m.tensors[0].name, "u");
    assert_eq!(m.tensors[0].shape, vec![5, 1, 8]);
    assert_eq!(m.times.as_ref().unwrap().len(), 5);
    assert_eq!(m.resolution, vec![8]);
    assert!(m.parameters["source"]["attributes"][""]["Nu"].is_number());
}

#[test]
fn convert_npz_keeps_keys_and_npy_becomes_x() {
    let out = tempfile::tempdir().unwrap();
    let m = convert(&fixture("npz_compressed.npz"), &out.path().join("a")).unwrap();
    let names: Vec<&str> = m.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["x", "y", "label"]);
    let m = convert(&fixture("npy_fortran.npy"), &out.path().join("b")).unwrap();
    assert_eq!(m.tensors[0].name, "x");
    assert_eq!(m.tensors[0].shape, vec![4, 2]);
}

#[test]
fn convert_failure_leaves_nothing() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("ds");
    assert!(convert(&fixture("pt_legacy.pt"), &dir).is_err());
    assert!(!dir.join("manifest.json").exists());
    // Converting twice into the same folder is refused, the first result untouched.
    convert(&fixture("npy_f4.npy"), &dir).unwrap();
    let before = std::fs::read(dir.join("manifest.json")).unwrap();
    assert!(convert(&fixture("npy_f8.npy"), &dir).is_err());
    assert_eq!(std::fs::read(dir.join("manifest.json")).unwrap(), before);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
}

#[test]
fn info_reports_shapes_stats_and_provenance() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 4, ShardSpec::WHOLE, 3);
    let i = info(dir.path()).unwrap();
    assert_eq!(i.n_samples, Some(4));
    assert_eq!(i.tensors[1].shape, vec![4, 1, 4, 4]);
    assert_eq!(i.provenance.as_ref().unwrap()["pde"], "darcy");
    let text = i.to_string();
    assert!(
        text.contains("darcy") && text.contains("[4, 1, 4, 4]"),
        "{text}"
    );
    let i = info(&fixture("pt_burgers.pt")).unwrap();
    assert_eq!(i.tensors[0].dtype, pno_data::DType::F64);
    assert_eq!(i.attributes["visc"], serde_json::json!(0.01));
    serde_json::to_string(&i).unwrap();
}

#[test]
fn check_clean_dataset_passes_and_writes_stats() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 10, ShardSpec::WHOLE, 3);
    let r = check(dir.path(), &CheckOptions::default()).unwrap();
    assert!(r.passed(), "{r}");
    for name in [
        "checksums",
        "finite",
        "shapes_dtypes",
        "sample_counts",
        "ranges",
        "leakage",
        "duplicates",
        "shard_parts",
    ] {
        assert_eq!(r.get(name).unwrap().status, Status::Pass, "{name}: {r}");
    }
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("stats.json")).unwrap()).unwrap();
    let x = &stats["tensors"][0];
    assert_eq!(x["name"], "x");
    assert_eq!(
        x["histogram"]["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .sum::<u64>(),
        160
    );
    assert_eq!(
        x["quantiles"].as_array().unwrap().len(),
        pno_data::QUANTILE_LEVELS.len()
    );
    assert_eq!(x["channels"].as_array().unwrap().len(), 1);
    // Median within a fine bin of the exact median.
    let mut v: Vec<f64> = (0..10)
        .flat_map(|i| sample(i)[0].clone())
        .map(f64::from)
        .collect();
    v.sort_by(f64::total_cmp);
    let med = (v[79] + v[80]) / 2.0;
    let q50 = x["quantiles"][4].as_f64().unwrap();
    assert!(
        (q50 - med).abs() < 2.0 * 2.0 / 1000.0 + 1e-3,
        "{q50} vs {med}"
    );
}

#[test]
fn check_nan_fails_naming_tensor_and_sample() {
    let dir = tempfile::tempdir().unwrap();
    write_with(dir.path(), 6, |i| {
        let mut s = sample(i);
        if i == 4 {
            s[1][3] = f32::NAN;
        }
        s
    });
    let r = check(dir.path(), &CheckOptions::default()).unwrap();
    assert!(!r.passed());
    let d = &r.get("finite").unwrap().detail;
    assert!(
        d.contains("tensor y") && d.contains("1 NaN") && d.contains("sample 4"),
        "{d}"
    );
    assert!(!dir.path().join("stats.json").exists());
}

#[test]
fn check_corrupted_file_fails_checksum_naming_file() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), 6, ShardSpec::WHOLE, 3);
    let p = dir.path().join(&m.files[1].path);
    let mut bytes = std::fs::read(&p).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0x40;
    std::fs::write(&p, bytes).unwrap();
    let r = check(dir.path(), &CheckOptions::default()).unwrap();
    let c = r.get("checksums").unwrap();
    assert_eq!(c.status, Status::Fail);
    assert!(c.detail.contains(&m.files[1].path), "{}", c.detail);
    assert!(Dataset::open(dir.path()).unwrap().verify_file(1).is_err());
}

#[test]
fn check_leakage_and_duplicates_detected() {
    let dir = tempfile::tempdir().unwrap();
    // Sample 9 (test) repeats sample 2 (train); sample 5 repeats sample 1 (both train).
    write_with(dir.path(), 10, |i| match i {
        9 => sample(2),
        5 => sample(1),
        _ => sample(i),
    });
    let r = check(dir.path(), &CheckOptions::default()).unwrap();
    let l = r.get("leakage").unwrap();
    assert_eq!(l.status, Status::Fail);
    assert!(
        l.detail.contains("train sample 2 = test sample 9"),
        "{}",
        l.detail
    );
    let d = r.get("duplicates").unwrap();
    assert_eq!(d.status, Status::Warn);
    assert!(d.detail.contains("1 = 5"), "{}", d.detail);
    // With a 0.95/0.05 split both copies are in train: no leakage.
    let opts = CheckOptions {
        splits: pno_data::LeakageSplits::Fractions(SplitFractions {
            train: 0.95,
            validation: 0.0,
            calibration: 0.0,
            test: 0.05,
        }),
        ..CheckOptions::default()
    };
    assert!(check(dir.path(), &opts).unwrap().passed());
}

#[test]
fn check_constant_sample_warns() {
    let dir = tempfile::tempdir().unwrap();
    write_with(dir.path(), 4, |i| {
        if i == 2 {
            vec![vec![0.5; 16], vec![2.0; 16]]
        } else {
            sample(i)
        }
    });
    let r = check(dir.path(), &CheckOptions::default()).unwrap();
    let c = r.get("constant_samples").unwrap();
    assert_eq!(c.status, Status::Warn);
    assert!(
        c.detail.contains("tensor x: 1 constant sample(s) [2]"),
        "{}",
        c.detail
    );
    assert!(r.passed());
}

#[test]
fn check_missing_part_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 9, ShardSpec::new(0, 3).unwrap(), 2);
    write(dir.path(), 9, ShardSpec::new(1, 3).unwrap(), 2);
    let r = check(dir.path(), &CheckOptions::default()).unwrap();
    let c = r.get("shard_parts").unwrap();
    assert_eq!(c.status, Status::Fail);
    assert!(
        c.detail.contains("manifest.part-2-of-3.json"),
        "{}",
        c.detail
    );
    assert_eq!(r.get("sample_counts").unwrap().status, Status::Fail);
}

#[test]
fn check_tampered_manifest_stats_fail_ranges() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 4, ShardSpec::WHOLE, 4);
    let p = dir.path().join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    m["tensors"][0]["stats"]["max"] = serde_json::json!(0.1);
    std::fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
    let r = check(dir.path(), &CheckOptions::default()).unwrap();
    let c = r.get("ranges").unwrap();
    assert_eq!(c.status, Status::Fail, "{r}");
    assert!(c.detail.contains("tensor x"), "{}", c.detail);
}

#[test]
fn check_wrong_shape_file_fails_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), 4, ShardSpec::WHOLE, 2);
    // Replace file 1 by one whose x has a different per-sample shape.
    let x = vec![0u8; 2 * 8 * 4];
    let y = vec![0u8; 2 * 16 * 4];
    let views = vec![
        (
            "x",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 1, 8], &x)
                .unwrap(),
        ),
        (
            "y",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 1, 4, 4], &y)
                .unwrap(),
        ),
    ];
    std::fs::write(
        dir.path().join(&m.files[1].path),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
    let r = check(dir.path(), &CheckOptions::default()).unwrap();
    let c = r.get("shapes_dtypes").unwrap();
    assert_eq!(c.status, Status::Fail);
    assert!(
        c.detail.contains(&m.files[1].path) && c.detail.contains("[2, 1, 8]"),
        "{}",
        c.detail
    );
}

#[test]
fn check_external_file_writes_stats_out() {
    let out = tempfile::tempdir().unwrap();
    let stats = out.path().join("s.json");
    let opts = CheckOptions {
        stats_out: Some(stats.clone()),
        ..CheckOptions::default()
    };
    let r = check(&fixture("pdebench_grouped.h5"), &opts).unwrap();
    assert!(r.passed(), "{r}");
    assert_eq!(r.get("checksums").unwrap().status, Status::Skip);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    // u is [N, nt, nc, x, y]: two channels.
    assert_eq!(v["tensors"][0]["channels"].as_array().unwrap().len(), 2);
    serde_json::to_string(&r).unwrap();
}
