//! Tracing output shared by `pno serve`, `pno train` and `pno bench` ([`batch`]): an OpenTelemetry layer
//! exporting spans over OTLP (http/protobuf or grpc) when an endpoint is configured — in the
//! server's `[tracing]`, or through the standard `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` and
//! `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL` variables every OpenTelemetry user already sets — and
//! nothing at all otherwise (no layer, no cost). The exporter batches on the tokio runtime it is
//! started in; [`Telemetry`] flushes it when dropped.

use anyhow::{Result, bail};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

/// Where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Otlp {
    /// The exporter's URL (for http/protobuf, the full `/v1/traces` URL).
    pub(crate) endpoint: String,
    /// `true`: gRPC; `false`: protobuf over HTTP.
    pub(crate) grpc: bool,
}

fn env(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
}

/// Resolve the endpoint and protocol: the config's values first, then the standard variables;
/// `None` when no endpoint is set anywhere (tracing off).
pub(crate) fn resolve(endpoint: Option<&str>, grpc: Option<bool>) -> Result<Option<Otlp>> {
    let grpc = match grpc {
        Some(g) => g,
        None => match env(&[
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ])
        .as_deref()
        {
            None | Some("http/protobuf") => false,
            Some("grpc") => true,
            Some(other) => bail!(
                "OTEL_EXPORTER_OTLP_PROTOCOL: expected \"http/protobuf\" or \"grpc\", found {other:?}"
            ),
        },
    };
    // A per-signal URL is used as it is; a base URL gets the signal's path (OTLP/HTTP).
    let (base, exact) = match endpoint {
        Some(e) => (e.to_string(), false),
        None => match env(&["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]) {
            Some(e) => (e, true),
            None => match env(&["OTEL_EXPORTER_OTLP_ENDPOINT"]) {
                Some(e) => (e, false),
                None => return Ok(None),
            },
        },
    };
    let rest = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("https://"));
    let host = rest.map(|r| r.split(['/', '?']).next().unwrap_or(""));
    if host.is_none_or(|h| h.is_empty() || h.contains(' ')) {
        bail!("OTLP endpoint {base:?}: expected an http:// or https:// URL with a host");
    }
    let endpoint = if grpc || exact {
        base
    } else {
        format!("{}/v1/traces", base.trim_end_matches('/'))
    };
    Ok(Some(Otlp { endpoint, grpc }))
}

/// The tracer provider in force; dropping it flushes and shuts the exporter down.
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// No exporter.
    pub(crate) fn off() -> Self {
        Self { provider: None }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.force_flush();
            let _ = p.shutdown_with_timeout(std::time::Duration::from_secs(5));
        }
    }
}

/// An OpenTelemetry layer exporting to `otlp` as `service`, sampling `ratio` of new traces
/// (parent-based); call inside a tokio runtime, which must outlive the returned [`Telemetry`].
pub(crate) fn layer<S>(
    otlp: &Otlp,
    service: &str,
    ratio: f64,
) -> Result<(
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
    Telemetry,
)>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let exporter = if otlp.grpc {
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(otlp.endpoint.clone())
            .build()
    } else {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(otlp.endpoint.clone())
            .build()
    }
    .map_err(|e| anyhow::anyhow!("OTLP exporter for {}: {e}", otlp.endpoint))?;
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_string())
                .build(),
        )
        .build();
    let tracer = provider.tracer("pno");
    Ok((
        tracing_opentelemetry::layer().with_tracer(tracer),
        Telemetry {
            provider: Some(provider),
        },
    ))
}

/// Tracing for a batch command (`pno train`, `pno bench`): with the standard
/// `OTEL_EXPORTER_OTLP_*` variables set, spans (the run, each epoch or cell, with their numbers)
/// are exported from a small runtime of their own; without them, nothing is installed. The
/// command's own output is unchanged either way. Keep the guard until the command ends: dropping
/// it flushes the spans.
pub(crate) struct BatchTelemetry {
    // Field order is drop order: flush the exporter while its runtime still runs.
    _telemetry: Telemetry,
    _runtime: Option<tokio::runtime::Runtime>,
}

/// See [`BatchTelemetry`].
pub(crate) fn batch(service: &str) -> Result<BatchTelemetry> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let Some(otlp) = resolve(None, None)? else {
        return Ok(BatchTelemetry {
            _telemetry: Telemetry::off(),
            _runtime: None,
        });
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-export")
        .enable_all()
        .build()?;
    let telemetry = {
        let _rt = runtime.enter();
        let (layer, telemetry) = layer(&otlp, service, 1.0)?;
        let _ = tracing_subscriber::registry()
            .with(layer.with_filter(tracing_subscriber::filter::LevelFilter::INFO))
            .try_init();
        telemetry
    };
    Ok(BatchTelemetry {
        _telemetry: telemetry,
        _runtime: Some(runtime),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_wins_and_http_gets_the_signal_path() {
        let o = resolve(Some("http://127.0.0.1:4318"), Some(false))
            .unwrap()
            .unwrap();
        assert_eq!(o.endpoint, "http://127.0.0.1:4318/v1/traces");
        assert!(!o.grpc);
        let o = resolve(Some("http://127.0.0.1:4317/"), Some(true))
            .unwrap()
            .unwrap();
        assert_eq!(
            (o.endpoint.as_str(), o.grpc),
            ("http://127.0.0.1:4317/", true)
        );
        assert!(resolve(Some("ftp://x"), None).is_err());
        assert!(resolve(Some("not a url"), None).is_err());
    }

    /// The exporter against an in-process OTLP collector: spans arrive with their names,
    /// attributes and service, children under their parent, all in the caller's trace.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_reach_an_in_process_collector_in_the_callers_trace() {
        use opentelemetry::trace::{
            SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
        };
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        use tracing_subscriber::layer::SubscriberExt;
        let mut collector = fake_opentelemetry_collector::FakeCollectorServer::start()
            .await
            .unwrap();
        let otlp = resolve(Some(&collector.endpoint()), Some(true))
            .unwrap()
            .unwrap();
        let (layer, telemetry) = layer(&otlp, "pno-test", 1.0).unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let parent = SpanContext::new(
            TraceId::from_hex(trace).unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        tracing::subscriber::with_default(subscriber, || {
            let run = tracing::info_span!("train", kind = "pno_d");
            let _ = run.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
            run.in_scope(|| {
                tracing::info_span!("epoch", epoch = 3_u64, loss = 0.25).in_scope(|| {});
            });
        });
        // Dropping the guard flushes the batch (blocking: off the runtime's workers).
        tokio::task::spawn_blocking(move || drop(telemetry))
            .await
            .unwrap();
        let spans = collector
            .exported_spans(2, std::time::Duration::from_secs(10))
            .await;
        assert_eq!(spans.len(), 2, "{spans:?}");
        let by = |n: &str| spans.iter().find(|s| s.name == n).unwrap();
        let (run, epoch) = (by("train"), by("epoch"));
        assert_eq!(run.trace_id, trace);
        assert_eq!(epoch.trace_id, trace);
        assert_eq!(run.parent_span_id, "00f067aa0ba902b7");
        assert_eq!(epoch.parent_span_id, run.span_id);
        assert!(
            epoch
                .attributes
                .get("epoch")
                .is_some_and(|v| v.contains('3')),
            "{epoch:?}"
        );
        assert!(
            run.attributes
                .get("kind")
                .is_some_and(|v| v.contains("pno_d")),
            "{run:?}"
        );
    }
}
