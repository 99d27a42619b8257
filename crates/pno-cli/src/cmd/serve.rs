//! `pno serve`: the OIP v2 inference server (library `pno-serve`) with JSON logs and drain on
//! SIGTERM/SIGINT.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use pno_serve::preflight;
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
flushed, exit 0. SIGHUP (or POST /v2/admin/config/reload, or a change of the file with
watch_config = true) reloads the config file: validated, changed models loaded and smoke-tested,
then swapped in; a rejected reload names why and the previous config keeps serving.

Pre-flight: `pno serve --check --config F` (same flags; `pno --json serve --check` for JSON)
runs every start-up check without serving and prints each as ok/warn/fail with a detail:
config, keys (present, parses, mode 0600 or stricter), tls, audit (hash chain and latest signed
checkpoint verify, folder writable), listen (the address can be bound), disk (warn under 1 GiB
or 5 % free, fail under 64 MiB), models (every selected version loads), smoke (a finite smoke
inference within health.smoke_budget_ms), memory (estimated footprints against the budget).
Exit 1 when one fails. --ignore-check NAME[,NAME...] turns those checks' fails into warnings.
The server runs the same checks at start (all but config and listen, whose bind follows): each
one not ok is a log line, and a failed one keeps /v2/health/ready at 503, naming it, until a
restart. A version the server refuses at start is a warning there (it serves the others).")]
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
    /// Run the pre-flight checks without serving; exit 1 when one fails.
    #[arg(long)]
    check: bool,
    /// Pre-flight checks whose failure is only a warning (keys, tls, audit, listen, disk,
    /// models, smoke, memory); repeatable or comma-separated.
    #[arg(long, value_name = "NAME[,NAME...]")]
    ignore_check: Vec<String>,
}

/// The command line's overrides of the config file (kept for reloads).
#[derive(Debug, Clone)]
struct Overrides {
    repository: Option<PathBuf>,
    listen: Option<String>,
    keys: Option<PathBuf>,
    audit: Option<PathBuf>,
}

impl Overrides {
    fn apply(&self, mut cfg: ServeConfig) -> pno_serve::Result<ServeConfig> {
        if let Some(r) = &self.repository {
            cfg.repository = r.clone();
        }
        if let Some(l) = &self.listen {
            cfg.listen = l.clone();
        }
        if let Some(k) = &self.keys {
            cfg.keys = Some(k.clone());
        }
        if let Some(a) = &self.audit {
            cfg.audit.path = Some(a.clone());
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// `pno serve --check`: the pre-flight report on stdout (text or JSON); an error when a check
/// failed.
fn check(args: &ServeArgs, over: &Overrides, opts: &preflight::Options, json: bool) -> Result<()> {
    let source = match &args.config {
        Some(p) => p.display().to_string(),
        None => "(no config file: defaults and flags)".to_string(),
    };
    let cfg = match &args.config {
        Some(p) => ServeConfig::from_file(p),
        None => Ok(ServeConfig::default()),
    }
    .and_then(|c| over.apply(c));
    let device = crate::device::select_device(&args.device)?;
    let report = preflight::run(cfg.as_ref(), &source, device, opts);
    if json {
        println!(
            "{}",
            serde_json::json!({ "ok": report.passed(), "checks": report.checks })
        );
    } else {
        print!("{}", report.to_text("pre-flight"));
    }
    match report.failures() {
        None => Ok(()),
        Some(f) => anyhow::bail!("pre-flight failed: {f}"),
    }
}

/// The allocator setting the server runs with unless the environment already names one.
const PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";

/// Re-executes the server with mimalloc told to keep the pages it frees (`MIMALLOC_PURGE_DELAY=-1`)
/// unless `MIMALLOC_PURGE_DELAY` is already set (any value, which is then respected).
///
/// Every inference allocates and frees the same large activation buffers; with mimalloc's default
/// (return freed pages to the OS after 10 ms) the next request faults them in again, and at one
/// request at a time that costs ~8 % of throughput and most of the latency tail (p99 260–295 ms
/// against 322–453 ms for a 64² PNO_D with 32 draws, BENCHMARKS.md). The memory held is the peak
/// working set the server reaches anyway. The option is read from the environment when mimalloc
/// starts, before `main`, hence the re-exec (same PID, same arguments and streams); when it cannot
/// happen the server carries on with the default.
fn keep_freed_pages() {
    #[cfg(unix)]
    if std::env::var_os(PURGE_DELAY).is_none() {
        use std::os::unix::process::CommandExt;
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(PURGE_DELAY, "-1")
            .exec();
        eprintln!(
            "pno serve: could not re-execute with {PURGE_DELAY}=-1 ({err}); allocator defaults kept"
        );
    }
}

pub(crate) fn run(args: ServeArgs, json: bool) -> Result<()> {
    let over = Overrides {
        repository: args.repository.clone(),
        listen: args.listen.clone(),
        keys: args.keys.clone(),
        audit: args.audit.clone(),
    };
    let opts = preflight::Options {
        ignore: preflight::parse_ignore(&args.ignore_check).map_err(anyhow::Error::msg)?,
    };
    if args.check {
        return check(&args, &over, &opts, json);
    }
    keep_freed_pages();
    let cfg = match &args.config {
        Some(p) => ServeConfig::from_file(p).with_context(|| format!("config {}", p.display()))?,
        None => ServeConfig::default(),
    };
    let cfg = over.apply(cfg)?;
    let watch = cfg.watch_config;
    let device = crate::device::select_device(&args.device)?;
    let addr = cfg.listen_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Logs: JSON lines on stderr at RUST_LOG's levels (default info: one line per request).
    // Traces: with an OTLP endpoint, every request's span and its phase spans (debug level:
    // admission, receive, parse, queue, compute, encode) are exported, whatever RUST_LOG says;
    // without one, nothing is exported, and when RUST_LOG enables debug (e.g.
    // `info,pno_serve=debug`) each span's close with its timing is a log line, so the phases
    // are visible without a collector.
    let otlp = crate::telemetry::resolve(
        cfg.tracing.otlp_endpoint.as_deref(),
        cfg.tracing
            .otlp_protocol
            .map(|p| p == pno_serve::config::OtlpProtocol::Grpc),
    )
    .context("tracing")?;
    let _telemetry = {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let _rt = runtime.enter();
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let debug = filter
            .max_level_hint()
            .is_some_and(|l| l >= tracing::level_filters::LevelFilter::DEBUG);
        let spans = if otlp.is_none() && debug {
            tracing_subscriber::fmt::format::FmtSpan::CLOSE
        } else {
            tracing_subscriber::fmt::format::FmtSpan::NONE
        };
        let log = tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_span_events(spans)
            .with_writer(std::io::stderr)
            .with_filter(filter);
        let (otel, telemetry) = match &otlp {
            Some(o) => {
                let (l, t) = crate::telemetry::layer(
                    o,
                    &cfg.tracing.service_name,
                    cfg.tracing.sample_ratio,
                )?;
                let spans = tracing_subscriber::filter::Targets::new()
                    .with_default(tracing::Level::INFO)
                    .with_target("pno_serve", tracing::Level::DEBUG);
                (Some(l.with_filter(spans)), t)
            }
            None => (None, crate::telemetry::Telemetry::off()),
        };
        // A second subscriber (tests calling run twice) is not an error.
        let _ = tracing_subscriber::registry()
            .with(log)
            .with(otel)
            .try_init();
        if let Some(o) = &otlp {
            tracing::info!(endpoint = %o.endpoint, grpc = o.grpc, "exporting traces over OTLP");
        }
        telemetry
    };
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
        // The pre-flight checks, before the listener opens: a failed one keeps readiness false.
        let st = state.clone();
        let report = tokio::task::spawn_blocking(move || preflight::at_start(&st, &errors, &opts))
            .await
            .context("pre-flight checks")?;
        for c in report.checks.iter().filter(|c| c.status != preflight::Status::Ok) {
            if c.status == preflight::Status::Fail {
                tracing::error!(check = c.name, status = "fail", detail = %c.detail, "pre-flight check failed");
            } else {
                tracing::warn!(check = c.name, status = "warn", ignored = c.ignored, detail = %c.detail, "pre-flight check warns");
            }
        }
        if let Some(f) = report.failures() {
            tracing::error!(failed = %f, "pre-flight failed: /v2/health/ready answers 503 until a restart with the cause fixed");
        }
        state.set_preflight(report.failures());
        if !state.repository().any_loaded() {
            tracing::warn!("no model loaded: /v2/health/ready answers 503 until one is");
        }
        if let Some(path) = args.config.clone() {
            let (p, o) = (path.clone(), over.clone());
            state.set_config_source(Box::new(move || o.apply(ServeConfig::from_file(&p)?)));
            reload_on_sighup(&state);
            if watch {
                tokio::spawn(pno_serve::reload::watch(
                    state.clone(),
                    path,
                    std::time::Duration::from_secs(1),
                ));
            }
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr()?;
        let scheme = if state.config().tls.is_some() {
            "https"
        } else {
            "http"
        };
        // Registered before the address is announced: a SIGTERM right after start drains.
        let shutdown = shutdown_signal();
        println!("pno serve: listening on {scheme}://{local}");
        std::io::stdout().flush()?;
        pno_serve::serve(listener, state, shutdown).await?;
        anyhow::Ok(())
    })
}

/// SIGHUP reloads the config file (a rejected one leaves the old config serving). The handler is
/// registered by this call, before the address is announced: a SIGHUP right after start
/// reloads instead of killing the process.
fn reload_on_sighup(state: &AppState) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("SIGHUP handler unavailable: reload with POST /v2/admin/config/reload");
            return;
        };
        let state = state.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let _ = state.reload("sighup").await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = state;
}

/// SIGTERM or SIGINT. The handlers are registered by this call (not when the future is first
/// polled), so a signal that arrives any time after it is a graceful shutdown rather than the
/// default kill.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(term) => {},
                _ = wait(int) => {},
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
