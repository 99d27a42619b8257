//! `pno repository`: the repository API of a running `pno serve` from the shell — pin the
//! version that serves unpinned requests (overriding an automated rollback), unpin, load (which
//! also brings rolled-back versions back) and unload. The key comes from an environment variable,
//! never from the command line (where `ps` would show it).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use pno_serve::webhook::Webhook;
use serde_json::{Value, json};

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  PNO_API_KEY=pno_… pno repository pin --url http://127.0.0.1:8000 --model darcy --version 1
  PNO_API_KEY=pno_… pno repository unpin --url http://127.0.0.1:8000 --model darcy
  PNO_API_KEY=pno_… pno repository load --url https://pno.internal:8443 --ca ca.pem --model darcy
  PNO_API_KEY=pno_… pno repository unload --url http://127.0.0.1:8000 --model darcy

The key needs the operator role. A pin routes every unpinned request of the model to that loaded
version until unpinned, whatever the [rollback] policy decides; a load brings versions that were
rolled back into service again. The server's answer is printed as JSON; a refusal exits 1 with the
server's message.")]
pub(crate) struct RepositoryArgs {
    #[command(subcommand)]
    cmd: RepoCmd,
    /// The server (http:// or https://, without a path).
    #[arg(long, global = true, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// Environment variable holding the API key.
    #[arg(long, global = true, default_value = "PNO_API_KEY", value_name = "VAR")]
    key_env: String,
    /// PEM file of CA certificates to trust for an https:// server (default: the Mozilla roots).
    #[arg(long, global = true, value_name = "PEM")]
    ca: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum RepoCmd {
    /// Route the model's unpinned requests to one loaded version.
    Pin {
        /// Model name.
        #[arg(long)]
        model: String,
        /// Loaded version to pin.
        #[arg(long)]
        version: u64,
    },
    /// Give the model's unpinned requests back to the newest healthy version.
    Unpin {
        /// Model name.
        #[arg(long)]
        model: String,
    },
    /// Load the model (every version on disk, or one), clearing its rollbacks.
    Load {
        /// Model name.
        #[arg(long)]
        model: String,
        /// Only this version.
        #[arg(long)]
        version: Option<u64>,
    },
    /// Unload every version of the model.
    Unload {
        /// Model name.
        #[arg(long)]
        model: String,
    },
}

/// The path and body of a command.
fn request(cmd: &RepoCmd) -> (String, Value) {
    let at = |m: &str, what: &str| format!("/v2/repository/models/{m}/{what}");
    match cmd {
        RepoCmd::Pin { model, version } => {
            (at(model, "pin"), json!({"version": version.to_string()}))
        }
        RepoCmd::Unpin { model } => (at(model, "pin"), json!({"version": null})),
        RepoCmd::Load { model, version } => (
            at(model, "load"),
            match version {
                Some(v) => json!({"parameters": {"version": v.to_string()}}),
                None => json!({}),
            },
        ),
        RepoCmd::Unload { model } => (at(model, "unload"), json!({})),
    }
}

pub(crate) fn run(args: RepositoryArgs, _json: bool) -> Result<()> {
    let key = std::env::var(&args.key_env).ok().filter(|k| !k.is_empty());
    let Some(key) = key else {
        bail!(
            "--key-env: the environment variable {} holds no API key (an operator key of the server, `pno keys create --role operator`)",
            args.key_env
        );
    };
    let (path, body) = request(&args.cmd);
    let base = args.url.trim_end_matches('/');
    let hook = Webhook::new(
        &format!("{base}{path}"),
        args.ca.as_deref(),
        "--url",
        "--ca",
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP client")?;
    let (status, answer) = rt
        .block_on(hook.call(&body.to_string(), Some(&key)))
        .map_err(|e| anyhow::anyhow!("--url {base}: {e}"))?;
    let parsed: Option<Value> = serde_json::from_str(&answer).ok();
    if !(200..300).contains(&status) {
        let why = parsed
            .as_ref()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(answer);
        bail!("the server refused (HTTP {status}): {why}");
    }
    match parsed {
        Some(v) => println!("{}", serde_json::to_string_pretty(&v)?),
        None => println!("{answer}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_map_to_the_repository_api() {
        let (p, b) = request(&RepoCmd::Pin {
            model: "darcy".into(),
            version: 2,
        });
        assert_eq!(p, "/v2/repository/models/darcy/pin");
        assert_eq!(b, json!({"version": "2"}));
        let (p, b) = request(&RepoCmd::Unpin {
            model: "darcy".into(),
        });
        assert_eq!(p, "/v2/repository/models/darcy/pin");
        assert_eq!(b, json!({"version": null}));
        let (p, b) = request(&RepoCmd::Load {
            model: "m".into(),
            version: Some(3),
        });
        assert_eq!(p, "/v2/repository/models/m/load");
        assert_eq!(b, json!({"parameters": {"version": "3"}}));
    }
}
