//! The audit log: one JSON record per line, each carrying the SHA-256 of the previous record
//! (`prev`) and its own (`hash`, over the exact bytes of the record without `hash`). Editing any
//! byte breaks the record's own hash, its JSON, or the next record's `prev`; [`verify`] names the
//! first bad record. The log rotates into numbered segments (`audit.log.000001`, …, then the
//! active `audit.log`); the chain and the sequence run across segments. What a chain alone cannot
//! show — a truncated tail or a wholesale rewrite — a signed checkpoint of its Merkle tree does
//! ([`crate::checkpoint`]).
//!
//! Appends retry transient I/O errors ([`pno_core::retry`]) without ever duplicating or
//! half-writing a record: a failed attempt cuts the file back to its length before the attempt,
//! and the chain state (sequence, `prev`) advances only once an attempt fully succeeded.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
#[cfg(feature = "fault-injection")]
use std::sync::atomic::AtomicU32;
use std::sync::atomic::{AtomicU64, Ordering};

use pno_core::retry::{Backoff, RetryBudget, retry_io};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{AuditError, Result, invalid, io_err};
use crate::merkle::{Hash, leaf_hash};

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// When the audit log is flushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// After every record.
    Always,
    /// After every `fsync_every` records, and at shutdown.
    Batch,
    /// Only at shutdown (the OS decides otherwise).
    Never,
}

/// What happened (the caller's part of a record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AuditEvent {
    /// Key id or `anonymous`.
    pub actor: String,
    /// The actor's role (`reader`, `operator`, `admin`, or `none`).
    pub role: String,
    /// Client address.
    pub client: String,
    /// Action, e.g. `infer`, `model.load`, `keys.create`.
    pub action: String,
    /// Model name.
    pub model: Option<String>,
    /// Model version.
    pub version: Option<String>,
    /// `ok` or `error`.
    pub outcome: String,
    /// HTTP status.
    pub status: u16,
    /// Request id.
    pub request_id: String,
    /// SHA-256 of the request body, when there was one.
    pub input_sha256: Option<String>,
    /// Failure class of an error outcome (`input`, `security`, `transient`, `persistent`,
    /// `internal`); absent on success and in records written before classes existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
}

/// A record as stored (without its `hash`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// 0-based sequence number (across segments).
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// The replica (server process) that wrote the record ([`AuditLog::with_replica`]); absent
    /// in records written before replicas were named, which therefore re-serialise, hash and
    /// verify exactly as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// Hash of the previous record.
    pub prev: String,
}

/// How a log is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// When to fsync.
    pub fsync: FsyncPolicy,
    /// Records between fsyncs with [`FsyncPolicy::Batch`].
    pub every: usize,
    /// Start a new segment once the active file reaches this size (None: never rotate).
    pub segment_bytes: Option<u64>,
}

/// Checks a replica id: 1–63 characters of `[A-Za-z0-9._-]` (a DNS label's length, so a
/// Kubernetes pod name fits; no spaces, `+` or `/`, so it can sit in a checkpoint's origin and
/// a Prometheus label unescaped). `Err` says what was found.
pub fn check_replica(id: &str) -> std::result::Result<(), String> {
    if id.is_empty() {
        return Err("an empty string".into());
    }
    if id.len() > 63 {
        return Err(format!("{} characters", id.len()));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!("{id:?} (character {c:?})"));
    }
    Ok(())
}

struct Writer {
    file: File,
    seq: u64,
    prev: String,
    unsynced: usize,
    /// Length of the active file up to the last complete record.
    bytes: u64,
    /// A failed attempt could not cut the file back to `bytes`: do it before the next write.
    dirty: bool,
}

/// An open audit log.
pub struct AuditLog {
    path: PathBuf,
    opts: LogOptions,
    w: Mutex<Writer>,
    retry: Backoff,
    budget: RetryBudget,
    retries: AtomicU64,
    replica: Option<String>,
    #[cfg(feature = "fault-injection")]
    fail_writes: AtomicU32,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("replica", &self.replica)
            .finish()
    }
}

/// The result of checking a whole log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// Hash of the last record (the chain head).
    pub head: String,
    /// The Merkle tree hash over every record (RFC 9162), the value a checkpoint signs.
    pub root: Hash,
    /// Segment files read, in order.
    pub segments: Vec<PathBuf>,
}

fn encode(rec: &AuditRecord) -> std::result::Result<(String, String), serde_json::Error> {
    let body = serde_json::to_string(rec)?;
    let hash = hex::encode(Sha256::digest(body.as_bytes()));
    let mut line = body;
    line.pop(); // the closing brace
    line.push_str(",\"hash\":\"");
    line.push_str(&hash);
    line.push_str("\"}\n");
    Ok((line, hash))
}

/// The segment files of the log at `path`, oldest first: `path.000001`, `path.000002`, …, then
/// `path` itself when it exists.
pub fn segments(path: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if dir.exists() {
        let mut numbered: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
            .map_err(io_err("list", &dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let f = e.file_name().into_string().ok()?;
                let n: u64 = f.strip_prefix(&name)?.strip_prefix('.')?.parse().ok()?;
                Some((n, e.path()))
            })
            .collect();
        numbered.sort();
        out.extend(numbered.into_iter().map(|(_, p)| p));
    }
    if path.exists() {
        out.push(path.to_path_buf());
    }
    Ok(out)
}

/// Streams over every record of every segment, checking JSON shape, sequence, `prev` links,
/// hashes and canonical form; `each(record_line, record)` sees every good record. Memory stays
/// constant whatever the log's size. The error names the segment and the first bad record.
pub fn scan(path: &Path, each: impl FnMut(&[u8], &AuditRecord)) -> Result<Verified> {
    scan_upto(path, u64::MAX, each)
}

/// [`scan`] of the first `limit` records only (a log still being appended to: what lies past
/// them, even a half-written line, is not read).
pub fn scan_upto(
    path: &Path,
    limit: u64,
    mut each: impl FnMut(&[u8], &AuditRecord),
) -> Result<Verified> {
    let segs = segments(path)?;
    let mut prev = GENESIS.to_string();
    let mut n = 0u64;
    let mut frontier = crate::merkle::Frontier::default();
    let mut buf = Vec::new();
    for seg in &segs {
        let file = File::open(seg).map_err(io_err("open", seg))?;
        let mut r = BufReader::with_capacity(1 << 16, file);
        let mut line = 0usize;
        loop {
            if n >= limit {
                break;
            }
            buf.clear();
            let got = r.read_until(b'\n', &mut buf).map_err(io_err("read", seg))?;
            if got == 0 {
                break;
            }
            line += 1;
            let bad = |what: String| AuditError::Record {
                path: seg.clone(),
                line,
                what,
            };
            if buf.last() != Some(&b'\n') {
                return Err(bad("incomplete last record (no newline)".into()));
            }
            let raw = &buf[..buf.len() - 1];
            let text = std::str::from_utf8(raw).map_err(|_| bad("not UTF-8".into()))?;
            // The stored hash is the last field, exactly `,"hash":"<64 hex>"}`.
            const TAIL: usize = ",\"hash\":\"".len() + 64 + 2;
            if text.len() < TAIL + 2 || !text.is_char_boundary(text.len() - TAIL) {
                return Err(bad("malformed record".into()));
            }
            let (head, tail) = text.split_at(text.len() - TAIL);
            let stored = tail
                .strip_prefix(",\"hash\":\"")
                .and_then(|t| t.strip_suffix("\"}"))
                .ok_or_else(|| bad("malformed hash field".into()))?;
            let body = format!("{head}}}");
            let rec: AuditRecord =
                serde_json::from_str(&body).map_err(|e| bad(format!("malformed record: {e}")))?;
            let hash = hex::encode(Sha256::digest(body.as_bytes()));
            if hash != stored {
                return Err(bad(format!(
                    "hash mismatch: stored {stored}, content hashes to {hash}"
                )));
            }
            if rec.seq != n {
                return Err(bad(format!("sequence: expected {n}, got {}", rec.seq)));
            }
            if rec.prev != prev {
                return Err(bad(format!(
                    "chain broken: prev is {}, previous record hashes to {prev}",
                    rec.prev
                )));
            }
            // The record must be exactly what we would write (no reformatting).
            let (again, _) = encode(&rec).map_err(|e| bad(e.to_string()))?;
            if again.trim_end_matches('\n') != text {
                return Err(bad("record is not in canonical form".into()));
            }
            frontier.push(leaf_hash(raw));
            each(raw, &rec);
            prev = hash;
            n += 1;
        }
    }
    Ok(Verified {
        records: n,
        head: prev,
        root: frontier.root(),
        segments: segs,
    })
}

/// Check every record of a log (all segments): see [`scan`]. A log with no segment at all is
/// an error (nothing to verify).
pub fn verify(path: &Path) -> Result<Verified> {
    if segments(path)?.is_empty() {
        return Err(AuditError::Io {
            op: "read",
            path: path.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    scan(path, |_, _| {})
}

/// The Merkle leaf hashes of every record, in order (for proofs).
pub fn leaves(path: &Path) -> Result<Vec<Hash>> {
    let mut out = Vec::new();
    scan(path, |raw, _| out.push(leaf_hash(raw)))?;
    Ok(out)
}

impl AuditLog {
    /// Open (or create) a log for appending with `fsync` every `every` records and no rotation;
    /// an existing log is verified first and refused when its chain is broken.
    pub fn open(path: &Path, fsync: FsyncPolicy, every: usize) -> Result<Self> {
        Self::open_with(
            path,
            LogOptions {
                fsync,
                every,
                segment_bytes: None,
            },
        )
    }

    /// [`AuditLog::open`] with every option.
    pub fn open_with(path: &Path, opts: LogOptions) -> Result<Self> {
        let v = scan(path, |_, _| {})?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err("open", path))?;
        let bytes = file.metadata().map_err(io_err("stat", path))?.len();
        Ok(Self {
            path: path.to_path_buf(),
            opts: LogOptions {
                every: opts.every.max(1),
                ..opts
            },
            w: Mutex::new(Writer {
                file,
                seq: v.records,
                prev: v.head,
                unsynced: 0,
                bytes,
                dirty: false,
            }),
            retry: Backoff::default(),
            budget: RetryBudget::default(),
            retries: AtomicU64::new(0),
            replica: None,
            #[cfg(feature = "fault-injection")]
            fail_writes: AtomicU32::new(0),
        })
    }

    /// Name every record appended from now on with `replica` (the server process writing this
    /// log; see [`check_replica`]), and checkpoints of it with origin `<key name>/<replica>`
    /// ([`crate::checkpoint::of_log`]). Records already in the log are left as they are.
    pub fn with_replica(mut self, replica: &str) -> Result<Self> {
        check_replica(replica)
            .map_err(|got| invalid("replica", "1-63 characters of [A-Za-z0-9._-]", got))?;
        self.replica = Some(replica.to_string());
        Ok(self)
    }

    /// The replica that names this log's new records, if any.
    pub fn replica(&self) -> Option<&str> {
        self.replica.as_deref()
    }

    /// Use `policy` for retrying appends instead of [`Backoff::default`] (Envoy's 25 ms base,
    /// 250 ms cap, full jitter; 3 attempts within 2 s). [`Backoff::none`] disables retries.
    /// Appends also share a [`RetryBudget::default`] so a failing disk is not hammered.
    pub fn with_retry(mut self, policy: Backoff) -> Self {
        self.retry = policy;
        self
    }

    /// Appends retried after a transient I/O error since the log was opened (for
    /// `pno_retries_total{op="audit"}`).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Test hook: the next `n` write attempts of [`AuditLog::append`] write half of their record
    /// and then fail with [`std::io::ErrorKind::Interrupted`], exercising the retry and the
    /// cut-back of the half-written bytes. Only with the `fault-injection` feature.
    #[cfg(feature = "fault-injection")]
    pub fn fail_next_writes(&self, n: u32) {
        self.fail_writes.store(n, Ordering::SeqCst);
    }

    /// One write attempt of `line` at the end of the active file (whose good length is
    /// `start`), fsynced when `sync`. On failure the file is cut back to `start`; if even that
    /// fails, the writer is marked dirty and the error is made permanent (not retried).
    fn try_append(
        &self,
        w: &mut Writer,
        start: u64,
        line: &[u8],
        sync: bool,
    ) -> std::io::Result<()> {
        if w.dirty {
            w.file.set_len(start)?;
            w.dirty = false;
        }
        let attempt = (|| {
            #[cfg(feature = "fault-injection")]
            if self
                .fail_writes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                w.file.write_all(&line[..line.len() / 2])?;
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Interrupted,
                    "injected fault after a half-written record",
                ));
            }
            w.file.write_all(line)?;
            if sync {
                w.file.sync_data()?;
            }
            Ok(())
        })();
        if let Err(e) = attempt {
            if let Err(cut) = w.file.set_len(start) {
                w.dirty = true;
                return Err(std::io::Error::other(format!(
                    "{e}; then cutting the log back to {start} bytes failed: {cut}"
                )));
            }
            return Err(e);
        }
        Ok(())
    }

    /// The log file (the active segment).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one record (fsync according to the policy; rotate first when the active segment
    /// is full).
    ///
    /// The write (and its fsync, when the policy asks for one now) is retried on transient I/O
    /// errors: each failed attempt is cut back off the file first, so the log never holds a
    /// duplicate or partial record, and the record's sequence and chain link are committed only
    /// once an attempt succeeded. On error the file is exactly as before the call. Retries wait
    /// (at most the policy's `max_elapsed`) while holding the log's lock. Rotation is not
    /// retried.
    pub fn append(&self, event: AuditEvent) -> Result<()> {
        let mut w = self.w.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(max) = self.opts.segment_bytes
            && w.bytes >= max
        {
            self.rotate(&mut w)?;
        }
        let ts_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let rec = AuditRecord {
            seq: w.seq,
            ts_ms,
            replica: self.replica.clone(),
            event,
            prev: w.prev.clone(),
        };
        let (line, hash) = encode(&rec).map_err(|e| AuditError::Record {
            path: self.path.clone(),
            line: rec.seq as usize + 1,
            what: e.to_string(),
        })?;
        let sync = match self.opts.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Batch => w.unsynced + 1 >= self.opts.every,
            FsyncPolicy::Never => false,
        };
        let start = w.bytes;
        retry_io(
            &self.retry,
            Some(&self.budget),
            |_attempt| self.try_append(&mut w, start, line.as_bytes(), sync),
            |_retried| {
                self.retries.fetch_add(1, Ordering::Relaxed);
            },
        )
        .map_err(io_err("append", &self.path))?;
        // Committed: only now does the chain move on.
        w.seq += 1;
        w.prev = hash;
        w.bytes += line.len() as u64;
        w.unsynced = if sync { 0 } else { w.unsynced + 1 };
        Ok(())
    }

    /// Closes the active segment as the next numbered one and starts a new active file.
    fn rotate(&self, w: &mut Writer) -> Result<()> {
        if w.dirty {
            // A failed append left bytes it could not cut: cut them before closing the segment.
            w.file
                .set_len(w.bytes)
                .map_err(io_err("truncate", &self.path))?;
            w.dirty = false;
        }
        w.file.sync_all().map_err(io_err("fsync", &self.path))?;
        let next = segments(&self.path)?
            .iter()
            .filter_map(|p| p.extension()?.to_str()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let closed = PathBuf::from(format!("{}.{next:06}", self.path.display()));
        std::fs::rename(&self.path, &closed).map_err(io_err("rotate into", &closed))?;
        w.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io_err("open", &self.path))?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
        {
            let _ = d.sync_all();
        }
        w.bytes = 0;
        w.unsynced = 0;
        Ok(())
    }

    /// Flush everything to disk (at shutdown).
    pub fn flush(&self) -> Result<()> {
        let mut w = self.w.lock().unwrap_or_else(|p| p.into_inner());
        w.file.flush().map_err(io_err("flush", &self.path))?;
        w.file.sync_all().map_err(io_err("fsync", &self.path))?;
        w.unsynced = 0;
        Ok(())
    }

    /// Flush what was appended and return how many records the file now holds in full (for a
    /// consistent checkpoint while appends go on: [`crate::checkpoint::of_log`]).
    pub fn flushed_len(&self) -> Result<u64> {
        let mut w = self.w.lock().unwrap_or_else(|p| p.into_inner());
        w.file.flush().map_err(io_err("flush", &self.path))?;
        Ok(w.seq)
    }

    /// Records written so far (including those found at open).
    pub fn len(&self) -> u64 {
        self.w.lock().unwrap_or_else(|p| p.into_inner()).seq
    }

    /// True when no record was ever written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
