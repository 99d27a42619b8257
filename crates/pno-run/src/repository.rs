//! A model repository (`<repository>/<model>/<version>/`, versions numbered from 1): listing
//! versions and publishing a run as the next one, atomically.

use std::path::{Path, PathBuf};

use crate::dir::RunDir;
use crate::error::{Result, RunError, io_err};
use crate::files::write_json;
use crate::gate::{GATE_FILE, GateRecord};

/// Files of a run that a published version (or a benchmark's cached copy) carries; checkpoints
/// and logs stay with the run.
pub const PUBLISHED: [&str; 8] = [
    "model.json",
    "config.json",
    "normalizer.json",
    "weights.safetensors",
    "provenance.json",
    "laplace.json",
    "summary.json",
    crate::reference::REFERENCE_FILE,
];

/// Whether `name` is a valid model name (1–64 characters of `[A-Za-z0-9_.-]`, not starting
/// with `.`), so it can never escape the repository folder.
pub fn check_model_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "model names are 1-64 characters of [A-Za-z0-9_.-] not starting with '.', got {:?}",
            name.chars().take(80).collect::<String>()
        ))
    }
}

/// Numbered versions (≥ 1) of `model` in `repository`, ascending; none if the model folder does
/// not exist.
pub fn versions(repository: &Path, model: &str) -> Result<Vec<u64>> {
    let dir = repository.join(model);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let rd = std::fs::read_dir(&dir).map_err(io_err("list", &dir))?;
    let mut v: Vec<u64> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok()?.parse::<u64>().ok())
        .filter(|&v| v > 0)
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// The folder of `model` version `version`.
pub fn version_dir(repository: &Path, model: &str, version: u64) -> PathBuf {
    repository.join(model).join(version.to_string())
}

/// Copies the run in `run` into `<repository>/<model>/<next version>/` with `gate` as its
/// `gate.json`, atomically: files are written and fsynced in a hidden staging folder beside the
/// versions, which is then renamed into place (a version folder that appeared meanwhile is never
/// overwritten). Returns the version.
pub fn publish(run: &Path, repository: &Path, model: &str, gate: &GateRecord) -> Result<u64> {
    check_model_name(model).map_err(|got| RunError::Corrupt {
        path: repository.join(model),
        what: "model name".into(),
        expected: "a safe folder name".into(),
        got,
    })?;
    let src = RunDir::new(run);
    let parent = repository.join(model);
    std::fs::create_dir_all(&parent).map_err(io_err("create", &parent))?;
    let version = versions(repository, model)?.last().copied().unwrap_or(0) + 1;
    let staging = parent.join(format!(".staging-{version}-{}", std::process::id()));
    let result = (|| {
        std::fs::create_dir(&staging).map_err(io_err("create", &staging))?;
        for name in PUBLISHED {
            let from = src.dir.join(name);
            if !from.exists() {
                continue;
            }
            let bytes = std::fs::read(&from).map_err(io_err("read", &from))?;
            pno_core::atomic_write(&staging.join(name), &bytes)?;
        }
        write_json(&staging.join(GATE_FILE), gate)?;
        let target = version_dir(repository, model, version);
        std::fs::rename(&staging, &target).map_err(io_err("rename into", &target))?;
        if let Ok(d) = std::fs::File::open(&parent) {
            let _ = d.sync_all();
        }
        Ok(version)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}
