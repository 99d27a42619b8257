//! API keys: `Authorization: Bearer pno_<id>_<secret>`; the keys file stores only the SHA-256 of
//! each key (keys are 256-bit random, so a plain hash is enough) and the comparison is constant
//! time. Roles are ordered: `reader` (infer, metadata) < `operator` (+ load, unload, reload) <
//! `admin` (+ keys, audit).
//!
//! The keys file is the single source of truth. Every change (create, revoke, rotate, the usage
//! times) is a read-modify-write under an exclusive advisory lock on the sibling file
//! `<keys>.lock`: lock, re-read the file, apply the change, write atomically (temp, fsync,
//! rename, mode 0600), unlock — never a write from a stale in-memory copy, so the CLI and a
//! running server cannot undo each other's changes. A server notices changes made by others
//! through [`KeyStore::watch`], which re-reads the file when its content changes (every
//! [`WATCH_INTERVAL`]); a file that no longer parses is refused and the last good keys stay.
//! Verification reads an in-memory snapshot (an `Arc` swapped on reload): no file I/O per
//! request.
//!
//! A key may expire ([`KeyRecord::expires_at`]), be scoped to some models
//! ([`KeyRecord::models`]) and be rotated: the id, role and scope stay, a new secret is issued,
//! and the old secret keeps working until its grace ends ([`KeyRecord::previous`]). The time a
//! key was last used is kept in memory and written at most every [`USAGE_FLUSH_S`] seconds or
//! with the next change.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use pno_core::retry::{Backoff, retry_io};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Result, ServeError, io_err};

/// How often a watching server looks at the keys file (see [`KeyStore::watch`]).
pub const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// At most how often (seconds) the last-use times are written to the keys file on their own.
pub const USAGE_FLUSH_S: u64 = 60;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Infer and read metadata.
    Reader,
    /// Also load, unload and reload models.
    Operator,
    /// Also manage keys and read the audit log.
    Admin,
}

impl Role {
    /// Parse `reader`, `operator` or `admin`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "reader" => Some(Role::Reader),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// One stored key (never the key itself). Files written before expiry, rotation, usage and
/// scope existed load unchanged: the new fields default to "none".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// Public id (part of the key, used for lookup and in logs).
    pub id: String,
    /// Role.
    pub role: Role,
    /// Hex SHA-256 of the whole key string.
    pub sha256: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// When the key stops working, seconds since the Unix epoch; `None`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// When the key was last accepted, seconds since the Unix epoch (written at most every
    /// [`USAGE_FLUSH_S`] seconds, so possibly a little behind the server's memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<u64>,
    /// The models the key may use; empty: every model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// The secret replaced by the last rotation, accepted until its grace ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousSecret>,
}

impl KeyRecord {
    /// What may be shown of a key (never the key or its hash): id, role, times, scope, and when
    /// a rotated-out secret stops working.
    pub fn public_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "role": self.role,
            "created": self.created,
            "expires_at": self.expires_at,
            "last_used": self.last_used,
            "models": self.models,
            "previous_until": self.previous.as_ref().map(|p| p.until),
        })
    }
}

/// A rotated-out secret and the end of its grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousSecret {
    /// Hex SHA-256 of the old key string.
    pub sha256: String,
    /// Accepted while now < `until` (seconds since the Unix epoch).
    pub until: u64,
}

/// What a new key gets besides its role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySpec {
    /// Lifetime from creation; `None`: the key does not expire.
    pub expires_in: Option<Duration>,
    /// The models the key may use; empty: every model.
    pub models: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<KeyRecord>,
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Key id, or `anonymous`.
    pub id: String,
    /// Role.
    pub role: Role,
    /// The models the key may use; empty: every model.
    pub models: Vec<String>,
}

impl Principal {
    /// True when the key's scope allows `model`.
    pub fn may_use(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == model)
    }
}

/// The outcome of checking a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheck {
    /// A valid key.
    Valid(Principal),
    /// A known key (right secret) past its expiry.
    Expired {
        /// Key id.
        id: String,
        /// Its expiry, seconds since the Unix epoch.
        at: u64,
    },
    /// Not a key of this store (malformed, unknown, wrong secret, or a rotated-out secret past
    /// its grace).
    Invalid,
}

/// The outcome of checking an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthOutcome {
    /// A valid key.
    Key(Principal),
    /// No header.
    Missing,
    /// A known key past its expiry.
    Expired {
        /// Key id.
        id: String,
        /// Its expiry, seconds since the Unix epoch.
        at: u64,
    },
    /// A header that is not a valid key.
    Invalid,
}

/// The last attempt to (re)load the keys file, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadStatus {
    /// False when the file last seen could not be used (the previous keys stay in force).
    pub ok: bool,
    /// When keys were last loaded successfully, seconds since the Unix epoch.
    pub at: u64,
}

/// A record ready for verification: decoded hashes and the shared last-use time.
#[derive(Debug)]
struct Entry {
    rec: KeyRecord,
    hash: [u8; 32],
    previous: Option<([u8; 32], u64)>,
    used: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct Snapshot {
    entries: Vec<Entry>,
}

#[derive(Debug, Default)]
struct Shared {
    path: Option<PathBuf>,
    /// The keys in force; replaced whole, never edited in place.
    snapshot: RwLock<Arc<Snapshot>>,
    /// SHA-256 of the keys file content last read or written (good or not).
    seen: Mutex<Option<[u8; 32]>>,
    /// Last-use times by key id, shared by successive snapshots.
    usage: Mutex<HashMap<String, Arc<AtomicU64>>>,
    /// A last-use time changed since the file was last written.
    usage_dirty: AtomicBool,
    /// When the file was last written by this store.
    written_at: AtomicU64,
    reload_ok: AtomicBool,
    reload_at: AtomicU64,
    /// Serialises this store's writers (the file lock serialises processes and handles).
    writer: Mutex<()>,
}

/// The keys, in memory, backed by a file. Clones share the same keys.
#[derive(Debug, Clone, Default)]
pub struct KeyStore {
    shared: Arc<Shared>,
}

/// Seconds since the Unix epoch.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `secs` since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn utc(secs: u64) -> String {
    // Civil date from days (Howard Hinnant's algorithm).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Retries of keys-file reads in this process (for `pno_retries_total{op="keys"}`).
static KEYS_READ_RETRIES: AtomicU64 = AtomicU64::new(0);

/// Keys-file reads retried after a transient I/O error since the process started.
pub fn keys_read_retries() -> u64 {
    KEYS_READ_RETRIES.load(Ordering::Relaxed)
}

/// `read(path)`, retried on transient errors; each retry is logged and counted.
fn read_retrying(
    path: &Path,
    mut read: impl FnMut(&Path) -> std::io::Result<Vec<u8>>,
) -> std::io::Result<Vec<u8>> {
    retry_io(
        &Backoff::default(),
        None,
        |_attempt| read(path),
        |r| {
            KEYS_READ_RETRIES.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                class = "transient",
                op = "keys.read",
                path = %path.display(),
                attempt = r.attempt,
                delay_ms = r.delay.as_millis() as u64,
                error = %r.error,
                "retrying"
            );
        },
    )
}

/// The keys file's content; `None` when it does not exist.
fn read_file(path: &Path) -> Result<Option<Vec<u8>>> {
    match read_retrying(path, |p| std::fs::read(p)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

/// Parse and check a keys file's content.
fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<KeyRecord>> {
    let bad = |what: String| ServeError::Keys {
        path: path.to_path_buf(),
        what,
    };
    let f: KeysFile = serde_json::from_slice(bytes)
        .map_err(|e| bad(format!("expected the JSON `pno keys` writes: {e}")))?;
    for k in &f.keys {
        let prev_ok = k
            .previous
            .as_ref()
            .is_none_or(|p| decode32(&p.sha256).is_some());
        if decode32(&k.sha256).is_none() || k.id.len() != 12 || !prev_ok {
            return Err(bad(format!("key `{}`: malformed id or sha256", k.id)));
        }
    }
    Ok(f.keys)
}

fn decode32(hex_digest: &str) -> Option<[u8; 32]> {
    hex::decode(hex_digest).ok()?.try_into().ok()
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Split `pno_<id>_<secret>` into its id.
fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("pno_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && secret.len() == 64).then_some(id)
}

/// A fresh secret for key `id`: the whole key string.
fn new_key(id: &str) -> String {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    format!("pno_{id}_{}", hex::encode(secret))
}

/// Whole seconds, rounded up.
fn ceil_s(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// An exclusive advisory lock on `<keys>.lock`, held until dropped.
#[derive(Debug)]
struct FileLock(#[allow(dead_code)] File);

impl FileLock {
    fn acquire(keys: &Path) -> Result<Self> {
        let mut name = keys.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let mut opts = File::options();
        opts.create(true).truncate(false).read(true).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let f = opts.open(&path).map_err(io_err("open", &path))?;
        f.lock().map_err(io_err("lock", &path))?;
        Ok(Self(f))
    }
}

impl KeyStore {
    /// No keys at all.
    pub(crate) fn empty() -> Self {
        Self::default()
    }

    /// Read a keys file; a missing file is an empty store that `create` will write. A
    /// transient read error ([`pno_core::retry::is_transient`]) is retried with
    /// [`Backoff::default`], logged as class `transient` and counted in [`keys_read_retries`].
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = read_file(path)?;
        let keys = match &bytes {
            Some(b) => parse(path, b)?,
            None => Vec::new(),
        };
        let store = Self {
            shared: Arc::new(Shared {
                path: Some(path.to_path_buf()),
                ..Shared::default()
            }),
        };
        store.install(keys, bytes.as_deref().map(digest), now_s());
        Ok(store)
    }

    /// The keys file, when there is one.
    pub fn path(&self) -> Option<&Path> {
        self.shared.path.as_deref()
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.shared
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Put `keys` in force; `seen` is the digest of the file content they came from.
    fn install(&self, keys: Vec<KeyRecord>, seen: Option<[u8; 32]>, now: u64) {
        let s = &self.shared;
        let mut usage = s.usage.lock().unwrap_or_else(|p| p.into_inner());
        usage.retain(|id, _| keys.iter().any(|k| &k.id == id));
        let entries = keys
            .into_iter()
            .filter_map(|rec| {
                let hash = decode32(&rec.sha256)?;
                let previous = match &rec.previous {
                    Some(p) => Some((decode32(&p.sha256)?, p.until)),
                    None => None,
                };
                let used = usage
                    .entry(rec.id.clone())
                    .or_insert_with(|| Arc::new(AtomicU64::new(0)))
                    .clone();
                used.fetch_max(rec.last_used.unwrap_or(0), Ordering::Relaxed);
                Some(Entry {
                    rec,
                    hash,
                    previous,
                    used,
                })
            })
            .collect();
        drop(usage);
        *s.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Snapshot { entries });
        *s.seen.lock().unwrap_or_else(|p| p.into_inner()) = seen;
        s.reload_ok.store(true, Ordering::Relaxed);
        s.reload_at.store(now, Ordering::Relaxed);
    }

    /// Read-modify-write: under the file lock, re-read the file, merge the last-use times, apply
    /// `change`, write the result atomically (when it differs) and put it in force.
    fn mutate<T>(
        &self,
        now: u64,
        change: impl FnOnce(&mut Vec<KeyRecord>) -> Result<T>,
    ) -> Result<T> {
        let s = &self.shared;
        let _writer = s.writer.lock().unwrap_or_else(|p| p.into_inner());
        let Some(path) = &s.path else {
            let mut keys = self
                .snapshot()
                .entries
                .iter()
                .map(|e| e.rec.clone())
                .collect();
            let t = change(&mut keys)?;
            self.install(keys, None, now);
            return Ok(t);
        };
        let _lock = FileLock::acquire(path)?;
        let before = read_file(path)?;
        let mut keys = match &before {
            Some(b) => parse(path, b)?,
            None => Vec::new(),
        };
        s.usage_dirty.store(false, Ordering::Relaxed);
        {
            let usage = s.usage.lock().unwrap_or_else(|p| p.into_inner());
            for k in &mut keys {
                let used = usage.get(&k.id).map_or(0, |u| u.load(Ordering::Relaxed));
                if used > k.last_used.unwrap_or(0) {
                    k.last_used = Some(used);
                }
            }
        }
        let t = change(&mut keys)?;
        let text = serde_json::to_vec_pretty(&KeysFile { keys: keys.clone() }).map_err(|e| {
            ServeError::Keys {
                path: path.clone(),
                what: e.to_string(),
            }
        })?;
        if before.as_deref() != Some(text.as_slice()) {
            write_atomic(path, &text)?;
        }
        s.written_at.store(now, Ordering::Relaxed);
        self.install(keys, Some(digest(&text)), now);
        Ok(t)
    }

    /// Create a key with `role`, persist the store, and return the key (shown once).
    pub fn create(&self, role: Role) -> Result<(String, KeyRecord)> {
        self.create_with(role, &KeySpec::default())
    }

    /// Create a key with `role`, an optional lifetime and model scope.
    pub fn create_with(&self, role: Role, spec: &KeySpec) -> Result<(String, KeyRecord)> {
        self.create_at(role, spec, now_s())
    }

    /// [`create_with`](Self::create_with) at time `now` (seconds since the Unix epoch).
    pub fn create_at(&self, role: Role, spec: &KeySpec, now: u64) -> Result<(String, KeyRecord)> {
        let mut id = [0u8; 6];
        rand::rng().fill_bytes(&mut id);
        let id = hex::encode(id);
        let key = new_key(&id);
        let rec = KeyRecord {
            id,
            role,
            sha256: pno_core::sha256_hex(key.as_bytes()),
            created: now,
            expires_at: spec.expires_in.map(|d| now.saturating_add(ceil_s(d))),
            last_used: None,
            models: spec.models.clone(),
            previous: None,
        };
        self.mutate(now, |keys| {
            keys.push(rec.clone());
            Ok(())
        })?;
        Ok((key, rec))
    }

    /// Remove a key by id; false when unknown.
    pub fn revoke(&self, id: &str) -> Result<bool> {
        self.mutate(now_s(), |keys| {
            let before = keys.len();
            keys.retain(|k| k.id != id);
            Ok(keys.len() != before)
        })
    }

    /// Give key `id` a new secret and return the new key (shown once); the id, role, scope and
    /// expiry stay, and the old secret keeps working for `grace`. `None` when `id` is unknown.
    pub fn rotate(&self, id: &str, grace: Duration) -> Result<Option<(String, KeyRecord)>> {
        // Whole seconds, rounded up: the old secret works for at least `grace` (rounding the
        // clock down would cut up to a second off it).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
            .unwrap_or(0);
        self.rotate_at(id, grace, now)
    }

    /// [`rotate`](Self::rotate) at time `now` (seconds since the Unix epoch).
    pub fn rotate_at(
        &self,
        id: &str,
        grace: Duration,
        now: u64,
    ) -> Result<Option<(String, KeyRecord)>> {
        let key = new_key(id);
        self.mutate(now, |keys| {
            let Some(rec) = keys.iter_mut().find(|k| k.id == id) else {
                return Ok(None);
            };
            let g = ceil_s(grace);
            rec.previous = (g > 0).then(|| PreviousSecret {
                sha256: rec.sha256.clone(),
                until: now.saturating_add(g),
            });
            rec.sha256 = pno_core::sha256_hex(key.as_bytes());
            Ok(Some((key.clone(), rec.clone())))
        })
    }

    /// The stored records, with the last-use times known in memory.
    pub fn list(&self) -> Vec<KeyRecord> {
        self.snapshot()
            .entries
            .iter()
            .map(|e| {
                let mut rec = e.rec.clone();
                let used = e.used.load(Ordering::Relaxed);
                if used > rec.last_used.unwrap_or(0) {
                    rec.last_used = Some(used);
                }
                rec
            })
            .collect()
    }

    /// Check a bearer key; `None` unless it is valid now.
    pub fn verify(&self, key: &str) -> Option<Principal> {
        match self.check_at(key, now_s()) {
            KeyCheck::Valid(p) => Some(p),
            _ => None,
        }
    }

    /// Check a bearer key at time `now`: constant-time comparison of its hash against the
    /// stored ones (and a rotated-out secret within its grace), then its expiry. A valid key's
    /// last-use time becomes `now` (in memory).
    pub fn check_at(&self, key: &str, now: u64) -> KeyCheck {
        let Some(id) = key_id(key) else {
            return KeyCheck::Invalid;
        };
        let d = digest(key.as_bytes());
        let snap = self.snapshot();
        let mut found = None;
        for e in &snap.entries {
            let same_id: bool = e.rec.id.as_bytes().ct_eq(id.as_bytes()).into();
            let current: bool = e.hash.ct_eq(&d).into();
            let previous = e
                .previous
                .is_some_and(|(h, until)| bool::from(h.ct_eq(&d)) & (now < until));
            if same_id & (current | previous) {
                found = Some(e);
            }
        }
        let Some(e) = found else {
            return KeyCheck::Invalid;
        };
        if let Some(at) = e.rec.expires_at.filter(|at| now >= *at) {
            return KeyCheck::Expired {
                id: e.rec.id.clone(),
                at,
            };
        }
        if e.used.fetch_max(now, Ordering::Relaxed) < now {
            self.shared.usage_dirty.store(true, Ordering::Relaxed);
        }
        KeyCheck::Valid(Principal {
            id: e.rec.id.clone(),
            role: e.rec.role,
            models: e.rec.models.clone(),
        })
    }

    /// Check an `Authorization` header value.
    pub(crate) fn check_header(&self, header: Option<&str>) -> AuthOutcome {
        let Some(h) = header else {
            return AuthOutcome::Missing;
        };
        let Some(key) = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
        else {
            return AuthOutcome::Invalid;
        };
        match self.check_at(key.trim(), now_s()) {
            KeyCheck::Valid(p) => AuthOutcome::Key(p),
            KeyCheck::Expired { id, at } => AuthOutcome::Expired { id, at },
            KeyCheck::Invalid => AuthOutcome::Invalid,
        }
    }

    /// Re-read the keys file if its content changed since it was last read or written: `Ok(true)`
    /// when new keys are in force. A file that does not parse is refused — the keys in force
    /// stay, the error is logged (class `persistent`) once per bad content, and
    /// [`reload_status`](Self::reload_status) says `ok: false` until a good file is read. A
    /// missing file means no keys.
    pub fn reload(&self) -> Result<bool> {
        let Some(path) = &self.shared.path else {
            return Ok(false);
        };
        // Not while this store writes: its write would be undone by an older read.
        let _writer = self.shared.writer.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = read_file(path)?;
        let d = bytes.as_deref().map(digest);
        let seen = *self.shared.seen.lock().unwrap_or_else(|p| p.into_inner());
        if d == seen {
            return Ok(false);
        }
        let keys = match &bytes {
            Some(b) => parse(path, b),
            None => {
                tracing::warn!(path = %path.display(), "keys file removed: no key is accepted");
                Ok(Vec::new())
            }
        };
        match keys {
            Ok(keys) => {
                let n = keys.len();
                self.install(keys, d, now_s());
                tracing::info!(path = %path.display(), keys = n, "keys file reloaded");
                Ok(true)
            }
            Err(e) => {
                *self.shared.seen.lock().unwrap_or_else(|p| p.into_inner()) = d;
                self.shared.reload_ok.store(false, Ordering::Relaxed);
                tracing::error!(class = "persistent", error = %e, "keys file refused; the last good keys stay in force");
                Err(e)
            }
        }
    }

    /// The last (re)load of the keys file.
    pub fn reload_status(&self) -> ReloadStatus {
        ReloadStatus {
            ok: self.shared.reload_ok.load(Ordering::Relaxed),
            at: self.shared.reload_at.load(Ordering::Relaxed),
        }
    }

    /// Write the last-use times known in memory, when any changed since the last write; `Ok(true)`
    /// when the file was written.
    pub fn flush_usage(&self) -> Result<bool> {
        if self.shared.path.is_none() || !self.shared.usage_dirty.load(Ordering::Relaxed) {
            return Ok(false);
        }
        self.mutate(now_s(), |_| Ok(()))?;
        Ok(true)
    }

    /// [`flush_usage`](Self::flush_usage) when the file was last written at least
    /// [`USAGE_FLUSH_S`] seconds before `now`.
    fn flush_usage_if_due(&self, now: u64) -> Result<bool> {
        let last = self.shared.written_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) < USAGE_FLUSH_S {
            return Ok(false);
        }
        // Look again in a minute, whether this write succeeds or not.
        self.shared.written_at.store(now, Ordering::Relaxed);
        self.flush_usage()
    }

    /// Watch the keys file from a background thread: every `every`, [`reload`](Self::reload) it
    /// when its content changed, and write the last-use times at most every [`USAGE_FLUSH_S`]
    /// seconds. The thread ends once every handle of this store is dropped. `None` without a
    /// keys file or when no thread could be started (logged).
    pub fn watch(&self, every: Duration) -> Option<std::thread::JoinHandle<()>> {
        self.shared.path.as_ref()?;
        let weak = Arc::downgrade(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("pno-keys-watch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    let Some(shared) = weak.upgrade() else {
                        break;
                    };
                    let store = KeyStore { shared };
                    // A refused file is logged by `reload`.
                    let _ = store.reload();
                    if let Err(e) = store.flush_usage_if_due(now_s()) {
                        tracing::warn!(class = "transient", error = %e, "writing key usage times failed");
                    }
                }
            });
        match spawned {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::error!(class = "persistent", error = %e, "cannot watch the keys file");
                None
            }
        }
    }
}

/// Write a file atomically (temp file, fsync, rename, folder fsync), readable by its owner only.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    pno_core::atomic_write_private(path, bytes).map_err(|e| match e {
        pno_core::Error::Io { op, path, source } => ServeError::Io { op, path, source },
        other => ServeError::Keys {
            path: path.to_path_buf(),
            what: other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    const T0: u64 = 1_700_000_000;

    fn store(dir: &Path) -> KeyStore {
        KeyStore::open(&dir.join("keys.json")).unwrap()
    }

    #[test]
    fn keys_file_read_retries_transient_errors_only() {
        let p = Path::new("keys.json");
        let before = keys_read_retries();
        let mut calls = 0;
        let got = read_retrying(p, |_| {
            calls += 1;
            if calls == 1 {
                Err(Error::from(ErrorKind::Interrupted))
            } else {
                Ok(b"{}".to_vec())
            }
        });
        assert_eq!(got.ok().as_deref(), Some(&b"{}"[..]));
        assert_eq!(calls, 2);
        assert!(keys_read_retries() > before);

        let mut calls = 0;
        let got = read_retrying(p, |_| {
            calls += 1;
            Err(Error::from(ErrorKind::PermissionDenied))
        });
        assert_eq!(got.map_err(|e| e.kind()), Err(ErrorKind::PermissionDenied));
        assert_eq!(calls, 1, "a permission error is not retried");
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn a_key_expires_at_its_expiry_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let spec = KeySpec {
            expires_in: Some(Duration::from_secs(3600)),
            models: vec![],
        };
        let (key, rec) = s.create_at(Role::Reader, &spec, T0).unwrap();
        assert_eq!(rec.expires_at, Some(T0 + 3600));
        assert!(matches!(s.check_at(&key, T0 + 3599), KeyCheck::Valid(_)));
        assert_eq!(
            s.check_at(&key, T0 + 3600),
            KeyCheck::Expired {
                id: rec.id.clone(),
                at: T0 + 3600
            }
        );
        // A wrong secret for an expired id is still just invalid (nothing learnt).
        let wrong = format!("pno_{}_{}", rec.id, "0".repeat(64));
        assert_eq!(s.check_at(&wrong, T0 + 7200), KeyCheck::Invalid);
        // The expiry is in the file.
        assert_eq!(store(dir.path()).list()[0].expires_at, Some(T0 + 3600));
    }

    #[test]
    fn rotation_keeps_id_role_scope_and_the_old_secret_until_the_grace_ends() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let spec = KeySpec {
            expires_in: None,
            models: vec!["darcy".into()],
        };
        let (old, rec) = s.create_at(Role::Operator, &spec, T0).unwrap();
        let (new, rotated) = s
            .rotate_at(&rec.id, Duration::from_secs(60), T0 + 10)
            .unwrap()
            .unwrap();
        assert_ne!(old, new);
        assert_eq!(
            (&rotated.id, rotated.role, &rotated.models),
            (&rec.id, Role::Operator, &spec.models)
        );
        assert!(new.starts_with(&format!("pno_{}_", rec.id)));
        for now in [T0 + 10, T0 + 69] {
            for k in [&old, &new] {
                assert!(matches!(s.check_at(k, now), KeyCheck::Valid(_)), "{now}");
            }
        }
        assert_eq!(s.check_at(&old, T0 + 70), KeyCheck::Invalid);
        assert!(matches!(s.check_at(&new, T0 + 70), KeyCheck::Valid(_)));
        // Read back from the file by another handle: same answers.
        let other = store(dir.path());
        assert!(matches!(other.check_at(&old, T0 + 69), KeyCheck::Valid(_)));
        assert_eq!(other.check_at(&old, T0 + 70), KeyCheck::Invalid);
        // No grace: the old secret stops at once; an unknown id is None.
        let (newer, _) = s
            .rotate_at(&rec.id, Duration::ZERO, T0 + 80)
            .unwrap()
            .unwrap();
        assert_eq!(s.check_at(&new, T0 + 80), KeyCheck::Invalid);
        assert!(matches!(s.check_at(&newer, T0 + 80), KeyCheck::Valid(_)));
        assert!(
            s.rotate_at("000000000000", Duration::ZERO, T0)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_scoped_key_may_use_only_its_models() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let spec = KeySpec {
            expires_in: None,
            models: vec!["a".into(), "b".into()],
        };
        let (key, _) = s.create_at(Role::Reader, &spec, T0).unwrap();
        let KeyCheck::Valid(p) = s.check_at(&key, T0) else {
            panic!("not valid")
        };
        assert!(p.may_use("a") && p.may_use("b") && !p.may_use("c"));
        let (any, _) = s.create(Role::Reader).unwrap();
        assert!(s.verify(&any).unwrap().may_use("c"));
    }

    #[test]
    fn old_keys_files_load_and_usage_is_kept_in_memory_then_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let key = format!("pno_0123456789ab_{}", "a".repeat(64));
        let old = serde_json::json!({"keys": [{"id": "0123456789ab", "role": "reader",
            "sha256": pno_core::sha256_hex(key.as_bytes()), "created": 5}]});
        std::fs::write(&path, old.to_string()).unwrap();
        let s = KeyStore::open(&path).unwrap();
        let p = s.verify(&key).unwrap();
        assert_eq!((p.role, p.models.len()), (Role::Reader, 0));
        assert!(matches!(s.check_at(&key, T0), KeyCheck::Valid(_)));
        // In memory at once, not in the file (no write per request).
        assert_eq!(s.list()[0].last_used.map(|t| t >= T0), Some(true));
        assert!(
            !std::fs::read_to_string(&path)
                .unwrap()
                .contains("last_used")
        );
        assert!(s.flush_usage().unwrap());
        assert!(!s.flush_usage().unwrap(), "nothing new to write");
        let back = KeyStore::open(&path).unwrap().list();
        assert_eq!(back[0].last_used.map(|t| t >= T0), Some(true));
        // Not due yet: written a moment ago.
        assert!(matches!(s.check_at(&key, now_s() + 5), KeyCheck::Valid(_)));
        assert!(!s.flush_usage_if_due(now_s()).unwrap());
        assert!(s.flush_usage_if_due(now_s() + USAGE_FLUSH_S).unwrap());
    }

    #[test]
    fn a_change_is_read_modify_write_never_from_a_stale_copy() {
        let dir = tempfile::tempdir().unwrap();
        let server = store(dir.path());
        let (a, rec_a) = server.create(Role::Reader).unwrap();
        let cli = store(dir.path());
        assert!(cli.revoke(&rec_a.id).unwrap());
        // The server has not reloaded, yet its next change starts from the file.
        let (b, _) = server.create(Role::Reader).unwrap();
        assert!(server.verify(&a).is_none(), "revoked key resurrected");
        assert!(server.verify(&b).is_some());
        let ids: Vec<String> = store(dir.path()).list().into_iter().map(|k| k.id).collect();
        assert_eq!(ids.len(), 1);
        assert!(!ids.contains(&rec_a.id));
    }

    #[test]
    fn reload_takes_new_content_and_refuses_a_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let server = store(dir.path());
        assert!(!server.reload().unwrap(), "unchanged");
        let (key, rec) = store(dir.path()).create(Role::Admin).unwrap();
        assert!(server.verify(&key).is_none());
        assert!(server.reload().unwrap());
        assert!(server.verify(&key).is_some());
        std::fs::write(&path, "{ not json").unwrap();
        let err = server.reload().unwrap_err().to_string();
        assert!(err.contains("keys.json") && err.contains("JSON"), "{err}");
        assert!(!server.reload_status().ok);
        assert!(server.verify(&key).is_some(), "the last good keys stay");
        assert!(
            !server.reload().unwrap(),
            "the same bad content is not re-read"
        );
        // A change through the store is refused too: never written over a broken file.
        assert!(server.create(Role::Reader).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{ not json");
        let good = serde_json::to_string(&KeysFile { keys: vec![rec] }).unwrap();
        std::fs::write(&path, good).unwrap();
        assert!(server.reload().unwrap());
        assert!(server.reload_status().ok);
        std::fs::remove_file(&path).unwrap();
        assert!(server.reload().unwrap());
        assert!(
            server.verify(&key).is_none(),
            "a removed file means no keys"
        );
    }

    #[test]
    fn concurrent_writers_through_two_handles_lose_no_update() {
        let dir = tempfile::tempdir().unwrap();
        let a = store(dir.path());
        let b = store(dir.path());
        let ids: Vec<String> = std::thread::scope(|scope| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                    scope.spawn(move || {
                        (0..5)
                            .map(|_| s.create(Role::Reader).unwrap().1.id)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let stored: Vec<String> = store(dir.path()).list().into_iter().map(|k| k.id).collect();
        assert_eq!(stored.len(), 40);
        for id in &ids {
            assert!(stored.contains(id), "lost {id}");
        }
    }
}
