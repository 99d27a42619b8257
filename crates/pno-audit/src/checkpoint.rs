//! Signed checkpoints of the audit log's Merkle tree, in the C2SP `tlog-checkpoint` and
//! `signed-note` formats (as Go's sumdb, Sigsum and Rekor use):
//!
//! ```text
//! pno-serve/audit           origin
//! 1234                      tree size
//! 3q2+7w...=                base64 root hash
//!
//! — pno-serve/audit Ab3x...=   key name, base64(key id ‖ Ed25519 signature of the three lines)
//! ```
//!
//! A log written by a named replica ([`crate::AuditLog::with_replica`]) is its own log, so its
//! checkpoints carry origin `<key name>/<replica>` (e.g. `pno-serve/audit/pno-a`): the replica
//! is inside the signed body (changing it breaks the signature), and a checkpoint of one
//! replica's log is never taken for another's. The note stays three lines, so verifiers that
//! predate replicas accept it, and checkpoints whose origin is the bare key name still verify.
//!
//! Keys: a verifier key `<name>+<key id hex>+<base64(0x01 ‖ public key)>` and a signer key
//! `PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 ‖ seed)>`, where the key id is the first four
//! bytes of `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)`. A checkpoint pins every record up to its
//! size: truncating, reordering or rewriting any of them changes the recomputed root.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{Result, invalid};
use crate::log::leaves;
use crate::merkle::{Hash, root};

/// A tree head: the log's origin, its size and its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Which log this is: the key name by convention, `<key name>/<replica>` for a replica's
    /// log ([`origin`]).
    pub origin: String,
    /// Records covered.
    pub size: u64,
    /// Merkle tree hash of those records.
    pub root: Hash,
}

/// The origin of a checkpoint signed by key `key_name` of the log kept by `replica`:
/// `<key name>/<replica>`, or the bare key name when the log names no replica.
pub fn origin(key_name: &str, replica: Option<&str>) -> String {
    match replica {
        Some(r) => format!("{key_name}/{r}"),
        None => key_name.to_string(),
    }
}

impl Checkpoint {
    /// The replica named by the origin, when it is `<key_name>/<replica>` (see [`origin`]).
    pub fn replica(&self, key_name: &str) -> Option<&str> {
        self.origin
            .strip_prefix(key_name)?
            .strip_prefix('/')
            .filter(|r| !r.is_empty())
    }

    /// The signed body: origin, size and base64 root, one per line.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([1u8]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['+', ' ', '\n']) {
        return Err(invalid(
            "key name",
            "a non-empty name without '+', spaces or newlines",
            format!("{name:?}"),
        ));
    }
    Ok(())
}

/// A new Ed25519 key pair named `name`: (signer key, verifier key) strings.
pub fn generate_key(name: &str) -> Result<(String, String)> {
    check_name(name)?;
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    Ok(key_pair(name, &seed))
}

/// The (signer, verifier) key strings of `seed`.
pub fn key_pair(name: &str, seed: &[u8; 32]) -> (String, String) {
    let sk = SigningKey::from_bytes(seed);
    let public = sk.verifying_key().to_bytes();
    let id = hex::encode(key_id(name, &public));
    let mut s = vec![1u8];
    s.extend_from_slice(seed);
    let mut p = vec![1u8];
    p.extend_from_slice(&public);
    (
        format!("PRIVATE+KEY+{name}+{id}+{}", B64.encode(s)),
        format!("{name}+{id}+{}", B64.encode(p)),
    )
}

/// A signer key parsed from its string.
#[derive(Debug)]
pub struct SignerKey {
    name: String,
    id: [u8; 4],
    key: SigningKey,
}

/// A verifier key parsed from its string.
#[derive(Debug, Clone)]
pub struct VerifierKey {
    /// Key name.
    pub name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

fn key_bytes(what: &str, b64: &str) -> Result<[u8; 32]> {
    let raw = B64
        .decode(b64.trim())
        .map_err(|e| invalid(what, "base64 key bytes", e))?;
    match raw.split_first() {
        Some((1, rest)) if rest.len() == 32 => {
            let mut k = [0u8; 32];
            k.copy_from_slice(rest);
            Ok(k)
        }
        _ => Err(invalid(
            what,
            "0x01 (Ed25519) followed by 32 bytes",
            format!("{} bytes", raw.len()),
        )),
    }
}

impl SignerKey {
    /// The key name (a checkpoint's origin by convention).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier key (what `OUT.pub` of `pno audit keygen` holds).
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// Parse `PRIVATE+KEY+<name>+<id>+<base64>`.
    pub fn parse(text: &str) -> Result<Self> {
        let parts: Vec<&str> = text.trim().splitn(5, '+').collect();
        let ["PRIVATE", "KEY", name, id, b64] = parts.as_slice() else {
            return Err(invalid(
                "signer key",
                "PRIVATE+KEY+<name>+<key id>+<base64>",
                "another format",
            ));
        };
        let seed = key_bytes("signer key", b64)?;
        let key = SigningKey::from_bytes(&seed);
        let want = key_id(name, &key.verifying_key().to_bytes());
        if hex::encode(want) != *id {
            return Err(invalid("signer key id", hex::encode(want), id));
        }
        Ok(Self {
            name: (*name).to_string(),
            id: want,
            key,
        })
    }
}

impl VerifierKey {
    /// Parse `<name>+<id>+<base64>`.
    pub fn parse(text: &str) -> Result<Self> {
        let parts: Vec<&str> = text.trim().splitn(3, '+').collect();
        let [name, id, b64] = parts.as_slice() else {
            return Err(invalid(
                "verifier key",
                "<name>+<key id>+<base64>",
                "another format",
            ));
        };
        let public = key_bytes("verifier key", b64)?;
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|e| invalid("verifier key", "an Ed25519 public key", e))?;
        let want = key_id(name, &public);
        if hex::encode(want) != *id {
            return Err(invalid("verifier key id", hex::encode(want), id));
        }
        Ok(Self {
            name: (*name).to_string(),
            id: want,
            key,
        })
    }
}

/// Sign `cp` as a note.
pub fn sign(cp: &Checkpoint, signer: &SignerKey) -> String {
    let body = cp.body();
    let sig = signer.key.sign(body.as_bytes());
    let mut blob = signer.id.to_vec();
    blob.extend_from_slice(&sig.to_bytes());
    format!("{body}\n\u{2014} {} {}\n", signer.name, B64.encode(blob))
}

/// Parse a signed note and verify its signature by `key`; returns the checkpoint.
pub fn open(note: &str, key: &VerifierKey) -> Result<Checkpoint> {
    let bad = |got: &str| {
        invalid(
            "checkpoint",
            "a signed note: origin, size, root, blank line, signatures",
            got.to_string(),
        )
    };
    let (body, sigs) = note
        .split_once("\n\n")
        .ok_or_else(|| bad("no blank line"))?;
    let body = format!("{body}\n");
    let mut lines = body.lines();
    let (Some(origin), Some(size), Some(root_b64), None) =
        (lines.next(), lines.next(), lines.next(), lines.next())
    else {
        return Err(bad("a body that is not three lines"));
    };
    let size: u64 = size
        .parse()
        .map_err(|_| bad("a size that is not a number"))?;
    let root_raw = B64
        .decode(root_b64)
        .map_err(|_| bad("a root that is not base64"))?;
    let root: Hash = root_raw
        .try_into()
        .map_err(|_| bad("a root that is not 32 bytes"))?;
    let mut found = false;
    for line in sigs.lines().filter(|l| !l.is_empty()) {
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| bad("a signature line without '— '"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| bad("a signature line without a name"))?;
        if name != key.name {
            continue;
        }
        let blob = B64
            .decode(b64)
            .map_err(|_| bad("a signature that is not base64"))?;
        if blob.len() != 68 || blob[..4] != key.id {
            continue;
        }
        let sig =
            Signature::from_slice(&blob[4..]).map_err(|e| invalid("signature", "64 bytes", e))?;
        key.key.verify(body.as_bytes(), &sig).map_err(|_| {
            invalid(
                "checkpoint signature",
                format!("a valid signature by {}", key.name),
                "a signature that does not verify",
            )
        })?;
        found = true;
    }
    if !found {
        return Err(invalid(
            "checkpoint",
            format!("a signature by key {}", key.name),
            "none",
        ));
    }
    Ok(Checkpoint {
        origin: origin.to_string(),
        size,
        root,
    })
}

/// Checks the log at `path` against a verified checkpoint: the log still holds at least
/// `cp.size` records, and the Merkle root of its first `cp.size` records is the signed one.
/// Returns the current size. A truncated, reordered or rewritten prefix is refused with the
/// reason.
pub fn verify_against(path: &Path, cp: &Checkpoint) -> Result<u64> {
    let all = leaves(path)?;
    let n = all.len() as u64;
    if n < cp.size {
        return Err(invalid(
            "audit log",
            format!("at least the {} records the checkpoint pins", cp.size),
            format!("{n} records (truncated)"),
        ));
    }
    let prefix = root(&all[..cp.size as usize]);
    if prefix != cp.root {
        return Err(invalid(
            "audit log",
            format!(
                "root {} over its first {} records",
                B64.encode(cp.root),
                cp.size
            ),
            format!(
                "root {} (records rewritten, reordered or removed)",
                B64.encode(prefix)
            ),
        ));
    }
    Ok(n)
}

/// A signed checkpoint of the records `log` holds now: flushes, checks the chain of exactly
/// those records and takes their Merkle root, while appends go on. Its origin names the log's
/// replica when it has one ([`origin`]).
pub fn of_log(log: &crate::AuditLog, signer: &SignerKey) -> Result<(Checkpoint, String)> {
    let n = log.flushed_len()?;
    let v = crate::log::scan_upto(log.path(), n, |_, _| {})?;
    let cp = Checkpoint {
        origin: origin(signer.name(), log.replica()),
        size: v.records,
        root: v.root,
    };
    let note = sign(&cp, signer);
    Ok((cp, note))
}
