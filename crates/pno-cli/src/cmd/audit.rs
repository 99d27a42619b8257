//! `pno audit verify`: check an audit log's hash chain.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  pno audit verify audit.log
  pno audit verify audit.log --json

Checks every record's hash, sequence and link to the previous record; exits non-zero and
names the first bad record (line) on any edit, deletion or reordering. Anchor the printed
head hash elsewhere to detect a truncated tail.")]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    cmd: AuditCmd,
}

#[derive(Subcommand, Debug)]
enum AuditCmd {
    /// Verify the whole chain.
    Verify {
        /// Audit log file.
        file: PathBuf,
    },
}

pub(crate) fn run(args: AuditArgs, json_out: bool) -> Result<()> {
    match args.cmd {
        AuditCmd::Verify { file } => {
            let v = pno_serve::audit::verify(&file)?;
            if json_out {
                println!(
                    "{}",
                    json!({"ok": true, "records": v.records, "head": v.head})
                );
            } else {
                println!("ok: {} records, head {}", v.records, v.head);
            }
            Ok(())
        }
    }
}
