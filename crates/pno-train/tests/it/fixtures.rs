//! The shared test fixtures of `pno_train::testing`: deterministic data, a cached tiny run that
//! is reused while it loads and never handed out when it does not.

use pno_models::burn::tensor::Device;
use pno_run::load_trained;
use pno_train::testing::{GRID, cached_tiny_run, synthetic_npz};

#[test]
fn synthetic_data_is_the_same_file_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (pa, pb) = (synthetic_npz(&a, 5).unwrap(), synthetic_npz(&b, 5).unwrap());
    assert_eq!(std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap());
    let t = pno_data::read_npz(&pa).unwrap();
    let names: Vec<&str> = t.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["x", "y"]);
    for (_, v) in &t {
        assert_eq!(v.shape(), &[5, 1, GRID, GRID]);
    }
}

#[test]
fn a_cached_run_is_reused_and_a_broken_one_is_never_returned() {
    let cache = tempfile::tempdir().unwrap();
    let first = cached_tiny_run(cache.path(), "fno", 16, 1).unwrap();
    load_trained(&first, &Device::flex()).unwrap();
    let stamp = |p: &std::path::Path| std::fs::metadata(p.join("model.json")).unwrap().modified();
    let before = stamp(&first).unwrap();
    assert_eq!(cached_tiny_run(cache.path(), "fno", 16, 1).unwrap(), first);
    assert_eq!(
        stamp(&first).unwrap(),
        before,
        "the cached run was retrained"
    );
    // Scratch folders are cleaned up once the run is in place.
    let slot = first.parent().unwrap();
    let entries: Vec<_> = std::fs::read_dir(slot).unwrap().collect();
    assert_eq!(entries.len(), 1, "{slot:?} holds more than the run");
    // A cached run that no longer loads is left alone; the caller gets a fresh one that loads.
    std::fs::write(first.join("model.json"), b"{\"format\": 1}").unwrap();
    let fresh = cached_tiny_run(cache.path(), "fno", 16, 1).unwrap();
    assert_ne!(fresh, first);
    load_trained(&fresh, &Device::flex()).unwrap();
}
