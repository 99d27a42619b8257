//! NumPy `.npz` archives: a zip (stored or deflated) of `.npy` entries.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::npy::parse_npy;
use crate::tensor::Tensor;

/// Largest entry this reader inflates (guards against zip bombs).
const MAX_ENTRY: u64 = 16 << 30;

/// Reads every entry of a zip archive as `(name, bytes)`, in archive order; `skip` filters names.
pub(crate) fn read_zip_entries(path: &Path, bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let zerr = |field: &str, e: zip::result::ZipError| {
        Error::format(path, field, "a valid zip archive", e.to_string())
    };
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| zerr("zip", e))?;
    let mut out = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| zerr("zip entry", e))?;
        if entry.is_dir() {
            continue;
        }
        let name = entry
            .name()
            .map_err(|e| zerr("zip entry name", e))?
            .to_string();
        let size = entry.size();
        if size > MAX_ENTRY || size > (bytes.len() as u64).saturating_mul(2048) {
            return Err(Error::format(
                path,
                format!("entry {name}"),
                "a plausible uncompressed size",
                size.to_string(),
            ));
        }
        let mut data = Vec::new();
        (&mut entry)
            .take(size)
            .read_to_end(&mut data)
            .map_err(|e| {
                Error::format(
                    path,
                    format!("entry {name}"),
                    "readable data",
                    e.to_string(),
                )
            })?;
        if data.len() as u64 != size {
            return Err(Error::format(
                path,
                format!("entry {name}"),
                format!("{size} bytes"),
                format!("{} bytes", data.len()),
            ));
        }
        out.push((name, data));
    }
    Ok(out)
}

/// Reads a `.npz` archive: one tensor per `.npy` entry, named without the `.npy` suffix.
pub fn read_npz(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let bytes = std::fs::read(path).map_err(Error::io("read", path))?;
    let mut out = Vec::new();
    for (name, data) in read_zip_entries(path, &bytes)? {
        let key = name.strip_suffix(".npy").unwrap_or(&name).to_string();
        let t = parse_npy(&data, &path.join(&name))?;
        out.push((key, t));
    }
    if out.is_empty() {
        return Err(Error::format(
            path,
            "entries",
            "at least one .npy entry",
            "none",
        ));
    }
    Ok(out)
}
