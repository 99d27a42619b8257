//! `pno keys`: create, list and revoke API keys (stored hashed).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use pno_serve::auth::{KeyStore, Role};
use serde_json::json;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  pno keys create --role reader --keys keys.json
  pno keys create --role admin --keys keys.json --json
  pno keys list --keys keys.json
  pno keys revoke 3f9a0c1d2e4b --keys keys.json

Roles: reader (infer, metadata) < operator (+ load, unload, reload) < admin (+ keys, audit).
The key is printed once; the file keeps only its SHA-256.")]
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
        /// Keys file (created when missing).
        #[arg(long)]
        keys: PathBuf,
    },
    /// List key ids and roles.
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
}

pub(crate) fn run(args: KeysArgs, json_out: bool) -> Result<()> {
    match args.cmd {
        KeysCmd::Create { role, keys } => {
            let Some(role) = Role::parse(&role) else {
                bail!("--role: expected reader, operator or admin, got {role:?}");
            };
            let store = KeyStore::open(&keys)?;
            let (key, rec) = store.create(role)?;
            if json_out {
                println!("{}", json!({"id": rec.id, "role": rec.role, "key": key}));
            } else {
                println!("{key}");
                eprintln!(
                    "created {} key {} in {} (shown once; store it now)",
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
                let v: Vec<_> = list
                    .iter()
                    .map(|k| json!({"id": k.id, "role": k.role, "created": k.created}))
                    .collect();
                println!("{}", json!({ "keys": v }));
            } else {
                for k in list {
                    println!("{}  {:<8}  created {}", k.id, k.role.as_str(), k.created);
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
    }
    Ok(())
}
