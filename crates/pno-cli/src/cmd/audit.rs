//! `pno audit`: verify, checkpoint, prove and report on a `pno serve` audit log.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::{Args, Subcommand};
use serde_json::json;

use pno_audit::checkpoint::{
    Checkpoint, SignerKey, VerifierKey, generate_key, open, origin, sign, verify_against,
};
use pno_audit::merkle::{consistency_proof, inclusion_proof, root, verify_consistency};
use pno_audit::{leaves, verify};

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  pno audit verify audit.log
  pno audit keygen --name pno-serve/audit --out audit-key        # audit-key (0600) + audit-key.pub
  pno audit checkpoint audit.log --key audit-key --out cp-0001.txt
  pno audit verify audit.log --checkpoint cp-0001.txt --public-key audit-key.pub
  pno audit prove inclusion audit.log --index 41
  pno audit prove consistency audit.log --old 1000
  pno audit report audit.log --since 2026-12-01T00:00:00Z --json

The log is a hash chain (any edit, deletion or reordering names the first bad record) and the
leaves of an RFC 9162 Merkle tree. A signed checkpoint (C2SP tlog-checkpoint note, Ed25519)
kept anywhere else pins every record it covers: verify --checkpoint then also catches a
truncated tail or a rewritten log. Rotated segments (audit.log.000001, ...) are read in order.")]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    cmd: AuditCmd,
}

#[derive(Subcommand, Debug)]
enum AuditCmd {
    /// Verify the whole chain (every segment, constant memory); with --checkpoint, also that
    /// the log still holds every record the signed checkpoint pins, unchanged.
    Verify {
        /// Audit log file (the active segment).
        file: PathBuf,
        /// Signed checkpoint note.
        #[arg(long, requires = "public_key")]
        checkpoint: Option<PathBuf>,
        /// Verifier key file (`<name>+<id>+<base64>`).
        #[arg(long, requires = "checkpoint")]
        public_key: Option<PathBuf>,
    },
    /// Create an Ed25519 key pair for checkpoints: OUT (signer, mode 0600) and OUT.pub.
    Keygen {
        /// Key name (the checkpoint origin; `<name>/<replica>` for a replica's log), e.g.
        /// pno-serve/audit.
        #[arg(long)]
        name: String,
        /// Output path of the signer key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a checkpoint of the log's current Merkle tree.
    Checkpoint {
        /// Audit log file.
        file: PathBuf,
        /// Signer key file.
        #[arg(long)]
        key: PathBuf,
        /// Where to write the note (stdout when absent).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Emit an RFC 9162 inclusion or consistency proof.
    Prove {
        #[command(subcommand)]
        what: ProveCmd,
    },
    /// Counts by actor, role, action, outcome and status; refused clients; key use; changes.
    Report {
        /// Audit log file.
        file: PathBuf,
        /// Window start: RFC 3339 UTC time (2026-12-01T00:00:00Z) or ms since the epoch.
        #[arg(long)]
        since: Option<String>,
        /// Window end (exclusive), same formats.
        #[arg(long)]
        until: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum ProveCmd {
    /// That record INDEX (0-based) is in the tree of the first SIZE records.
    Inclusion {
        /// Audit log file.
        file: PathBuf,
        /// Record (0-based sequence number).
        #[arg(long)]
        index: usize,
        /// Tree size (default: every record).
        #[arg(long)]
        size: Option<usize>,
    },
    /// That the tree of the first OLD records is a prefix of the tree of the first SIZE.
    Consistency {
        /// Audit log file.
        file: PathBuf,
        /// The older tree size (e.g. a checkpoint's).
        #[arg(long)]
        old: usize,
        /// The newer tree size (default: every record).
        #[arg(long)]
        size: Option<usize>,
    },
}

fn read(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Parses RFC 3339 UTC (`YYYY-MM-DDTHH:MM:SSZ`) or milliseconds since the epoch.
fn parse_time(option: &str, s: &str) -> Result<u64> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let bad = || {
        anyhow::anyhow!("{option}: expected YYYY-MM-DDTHH:MM:SSZ or ms since the epoch, got {s:?}")
    };
    let b = s.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<i64>().map_err(|_| bad());
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs * 1000).map_err(|_| bad())
}

fn hexes(v: &[pno_audit::merkle::Hash]) -> Vec<String> {
    v.iter().map(hex::encode).collect()
}

pub(crate) fn run(args: AuditArgs, json_out: bool) -> Result<()> {
    match args.cmd {
        AuditCmd::Verify {
            file,
            checkpoint,
            public_key,
        } => {
            let v = verify(&file)?;
            let pinned = match (checkpoint, public_key) {
                (Some(cp), Some(pk)) => {
                    let key = VerifierKey::parse(&read(&pk, "public key")?)
                        .with_context(|| format!("public key {}", pk.display()))?;
                    let cp_note = read(&cp, "checkpoint")?;
                    let c = open(&cp_note, &key)
                        .with_context(|| format!("checkpoint {}", cp.display()))?;
                    verify_against(&file, &c).with_context(|| {
                        format!("{} against checkpoint {}", file.display(), cp.display())
                    })?;
                    Some(c)
                }
                _ => None,
            };
            if json_out {
                println!(
                    "{}",
                    json!({"ok": true, "records": v.records, "head": v.head, "root": hex::encode(v.root),
                           "segments": v.segments.len(), "checkpoint_size": pinned.as_ref().map(|c| c.size),
                           "checkpoint_origin": pinned.as_ref().map(|c| &c.origin)})
                );
            } else {
                println!(
                    "ok: {} records in {} segment(s), head {}, root {}",
                    v.records,
                    v.segments.len(),
                    v.head,
                    B64.encode(v.root)
                );
                if let Some(c) = pinned {
                    println!(
                        "ok: the first {} records are those the checkpoint of {} signed",
                        c.size, c.origin
                    );
                }
            }
        }
        AuditCmd::Keygen { name, out } => {
            let (sk, vk) = generate_key(&name)?;
            if out.exists() {
                bail!(
                    "--out {}: refusing to overwrite an existing key",
                    out.display()
                );
            }
            pno_core::atomic_write_private(&out, format!("{sk}\n").as_bytes())?;
            let public = PathBuf::from(format!("{}.pub", out.display()));
            pno_core::atomic_write(&public, format!("{vk}\n").as_bytes())?;
            if json_out {
                println!(
                    "{}",
                    json!({"signer": out, "verifier": public, "verifier_key": vk})
                );
            } else {
                println!(
                    "signer key {} (0600), verifier key {}: {vk}",
                    out.display(),
                    public.display()
                );
            }
        }
        AuditCmd::Checkpoint { file, key, out } => {
            let signer = SignerKey::parse(&read(&key, "signer key")?)
                .with_context(|| format!("signer key {}", key.display()))?;
            // A replica's log is its own log: the origin names the replica of its newest
            // record (as the server's own checkpoints do).
            let mut replica = None;
            let v = if pno_audit::segments(&file)?.is_empty() {
                verify(&file)? // no log at all: the error names it
            } else {
                pno_audit::scan(&file, |_, rec| replica.clone_from(&rec.replica))?
            };
            let cp = Checkpoint {
                origin: origin(signer.name(), replica.as_deref()),
                size: v.records,
                root: v.root,
            };
            let note = sign(&cp, &signer);
            match out {
                Some(p) => {
                    pno_core::atomic_write(&p, note.as_bytes())?;
                    if json_out {
                        println!(
                            "{}",
                            json!({"checkpoint": p, "origin": cp.origin, "size": cp.size, "root": hex::encode(cp.root)})
                        );
                    } else {
                        println!("checkpoint of {} records -> {}", cp.size, p.display());
                    }
                }
                None => print!("{note}"),
            }
        }
        AuditCmd::Prove { what } => match what {
            ProveCmd::Inclusion { file, index, size } => {
                let l = leaves(&file)?;
                let n = size.unwrap_or(l.len());
                if n == 0 || n > l.len() {
                    bail!("--size: expected 1..={}, got {n}", l.len());
                }
                let proof = inclusion_proof(&l[..n], index)?;
                println!(
                    "{}",
                    json!({"type": "inclusion", "index": index, "size": n, "leaf": hex::encode(l[index.min(n - 1)]),
                           "root": hex::encode(root(&l[..n])), "path": hexes(&proof)})
                );
            }
            ProveCmd::Consistency { file, old, size } => {
                let l = leaves(&file)?;
                let n = size.unwrap_or(l.len());
                if n == 0 || n > l.len() {
                    bail!("--size: expected 1..={}, got {n}", l.len());
                }
                let proof = consistency_proof(&l[..n], old)?;
                let (ro, rn) = (root(&l[..old]), root(&l[..n]));
                verify_consistency(old, n, &proof, &ro, &rn)?;
                println!(
                    "{}",
                    json!({"type": "consistency", "old": old, "size": n, "old_root": hex::encode(ro),
                           "root": hex::encode(rn), "path": hexes(&proof)})
                );
            }
        },
        AuditCmd::Report { file, since, until } => {
            let since = since.map(|s| parse_time("--since", &s)).transpose()?;
            let until = until.map(|s| parse_time("--until", &s)).transpose()?;
            let r = pno_audit::report::report(&file, since, until)?;
            if json_out {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!("{} of {} records in the window", r.records, r.records_total);
                let show = |title: &str, m: Vec<(String, u64)>| {
                    println!("{title}:");
                    for (k, v) in m {
                        println!("  {k:<32} {v}");
                    }
                };
                show("by actor", r.by_actor.clone().into_iter().collect());
                show("by role", r.by_role.clone().into_iter().collect());
                show("by action", r.by_action.clone().into_iter().collect());
                show("by outcome", r.by_outcome.clone().into_iter().collect());
                show("by replica", r.by_replica.clone().into_iter().collect());
                show(
                    "refused or failed, by class",
                    r.by_class.clone().into_iter().collect(),
                );
                show(
                    "by status",
                    r.by_status
                        .iter()
                        .map(|(k, v)| (k.to_string(), *v))
                        .collect(),
                );
                show("top refused clients", r.top_refused_clients.clone());
                println!("changes:");
                for c in &r.changes {
                    println!(
                        "  #{:<8} {} {:<24} {:<16} {} ({})",
                        c.seq, c.ts_ms, c.action, c.target, c.actor, c.outcome
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn rfc3339_times_parse_to_epoch_ms() {
        assert_eq!(parse_time("--since", "1970-01-01T00:00:00Z").unwrap(), 0);
        // date -u -d 2026-12-04T11:56:20Z +%s  →  1796385380
        assert_eq!(
            parse_time("--since", "2026-12-04T11:56:20Z").unwrap(),
            1_796_385_380_000
        );
        assert_eq!(
            parse_time("--since", "2000-02-29T12:00:00Z").unwrap(),
            951_825_600_000
        );
        assert_eq!(parse_time("--since", "1234").unwrap(), 1234);
        assert!(parse_time("--since", "2026-13-01T00:00:00Z").is_err());
        assert!(parse_time("--since", "yesterday").is_err());
    }
}
