//! Tamper-evident audit log: one JSON record per line, each carrying the SHA-256 of the previous
//! record (`prev`) and its own (`hash`, over the exact bytes of the record without `hash`).
//! Editing any byte breaks the record's own hash, the record's JSON, or the next record's `prev`;
//! [`verify`] names the first bad record. What a chain cannot show: a truncated tail or a
//! wholesale rewrite by someone who can write the file (anchor the head elsewhere for that).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::FsyncPolicy;
use crate::error::{Result, ServeError, io_err};

/// The `prev` of the first record.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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
}

/// A record as stored (without its `hash`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AuditRecord {
    /// 0-based sequence number.
    pub(crate) seq: u64,
    /// Milliseconds since the Unix epoch.
    pub(crate) ts_ms: u64,
    /// The event.
    #[serde(flatten)]
    pub(crate) event: AuditEvent,
    /// Hash of the previous record.
    pub(crate) prev: String,
}

struct Writer {
    file: File,
    seq: u64,
    prev: String,
    unsynced: usize,
}

/// An open audit log.
pub struct AuditLog {
    path: PathBuf,
    fsync: FsyncPolicy,
    every: usize,
    w: Mutex<Writer>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

/// The result of checking a whole log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// Hash of the last record (the head to anchor elsewhere).
    pub head: String,
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

/// Check every record of a log: JSON shape, sequence, `prev` links and hashes. The error names
/// the first bad record (1-based line).
pub fn verify(path: &Path) -> Result<Verified> {
    let bytes = std::fs::read(path).map_err(io_err("read", path))?;
    verify_bytes(path, &bytes)
}

fn verify_bytes(path: &Path, bytes: &[u8]) -> Result<Verified> {
    let bad = |line: usize, what: String| ServeError::Audit {
        path: path.to_path_buf(),
        line,
        what,
    };
    let mut prev = GENESIS.to_string();
    let mut n = 0u64;
    if bytes.is_empty() {
        return Ok(Verified {
            records: 0,
            head: prev,
        });
    }
    if bytes.last() != Some(&b'\n') {
        let line = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
        return Err(bad(line, "incomplete last record (no newline)".into()));
    }
    for (i, raw) in bytes[..bytes.len() - 1].split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let text = std::str::from_utf8(raw).map_err(|_| bad(line, "not UTF-8".into()))?;
        // The stored hash is the last field, exactly `,"hash":"<64 hex>"}`.
        const TAIL: usize = ",\"hash\":\"".len() + 64 + 2;
        if text.len() < TAIL + 2 || !text.is_char_boundary(text.len() - TAIL) {
            return Err(bad(line, "malformed record".into()));
        }
        let (head, tail) = text.split_at(text.len() - TAIL);
        let stored = tail
            .strip_prefix(",\"hash\":\"")
            .and_then(|t| t.strip_suffix("\"}"))
            .ok_or_else(|| bad(line, "malformed hash field".into()))?;
        let body = format!("{head}}}");
        let rec: AuditRecord =
            serde_json::from_str(&body).map_err(|e| bad(line, format!("malformed record: {e}")))?;
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        if hash != stored {
            return Err(bad(
                line,
                format!("hash mismatch: stored {stored}, content hashes to {hash}"),
            ));
        }
        if rec.seq != n {
            return Err(bad(
                line,
                format!("sequence: expected {n}, got {}", rec.seq),
            ));
        }
        if rec.prev != prev {
            return Err(bad(
                line,
                format!(
                    "chain broken: prev is {}, previous record hashes to {prev}",
                    rec.prev
                ),
            ));
        }
        // The record must be exactly what we would write (no reformatting).
        let (again, _) = encode(&rec).map_err(|e| bad(line, e.to_string()))?;
        if again.trim_end_matches('\n') != text {
            return Err(bad(line, "record is not in canonical form".into()));
        }
        prev = hash;
        n += 1;
    }
    Ok(Verified {
        records: n,
        head: prev,
    })
}

impl AuditLog {
    /// Open (or create) a log for appending; an existing log is verified first and refused
    /// when its chain is broken.
    pub fn open(path: &Path, fsync: FsyncPolicy, every: usize) -> Result<Self> {
        let v = if path.exists() {
            verify(path)?
        } else {
            Verified {
                records: 0,
                head: GENESIS.into(),
            }
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err("open", path))?;
        Ok(Self {
            path: path.to_path_buf(),
            fsync,
            every: every.max(1),
            w: Mutex::new(Writer {
                file,
                seq: v.records,
                prev: v.head,
                unsynced: 0,
            }),
        })
    }

    /// The log file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Append one record (and fsync according to the policy).
    pub fn append(&self, event: AuditEvent) -> Result<()> {
        let mut w = self.w.lock().unwrap_or_else(|p| p.into_inner());
        let ts_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let rec = AuditRecord {
            seq: w.seq,
            ts_ms,
            event,
            prev: w.prev.clone(),
        };
        let (line, hash) = encode(&rec).map_err(|e| ServeError::Audit {
            path: self.path.clone(),
            line: rec.seq as usize + 1,
            what: e.to_string(),
        })?;
        w.file
            .write_all(line.as_bytes())
            .map_err(io_err("append", &self.path))?;
        w.seq += 1;
        w.prev = hash;
        w.unsynced += 1;
        let sync = match self.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Batch => w.unsynced >= self.every,
            FsyncPolicy::Never => false,
        };
        if sync {
            w.file.sync_data().map_err(io_err("fsync", &self.path))?;
            w.unsynced = 0;
        }
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

    /// Records written so far (including those found at open).
    pub fn len(&self) -> u64 {
        self.w.lock().unwrap_or_else(|p| p.into_inner()).seq
    }

    /// True when no record was ever written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
