//! External readers against numpy/torch/h5py-computed expectations (tests/fixtures/expected.json).

use pno_data::{DType, Error, Format, open_any, read_hdf5, read_npy, read_npz, read_pt};

use crate::common::{assert_matches_expected, expected, fixture};

#[test]
fn npy_fixtures_match_numpy() {
    for (file, dtype) in [
        ("npy_f4.npy", DType::F32),
        ("npy_f8.npy", DType::F64),
        ("npy_bool.npy", DType::Bool),
        ("npy_fortran.npy", DType::F64),
        ("npy_i8.npy", DType::I64),
        ("npy_f8_bigendian.npy", DType::F64),
    ] {
        let t = read_npy(&fixture(file)).unwrap();
        assert_eq!(t.dtype(), dtype, "{file}");
        assert_matches_expected(file, "x", t.shape(), &t.to_f64_vec());
    }
}

#[test]
fn npz_stored_and_deflated_match_numpy() {
    for file in ["npz_stored.npz", "npz_compressed.npz"] {
        let ts = read_npz(&fixture(file)).unwrap();
        assert_eq!(ts.len(), 3);
        for (k, t) in &ts {
            assert_matches_expected(file, k, t.shape(), &t.to_f64_vec());
        }
    }
}

#[test]
fn pt_float_dict_matches_torch() {
    let c = read_pt(&fixture("pt_float.pt")).unwrap();
    for (k, t) in &c.tensors {
        assert_eq!(t.dtype(), DType::F32);
        assert_matches_expected("pt_float.pt", k, t.shape(), &t.to_f64_vec());
    }
}

#[test]
fn pt_bool_noncontiguous_strides_honoured() {
    let c = read_pt(&fixture("pt_darcy_bool.pt")).unwrap();
    let (_, x) = c.tensors.iter().find(|(k, _)| k == "x").unwrap();
    assert_eq!(x.dtype(), DType::Bool);
    assert_matches_expected("pt_darcy_bool.pt", "x", x.shape(), &x.to_f64_vec());
}

#[test]
fn pt_float64_strided_view_with_offset_and_prefix_honoured() {
    let c = read_pt(&fixture("pt_burgers.pt")).unwrap();
    let (_, x) = c.tensors.iter().find(|(k, _)| k == "x").unwrap();
    assert_eq!(x.dtype(), DType::F64);
    assert_matches_expected("pt_burgers.pt", "x", x.shape(), &x.to_f64_vec());
    let (_, y) = c.tensors.iter().find(|(k, _)| k == "y").unwrap();
    assert_matches_expected("pt_burgers.pt", "y", y.shape(), &y.to_f64_vec());
    assert_eq!(
        c.scalars,
        vec![("visc".to_string(), serde_json::json!(0.01))]
    );
}

#[test]
fn pt_legacy_format_errors_clearly() {
    let e = read_pt(&fixture("pt_legacy.pt")).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    let s = e.to_string();
    assert!(s.contains("pt_legacy.pt") && s.contains("legacy"), "{s}");
}

#[test]
fn hdf5_flat_matches_h5py() {
    let c = read_hdf5(&fixture("pdebench_flat.hdf5")).unwrap();
    for (k, t) in &c.tensors {
        assert_matches_expected("pdebench_flat.hdf5", k, t.shape(), &t.to_f64_vec());
    }
    assert_eq!(c.tensors.len(), 3);
    let nu = c.attributes[""]["Nu"].as_f64().unwrap();
    pno_core::testing::assert_close(&[nu], &[0.001], 1e-12, 0.0);
}

#[test]
fn hdf5_grouped_lzf_matches_h5py() {
    let c = read_hdf5(&fixture("pdebench_grouped.h5")).unwrap();
    for g in ["0000", "0001", "0002"] {
        let key = format!("{g}/data");
        let (_, t) = c.tensors.iter().find(|(k, _)| *k == key).unwrap();
        assert_matches_expected("pdebench_grouped.h5", &key, t.shape(), &t.to_f64_vec());
    }
    assert!(
        c.attributes["0001"]["config"]
            .as_str()
            .unwrap()
            .contains("seed: 1")
    );
}

#[test]
fn source_pt_samples_gain_channel_axis() {
    let s = open_any(&fixture("pt_darcy_bool.pt"))
        .unwrap()
        .to_samples()
        .unwrap();
    assert_eq!(s.tensors[0].0, "x");
    assert_eq!(s.tensors[0].1.shape(), &[5, 1, 4, 3]);
    assert_eq!(s.tensors[1].1.shape(), &[5, 1, 4, 3]);
    let s = open_any(&fixture("pt_burgers.pt"))
        .unwrap()
        .to_samples()
        .unwrap();
    assert_eq!(s.tensors[0].1.shape(), &[8, 1, 16]);
    assert!(s.left_out.contains(&"visc".to_string()));
}

#[test]
fn source_pdebench_flat_samples_are_trajectories() {
    let src = open_any(&fixture("pdebench_flat.hdf5")).unwrap();
    assert_eq!(src.format, Format::Hdf5);
    let s = src.to_samples().unwrap();
    assert_eq!(s.tensors.len(), 1);
    assert_eq!(s.tensors[0].0, "u");
    assert_eq!(s.tensors[0].1.shape(), &[4, 5, 1, 8]);
    let times = s.times.unwrap();
    assert_eq!(times.len(), 5);
    pno_core::testing::assert_close(&times, &[0.0, 0.2, 0.4, 0.6, 0.8], 1e-6, 1e-7);
}

#[test]
fn source_pdebench_darcy_samples_are_x_y() {
    let s = open_any(&fixture("pdebench_darcy.hdf5"))
        .unwrap()
        .to_samples()
        .unwrap();
    let names: Vec<&str> = s.tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["x", "y"]);
    assert_eq!(s.tensors[0].1.shape(), &[3, 1, 8, 8]);
    assert_eq!(s.tensors[1].1.shape(), &[3, 1, 8, 8]);
}

#[test]
fn source_pdebench_grouped_samples_permuted_to_channels_first() {
    let s = open_any(&fixture("pdebench_grouped.h5"))
        .unwrap()
        .to_samples()
        .unwrap();
    let (name, u) = &s.tensors[0];
    assert_eq!(name, "u");
    assert_matches_expected("pdebench_grouped.h5", "u", u.shape(), &u.to_f64_vec());
    assert_eq!(s.times.unwrap().len(), 5);
}

#[test]
fn open_any_unknown_format_lists_supported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("data.csv");
    std::fs::write(&p, "1,2,3\n").unwrap();
    let e = open_any(&p).unwrap_err().to_string();
    assert!(
        e.contains("data.csv") && e.contains(".npz") && e.contains("HDF5"),
        "{e}"
    );
    assert!(open_any(dir.path()).is_err());
    assert!(
        open_any(&dir.path().join("missing.npy"))
            .unwrap_err()
            .to_string()
            .contains("missing.npy")
    );
}

#[test]
fn expected_json_records_versions_and_seed() {
    let e = expected();
    assert!(e["seed"].as_u64().is_some());
    assert!(e["versions"]["torch"].as_str().is_some());
}
