//! Truncated and bit-flipped inputs must give `Err` or `Ok`, never a panic.

use std::path::Path;

use pno_core::ShardSpec;
use pno_data::{CheckOptions, check, info, open_any};

use crate::common::{fixture, write};

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

fn exercise(p: &Path) {
    let opts = CheckOptions {
        write_stats: false,
        ..CheckOptions::default()
    };
    if let Ok(src) = open_any(p) {
        let _ = src.to_samples();
    }
    let _ = info(p);
    let _ = check(p, &opts);
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
fn fuzz_truncated_fixtures_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    for name in FIXTURES {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let p = dir.path().join(name);
        let mut cuts = vec![0, 1, 8, 64, bytes.len() / 2, bytes.len().saturating_sub(1)];
        cuts.extend(offsets(bytes.len(), 6, 7));
        for cut in cuts {
            std::fs::write(&p, &bytes[..cut.min(bytes.len())]).unwrap();
            exercise(&p);
        }
    }
}

#[test]
fn fuzz_flipped_bytes_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    for (k, name) in FIXTURES.iter().enumerate() {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let p = dir.path().join(name);
        // Header region densely, the rest sparsely.
        let mut at: Vec<usize> = (0..bytes.len().min(160)).step_by(3).collect();
        at.extend(offsets(bytes.len(), 24, 11 + k as u64));
        for i in at {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= mask;
                std::fs::write(&p, &b).unwrap();
                exercise(&p);
            }
        }
    }
}

#[test]
fn fuzz_corrupted_dataset_folder_never_panics() {
    let src = tempfile::tempdir().unwrap();
    let m = write(src.path(), 5, ShardSpec::WHOLE, 2);
    let names = [m.files[0].path.clone(), "manifest.json".to_string()];
    for name in &names {
        let orig = std::fs::read(src.path().join(name)).unwrap();
        let mut variants: Vec<Vec<u8>> = [0, 7, orig.len() / 2, orig.len() - 1]
            .iter()
            .map(|&c| orig[..c].to_vec())
            .collect();
        for i in offsets(orig.len(), 20, 5).into_iter().chain(0..16) {
            let mut b = orig.clone();
            b[i] ^= 0x5a;
            variants.push(b);
        }
        for v in variants {
            let dir = tempfile::tempdir().unwrap();
            for e in std::fs::read_dir(src.path()).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
            }
            std::fs::write(dir.path().join(name), &v).unwrap();
            exercise(dir.path());
            if let Ok(ds) = pno_data::Dataset::open(dir.path()) {
                let _ = ds.read_tensor("x");
            }
        }
    }
}
