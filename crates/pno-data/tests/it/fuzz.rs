//! Truncated and bit-flipped inputs never panic, and corruption is caught where it can be: a
//! truncated file never passes the gate, a changed shard of a checksummed dataset always fails
//! its `checksums` check, and a dataset whose manifest was changed passes only if it still reads
//! back the samples that were written.

use std::path::Path;

use pno_core::ShardSpec;
use pno_data::{CheckOptions, CheckReport, Status, Tensor, check, info, open_any};

use crate::common::{fixture, sample, write};

const FIXTURES: [&str; 13] = [
    "npy_f4.npy",
    "npy_f8.npy",
    "npy_bool.npy",
    "npy_fortran.npy",
    "npy_f8_bigendian.npy",
    "npz_stored.npz",
    "npz_compressed.npz",
    "pt_float.pt",
    "pt_darcy_bool.pt",
    "pt_burgers.pt",
    "pdebench_flat.hdf5",
    "pdebench_darcy.hdf5",
    "pdebench_grouped.h5",
];

/// What the readers and the gate made of one input.
struct Outcome {
    /// `open_any(p)?.to_samples()`: the sample tensors, or `None` on an error.
    samples: Option<Vec<(String, Tensor)>>,
    /// `info(p)` succeeded.
    info_ok: bool,
    /// `check(p)`.
    report: pno_data::Result<CheckReport>,
}

impl Outcome {
    /// The gate ran and every check passed.
    fn passed(&self) -> bool {
        self.report.as_ref().is_ok_and(CheckReport::passed)
    }

    /// Short description for assertion messages.
    fn describe(&self) -> String {
        match &self.report {
            Ok(r) => r.to_string(),
            Err(e) => format!("check error: {e}"),
        }
    }
}

/// Runs every reader and the gate on `p`.
fn exercise(p: &Path) -> Outcome {
    let opts = CheckOptions {
        write_stats: false,
        ..CheckOptions::default()
    };
    let samples = open_any(p)
        .and_then(|src| src.to_samples())
        .ok()
        .map(|s| s.tensors);
    Outcome {
        samples,
        info_ok: info(p).is_ok(),
        report: check(p, &opts),
    }
}

/// For a single file the gate reads exactly what `open_any` + `to_samples` read, so it errors
/// exactly when they do, and `info` (which reads less) succeeds whenever they do.
fn assert_consistent(what: &str, o: &Outcome) {
    assert_eq!(
        o.report.is_ok(),
        o.samples.is_some(),
        "{what}: check and to_samples disagree: {}",
        o.describe()
    );
    if o.samples.is_some() {
        assert!(o.info_ok, "{what}: samples readable but info fails");
    }
}

/// Deterministic pseudo-random offsets (xorshift).
fn offsets(len: usize, n: usize, seed: u64) -> Vec<usize> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % len.max(1) as u64) as usize
        })
        .collect()
}

#[test]
fn fuzz_truncated_fixtures_never_pass() {
    let dir = tempfile::tempdir().unwrap();
    for name in FIXTURES {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let p = dir.path().join(name);
        let mut cuts = vec![0, 1, 8, 64, bytes.len() / 2, bytes.len().saturating_sub(1)];
        cuts.extend(offsets(bytes.len(), 6, 7));
        for cut in cuts {
            let cut = cut.min(bytes.len() - 1);
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let o = exercise(&p);
            let what = format!("{name} cut to {cut} of {} bytes", bytes.len());
            assert_consistent(&what, &o);
            assert!(
                !o.passed(),
                "{what}: a truncated file passed the gate:\n{}",
                o.describe()
            );
        }
    }
}

#[test]
fn fuzz_flipped_bytes_never_panic_and_are_caught_in_the_magic() {
    let dir = tempfile::tempdir().unwrap();
    for (k, name) in FIXTURES.iter().enumerate() {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let p = dir.path().join(name);
        // Header region densely, the rest sparsely.
        let mut at: Vec<usize> = (0..bytes.len().min(160)).step_by(3).collect();
        at.extend(offsets(bytes.len(), 24, 11 + k as u64));
        let mut refused = 0;
        for i in at {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= mask;
                std::fs::write(&p, &b).unwrap();
                let o = exercise(&p);
                let what = format!("{name} byte {i} ^ {mask:#04x}");
                assert_consistent(&what, &o);
                // A flipped value is a valid file with another number in it; a flipped magic
                // number (byte 0 of npy, zip and HDF5 alike) is not a file of that format.
                if i == 0 {
                    assert!(o.report.is_err(), "{what}: accepted:\n{}", o.describe());
                }
                refused += usize::from(o.report.is_err());
            }
        }
        assert!(refused > 0, "{name}: no corruption was noticed");
    }
}

#[test]
fn fuzz_corrupted_shard_fails_checksums_and_a_changed_manifest_passes_only_if_harmless() {
    let src = tempfile::tempdir().unwrap();
    let m = write(src.path(), 5, ShardSpec::WHOLE, 2);
    // What was written: tensor k of every sample, in order.
    let written =
        |k: usize| -> Vec<f32> { (0..5).flat_map(|i| sample(i).swap_remove(k)).collect() };
    let shard = m.files[0].path.clone();
    for name in [shard.as_str(), "manifest.json"] {
        let orig = std::fs::read(src.path().join(name)).unwrap();
        // (label, bytes, must fail): a truncation of the manifest that only drops trailing
        // whitespace leaves the same JSON, so it may pass.
        let content = orig.trim_ascii_end().len();
        let mut variants: Vec<(String, Vec<u8>, bool)> = [0, 7, orig.len() / 2, orig.len() - 1]
            .iter()
            .map(|&c| (format!("cut to {c}"), orig[..c].to_vec(), c < content))
            .collect();
        for i in offsets(orig.len(), 20, 5).into_iter().chain(0..16) {
            let mut b = orig.clone();
            b[i] ^= 0x5a;
            variants.push((format!("byte {i} ^ 0x5a"), b, false));
        }
        for (label, bytes, must_fail) in variants {
            let dir = tempfile::tempdir().unwrap();
            for e in std::fs::read_dir(src.path()).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
            }
            std::fs::write(dir.path().join(name), &bytes).unwrap();
            let what = format!("{name} {label}");
            let o = exercise(dir.path());
            let read_back = pno_data::Dataset::open(dir.path())
                .and_then(|ds| Ok((ds.read_tensor("x")?, ds.read_tensor("y")?)));
            if name == shard {
                // The manifest is intact, so the gate runs and the sha256 no longer matches.
                let report = o
                    .report
                    .as_ref()
                    .unwrap_or_else(|e| panic!("{what}: check error {e}"));
                assert_eq!(
                    report.get("checksums").map(|c| c.status),
                    Some(Status::Fail),
                    "{what}:\n{report}"
                );
                assert!(!report.passed(), "{what}:\n{report}");
            } else if must_fail {
                assert!(!o.passed(), "{what}: passed:\n{}", o.describe());
            }
            if o.passed() {
                let (x, y) = read_back
                    .unwrap_or_else(|e| panic!("{what}: passed the gate but reads fail: {e}"));
                assert!(
                    x.shape() == [5, 1, 4, 4]
                        && y.shape() == [5, 1, 4, 4]
                        && x.to_f32_vec() == written(0)
                        && y.to_f32_vec() == written(1),
                    "{what}: passed the gate but reads other samples:\n{}",
                    o.describe()
                );
            }
        }
    }
}
