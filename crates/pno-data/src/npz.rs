//! NumPy `.npz` archives: a zip (stored or deflated) of `.npy` entries.
//!
//! [`read_npz`] reads both; [`write_npz`] writes what `numpy.savez` writes: an uncompressed
//! (stored) zip with one `<name>.npy` member per array.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::npy::{NpyData, check_len, npy_header, parse_npy};
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

/// Writes `entries` (`(name, shape, data)`) as an uncompressed `.npz` archive at `path`, one
/// `<name>.npy` member per entry in the given order, as `numpy.savez(path, name=array, ...)`
/// does; `numpy.load(path)[name]` and [`read_npz`] give the arrays back.
///
/// Validated before anything is written ([`Error::Invalid`], naming the entry): at least one
/// entry; names non-empty, unique, without `/` or NUL; each entry's element count equal to the
/// product of its shape. Members are stored (not deflated), zip64 only when a member reaches
/// 4 GiB, with fixed timestamps (1980-01-01) and permissions, so the same entries give the same
/// bytes.
///
/// Atomic: the archive is streamed into a temporary sibling, fsynced and renamed over `path`,
/// so a failure leaves no partial file and an existing file at `path` is either replaced whole
/// or untouched.
pub fn write_npz(path: &Path, entries: &[(&str, &[usize], NpyData<'_>)]) -> Result<()> {
    if entries.is_empty() {
        return Err(Error::invalid(
            format!("entries of {}", path.display()),
            "at least one array",
            "none",
        ));
    }
    let mut seen = HashSet::with_capacity(entries.len());
    let mut headers = Vec::with_capacity(entries.len());
    for (i, &(name, shape, data)) in entries.iter().enumerate() {
        let what = format!("entry {i} ({name:?}) of {}", path.display());
        if name.is_empty() || name.contains(['/', '\0']) {
            return Err(Error::invalid(
                what,
                "a non-empty name without '/' or NUL",
                format!("{name:?}"),
            ));
        }
        if !seen.insert(name) {
            return Err(Error::invalid(
                what,
                "a name not used by an earlier entry",
                format!("{name:?} again"),
            ));
        }
        check_len(&what, shape, &data)?;
        headers.push(npy_header(shape, data.dtype())?);
    }
    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .system(zip::System::Unix)
        .unix_permissions(0o644);
    pno_core::atomic_write_with(path, |w| {
        let mut zip = zip::ZipWriter::new_stream(w);
        for ((name, _, data), header) in entries.iter().zip(&headers) {
            let size = (header.len() as u64).saturating_add(data.byte_len() as u64);
            let large = size >= u64::from(u32::MAX);
            zip.start_file(format!("{name}.npy"), stored.large_file(large))?;
            zip.write_all(header)?;
            data.write_le(&mut zip)?;
        }
        zip.finish()?;
        Ok(())
    })?;
    Ok(())
}
