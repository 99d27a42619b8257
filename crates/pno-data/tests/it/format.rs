//! Our dataset format: writer, reader, sharding, determinism, atomicity.

use pno_core::ShardSpec;
use pno_data::{Dataset, DatasetWriter, Error, merge};

use crate::common::{header, sample, write};

#[test]
fn dataset_roundtrip_values_match() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), 7, ShardSpec::WHOLE, 3);
    assert_eq!(m.files.len(), 3);
    assert_eq!(m.resolution, vec![4, 4]);
    assert_eq!(m.files[2].first_sample, 6);
    let ds = Dataset::open(dir.path()).unwrap();
    assert_eq!(ds.tensor_names(), vec!["x", "y"]);
    let y = ds.read_tensor("y").unwrap();
    assert_eq!(y.shape(), &[7, 1, 4, 4]);
    let want: Vec<f32> = (0..7).flat_map(|i| sample(i)[1].clone()).collect();
    assert_eq!(y.to_f32_vec(), want);
    let part = ds.read_samples(2..5).unwrap();
    assert_eq!(part[0].1.shape(), &[3, 1, 4, 4]);
    assert_eq!(
        part[0].1.to_f32_vec(),
        (2..5)
            .flat_map(|i| sample(i)[0].clone())
            .collect::<Vec<_>>()
    );
    // Stored stats are over the data written.
    let all: Vec<f64> = want.iter().map(|v| f64::from(*v)).collect();
    let mean = all.iter().sum::<f64>() / all.len() as f64;
    pno_core::testing::assert_close(&[m.tensors[1].stats.mean], &[mean], 1e-12, 1e-12);
}

#[test]
fn dataset_same_pushes_byte_identical() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(a.path(), 5, ShardSpec::WHOLE, 2);
    write(b.path(), 5, ShardSpec::WHOLE, 2);
    let mut names: Vec<_> = std::fs::read_dir(a.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), 4);
    for n in names {
        assert_eq!(
            std::fs::read(a.path().join(&n)).unwrap(),
            std::fs::read(b.path().join(&n)).unwrap(),
            "{n:?}"
        );
    }
}

#[test]
fn dataset_files_readable_as_plain_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), 3, ShardSpec::WHOLE, 5);
    let bytes = std::fs::read(dir.path().join(&m.files[0].path)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("x").unwrap().shape(), &[3, 1, 4, 4]);
    assert_eq!(pno_data::sha256_hex(&bytes), m.files[0].sha256);
}

#[test]
fn dataset_shards_in_one_folder_open_as_one() {
    let dir = tempfile::tempdir().unwrap();
    for i in [2, 0, 1] {
        write(dir.path(), 10, ShardSpec::new(i, 3).unwrap(), 2);
    }
    assert!(dir.path().join("manifest.part-1-of-3.json").is_file());
    let ds = Dataset::open(dir.path()).unwrap();
    assert_eq!(ds.n_samples(), 10);
    let x = ds.read_tensor("x").unwrap();
    assert_eq!(
        x.to_f32_vec(),
        (0..10)
            .flat_map(|i| sample(i)[0].clone())
            .collect::<Vec<_>>()
    );
    // Combined stats equal the stats of an unsharded run.
    let whole = tempfile::tempdir().unwrap();
    let m = write(whole.path(), 10, ShardSpec::WHOLE, 4);
    let s = &ds.manifest().tensors[0].stats;
    let w = &m.tensors[0].stats;
    pno_core::testing::assert_close(
        &[s.mean, s.std, s.min, s.max],
        &[w.mean, w.std, w.min, w.max],
        1e-12,
        1e-12,
    );
    let merged = merge(dir.path()).unwrap();
    assert_eq!(merged.files.len(), ds.manifest().files.len());
    assert!(matches!(merge(dir.path()), Err(Error::Exists { .. })));
    assert_eq!(
        Dataset::open(dir.path()).unwrap().read_tensor("x").unwrap(),
        x
    );
}

#[test]
fn dataset_missing_part_errors_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 10, ShardSpec::new(0, 3).unwrap(), 2);
    write(dir.path(), 10, ShardSpec::new(2, 3).unwrap(), 2);
    let e = Dataset::open(dir.path()).unwrap_err();
    assert!(
        matches!(&e, Error::MissingParts { count: 3, missing, .. } if missing == &vec![1]),
        "{e}"
    );
    assert!(e.to_string().contains("[1]"), "{e}");
}

#[test]
fn dataset_inconsistent_parts_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 10, ShardSpec::new(0, 2).unwrap(), 2);
    let mut h = header(10, ShardSpec::new(1, 2).unwrap());
    h.seed = 43;
    let mut w = DatasetWriter::create(dir.path(), h, 2).unwrap();
    for i in 5..10 {
        w.push(&sample(i)).unwrap();
    }
    w.finish().unwrap();
    let e = Dataset::open(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("manifest.part-1-of-2.json") && e.contains("header"),
        "{e}"
    );
}

#[test]
fn writer_existing_manifest_refuses_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 2, ShardSpec::WHOLE, 2);
    let e = DatasetWriter::create(dir.path(), header(2, ShardSpec::WHOLE), 2).unwrap_err();
    assert!(
        matches!(&e, Error::Exists { path } if path.ends_with("manifest.json")),
        "{e}"
    );
}

#[test]
fn writer_dropped_without_finish_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut w = DatasetWriter::create(dir.path(), header(5, ShardSpec::WHOLE), 2).unwrap();
        for i in 0..3 {
            w.push(&sample(i)).unwrap();
        }
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn writer_wrong_sample_errors_and_finish_short_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = DatasetWriter::create(dir.path(), header(2, ShardSpec::WHOLE), 2).unwrap();
    let e = w
        .push(&[vec![0.0; 16], vec![0.0; 15]])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tensor y") && e.contains("16") && e.contains("15"),
        "{e}"
    );
    assert!(w.push(&[vec![0.0; 16]]).is_err());
    w.push(&sample(0)).unwrap();
    assert!(w.finish().is_err());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let mut w = DatasetWriter::create(dir.path(), header(1, ShardSpec::WHOLE), 2).unwrap();
    w.push(&sample(0)).unwrap();
    assert!(w.push(&sample(1)).is_err());
}

#[test]
fn manifest_has_no_timestamp_and_names_fields() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 2, ShardSpec::WHOLE, 2);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    for key in [
        "format",
        "format_version",
        "pde",
        "parameters",
        "seed",
        "n_samples",
        "resolution",
        "tensors",
        "shard",
        "files",
    ] {
        assert!(v.get(key).is_some(), "{key}");
    }
    assert!(v.get("created_at").is_none());
    assert_eq!(v["format"], "pno-dataset");
}
