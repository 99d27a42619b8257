//! API keys: `Authorization: Bearer pno_<id>_<secret>`; the keys file stores only the SHA-256 of
//! each key (keys are 256-bit random, so a plain hash is enough) and the comparison is constant
//! time. Roles are ordered: `reader` (infer, metadata) < `operator` (+ load, unload, reload) <
//! `admin` (+ keys, audit).

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use pno_core::retry::{Backoff, retry_io};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Result, ServeError, io_err};

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

/// One stored key (never the key itself).
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
}

/// The outcome of checking an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthOutcome {
    /// A valid key.
    Key(Principal),
    /// No header.
    Missing,
    /// A header that is not a valid key.
    Invalid,
}

/// The keys, in memory, backed by a file.
#[derive(Debug, Default)]
pub struct KeyStore {
    path: Option<PathBuf>,
    keys: RwLock<Vec<KeyRecord>>,
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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

/// Split `pno_<id>_<secret>` into its id.
fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("pno_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && secret.len() == 64).then_some(id)
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
        let keys = if path.exists() {
            let bytes = read_retrying(path, |p| std::fs::read(p)).map_err(io_err("read", path))?;
            let f: KeysFile = serde_json::from_slice(&bytes).map_err(|e| ServeError::Keys {
                path: path.to_path_buf(),
                what: format!("expected the JSON `pno keys` writes: {e}"),
            })?;
            for k in &f.keys {
                if hex::decode(&k.sha256).map(|b| b.len()) != Ok(32) || k.id.len() != 12 {
                    return Err(ServeError::Keys {
                        path: path.to_path_buf(),
                        what: format!("key `{}`: malformed id or sha256", k.id),
                    });
                }
            }
            f.keys
        } else {
            Vec::new()
        };
        Ok(Self {
            path: Some(path.to_path_buf()),
            keys: RwLock::new(keys),
        })
    }

    /// Create a key with `role`, persist the store, and return the key (shown once).
    pub fn create(&self, role: Role) -> Result<(String, KeyRecord)> {
        let mut rng = rand::rng();
        let mut id = [0u8; 6];
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut id);
        rng.fill_bytes(&mut secret);
        let key = format!("pno_{}_{}", hex::encode(id), hex::encode(secret));
        let rec = KeyRecord {
            id: hex::encode(id),
            role,
            sha256: pno_core::sha256_hex(key.as_bytes()),
            created: now_s(),
        };
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        keys.push(rec.clone());
        self.persist(&keys)?;
        Ok((key, rec))
    }

    /// Remove a key by id; false when unknown.
    pub fn revoke(&self, id: &str) -> Result<bool> {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let before = keys.len();
        keys.retain(|k| k.id != id);
        if keys.len() == before {
            return Ok(false);
        }
        self.persist(&keys)?;
        Ok(true)
    }

    /// The stored records.
    pub fn list(&self) -> Vec<KeyRecord> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn persist(&self, keys: &[KeyRecord]) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let text = serde_json::to_vec_pretty(&KeysFile {
            keys: keys.to_vec(),
        })
        .map_err(|e| ServeError::Keys {
            path: path.clone(),
            what: e.to_string(),
        })?;
        write_atomic(path, &text)
    }

    /// Check a bearer key: constant-time comparison of its hash against the stored one.
    pub fn verify(&self, key: &str) -> Option<Principal> {
        let id = key_id(key)?;
        let digest = Sha256::digest(key.as_bytes());
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let mut found = None;
        for k in keys.iter() {
            let stored = hex::decode(&k.sha256).unwrap_or_default();
            let same_id: bool = k.id.as_bytes().ct_eq(id.as_bytes()).into();
            let same_hash: bool = stored.as_slice().ct_eq(digest.as_slice()).into();
            if same_id & same_hash {
                found = Some(Principal {
                    id: k.id.clone(),
                    role: k.role,
                });
            }
        }
        found
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
        match self.verify(key.trim()) {
            Some(p) => AuthOutcome::Key(p),
            None => AuthOutcome::Invalid,
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
}
