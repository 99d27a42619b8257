//! The in-process monitor's admin views: `GET /v2/admin/alerts` (firing, pending and recently
//! resolved alerts, each detector's last judgement, the receivers' delivery counts) and
//! `GET /v2/admin/series` (the series kept, or one series' points).

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::ok_json;
use crate::error::ApiError;
use crate::state::{AppState, now_s};

/// `GET /v2/admin/alerts`, with each version's last drift verdict.
pub(crate) async fn alerts(State(st): State<AppState>) -> Response {
    let mut v = st.monitor().alerts_json(&st.config().alerting);
    let drift: Vec<_> = st
        .drift()
        .status()
        .into_iter()
        .map(|(model, version, verdict, skipped, incomparable, recent)| {
            json!({
                "model": model, "version": version, "recent": recent,
                "skipped": skipped, "incomparable": incomparable, "verdict": verdict,
            })
        })
        .collect();
    v["drift"] = json!(drift);
    ok_json(v)
}

/// The query of `GET /v2/admin/series`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeriesQuery {
    model: Option<String>,
    version: Option<String>,
    /// `1s` (default) or `1m`.
    resolution: Option<String>,
    /// Buckets (default 60, at most the ring's length).
    last: Option<u64>,
}

/// `GET /v2/admin/series[?model=M&version=V&resolution=1s|1m&last=N]`.
pub(crate) async fn series(
    State(st): State<AppState>,
    q: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError::bad_request(format!(
            "query: {} (expected model, version, resolution = 1s | 1m, last)",
            e.body_text()
        ))
    })?;
    let m = st.monitor();
    let Some(model) = q.model else {
        let series: Vec<_> = m
            .series_keys()
            .into_iter()
            .map(|(model, version)| json!({"model": model, "version": version}))
            .collect();
        return Ok(ok_json(
            json!({ "series": series, "resolutions": ["1s", "1m"] }),
        ));
    };
    let (res, cap) = match q.resolution.as_deref() {
        None | Some("1s") => (1, crate::alerting::series::SECONDS as u64),
        Some("1m") => (60, crate::alerting::series::MINUTES as u64),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "resolution: expected 1s or 1m, got {other:?}"
            )));
        }
    };
    let keys = m.series_keys();
    let version = match q.version {
        Some(v) => v,
        None => keys
            .iter()
            .filter(|(k, _)| *k == model)
            .filter_map(|(_, v)| v.parse::<u64>().ok())
            .max()
            .map(|v| v.to_string())
            .unwrap_or_default(),
    };
    if !keys.iter().any(|(k, v)| *k == model && *v == version) {
        return Err(ApiError::not_found(format!(
            "no series for model {model:?} version {version:?} (a version has one once it served a request)"
        )));
    }
    let last = q.last.unwrap_or(60).clamp(1, cap);
    Ok(ok_json(json!({
        "model": model,
        "version": version,
        "resolution_s": res,
        "points": m.points(&model, &version, res, last, now_s()),
    })))
}
