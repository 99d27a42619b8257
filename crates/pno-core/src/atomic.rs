//! Crash-safe file writes: temporary file in the same folder, fsync, rename, fsync the folder.
//! The whole sequence is retried on transient I/O errors ([`crate::retry`]): it starts from
//! scratch each time, so a retry never leaves a partial or duplicated file.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::retry::{Backoff, Retried, retry_io};

/// Retries made by the atomic writers of this process (see [`atomic_write_retries`]).
static RETRIES: AtomicU64 = AtomicU64::new(0);

/// The process-wide observer of atomic-write retries (see [`set_atomic_write_observer`]).
static OBSERVER: OnceLock<fn(&Path, &Retried)> = OnceLock::new();

/// Retries the atomic writers ([`atomic_write`], [`atomic_write_with`],
/// [`atomic_write_private`]) made in this process so far, for a `pno_retries_total` metric.
pub fn atomic_write_retries() -> u64 {
    RETRIES.load(Ordering::Relaxed)
}

/// Installs the process-wide callback told of every retry of an atomic write (the file and
/// the [`Retried`]), so a binary with a logger logs them (`pno-core` has none). Only the first
/// call installs; it returns `false` when an observer was already set.
pub fn set_atomic_write_observer(observer: fn(&Path, &Retried)) -> bool {
    OBSERVER.set(observer).is_ok()
}

/// Writes `bytes` to `path` atomically.
///
/// Readers see either the old file or the complete new one, never a partial write: the bytes go
/// to a hidden temporary file beside `path`, which is flushed to disk and then renamed over it.
/// A transient I/O error ([`crate::retry::is_transient`]) restarts the whole sequence with
/// [`Backoff::default`]; any other error is returned at once.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |w| w.write_all(bytes))
}

/// Like [`atomic_write`], but the content is produced by `fill` writing into a buffered writer.
///
/// If `fill` fails, the temporary file is removed and `path` is untouched. `fill` may run more
/// than once (after a transient error), and must write the same bytes each time.
pub fn atomic_write_with<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnMut(&mut dyn Write) -> std::io::Result<()>,
{
    write(path, false, fill)
}

/// Like [`atomic_write`], for secrets: on Unix the file is created readable and writable by its
/// owner only (mode 0600) before any byte is written, and keeps that mode after the rename.
pub fn atomic_write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write(path, true, |w| w.write_all(bytes))
}

fn create(path: &Path, private: bool) -> std::io::Result<File> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    opts.open(path)
}

fn write<F>(path: &Path, private: bool, mut fill: F) -> Result<()>
where
    F: FnMut(&mut dyn Write) -> std::io::Result<()>,
{
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => Path::new(".").to_path_buf(),
    };
    let name = path.file_name().ok_or_else(|| Error::Invalid {
        field: "path",
        expected: "a file path".into(),
        got: path.display().to_string(),
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    // Which step failed last, and on which file, for the error message.
    let mut failed: (&'static str, PathBuf) = ("write", tmp.clone());
    let result = retry_io(
        &Backoff::default(),
        None,
        |_attempt| {
            let step = |op: &'static str, p: &Path, r: std::io::Result<()>| {
                r.map_err(|e| (op, p.to_path_buf(), e))
            };
            let attempt = (|| {
                let file = create(&tmp, private).map_err(|e| ("create", tmp.clone(), e))?;
                let mut w = BufWriter::new(file);
                step("write", &tmp, fill(&mut w))?;
                let file = w
                    .into_inner()
                    .map_err(|e| ("flush", tmp.clone(), e.into_error()))?;
                step("fsync", &tmp, file.sync_all())?;
                step("rename into", path, fs::rename(&tmp, path))
            })();
            attempt.map_err(|(op, p, e)| {
                let _ = fs::remove_file(&tmp);
                failed = (op, p);
                e
            })
        },
        |r| {
            RETRIES.fetch_add(1, Ordering::Relaxed);
            if let Some(observe) = OBSERVER.get() {
                observe(path, r);
            }
        },
    );
    if let Err(source) = result {
        let (op, path) = failed;
        return Err(Error::Io { op, path, source });
    }
    // Persist the rename itself; not every platform allows opening a folder, so ignore failure.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn atomic_write_failed_fill_keeps_old_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        atomic_write(&p, b"old").unwrap();
        let err = atomic_write_with(&p, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("boom"))
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn atomic_write_retries_a_transient_failure_from_scratch() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        atomic_write(&p, b"old").unwrap();
        let before = atomic_write_retries();
        let mut calls = 0;
        atomic_write_with(&p, |w| {
            calls += 1;
            w.write_all(b"new ")?;
            if calls < 3 {
                // Half-written, then interrupted: the retry must not append to this.
                w.flush()?;
                return Err(std::io::Error::from(std::io::ErrorKind::Interrupted));
            }
            w.write_all(b"content")
        })
        .unwrap();
        assert_eq!(calls, 3);
        assert_eq!(fs::read(&p).unwrap(), b"new content");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
        assert!(atomic_write_retries() >= before + 2);
    }

    #[test]
    fn atomic_write_gives_up_after_the_attempts_and_names_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        atomic_write(&p, b"old").unwrap();
        let mut calls = 0;
        let err = atomic_write_with(&p, |w| {
            calls += 1;
            w.write_all(b"x")?;
            Err(std::io::Error::from(std::io::ErrorKind::TimedOut))
        })
        .unwrap_err();
        assert_eq!(calls, Backoff::default().attempts);
        match err {
            Error::Io { op, source, .. } => {
                assert_eq!(op, "write");
                assert_eq!(source.kind(), std::io::ErrorKind::TimedOut);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn atomic_write_does_not_retry_a_permanent_failure() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        let mut calls = 0;
        let err = atomic_write_with(&p, |_| {
            calls += 1;
            Err(std::io::Error::from(std::io::ErrorKind::InvalidData))
        });
        assert!(err.is_err());
        assert_eq!(calls, 1);
        // A missing folder is NotFound at `create`: not retried either.
        let missing = dir.path().join("no/such/dir/a.bin");
        match atomic_write(&missing, b"x").unwrap_err() {
            Error::Io { op, source, .. } => {
                assert_eq!(op, "create");
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_private_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys.json");
        atomic_write(&p, b"public").unwrap();
        atomic_write_private(&p, b"secret").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"secret");
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "got {mode:o}");
    }
}
