//! `pno serve`: the OIP v2 inference server (library `pno-serve`) with JSON logs and drain on
//! SIGTERM/SIGINT.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use pno_serve::{AppState, ServeConfig};

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  pno serve --config configs/serve.toml
  pno serve --repository models --listen 127.0.0.1:8000 --keys keys.json
  pno keys create --role reader --keys keys.json      # prints a new key once
  curl -s localhost:8000/v2/health/ready
  curl -s -H \"Authorization: Bearer $KEY\" localhost:8000/v2/models/pno

The repository holds <model>/<version>/ run folders written by `pno train`. Flags override the
config file. A config key with a bad value is refused at start, with the key named. Logs are
JSON lines on stderr (RUST_LOG sets the level). SIGTERM/SIGINT: readiness turns false, new
requests get 503, in-flight ones finish (up to shutdown.drain_timeout_s), the audit log is
flushed, exit 0.")]
pub(crate) struct ServeArgs {
    /// TOML config (keys: listen, repository, keys, anonymous, [limits], [rate_limit],
    /// [audit], [shutdown], [models.NAME]).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Model repository: <repository>/<model>/<version>/ run folders.
    #[arg(long)]
    repository: Option<PathBuf>,
    /// Listen address ADDR:PORT (port 0 picks a free one).
    #[arg(long)]
    listen: Option<String>,
    /// API keys file (`pno keys create`); without one, access is anonymous (reader).
    #[arg(long)]
    keys: Option<PathBuf>,
    /// Audit log file (hash-chained, appended).
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Backend: cpu, or cuda / cuda:N in a CUDA build.
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub(crate) fn run(args: ServeArgs) -> Result<()> {
    let mut cfg = match &args.config {
        Some(p) => ServeConfig::from_file(p).with_context(|| format!("config {}", p.display()))?,
        None => ServeConfig::default(),
    };
    if let Some(r) = args.repository {
        cfg.repository = r;
    }
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(k) = args.keys {
        cfg.keys = Some(k);
    }
    if let Some(a) = args.audit {
        cfg.audit.path = Some(a);
    }
    cfg.validate()?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second subscriber (tests calling run twice) is not an error.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let device = crate::device::select_device(&args.device)?;
    let addr = cfg.listen_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let state = AppState::new(cfg, device)?;
        let st = state.clone();
        let errors = tokio::task::spawn_blocking(move || st.repository().load_all())
            .await
            .context("loading models")??;
        for e in &errors {
            tracing::warn!(error = %e, "model version refused");
        }
        for (m, v) in state.repository().loaded() {
            tracing::info!(model = %m, version = v, "model loaded");
        }
        if !state.repository().any_loaded() {
            tracing::warn!("no model loaded: /v2/health/ready answers 503 until one is");
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr()?;
        println!("pno serve: listening on http://{local}");
        std::io::stdout().flush()?;
        pno_serve::serve(listener, state, shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
