//! W3C trace context (`traceparent`, `tracestate`): a valid incoming context becomes the
//! OpenTelemetry parent of the request's span, so the server's spans join the caller's trace; a
//! malformed header is ignored (a new trace starts), never an error. The response carries the
//! `traceparent` of the request's own span when an OpenTelemetry exporter is installed, and
//! otherwise echoes the caller's (the JSON log has its trace id either way).

use std::str::FromStr;

use axum::http::HeaderMap;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A parsed `traceparent` (version 00 layout; higher versions are read by their first four
/// fields, as the specification asks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceParent {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    pub(crate) flags: u8,
}

fn hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl TraceParent {
    /// Parse a header value; `None` when it is not a valid traceparent.
    pub(crate) fn parse(v: &str) -> Option<Self> {
        let mut parts = v.trim().split('-');
        let version: [u8; 1] = hex(parts.next()?)?;
        let trace_id: [u8; 16] = hex(parts.next()?)?;
        let span_id: [u8; 8] = hex(parts.next()?)?;
        let flags: [u8; 1] = hex(parts.next()?)?;
        let rest = parts.next();
        // Version ff is invalid; version 00 has exactly four fields.
        if version[0] == 0xff || (version[0] == 0 && rest.is_some()) {
            return None;
        }
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags: flags[0],
        })
    }

    /// The header value (version 00).
    pub(crate) fn header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex_of(&self.trace_id),
            hex_of(&self.span_id),
            self.flags
        )
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The caller's trace context, when its headers hold a valid one.
pub(crate) fn incoming(headers: &HeaderMap) -> Option<(TraceParent, Option<String>)> {
    let tp = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse)?;
    let state = headers
        .get("tracestate")
        .and_then(|v| v.to_str().ok())
        .filter(|s| TraceState::from_str(s).is_ok())
        .map(str::to_string);
    Some((tp, state))
}

/// Make `span` a child of the caller's context (a no-op without an OpenTelemetry layer).
pub(crate) fn adopt(span: &tracing::Span, parent: &TraceParent, state: Option<&str>) {
    let sc = SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.span_id),
        TraceFlags::new(parent.flags),
        true,
        state
            .and_then(|s| TraceState::from_str(s).ok())
            .unwrap_or_default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(sc));
}

/// The traceparent of `span` itself, when an OpenTelemetry layer gave it one.
pub(crate) fn of_span(span: &tracing::Span) -> Option<TraceParent> {
    let cx = span.context();
    let s = cx.span();
    let sc = s.span_context();
    sc.is_valid().then(|| TraceParent {
        trace_id: sc.trace_id().to_bytes(),
        span_id: sc.span_id().to_bytes(),
        flags: sc.trace_flags().to_u8(),
    })
}

/// The trace id's hex (the JSON log's `trace_id`).
pub(crate) fn trace_id_hex(tp: &TraceParent) -> String {
    hex_of(&tp.trace_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_parse_per_the_w3c_rules() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(v).unwrap();
        assert_eq!(tp.flags, 1);
        assert_eq!(tp.header(), v);
        // A future version may add fields; version 00 may not.
        assert!(
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz")
                .is_some()
        );
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
            "",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }
}
