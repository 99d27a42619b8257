//! `.npy`/`.npz` writers: byte-identical to `numpy.save`, readable by numpy and by our readers,
//! validated and atomic. Oracle files: `tests/fixtures/gen_writer_fixtures.py`.
// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use pno_data::{Error, NpyData, TensorData, npy_bytes, read_npy, read_npz, write_npy, write_npz};

use crate::common::fixture;

/// The arrays of `gen_writer_fixtures.py::npy_arrays`, as `(file, shape, data)`.
fn npy_arrays() -> Vec<(&'static str, Vec<usize>, TensorData)> {
    let mut f4: Vec<f32> = (0..12).map(|i| (i as f32 - 5.0) / 8.0).collect();
    f4[1] = -0.0;
    f4[2] = f32::INFINITY;
    f4[3] = f32::NAN;
    vec![
        ("save_f4.npy", vec![3, 4], TensorData::F32(f4)),
        ("save_f8_scalar.npy", vec![], TensorData::F64(vec![2.5])),
        ("save_i8_empty.npy", vec![0, 3], TensorData::I64(vec![])),
        (
            "save_i4.npy",
            vec![5],
            TensorData::I32((0..5).map(|i| i * -1000 + 7).collect()),
        ),
        (
            "save_bool.npy",
            vec![2, 5],
            TensorData::Bool((0..10).map(|i| i % 3 == 0).collect()),
        ),
        (
            "save_u1.npy",
            vec![2, 3, 4],
            TensorData::U8((0..24u32).map(|i| (i * 11 % 256) as u8).collect()),
        ),
        // 0.5, -1.0, 65504 (max), 2^-24 (smallest subnormal) as IEEE half bits.
        (
            "save_f2.npy",
            vec![2, 2],
            TensorData::F16(vec![0x3800, 0xbc00, 0x7bff, 0x0001]),
        ),
        (
            "save_u1_long_empty.npy",
            vec![12_345_678_901, 0],
            TensorData::U8(vec![]),
        ),
        (
            "save_f4_pad64.npy",
            vec![0, 1, 1, 1, 10, 10, 10, 10, 10, 10, 10, 10],
            TensorData::F32(vec![]),
        ),
    ]
}

/// Bit-exact comparison (NaN == NaN, -0.0 != 0.0).
fn same_bits(a: &TensorData, b: &TensorData) -> bool {
    match (a, b) {
        (TensorData::F32(a), TensorData::F32(b)) => a
            .iter()
            .map(|x| x.to_bits())
            .eq(b.iter().map(|x| x.to_bits())),
        (TensorData::F64(a), TensorData::F64(b)) => a
            .iter()
            .map(|x| x.to_bits())
            .eq(b.iter().map(|x| x.to_bits())),
        _ => a == b,
    }
}

#[test]
fn write_npy_matches_numpy_save_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for (name, shape, data) in npy_arrays() {
        let want = std::fs::read(fixture(name)).unwrap();
        let got = npy_bytes(&shape, &NpyData::from(&data)).unwrap();
        assert_eq!(got, want, "{name}: npy_bytes differs from numpy.save");
        assert_eq!(
            got.len() % 64,
            data.len() * data.dtype().size() % 64,
            "{name}"
        );
        let p = dir.path().join(name);
        write_npy(&p, &shape, &NpyData::from(&data)).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), want, "{name}: write_npy");
    }
}

#[test]
fn write_npy_round_trips_through_read_npy() {
    let dir = tempfile::tempdir().unwrap();
    let extra = vec![
        (
            "f64.npy",
            vec![2, 1, 3],
            TensorData::F64(vec![1e300, -2.0, 0.1, 3.5, f64::NAN, -0.0]),
        ),
        (
            "i64.npy",
            vec![3],
            TensorData::I64(vec![i64::MIN, 0, i64::MAX]),
        ),
        ("bool0d.npy", vec![], TensorData::Bool(vec![true])),
        ("f32empty.npy", vec![0], TensorData::F32(vec![])),
        ("u8.npy", vec![1, 1, 1, 2], TensorData::U8(vec![0, 255])),
    ];
    for (name, shape, data) in npy_arrays().into_iter().chain(extra) {
        let p = dir.path().join(name);
        write_npy(&p, &shape, &NpyData::from(&data)).unwrap();
        let t = read_npy(&p).unwrap();
        assert_eq!(t.shape(), shape.as_slice(), "{name}");
        assert!(
            same_bits(t.data(), &data),
            "{name}: {:?} != {data:?}",
            t.data()
        );
    }
}

#[test]
fn write_npy_replaces_an_existing_file_whole() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.npy");
    write_npy(&p, &[3], &NpyData::F64(&[1.0, 2.0, 3.0])).unwrap();
    write_npy(&p, &[1], &NpyData::F32(&[7.0])).unwrap();
    assert_eq!(read_npy(&p).unwrap().to_f64_vec(), vec![7.0]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// The entries of `gen_writer_fixtures.py::npz_arrays`.
struct NpzArrays {
    x: Vec<f32>,
    mask: Vec<bool>,
    idx: Vec<i64>,
}

impl NpzArrays {
    fn new() -> Self {
        Self {
            x: (0..6).map(|i| i as f32 * 0.25 - 1.0).collect(),
            mask: (0..6).map(|i| i % 2 == 1).collect(),
            idx: vec![-3, 0, 7, 1 << 40],
        }
    }

    fn entries(&self) -> Vec<(&str, &[usize], NpyData<'_>)> {
        vec![
            ("x", &[2, 3], NpyData::F32(&self.x)),
            ("mask", &[2, 3], NpyData::Bool(&self.mask)),
            ("idx", &[4], NpyData::I64(&self.idx)),
            ("scalar", &[], NpyData::F64(&[-1.5])),
            ("empty", &[0, 2], NpyData::F32(&[])),
        ]
    }
}

#[test]
fn write_npz_round_trips_through_read_npz_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.npz");
    let arrays = NpzArrays::new();
    let entries = arrays.entries();
    write_npz(&p, &entries).unwrap();
    let back = read_npz(&p).unwrap();
    assert_eq!(back.len(), entries.len());
    for ((name, shape, data), (got_name, t)) in entries.iter().zip(&back) {
        assert_eq!(got_name, name);
        assert_eq!(t.shape(), *shape, "{name}");
        assert_eq!(NpyData::from(t.data()), *data, "{name}");
    }
    // Every member is stored (what numpy.savez writes) and holds numpy.save's bytes.
    let bytes = std::fs::read(&p).unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    for (i, (name, shape, data)) in entries.iter().enumerate() {
        let mut f = zip.by_index(i).unwrap();
        assert_eq!(f.name().unwrap(), format!("{name}.npy"));
        assert_eq!(f.compression(), zip::CompressionMethod::Stored);
        let mut member = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut member).unwrap();
        assert_eq!(member, npy_bytes(shape, data).unwrap(), "{name}");
    }
}

/// `npz_written.npz` is what `write_npz` writes for [`NpzArrays`]; `gen_writer_fixtures.py
/// --check` verified that numpy reads it back exactly. Same entries, same bytes.
#[test]
fn write_npz_matches_golden_file_numpy_reads() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("npz_written.npz");
    let arrays = NpzArrays::new();
    write_npz(&p, &arrays.entries()).unwrap();
    let got = std::fs::read(&p).unwrap();
    let golden = fixture("npz_written.npz");
    if std::env::var_os("PNO_UPDATE_FIXTURES").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    assert!(
        got == std::fs::read(&golden).unwrap(),
        "write_npz output changed. If intended: PNO_UPDATE_FIXTURES=1 cargo test -p pno-data \
         write_npz_matches_golden, then `python3 gen_writer_fixtures.py --check npz_written.npz` \
         in tests/fixtures"
    );
    // Same entries again (another path), same bytes: no timestamps or host data.
    let q = dir.path().join("again.npz");
    write_npz(&q, &arrays.entries()).unwrap();
    assert_eq!(std::fs::read(&q).unwrap(), got);
}

fn assert_nothing_in(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn write_into_missing_directory_errors_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir");
    let e = write_npy(&missing.join("a.npy"), &[1], &NpyData::F32(&[1.0])).unwrap_err();
    assert!(e.to_string().contains("no/such/dir"), "{e}");
    let e = write_npz(&missing.join("a.npz"), &[("x", &[1], NpyData::F32(&[1.0]))]).unwrap_err();
    assert!(matches!(e, Error::Core(_)), "{e:?}");
    assert_nothing_in(dir.path());
}

#[test]
fn element_count_mismatch_errors_naming_entry_and_keeps_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = write_npy(
        &dir.path().join("a.npy"),
        &[3, 4],
        &NpyData::F32(&[0.0; 11]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("a.npy") && e.contains("12 elements") && e.contains("got 11"),
        "{e}"
    );
    assert_nothing_in(dir.path());

    let p = dir.path().join("b.npz");
    write_npz(&p, &[("old", &[1], NpyData::I64(&[5]))]).unwrap();
    let before = std::fs::read(&p).unwrap();
    let e = write_npz(
        &p,
        &[
            ("x", &[2], NpyData::F64(&[1.0, 2.0])),
            ("y", &[2, 2], NpyData::U8(&[1, 2, 3])),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("\"y\"") && e.contains("4 elements") && e.contains("got 3"),
        "{e}"
    );
    assert_eq!(std::fs::read(&p).unwrap(), before, "old archive untouched");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    assert!(npy_bytes(&[2], &NpyData::F32(&[1.0])).is_err());
    assert!(npy_bytes(&[usize::MAX, 2], &NpyData::F32(&[])).is_err());
}

#[test]
fn write_npz_rejects_bad_names_and_no_entries() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.npz");
    let one = NpyData::F32(&[1.0]);
    for (names, needle) in [
        (vec![""], "non-empty"),
        (vec!["a/b"], "'/'"),
        (vec!["a\0b"], "NUL"),
        (vec!["a", "b", "a"], "earlier entry"),
    ] {
        let entries: Vec<(&str, &[usize], NpyData<'_>)> =
            names.iter().map(|n| (*n, &[1usize][..], one)).collect();
        let e = write_npz(&p, &entries).unwrap_err().to_string();
        assert!(e.contains(needle), "{names:?}: {e}");
    }
    let e = write_npz(&p, &[]).unwrap_err().to_string();
    assert!(e.contains("at least one"), "{e}");
    assert_nothing_in(dir.path());
}
