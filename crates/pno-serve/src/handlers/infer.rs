//! Inference (OIP v2, JSON or binary tensors), through the resilience layer:
//!
//! 1. **choose** the version: the one asked for, or the newest; when its circuit breaker is open
//!    and the request did not pin a version, fall back by the model's policy (`previous`,
//!    `any_healthy`), else 503 at once with `Retry-After`;
//! 2. **receive** and parse within the limits (nothing is read while resident memory is above
//!    the high-water mark, `resources.shed_fraction`: 503 at once with `Retry-After`);
//! 3. **plan**: under pressure (the model's queue, its latency EWMA, the work budget) serve fewer
//!    draws, or refuse with 503 when the request said `"degrade": false`;
//! 4. **queue** for the model's bulkhead slot and a global slot, under the request's deadline;
//! 5. **compute** on the blocking pool in chunks, with a cancellation token that the deadline and
//!    a departing client set; a panic is an internal failure, a non-finite answer to a finite,
//!    in-range input a persistent one;
//! 6. **encode**, saying in `parameters` how it was served (draws, degraded, fallback).
//!
//! The outcome goes to the version's breaker (model faults only), the metrics by failure class,
//! and the request's audit note.

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
use crate::admission::{Ctx, deadline_err, read_body};
use crate::config::Fallback;
use crate::error::ApiError;
use crate::failure::{FailureClass, JobError, ServedBy};
use crate::metrics::model_labels;
use crate::protocol::{self, InferRequest, OutputTensor};
use crate::repository::LoadedVersion;
use crate::resilience::Guard;
use crate::resilience::breaker::{Outcome, Ticket};
use crate::resilience::bulkhead::{Shed, Slots};
use crate::resilience::cancel::{CancelOnDrop, Token, Why};
use crate::resilience::degrade::{self, Ask, Plan, Pressure};
use crate::state::AppState;

/// `POST /v2/models/{name}[/versions/{version}]/infer`.
pub(crate) async fn infer(
    State(st): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Extension(note): Extension<AuditNote>,
    Params(at): Params<ModelPath>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut served = ServedBy {
        model: crate::repository::clip(&at.name),
        version: String::new(),
    };
    let r = counted(&st, &ctx, &note, &at, &headers, body, &mut served).await;
    let mut resp = match r {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(status = e.status.as_u16(), class = %e.class, error = %e.message, "inference refused");
            e.into_response()
        }
    };
    resp.extensions_mut().insert(served);
    resp
}

/// The version chosen for a request, its health guard and the breaker's ticket; a ticket not
/// recorded (the request was dropped) is recorded as ignored, so a half-open probe is never lost.
struct Chosen {
    m: Arc<LoadedVersion>,
    guard: Arc<Guard>,
    ticket: Option<Ticket>,
    fallback_from: Option<u64>,
}

impl Chosen {
    fn record(&mut self, st: &AppState, outcome: Outcome) {
        if let Some(t) = self.ticket.take()
            && let Some(moved) = self.guard.breaker.record(t, outcome, Instant::now())
        {
            st.breaker_moved(&self.m.name, self.m.version, &moved);
        }
    }
}

impl Drop for Chosen {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            // Only a probe's place matters here; nothing was decided.
            let _ = self
                .guard
                .breaker
                .record(t, Outcome::Ignored, Instant::now());
        }
    }
}

/// Pick the version: the one asked for (or the newest), or — when its breaker is open and no
/// version was pinned — a healthy one by the model's fallback policy.
fn choose(
    st: &AppState,
    name: &str,
    version: Option<&str>,
    served: &mut ServedBy,
) -> Result<Chosen, ApiError> {
    // Unpinned requests go where the routing says: an operator's pin, or the version a
    // rollback moved the model's traffic to.
    let (routed, rolled_from) = match version {
        Some(v) => (Some(v.to_string()), None),
        None => {
            let loaded = st.repository().loaded_versions(name);
            match st.routing().target(name, &loaded) {
                crate::routing::Target::Version(v) => (Some(v.to_string()), None),
                crate::routing::Target::Rolled(v) => {
                    (Some(v.to_string()), loaded.iter().max().copied())
                }
                crate::routing::Target::Newest | crate::routing::Target::Degraded => (None, None),
            }
        }
    };
    let m = st.repository().get(name, routed.as_deref())?;
    served.version = m.version_str();
    let now = Instant::now();
    let guard = st.guards().get(&m.name, m.version);
    let wait = match guard.breaker.admit(now) {
        Ok((ticket, moved)) => {
            if let Some(t) = moved {
                st.breaker_moved(&m.name, m.version, &t);
            }
            return Ok(Chosen {
                m,
                guard,
                ticket: Some(ticket),
                fallback_from: rolled_from,
            });
        }
        Err(wait) => wait,
    };
    let policy = st.config().model_fallback(&m.name);
    if version.is_none() && policy != Fallback::Off {
        let mut older: Vec<u64> = st
            .repository()
            .loaded_versions(&m.name)
            .into_iter()
            .filter(|&v| v != m.version)
            .collect();
        older.sort_unstable_by(|a, b| b.cmp(a));
        if policy == Fallback::Previous {
            older.retain(|&v| v < m.version);
            older.truncate(1);
        }
        for v in older {
            let g = st.guards().get(&m.name, v);
            if let Ok((ticket, moved)) = g.breaker.admit(now)
                && let Ok(fb) = st.repository().get(&m.name, Some(&v.to_string()))
            {
                if let Some(t) = moved {
                    st.breaker_moved(&m.name, v, &t);
                }
                st.metrics().inc(
                    "pno_fallback_total",
                    format!(
                        "{},from=\"{}\"",
                        model_labels(&m.name, &v.to_string()),
                        m.version
                    ),
                    1.0,
                );
                tracing::info!(model = %m.name, from = m.version, to = v, "breaker open: falling back");
                return Ok(Chosen {
                    m: fb,
                    guard: g,
                    ticket: Some(ticket),
                    fallback_from: Some(m.version),
                });
            }
        }
    }
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut e = ApiError::unavailable(
        format!(
            "model '{}' version {} is failing: its circuit breaker is open (retry in {secs} s{})",
            m.name,
            m.version,
            if version.is_some() {
                ""
            } else {
                "; no healthy version to fall back to"
            }
        ),
        secs,
    )
    .class(FailureClass::Transient);
    e.breaker_open = true;
    Err(e)
}

/// What the compute learned, for the breaker and the metrics.
#[derive(Debug, Default)]
struct Learned {
    /// Compute time, when it finished.
    compute: Option<Duration>,
    /// The deadline passed while computing.
    timed_out: bool,
    /// The mean predictive standard deviation of the answer.
    spread: Option<f64>,
}

/// Choose, run, and account: the version's breaker, its success/failure counters and its
/// request-duration histogram.
async fn counted(
    st: &AppState,
    ctx: &Ctx,
    note: &AuditNote,
    at: &ModelPath,
    headers: &HeaderMap,
    body: Body,
    served: &mut ServedBy,
) -> Result<Response, ApiError> {
    let mut chosen = choose(st, &at.name, at.version.as_deref(), served)?;
    let version = chosen.m.version_str();
    served.model = chosen.m.name.clone();
    served.version = version.clone();
    note.version(version.clone());
    let labels = model_labels(&chosen.m.name, &version);
    let mut learned = Learned::default();
    let r = run(st, ctx, note, &chosen, &labels, headers, body, &mut learned).await;
    let slow = chosen.guard.breaker.slow_call();
    let outcome = match &r {
        Ok(_) if learned.compute.is_some_and(|d| d >= slow) => Outcome::Slow,
        Ok(_) => Outcome::Success,
        Err(_) if learned.timed_out => Outcome::Failure {
            consecutive: false,
            slow: true,
        },
        Err(e) if e.class.is_model_fault() => Outcome::Failure {
            consecutive: true,
            slow: learned.compute.is_some_and(|d| d >= slow),
        },
        Err(_) => Outcome::Ignored,
    };
    chosen.record(st, outcome);
    let metrics = st.metrics();
    match &r {
        Ok(_) => metrics.inc("pno_inference_request_success_total", labels.clone(), 1.0),
        Err(e) => metrics.inc(
            "pno_inference_request_failure_total",
            format!("{labels},status=\"{}\"", e.status.as_u16()),
            1.0,
        ),
    }
    let seconds = ctx.started.elapsed().as_secs_f64();
    metrics.observe("pno_inference_request_duration_seconds", labels, seconds);
    if st.config().alerting.enabled {
        st.monitor().record(
            &chosen.m.name,
            &version,
            crate::state::now_s(),
            crate::alerting::series::Finished {
                latency_ms: seconds * 1e3,
                failure: r.as_ref().err().map(|e| e.class),
                spread: learned.spread,
            },
        );
    }
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
        .instrument(tracing::debug_span!("receive"))
        .await?;
    note.input_sha256(hex::encode(Sha256::digest(&body)));
    let hl = match headers.get(protocol::HEADER_LENGTH) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::bad_request("Inference-Header-Content-Length must be an integer")
        })?),
    };
    let spec = st.input_spec(m);
    tracing::debug_span!("parse").in_scope(|| {
        let (json, bin) = protocol::split_body(&body, hl)?;
        protocol::parse(&spec, json, bin)
    })
}

/// How a request is served: the draws computed and whether that is a degraded answer.
#[derive(Debug, Clone, Copy)]
struct Serving {
    samples: usize,
    degraded: Option<(degrade::Reason, bool)>,
}

/// Decide the draws under the model's pressure; 503 when the request refused degradation.
fn plan(st: &AppState, c: &Chosen, req: &InferRequest) -> Result<Serving, ApiError> {
    let m = &c.m;
    let gate = st.bulkheads().model(&m.name);
    let size = st.bulkheads().size(&m.name);
    let points: usize = req.grid.iter().product();
    let kind = m.model.file.model.kind;
    let ask = Ask {
        samples: req.n_samples,
        values_per_draw: req.n * m.model.file.out_channels * points,
        allow: req.degrade.unwrap_or(true),
        deterministic_mean: matches!(
            kind,
            pno_models::Kind::Fno
                | pno_models::Kind::Deeponet
                | pno_models::Kind::Laplace
                | pno_models::Kind::PnoR
        ),
    };
    let pressure = Pressure {
        waiting: gate.waiting(),
        queue: size.queue,
        latency_ms: c.guard.latency.get(),
    };
    let labels = model_labels(&m.name, &m.version_str());
    match degrade::plan(&st.config().degrade, pressure, ask) {
        Plan::Full => Ok(Serving {
            samples: req.n_samples,
            degraded: None,
        }),
        Plan::Degraded {
            samples,
            reason,
            mean_only,
        } => {
            // Counted once answered (pno_degraded_total), not here: it may still be shed.
            Ok(Serving {
                samples,
                degraded: Some((reason, mean_only)),
            })
        }
        Plan::Refuse(reason) => {
            st.metrics().inc(
                "pno_shed_total",
                format!("{labels},reason=\"pressure_{}\"", reason.as_str()),
                1.0,
            );
            Err(ApiError::unavailable(
                format!(
                    "model '{}' is under pressure ({}) and the request asked for no degraded answer (\"degrade\": false); retry later",
                    m.name,
                    reason.as_str()
                ),
                1,
            ))
        }
    }
}

/// Wait for the model's slot and a global one until `deadline`: 503 when a queue is full or the
/// gates closed, 504 at the deadline.
async fn queue(
    st: &AppState,
    model: &str,
    labels: &str,
    deadline: tokio::time::Instant,
    limit: Duration,
) -> Result<Slots, ApiError> {
    let shed = |reason: &str| {
        st.metrics().inc(
            "pno_shed_total",
            format!("{labels},reason=\"{reason}\""),
            1.0,
        );
    };
    match tokio::time::timeout_at(deadline, st.bulkheads().acquire(model)).await {
        Err(_) => {
            shed("queue_deadline");
            Err(deadline_err(limit.as_millis()))
        }
        Ok(Err(Shed::QueueFull)) => {
            shed("queue_full");
            Err(ApiError::unavailable(
                format!("model '{model}' is overloaded: its inference queue is full"),
                1,
            ))
        }
        Ok(Err(Shed::Closed)) => Err(ApiError::unavailable("server is shutting down", 5)),
        Ok(Ok(s)) => Ok(s),
    }
}

/// How far (in training standard deviations) an input may be from the training mean and still
/// count as in range: a non-finite answer to an input within it is the model's failure.
const IN_RANGE_STDS: f32 = 1e3;

fn in_range(m: &LoadedVersion, x: &[f32], points: usize) -> bool {
    let mut z = x.to_vec();
    if let Some(nx) = &m.model.normalizers.x
        && nx
            .transform(&mut z, m.model.file.in_channels, points)
            .is_err()
    {
        return false;
    }
    z.iter().all(|v| v.is_finite() && v.abs() <= IN_RANGE_STDS)
}

#[allow(clippy::too_many_arguments)]
async fn run(
    st: &AppState,
    ctx: &Ctx,
    note: &AuditNote,
    c: &Chosen,
    labels: &str,
    headers: &HeaderMap,
    body: Body,
    learned: &mut Learned,
) -> Result<Response, ApiError> {
    let m = &c.m;
    let started = ctx.started;
    // Above the memory high-water mark nothing more is read or computed.
    crate::resources::admit(&st.config().resources, st.metrics(), labels)?;
    let mut req = receive(st, note, m, headers, body).await?;
    let serving = plan(st, c, &req)?;
    let limit = Duration::from_millis(st.config().limits.request_timeout_ms);
    let limit = match req.timeout_us {
        Some(us) if us > 0 => limit.min(Duration::from_micros(us)),
        _ => limit,
    };
    let deadline = tokio::time::Instant::from_std(started) + limit;

    // Cancellation: the deadline or a departing client (this future dropped) stops the compute,
    // whether it is still queued (it leaves the queue) or computing (it stops between chunks).
    let token = Token::default();
    let st2 = st.clone();
    let mut on_drop = CancelOnDrop::new(token.clone(), deadline.into_std(), move |why| {
        tracing::info!(
            reason = why.as_str(),
            class = "transient",
            "inference cancelled"
        );
        st2.metrics().inc(
            "pno_cancelled_total",
            format!("reason=\"{}\"", why.as_str()),
            1.0,
        );
    });

    // Dynamic batching: a request that fits the row budget joins a batch, which queues for the
    // slot as one inference (`drive_batch`); any other queues alone here.
    let batching = st.config().batching;
    let batched = batching.max_wait_ms > 0
        && req.n <= batching.max_rows
        && !m.model.model.shares_draws_across_rows();
    let slots = if batched {
        None
    } else {
        let q0 = Instant::now();
        let slots = queue(st, &m.name, labels, deadline, limit)
            .instrument(tracing::debug_span!("queue"))
            .await?;
        st.metrics().observe(
            "pno_inference_queue_duration_seconds",
            labels.to_string(),
            q0.elapsed().as_secs_f64(),
        );
        Some(slots)
    };

    // Drift: this input's features go to the version's recent sample (within the rate budget).
    let drift_cfg = st.config().drift.clone();
    let drift_ref = drift_cfg
        .enabled
        .then(|| {
            st.drift().admit(
                &m.name,
                m.version,
                m.model.reference.as_ref(),
                crate::state::now_s(),
                &drift_cfg,
            )
        })
        .flatten();
    let seed = req.seed.unwrap_or_else(|| st.next_seed());
    let batch = st.config().limits.batch;
    let model = m.clone();
    let (n, grid, n_samples) = (req.n, req.grid.clone(), serving.samples);
    let x = std::mem::take(&mut req.x);
    let compute_span = tracing::debug_span!(
        "compute",
        model = %m.name,
        version = m.version,
        draws = n_samples,
        degraded = serving.degraded.is_some(),
        rows = n,
        seed
    );
    let job_token = token.clone();
    // Feedback may name this prediction by its input instead of its request id.
    let digest_input = st.config().feedback.enabled;
    #[cfg(feature = "fault-injection")]
    let fault = st.faults().take(&m.name, m.version);
    let out = if let Some(slots) = slots {
        let job = unbatched(
            st,
            m,
            slots,
            x,
            (n, &grid, n_samples, seed, batch),
            job_token,
            compute_span,
            drift_ref,
            digest_input,
            #[cfg(feature = "fault-injection")]
            fault,
        );
        tokio::time::timeout_at(deadline, job).await
    } else {
        let features = drift_ref.map(|r| r.features(&x, n, &grid));
        let digest = digest_input.then(|| crate::feedback::input_digest(&x, n));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let key = crate::batching::Key {
            model: m.name.clone(),
            version: m.version,
            grid: grid.clone(),
            n_samples,
        };
        let entry = crate::batching::Entry {
            x,
            n,
            seed,
            token: job_token,
            deadline,
            #[cfg(feature = "fault-injection")]
            fault,
            tx,
        };
        if let Some(group) = st.batcher().join(&key, entry, batching.max_rows) {
            let wait = Duration::from_millis(batching.max_wait_ms);
            tokio::spawn(
                drive_batch(
                    st.clone(),
                    key,
                    group,
                    model,
                    labels.to_string(),
                    limit,
                    wait,
                )
                .instrument(compute_span),
            );
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Err(e) => Err(e),
            Ok(Err(_)) => Ok(Err(())),
            Ok(Ok(Err(e))) => {
                // The whole batch was refused before computing (queue full, queue deadline).
                on_drop.disarm();
                return Err(e);
            }
            Ok(Ok(Ok((r, dt)))) => Ok(Ok((r, dt, features, digest))),
        }
    };
    let (pred, dt, digest) = match out {
        Err(_) => {
            // The compute stops at its next chunk and frees its slot then.
            on_drop.cancel(Why::Deadline);
            learned.timed_out = true;
            return Err(deadline_err(limit.as_millis()));
        }
        Ok(Err(())) => {
            on_drop.disarm();
            return Err(ApiError::internal("inference task failed"));
        }
        Ok(Ok((r, dt, features, digest))) => {
            on_drop.disarm();
            if let Some(rows) = features {
                st.drift().add(&m.name, m.version, rows, &drift_cfg);
            }
            learned.compute = Some(dt);
            if let Ok(p) = &r {
                learned.spread = (!p.std.is_empty())
                    .then(|| p.std.iter().map(|&s| f64::from(s)).sum::<f64>() / p.std.len() as f64);
            }
            c.guard.latency.observe(dt.as_secs_f64() * 1e3);
            match r {
                Ok(p) => (p, dt, digest),
                Err(e) => return Err(job_error(m, e)),
            }
        }
    };
    let metrics = st.metrics();
    metrics.observe(
        "pno_inference_compute_duration_seconds",
        labels.to_string(),
        dt.as_secs_f64(),
    );
    metrics.inc("pno_inference_count_total", labels.to_string(), n as f64);
    if !batched {
        // A batch counts one execution for all its requests (`drive_batch`).
        metrics.inc("pno_inference_exec_count_total", labels.to_string(), 1.0);
    }
    if let Some((reason, _)) = serving.degraded {
        metrics.inc(
            "pno_degraded_total",
            format!("{labels},reason=\"{}\"", reason.as_str()),
            1.0,
        );
    }

    let feedback = &st.config().feedback;
    if feedback.enabled {
        // Kept for ground truth sent later (`POST …/feedback` with this request id).
        let mut shape = vec![n, pred.channels];
        shape.extend_from_slice(&req.grid);
        st.feedback().keep(
            &ctx.request_id,
            crate::feedback::Kept {
                model: m.name.clone(),
                version: m.version,
                at_s: crate::state::now_s(),
                shape,
                mean: pred.mean.clone(),
                std: pred.std.clone(),
                input: digest,
            },
            feedback,
        );
    }
    let _e = tracing::debug_span!("encode").entered();
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
    let how = How {
        seed,
        serving,
        fallback_from: c.fallback_from,
    };
    encode(m, &req, &how, &fields)
}

/// Compute one request alone on the blocking pool, holding its slots: the prediction (or the
/// job's failure), its compute time, the drift features and the feedback digest of its input;
/// `Err(())` when the task itself failed.
#[allow(clippy::too_many_arguments)]
async fn unbatched(
    st: &AppState,
    m: &Arc<LoadedVersion>,
    slots: Slots,
    x: Vec<f32>,
    (n, grid, n_samples, seed, batch): (usize, &[usize], usize, u64, usize),
    job_token: Token,
    compute_span: tracing::Span,
    drift_ref: Option<Arc<crate::drift::Reference>>,
    digest_input: bool,
    #[cfg(feature = "fault-injection")] fault: Option<crate::faults::Fault>,
) -> Computed {
    let device = st.device().clone();
    let model = m.clone();
    let grid = grid.to_vec();
    let job = tokio::task::spawn_blocking(move || {
        let _slots = slots;
        let _e = compute_span.enter();
        let t = Instant::now();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            #[cfg(feature = "fault-injection")]
            let after = match crate::faults::before(fault.as_ref(), &job_token) {
                Ok(after) => after,
                Err(e) => return Err(e),
            };
            let req = pno_run::PredictRequest {
                x: &x,
                n,
                grid: &grid,
                n_samples,
                seed,
                batch,
                cancel: Some(job_token.flag()),
            };
            #[allow(unused_mut)]
            let mut pred = model.model.predict(&req, &device).map_err(job_failure)?;
            #[cfg(feature = "fault-injection")]
            crate::faults::after(after, &mut pred);
            check_finite(&model, pred, &x, &grid)
        }));
        let features = drift_ref.map(|r| r.features(&x, n, &grid));
        let digest = digest_input.then(|| crate::feedback::input_digest(&x, n));
        (
            r.unwrap_or(Err(JobError::Panicked)),
            t.elapsed(),
            features,
            digest,
        )
    });
    job.await.map_err(|_| ())
}

/// What a compute gives the handler: the prediction or the job's failure, the compute time, the
/// input's drift features and feedback digest; `Err(())` when the task itself failed.
type Computed = Result<
    (
        Result<pno_models::Predictive, JobError>,
        Duration,
        Option<Option<Vec<Vec<f64>>>>,
        Option<[u8; 32]>,
    ),
    (),
>;

/// A model error as a job failure (a cancelled prediction as cancelled).
fn job_failure(e: pno_run::RunError) -> JobError {
    match e {
        pno_run::RunError::Model(pno_models::ModelError::Cancelled) => JobError::Cancelled,
        e => JobError::Model(e),
    }
}

/// A prediction with non-finite values is a failure: the model's own when the input was finite
/// and in range.
fn check_finite(
    model: &LoadedVersion,
    pred: pno_models::Predictive,
    x: &[f32],
    grid: &[usize],
) -> Result<pno_models::Predictive, JobError> {
    let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
    if finite(&pred.mean) && finite(&pred.std) && finite(&pred.samples) {
        Ok(pred)
    } else {
        Err(JobError::NonFinite {
            in_range: in_range(model, x, grid.iter().product()),
        })
    }
}

/// Drive a dynamic batch that this request opened (`crate::batching`): wait for it to fill,
/// close it, queue once for the model's slots under the latest deadline of its requests, then
/// compute all its requests in one pass and answer each. Requests cancelled before the batch
/// starts are left out; a refused queue is every request's answer; one execution is counted.
async fn drive_batch(
    st: AppState,
    key: crate::batching::Key,
    group: Arc<crate::batching::Group>,
    m: Arc<LoadedVersion>,
    labels: String,
    limit: Duration,
    wait: Duration,
) {
    group.wait(wait).await;
    let entries: Vec<crate::batching::Entry> = st
        .batcher()
        .close(&key, &group)
        .into_iter()
        .filter(|e| !e.token.flag().load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    let Some(deadline) = entries.iter().map(|e| e.deadline).max() else {
        return;
    };
    let q0 = Instant::now();
    let slots = match queue(&st, &m.name, &labels, deadline, limit)
        .instrument(tracing::debug_span!("queue"))
        .await
    {
        Ok(s) => s,
        Err(e) => {
            for en in entries {
                let _ = en.tx.send(Err(e.clone()));
            }
            return;
        }
    };
    let metrics = st.metrics();
    metrics.observe(
        "pno_inference_queue_duration_seconds",
        labels.clone(),
        q0.elapsed().as_secs_f64(),
    );
    metrics.inc("pno_batches_total", labels.clone(), 1.0);
    metrics.inc(
        "pno_batched_requests_total",
        labels.clone(),
        entries.len() as f64,
    );
    metrics.inc("pno_inference_exec_count_total", labels, 1.0);
    let device = st.device().clone();
    let batch = st.config().limits.batch;
    let span = tracing::debug_span!("batch", requests = entries.len());
    let _ = tokio::task::spawn_blocking(move || {
        let _slots = slots;
        let _e = span.enter();
        let t = Instant::now();
        // Injected faults stay with their requests (test builds).
        #[cfg(feature = "fault-injection")]
        let mut afters = Vec::with_capacity(entries.len());
        let mut own: Vec<Option<Result<pno_models::Predictive, JobError>>> =
            Vec::with_capacity(entries.len());
        for _e in &entries {
            #[cfg(feature = "fault-injection")]
            {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    crate::faults::before(_e.fault.as_ref(), &_e.token)
                }));
                match r {
                    Ok(Ok(a)) => {
                        afters.push(a);
                        own.push(None);
                    }
                    Ok(Err(err)) => {
                        afters.push(crate::faults::After::Nothing);
                        own.push(Some(Err(err)));
                    }
                    Err(_) => {
                        afters.push(crate::faults::After::Nothing);
                        own.push(Some(Err(JobError::Panicked)));
                    }
                }
            }
            #[cfg(not(feature = "fault-injection"))]
            own.push(None);
        }
        let joint: Vec<usize> = (0..entries.len()).filter(|&i| own[i].is_none()).collect();
        let reqs: Vec<pno_run::PredictRequest<'_>> = joint
            .iter()
            .map(|&i| pno_run::PredictRequest {
                x: &entries[i].x,
                n: entries[i].n,
                grid: &key.grid,
                n_samples: key.n_samples,
                seed: entries[i].seed,
                batch,
                cancel: None,
            })
            .collect();
        let preds = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            m.model.predict_many(&reqs, &device)
        }));
        drop(reqs);
        match preds {
            Ok(preds) => {
                for (&i, p) in joint.iter().zip(preds) {
                    #[allow(unused_mut)]
                    let r = p.map_err(job_failure).and_then(|mut p| {
                        #[cfg(feature = "fault-injection")]
                        crate::faults::after(afters[i], &mut p);
                        check_finite(&m, p, &entries[i].x, &key.grid)
                    });
                    own[i] = Some(r);
                }
            }
            Err(_) => {
                for &i in &joint {
                    own[i] = Some(Err(JobError::Panicked));
                }
            }
        }
        let dt = t.elapsed();
        for (en, r) in entries.into_iter().zip(own) {
            let _ = en.tx.send(Ok((r.unwrap_or(Err(JobError::Panicked)), dt)));
        }
    })
    .await;
}

/// The answer to a failed compute job.
fn job_error(m: &LoadedVersion, e: JobError) -> ApiError {
    match e {
        JobError::Model(e) => ApiError::bad_request(format!("the model refused the input: {e}")),
        JobError::Cancelled => ApiError::unavailable("inference cancelled", 1),
        JobError::NonFinite { in_range: true } => ApiError::internal(format!(
            "model '{}' version {} produced non-finite values for a finite, in-range input",
            m.name, m.version
        ))
        .class(FailureClass::Persistent),
        JobError::NonFinite { in_range: false } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the output is not finite for this input, which lies more than {IN_RANGE_STDS} training standard deviations from the training mean"
            ),
        ),
        JobError::Panicked => {
            ApiError::internal("the model failed on this input (a panic was caught)")
        }
        JobError::Injected(class, msg) => {
            let e = if class == FailureClass::Transient {
                ApiError::unavailable(msg, 1)
            } else {
                ApiError::internal(msg)
            };
            e.class(class)
        }
    }
}

/// How the request was served, for the response parameters.
struct How {
    seed: u64,
    serving: Serving,
    fallback_from: Option<u64>,
}

/// The predicted fields, flat `[.., n, channels, points]`.
struct Fields<'a> {
    channels: usize,
    mean: &'a [f32],
    std: &'a [f32],
    samples: &'a [f32],
    quantiles: &'a [f32],
}

/// The response: the requested outputs in order, the parameters used (draws, seed, whether
/// degraded and why, the version fallen back from), JSON or binary as asked.
fn encode(
    m: &LoadedVersion,
    req: &InferRequest,
    how: &How,
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
            _ => (f.samples, vec![how.serving.samples]),
        };
        let mut shape = lead;
        shape.extend(&field);
        outs.push(OutputTensor {
            name: o.name.as_str(),
            shape,
            data,
            binary: o.binary,
        });
    }
    let mut params = json!({
        "n_samples": how.serving.samples,
        "seed": how.seed,
        "degraded": how.serving.degraded.is_some(),
    });
    if let Some((reason, mean_only)) = how.serving.degraded {
        params["requested_samples"] = req.n_samples.into();
        params["degrade_reason"] = reason.as_str().into();
        if mean_only {
            params["mean_only"] = true.into();
        }
    }
    if let Some(v) = how.fallback_from {
        params["fallback_from"] = v.to_string().into();
    }
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
