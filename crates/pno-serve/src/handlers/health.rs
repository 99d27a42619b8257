//! The public routes: liveness, readiness, server metadata, the OpenAPI document and the
//! Prometheus metrics.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{json_response, ok_json};
use crate::metrics::model_labels;
use crate::state::AppState;

/// `GET /v2/health/live`.
pub(crate) async fn live() -> Response {
    ok_json(json!({ "live": true }))
}

/// `GET /v2/health/ready`: 503 with `Retry-After` while draining, overloaded or without a model.
pub(crate) async fn ready(State(st): State<AppState>) -> Response {
    match st.readiness() {
        Ok(()) => ok_json(json!({ "ready": true })),
        Err(why) => {
            let mut r = json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "ready": false, "error": format!("not ready: {why}"), "class": "transient" }),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
    }
}

/// `GET /v2/admin/health/details`: readiness and every tracked dependency (state, criticality,
/// last check, last success, last error).
pub(crate) async fn details(State(st): State<AppState>) -> Response {
    let ready = st.readiness();
    ok_json(json!({
        "ready": ready.is_ok(),
        "not_ready_because": ready.err(),
        "checks_enabled": st.config().health.enabled,
        "interval_s": st.config().health.interval_s,
        "dependencies": st.dependencies().list(),
    }))
}

/// `GET /v2`: name, version and protocol extensions.
pub(crate) async fn server_metadata() -> Response {
    ok_json(json!({
        "name": "pno-serve",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data", "model_repository", "parameters"],
    }))
}

/// `GET /v2/openapi.json`.
pub(crate) async fn openapi() -> Response {
    ok_json(crate::openapi::document())
}

/// `GET /metrics`: Prometheus text, with the gauges read now.
pub(crate) async fn metrics(State(st): State<AppState>) -> Response {
    let gate = st.gate();
    let mut gauges: Vec<(&str, &str, String, f64)> = vec![
        (
            "pno_inference_pending_request_count",
            "Inference requests waiting for a compute slot.",
            String::new(),
            gate.waiting() as f64,
        ),
        (
            "pno_inference_running_count",
            "Inference requests computing.",
            String::new(),
            gate.running() as f64,
        ),
        (
            "pno_ready",
            "1 when the server is ready.",
            String::new(),
            f64::from(u8::from(st.readiness().is_ok())),
        ),
        (
            "pno_draining",
            "1 while draining.",
            String::new(),
            f64::from(u8::from(st.is_draining())),
        ),
        (
            "pno_config_last_reload_successful",
            "1 when the last config reload succeeded (or none was tried).",
            String::new(),
            f64::from(u8::from(st.reload_state().last_ok())),
        ),
        (
            "pno_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config reload (or the start).",
            String::new(),
            st.reload_state().last_success_s() as f64,
        ),
        (
            "pno_config_info",
            "The hash of the config in force (label).",
            format!("hash=\"{}\"", st.reload_state().hash()),
            1.0,
        ),
        (
            "pno_audit_checkpoint_size",
            "Records covered by the last signed audit checkpoint (-1: none yet).",
            String::new(),
            st.checkpointed().map_or(-1.0, |n| n as f64),
        ),
        (
            "pno_audit_healthy",
            "0 after an audit record could not be written (after retries), until one is.",
            String::new(),
            f64::from(u8::from(st.audit_healthy())),
        ),
    ];
    for d in st.dependencies().list() {
        let labels = format!(
            "dependency=\"{}\",kind=\"{}\",critical=\"{}\"",
            crate::metrics::escape(&d.name),
            d.kind,
            d.critical
        );
        gauges.push((
            "pno_dependency_up",
            "1 when the dependency's last scheduled check passed, 0 when it failed (skipped: absent).",
            labels,
            match d.state {
                "ok" => 1.0,
                "failing" => 0.0,
                _ => continue,
            },
        ));
    }
    gauges.push((
        "pno_inference_queue_capacity",
        "Inference requests the global queue holds (limits.max_queue) before shedding.",
        String::new(),
        st.config().limits.max_queue as f64,
    ));
    if let Some(b) = crate::resources::budget(&st.config().resources) {
        gauges.push((
            "pno_memory_budget_bytes",
            "Memory this process may use: resources.memory_budget_mb, else cgroup v2 memory.max, else cgroup v1, else MemTotal (label: which).",
            format!("source=\"{}\"", b.source),
            b.bytes as f64,
        ));
    }
    if let Some(tls) = &st.live().tls {
        gauges.push((
            "pno_tls_cert_expiry_timestamp_seconds",
            "Unix time at which the serving TLS certificate expires (label: its SHA-256 prefix).",
            format!("sha256=\"{}\"", tls.leaf.trim_start_matches("sha256:")),
            tls.not_after.map_or(-1.0, |t| t as f64),
        ));
    }
    if st.config().keys.is_some() {
        let k = st.keys().reload_status();
        gauges.push((
            "pno_keys_reload_success",
            "1 when the keys file last read was used; 0: refused, the last good keys stay.",
            String::new(),
            f64::from(u8::from(k.ok)),
        ));
        gauges.push((
            "pno_keys_reload_timestamp_seconds",
            "When the keys were last loaded successfully (Unix seconds).",
            String::new(),
            k.at as f64,
        ));
    }
    let loaded = st.repository().loaded();
    for (m, v) in &loaded {
        gauges.push((
            "pno_model_loaded",
            "1 for each loaded model version.",
            model_labels(m, &v.to_string()),
            1.0,
        ));
    }
    for (m, v, bytes) in st.repository().footprints() {
        gauges.push((
            "pno_model_footprint_bytes",
            "Estimated peak memory of a loaded model version answering the configured worst-case request (limits.max_batch inputs, limits.max_samples draws), counted against resources.load_fraction of the budget.",
            model_labels(&m, &v.to_string()),
            bytes as f64,
        ));
    }
    let now = std::time::Instant::now();
    for (m, v) in &loaded {
        gauges.push((
            "pno_breaker_state",
            "Circuit breaker state per model version: 0 closed, 1 open, 2 half-open.",
            model_labels(m, &v.to_string()),
            st.guards().get(m, *v).breaker.snapshot(now).state.gauge(),
        ));
    }
    let mut models: Vec<&String> = loaded.iter().map(|(m, _)| m).collect();
    models.dedup();
    for m in &models {
        let g = st.bulkheads().model(m);
        gauges.push((
            "pno_model_pending_request_count",
            "Inference requests waiting in a model's bulkhead queue.",
            format!("model=\"{}\"", crate::metrics::escape(m)),
            g.waiting() as f64,
        ));
    }
    for ((name, severity), n) in st.monitor().firing_counts() {
        gauges.push((
            "pno_alerts_firing",
            "In-process alerts firing, by name and severity.",
            format!(
                "alertname=\"{}\",severity=\"{}\"",
                crate::metrics::escape(&name),
                severity.as_str()
            ),
            n as f64,
        ));
    }
    let drift = st.drift().status();
    for (m, v, verdict, ..) in &drift {
        if let Some(d) = verdict {
            gauges.push((
                "pno_drift_detected",
                "1 when the version's recent inputs drifted from its training data at the last test.",
                model_labels(m, &v.to_string()),
                f64::from(u8::from(d.detected)),
            ));
        }
    }
    for (m, v, verdict, ..) in &drift {
        for f in verdict.iter().flat_map(|d| &d.features) {
            gauges.push((
                "pno_drift_psi",
                "PSI of a drift feature of recent inputs against the training data (last test).",
                format!(
                    "{},feature=\"{}\"",
                    model_labels(m, &v.to_string()),
                    crate::metrics::escape(&f.feature)
                ),
                f.psi,
            ));
        }
    }
    for (m, v, verdict, ..) in &drift {
        for f in verdict.iter().flat_map(|d| &d.features) {
            gauges.push((
                "pno_drift_p_value",
                "Corrected KS p-value of a drift feature of recent inputs against the training data (last test).",
                format!("{},feature=\"{}\"", model_labels(m, &v.to_string()), crate::metrics::escape(&f.feature)),
                f.p_value,
            ));
        }
    }
    for (m, v, _, skipped, incomparable, _) in &drift {
        for (reason, n) in [("rate", skipped), ("grid", incomparable)] {
            gauges.push((
                "pno_drift_inputs_skipped",
                "Inputs left out of drift monitoring: over drift.max_samples_per_s (rate) or on another grid than the training data (grid); a counter.",
                format!("{},reason=\"{reason}\"", model_labels(m, &v.to_string())),
                *n as f64,
            ));
        }
    }
    let calibration = st.feedback().status(&st.config().feedback);
    for c in &calibration {
        gauges.push((
            "pno_calibration_functions",
            "Functions with ground truth (POST /v2/models/NAME/feedback) in the version's rolling calibration window.",
            model_labels(&c.model, &c.version.to_string()),
            c.functions as f64,
        ));
    }
    for c in &calibration {
        gauges.push((
            "pno_calibration_collapsed",
            "1 when coverage at some served level is significantly (binomial) and materially under nominal.",
            model_labels(&c.model, &c.version.to_string()),
            f64::from(u8::from(c.collapsed)),
        ));
    }
    for c in &calibration {
        gauges.push((
            "pno_calibration_crps",
            "Mean CRPS of the predictions that got ground truth (rolling window).",
            model_labels(&c.model, &c.version.to_string()),
            c.crps,
        ));
    }
    for c in &calibration {
        for l in &c.levels {
            gauges.push((
                "pno_calibration_coverage",
                "Observed coverage of the central interval at each served level (rolling window of feedback).",
                format!("{},level=\"{}\"", model_labels(&c.model, &c.version.to_string()), l.level),
                l.coverage,
            ));
        }
    }
    for c in &calibration {
        for l in &c.levels {
            gauges.push((
                "pno_calibration_coverage_p_value",
                "One-sided binomial p-value of coverage this low under the nominal level.",
                format!(
                    "{},level=\"{}\"",
                    model_labels(&c.model, &c.version.to_string()),
                    l.level
                ),
                l.p_value,
            ));
        }
    }
    for (m, v, signal, z) in st.monitor().scores() {
        gauges.push((
            "pno_anomaly_score",
            "The robust z-score of the last judged window against its baseline, per model version and signal.",
            format!("{},signal=\"{signal}\"", model_labels(&m, &v)),
            z,
        ));
    }
    for (op, n) in [
        ("repository", st.repository().retries()),
        ("audit", st.audit().map_or(0, |a| a.retries())),
        ("keys", crate::auth::keys_read_retries()),
        ("write", pno_core::atomic_write_retries()),
    ] {
        gauges.push((
            "pno_retries_total",
            "Transient I/O errors retried, by operation (a counter).",
            format!("op=\"{op}\""),
            n as f64,
        ));
    }
    let mut r = (StatusCode::OK, st.metrics().render(st.replica(), &gauges)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
