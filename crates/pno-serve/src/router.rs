//! The router: [`app`] joins three routers, each behind its own admission layers —
//!
//! - the health probes (no key, answered even while draining),
//! - the public routes (no key, refused while draining),
//! - the protected routes (drain, lockout, rate limits, authentication), in one group per role
//!   (reader < operator < admin) applied with `route_layer`, every route [`audited`],
//!
//! and answers anything else with a JSON 404 (behind the protected admission) or 405. Route
//! templates are named once, here; a request's [`Action`] and metrics class are looked up from
//! the template axum matched ([`MatchedPath`]).
//!
//! [`audited`]: crate::handlers::audited
//! [`Action`]: crate::routes::Action

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post};
use tower::ServiceBuilder;

use crate::admission;
use crate::auth::Role;
use crate::error::ApiError;
use crate::handlers::{self, admin, alerting, feedback, health, infer, model, repository};
use crate::repository::clip;
use crate::routes::*;
use crate::state::AppState;

/// The application: every route, behind its admission layers.
pub fn app(state: AppState) -> Router {
    let st = || state.clone();
    let probes = Router::new()
        .route(LIVE, get(health::live))
        .route(READY, get(health::ready))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(st(), admission::deadline));
    let public = Router::new()
        .route(SERVER, get(health::server_metadata))
        .route(OPENAPI, get(health::openapi))
        .route(METRICS, get(health::metrics))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(from_fn_with_state(st(), admission::refuse_while_draining))
                .layer(from_fn_with_state(st(), admission::deadline)),
        );
    let reader = Router::new()
        .route(MODEL, get(model::metadata))
        .route(MODEL_V, get(model::metadata))
        .route(MODEL_READY, get(model::ready))
        .route(MODEL_READY_V, get(model::ready))
        .route(STATS, get(model::stats))
        .route(STATS_V, get(model::stats))
        .route(INFER, post(infer::infer))
        .route(INFER_V, post(infer::infer))
        .route(CALIBRATION, get(feedback::calibration))
        .route_layer(from_fn_with_state(Role::Reader, admission::require));
    let operator = Router::new()
        .route(REPO_INDEX, post(repository::index))
        .route(REPO_LOAD, post(repository::load))
        .route(REPO_UNLOAD, post(repository::unload))
        .route(REPO_PIN, post(repository::pin))
        .route(FEEDBACK, post(feedback::feedback));
    #[cfg(feature = "fault-injection")]
    let operator = operator.route(
        FAULTS,
        axum::routing::put(handlers::faults::set)
            .get(handlers::faults::list)
            .delete(handlers::faults::clear),
    );
    let operator = operator.route_layer(from_fn_with_state(Role::Operator, admission::require));
    let admin = Router::new()
        .route(KEYS, get(admin::list_keys).post(admin::create_key))
        .route(KEY, delete(admin::revoke_key))
        .route(KEY_ROTATE, post(admin::rotate_key))
        .route(AUDIT_VERIFY, get(admin::verify_audit))
        .route(CONFIG_RELOAD, post(admin::reload_config))
        .route(HEALTH_DETAILS, get(health::details))
        .route(ALERTS, get(alerting::alerts))
        .route(SERIES, get(alerting::series))
        .route_layer(from_fn_with_state(Role::Admin, admission::require));
    let protected = reader
        .merge(operator)
        .merge(admin)
        .route_layer(from_fn_with_state(st(), handlers::audited))
        // Set after the route layers (it replaces the default fallback they wrapped): a wrong
        // method is a 405 with neither a role check nor an audit record.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(
            ServiceBuilder::new()
                .layer(from_fn_with_state(st(), admission::refuse_while_draining))
                .layer(from_fn_with_state(st(), admission::lockout))
                .layer(from_fn_with_state(st(), admission::limit_address))
                .layer(from_fn_with_state(st(), admission::authenticate))
                .layer(from_fn_with_state(st(), admission::deadline)),
        );
    Router::new()
        .merge(probes)
        .merge(public)
        .merge(protected)
        .layer(from_fn_with_state(st(), admission::envelope))
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {}",
        req.method(),
        clip(req.uri().path())
    ))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {} not allowed on {}",
            req.method(),
            clip(req.uri().path())
        ),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::body::Body;
    use axum::http::{Method, Request};
    use pno_models::burn::tensor::Device;
    use tower::ServiceExt;

    use super::*;
    use crate::ServeConfig;

    #[test]
    fn every_documented_route_has_an_action_unless_public() {
        for r in crate::openapi::ROUTES {
            let method = Method::from_bytes(r.method.to_uppercase().as_bytes()).unwrap();
            let a = action_of(&method, r.path);
            assert_eq!(a.is_none(), r.role == "public", "{} {}", r.method, r.path);
        }
        assert_eq!(action_of(&Method::GET, KEYS), Some(Action::KeysList));
        assert_eq!(action_of(&Method::POST, KEYS), Some(Action::KeysCreate));
    }

    /// An empty repository, a keys file without keys (so no anonymous role), an audit log.
    fn locked_state(dir: &std::path::Path) -> AppState {
        let mut cfg = ServeConfig {
            repository: dir.to_path_buf(),
            keys: Some(dir.join("keys.json")),
            ..ServeConfig::default()
        };
        cfg.audit.path = Some(dir.join("audit.log"));
        AppState::new(cfg, Device::flex()).unwrap()
    }

    async fn status(st: &AppState, method: &str, path: &str) -> u16 {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        app(st.clone())
            .oneshot(req)
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    #[tokio::test]
    async fn a_wrong_method_is_405_before_the_role_check_and_audited_once() {
        let dir = tempfile::tempdir().unwrap();
        let st = locked_state(dir.path());
        for (method, path) in [
            ("PUT", KEYS),
            ("GET", REPO_INDEX),
            ("DELETE", "/v2/models/m/infer"),
            ("POST", "/v2/models/m/versions/1/ready"),
        ] {
            assert_eq!(status(&st, method, path).await, 405, "{method} {path}");
        }
        assert_eq!(status(&st, "GET", KEYS).await, 401);
        assert_eq!(status(&st, "GET", "/no/route").await, 404);
        st.audit().unwrap().flush().unwrap();
        let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
        // Every refusal has one record: four 405s (class input, no role check ran), the 401
        // (security) and the 404 (input).
        let recs: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let got: Vec<(u64, &str, &str)> = recs
            .iter()
            .map(|r| {
                (
                    r["status"].as_u64().unwrap(),
                    r["action"].as_str().unwrap(),
                    r["class"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (405, "request", "input"),
                (405, "request", "input"),
                (405, "request", "input"),
                (405, "request", "input"),
                (401, "keys.list", "security"),
                (404, "request", "input"),
            ],
            "{log}"
        );
    }

    #[tokio::test]
    async fn draining_spares_only_the_health_probes() {
        let dir = tempfile::tempdir().unwrap();
        let st = locked_state(dir.path());
        st.start_drain();
        for (method, path, want) in [
            ("GET", LIVE, 200),
            ("POST", LIVE, 405),
            ("GET", READY, 503),
            ("GET", SERVER, 503),
            ("POST", METRICS, 503),
            ("GET", "/v2/models/m", 503),
            ("PUT", KEYS, 503),
            ("GET", "/no/route", 503),
        ] {
            assert_eq!(status(&st, method, path).await, want, "{method} {path}");
        }
    }
}
