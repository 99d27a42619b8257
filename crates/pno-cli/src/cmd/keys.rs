//! `pno keys`: create, list, revoke and rotate API keys (stored hashed). Every change is a
//! locked read-modify-write of the keys file, so it is safe while `pno serve` runs on the same
//! file (the server picks it up within a second).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use pno_serve::auth::{KeyRecord, KeySpec, KeyStore, Role, utc};
use serde_json::json;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  pno keys create --role reader --keys keys.json
  pno keys create --role reader --expires-in 30d --models darcy,burgers --keys keys.json
  pno keys create --role admin --keys keys.json --json
  pno keys list --keys keys.json
  pno keys rotate 3f9a0c1d2e4b --grace 1h --keys keys.json
  pno keys revoke 3f9a0c1d2e4b --keys keys.json

Roles: reader (infer, metadata) < operator (+ load, unload, reload) < admin (+ keys, audit).
The key is printed once; the file keeps only its SHA-256. Durations: 45s, 90m, 12h, 30d.
A running `pno serve` on the same file applies changes within a second.")]
pub(crate) struct KeysArgs {
    #[command(subcommand)]
    cmd: KeysCmd,
}

#[derive(Subcommand, Debug)]
enum KeysCmd {
    /// Create a key and print it (once).
    Create {
        /// reader, operator or admin.
        #[arg(long)]
        role: String,
        /// Lifetime (45s, 90m, 12h, 30d); without it the key does not expire.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// The models the key may use (comma-separated); without it, every model.
        #[arg(long, value_delimiter = ',', value_name = "MODEL,...")]
        models: Vec<String>,
        /// Keys file (created when missing).
        #[arg(long)]
        keys: PathBuf,
    },
    /// List key ids, roles, expiry, last use and model scope.
    List {
        /// Keys file.
        #[arg(long)]
        keys: PathBuf,
    },
    /// Revoke a key by id.
    Revoke {
        /// Key id (the 12 hex characters after `pno_`).
        id: String,
        /// Keys file.
        #[arg(long)]
        keys: PathBuf,
    },
    /// Give a key a new secret and print it (once); the old secret works until the grace ends.
    Rotate {
        /// Key id (the 12 hex characters after `pno_`).
        id: String,
        /// How long the old secret keeps working (0s, 45s, 90m, 12h, 30d).
        #[arg(long, value_name = "DURATION")]
        grace: String,
        /// Keys file.
        #[arg(long)]
        keys: PathBuf,
    },
}

/// Parse `45s`, `90m`, `12h` or `30d`; an error names `flag`.
fn parse_duration(flag: &str, s: &str) -> Result<Duration> {
    let bad = || {
        anyhow::anyhow!(
            "{flag}: expected a duration like 45s, 90m, 12h or 30d (a whole number and a unit), got {s:?}"
        )
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

pub(crate) fn run(args: KeysArgs, json_out: bool) -> Result<()> {
    match args.cmd {
        KeysCmd::Create {
            role,
            expires_in,
            models,
            keys,
        } => {
            let Some(role) = Role::parse(&role) else {
                bail!("--role: expected reader, operator or admin, got {role:?}");
            };
            let expires_in = match expires_in {
                Some(s) => {
                    let d = parse_duration("--expires-in", &s)?;
                    if d.is_zero() {
                        bail!("--expires-in: expected a duration above zero, got {s:?}");
                    }
                    Some(d)
                }
                None => None,
            };
            if let Some(m) = models.iter().find(|m| m.trim().is_empty()) {
                bail!("--models: expected comma-separated model names, got an empty name {m:?}");
            }
            let store = KeyStore::open(&keys)?;
            let (key, rec) = store.create_with(role, &KeySpec { expires_in, models })?;
            if json_out {
                let mut v = rec.public_json();
                v["key"] = key.into();
                println!("{v}");
            } else {
                println!("{key}");
                let until = rec
                    .expires_at
                    .map(|t| format!(", expires {}", utc(t)))
                    .unwrap_or_default();
                eprintln!(
                    "created {} key {} in {}{until} (shown once; store it now)",
                    role.as_str(),
                    rec.id,
                    keys.display()
                );
            }
        }
        KeysCmd::List { keys } => {
            if !keys.exists() {
                bail!("keys file {} does not exist", keys.display());
            }
            let store = KeyStore::open(&keys)?;
            let list = store.list();
            if json_out {
                let v: Vec<_> = list.iter().map(KeyRecord::public_json).collect();
                println!("{}", json!({ "keys": v }));
            } else {
                for k in list {
                    let mut line = format!(
                        "{}  {:<8}  created {}",
                        k.id,
                        k.role.as_str(),
                        utc(k.created)
                    );
                    if let Some(t) = k.expires_at {
                        line += &format!("  expires {}", utc(t));
                    }
                    if let Some(t) = k.last_used {
                        line += &format!("  last used {}", utc(t));
                    }
                    if !k.models.is_empty() {
                        line += &format!("  models {}", k.models.join(","));
                    }
                    if let Some(p) = &k.previous {
                        line += &format!("  old secret until {}", utc(p.until));
                    }
                    println!("{line}");
                }
            }
        }
        KeysCmd::Revoke { id, keys } => {
            let store = KeyStore::open(&keys)?;
            if !store.revoke(&id)? {
                bail!("no key {id:?} in {}", keys.display());
            }
            println!("revoked {id}");
        }
        KeysCmd::Rotate { id, grace, keys } => {
            let grace = parse_duration("--grace", &grace)?;
            let store = KeyStore::open(&keys)?;
            let Some((key, rec)) = store.rotate(&id, grace)? else {
                bail!("no key {id:?} in {}", keys.display());
            };
            if json_out {
                let mut v = rec.public_json();
                v["key"] = key.into();
                println!("{v}");
            } else {
                println!("{key}");
                let old = rec
                    .previous
                    .as_ref()
                    .map(|p| format!("the old secret works until {}", utc(p.until)))
                    .unwrap_or_else(|| "the old secret no longer works".into());
                eprintln!(
                    "rotated key {} in {}: {old} (new key shown once; store it now)",
                    rec.id,
                    keys.display()
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_bad_ones_name_the_flag() {
        for (s, secs) in [
            ("45s", 45),
            ("90m", 5400),
            ("12h", 43_200),
            ("30d", 2_592_000),
        ] {
            assert_eq!(parse_duration("--grace", s).unwrap().as_secs(), secs, "{s}");
        }
        for s in [
            "",
            "30",
            "d",
            "1.5h",
            "-3m",
            "3w",
            "10 s",
            "99999999999999999999d",
        ] {
            let e = parse_duration("--expires-in", s).unwrap_err().to_string();
            assert!(e.contains("--expires-in") && e.contains("30d"), "{s}: {e}");
        }
    }
}
