//! Inference (OIP v2, JSON or binary tensors): receive and parse within the limits, wait for a
//! compute slot, compute on the blocking pool under the request's deadline, encode.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::{AuditNote, ModelPath, Params};
use crate::admission::{Ctx, compute_slot, deadline_err, read_body};
use crate::error::ApiError;
use crate::metrics::model_labels;
use crate::protocol::{self, InferRequest, OutputTensor};
use crate::repository::LoadedVersion;
use crate::state::AppState;

/// `POST /v2/models/{name}[/versions/{version}]/infer`.
pub(crate) async fn infer(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Extension(note): Extension<AuditNote>,
    Params(at): Params<ModelPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let r = counted(&st, &ctx, &note, &at, &headers, body).await;
    if let Err(e) = &r {
        tracing::info!(status = e.status.as_u16(), error = %e.message, "inference refused");
    }
    r
}

/// Infer with the served version of the model, counted in its success/failure counters and its
/// request-duration histogram.
async fn counted(
    st: &AppState,
    ctx: &Ctx,
    note: &AuditNote,
    at: &ModelPath,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let m = st.repository().get(&at.name, at.version.as_deref())?;
    note.version(m.version_str());
    let labels = model_labels(&m.name, &m.version_str());
    let r = run(st, ctx.started, note, &m, &labels, headers, body).await;
    let metrics = st.metrics();
    match &r {
        Ok(_) => metrics.inc("pno_inference_request_success_total", labels.clone(), 1.0),
        Err(e) => metrics.inc(
            "pno_inference_request_failure_total",
            format!("{labels},status=\"{}\"", e.status.as_u16()),
            1.0,
        ),
    }
    metrics.observe(
        "pno_inference_request_duration_seconds",
        labels,
        ctx.started.elapsed().as_secs_f64(),
    );
    r
}

/// Receive the body (its digest goes to the audit note) and parse it against the model's input
/// spec.
async fn receive(
    st: &AppState,
    note: &AuditNote,
    m: &LoadedVersion,
    headers: &HeaderMap,
    body: Body,
) -> Result<InferRequest, ApiError> {
    let body = read_body(&st.config().limits, headers, body)
        .instrument(tracing::info_span!("receive"))
        .await?;
    note.input_sha256(hex::encode(Sha256::digest(&body)));
    let hl = match headers.get(protocol::HEADER_LENGTH) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::bad_request("Inference-Header-Content-Length must be an integer")
        })?),
    };
    let spec = st.input_spec(m);
    tracing::info_span!("parse").in_scope(|| {
        let (json, bin) = protocol::split_body(&body, hl)?;
        protocol::parse(&spec, json, bin)
    })
}

async fn run(
    st: &AppState,
    started: Instant,
    note: &AuditNote,
    m: &Arc<LoadedVersion>,
    labels: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut req = receive(st, note, m, headers, body).await?;
    let limit = Duration::from_millis(st.config().limits.request_timeout_ms);
    let limit = match req.timeout_us {
        Some(us) if us > 0 => limit.min(Duration::from_micros(us)),
        _ => limit,
    };
    let deadline = tokio::time::Instant::from_std(started) + limit;

    // Queue.
    let q0 = Instant::now();
    let slot = compute_slot(st.gate(), deadline, limit)
        .instrument(tracing::info_span!("queue"))
        .await?;
    st.metrics().observe(
        "pno_inference_queue_duration_seconds",
        labels.to_string(),
        q0.elapsed().as_secs_f64(),
    );

    // Compute (blocking, on the blocking pool; the slot is held until it ends even if the
    // client or the deadline gives up).
    let seed = req.seed.unwrap_or_else(|| st.next_seed());
    let device = st.device().clone();
    let batch = st.config().limits.batch;
    let model = m.clone();
    let (n, grid, n_samples) = (req.n, req.grid.clone(), req.n_samples);
    let x = std::mem::take(&mut req.x);
    let compute_span = tracing::info_span!("compute", n, n_samples, seed);
    let job = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let _e = compute_span.enter();
        let t = Instant::now();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let req = pno_run::PredictRequest {
                x: &x,
                n,
                grid: &grid,
                n_samples,
                seed,
                batch,
            };
            model.model.predict(&req, &device)
        }));
        (r, t.elapsed())
    });
    let (pred, dt) = match tokio::time::timeout_at(deadline, job).await {
        Err(_) => return Err(deadline_err(limit.as_millis())),
        Ok(Err(_)) => return Err(ApiError::internal("inference task failed")),
        Ok(Ok((Err(_), _))) => return Err(ApiError::internal("the model failed on this input")),
        Ok(Ok((Ok(Err(e)), _))) => {
            return Err(ApiError::bad_request(format!(
                "the model refused the input: {e}"
            )));
        }
        Ok(Ok((Ok(Ok(p)), dt))) => (p, dt),
    };
    let metrics = st.metrics();
    metrics.observe(
        "pno_inference_compute_duration_seconds",
        labels.to_string(),
        dt.as_secs_f64(),
    );
    metrics.inc("pno_inference_count_total", labels.to_string(), n as f64);
    metrics.inc("pno_inference_exec_count_total", labels.to_string(), 1.0);

    let _e = tracing::info_span!("encode").entered();
    let quantiles = if req.outputs.iter().any(|o| o.name == "quantiles") {
        pred.quantiles(&req.levels)
    } else {
        Vec::new()
    };
    let fields = Fields {
        channels: pred.channels,
        mean: &pred.mean,
        std: &pred.std,
        samples: &pred.samples,
        quantiles: &quantiles,
    };
    encode(m, &req, seed, &fields)
}

/// The predicted fields, flat `[.., n, channels, points]`.
struct Fields<'a> {
    channels: usize,
    mean: &'a [f32],
    std: &'a [f32],
    samples: &'a [f32],
    quantiles: &'a [f32],
}

/// The response: the requested outputs in order (400 when one is not finite), the parameters
/// used, JSON or binary as asked.
fn encode(
    m: &LoadedVersion,
    req: &InferRequest,
    seed: u64,
    f: &Fields<'_>,
) -> Result<Response, ApiError> {
    let mut field = vec![req.n, f.channels];
    field.extend(&req.grid);
    let wants_q = req.outputs.iter().any(|o| o.name == "quantiles");
    let mut outs = Vec::with_capacity(req.outputs.len());
    for o in &req.outputs {
        let (data, lead): (&[f32], Vec<usize>) = match o.name.as_str() {
            "mean" => (f.mean, vec![]),
            "std" => (f.std, vec![]),
            "quantiles" => (f.quantiles, vec![req.levels.len()]),
            _ => (f.samples, vec![req.n_samples]),
        };
        if data.iter().any(|v| !v.is_finite()) {
            return Err(ApiError::bad_request(format!(
                "output '{}' is not finite for this input (values outside the model's range?)",
                o.name
            )));
        }
        let mut shape = lead;
        shape.extend(&field);
        outs.push(OutputTensor {
            name: o.name.as_str(),
            shape,
            data,
            binary: o.binary,
        });
    }
    let mut params = json!({ "n_samples": req.n_samples, "seed": seed });
    if wants_q {
        params["quantile_levels"] = Value::String(
            req.levels
                .iter()
                .map(f64::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    let (bytes, header_len) =
        protocol::encode(&m.name, &m.version_str(), req.id.as_deref(), &params, &outs);
    let mut resp = (StatusCode::OK, bytes).into_response();
    let h = resp.headers_mut();
    match header_len {
        Some(n) => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(protocol::HEADER_LENGTH, HeaderValue::from(n));
        }
        None => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    Ok(resp)
}
