//! The OpenAPI 3.1 document served at `/v2/openapi.json`, generated from [`ROUTES`], the table
//! the router is tested against.

use serde_json::{Map, Value, json};

/// One documented route.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    /// HTTP method (lower case).
    pub method: &'static str,
    /// Path with `{param}`s.
    pub path: &'static str,
    /// Summary.
    pub summary: &'static str,
    /// Role needed (`public`, `reader`, `operator`, `admin`).
    pub role: &'static str,
    /// Statuses it can answer besides 200.
    pub errors: &'static [u16],
}

const AUTH: &[u16] = &[401, 403, 429];

/// Every route of the server.
pub const ROUTES: &[RouteDoc] = &[
    RouteDoc {
        method: "get",
        path: "/v2/health/live",
        summary: "Server liveness",
        role: "public",
        errors: &[],
    },
    RouteDoc {
        method: "get",
        path: "/v2/health/ready",
        summary: "Server readiness: a model is loaded, not draining, not overloaded",
        role: "public",
        errors: &[503],
    },
    RouteDoc {
        method: "get",
        path: "/v2",
        summary: "Server metadata",
        role: "public",
        errors: &[503],
    },
    RouteDoc {
        method: "get",
        path: "/v2/openapi.json",
        summary: "This document",
        role: "public",
        errors: &[],
    },
    RouteDoc {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics",
        role: "public",
        errors: &[],
    },
    RouteDoc {
        method: "get",
        path: "/v2/models/{name}",
        summary: "Model metadata (newest loaded version)",
        role: "reader",
        errors: &[400, 404],
    },
    RouteDoc {
        method: "get",
        path: "/v2/models/{name}/versions/{version}",
        summary: "Model metadata of a version",
        role: "reader",
        errors: &[400, 404],
    },
    RouteDoc {
        method: "get",
        path: "/v2/models/{name}/ready",
        summary: "Model readiness",
        role: "reader",
        errors: &[404],
    },
    RouteDoc {
        method: "get",
        path: "/v2/models/{name}/versions/{version}/ready",
        summary: "Model version readiness (503 while its circuit breaker is open)",
        role: "reader",
        errors: &[404],
    },
    RouteDoc {
        method: "post",
        path: "/v2/admin/config/reload",
        summary: "Reload the config file: validate, load changed models, smoke-test, swap; a rejected reload names why and the previous config keeps serving",
        role: "admin",
        errors: &[400, 409],
    },
    RouteDoc {
        method: "get",
        path: "/v2/models/{name}/stats",
        summary: "Extension: health of each served version (circuit breaker state, failure and slow-call rates, latency EWMA) and the model's bulkhead",
        role: "reader",
        errors: &[404],
    },
    RouteDoc {
        method: "get",
        path: "/v2/models/{name}/versions/{version}/stats",
        summary: "Extension: health of one version (circuit breaker, latency EWMA) and the model's bulkhead",
        role: "reader",
        errors: &[404],
    },
    RouteDoc {
        method: "post",
        path: "/v2/models/{name}/infer",
        summary: "Inference (JSON or binary tensor data); parameters n_samples, seed, quantile_levels, timeout (µs), binary_data_output",
        role: "reader",
        errors: &[400, 404, 408, 413, 415, 422, 500, 503, 504],
    },
    RouteDoc {
        method: "post",
        path: "/v2/models/{name}/versions/{version}/infer",
        summary: "Inference on a version",
        role: "reader",
        errors: &[400, 404, 408, 413, 415, 422, 500, 503, 504],
    },
    RouteDoc {
        method: "post",
        path: "/v2/repository/index",
        summary: "Models and versions in the repository with their state",
        role: "operator",
        errors: &[],
    },
    RouteDoc {
        method: "post",
        path: "/v2/repository/models/{name}/load",
        summary: "Load (or reload) a model by its version policy, or {\"parameters\": {\"version\": N}}; a failing version is refused and the loaded ones keep serving",
        role: "operator",
        errors: &[400, 404],
    },
    RouteDoc {
        method: "post",
        path: "/v2/repository/models/{name}/unload",
        summary: "Unload every version of a model",
        role: "operator",
        errors: &[404],
    },
    RouteDoc {
        method: "get",
        path: "/v2/admin/keys",
        summary: "List API keys (ids and roles, never the keys)",
        role: "admin",
        errors: &[],
    },
    RouteDoc {
        method: "post",
        path: "/v2/admin/keys",
        summary: "Create an API key ({\"role\": ..., \"expires_in_s\": optional seconds, \"models\": optional [names]}); the key is returned once",
        role: "admin",
        errors: &[400, 409],
    },
    RouteDoc {
        method: "delete",
        path: "/v2/admin/keys/{id}",
        summary: "Revoke an API key",
        role: "admin",
        errors: &[404],
    },
    RouteDoc {
        method: "post",
        path: "/v2/admin/keys/{id}/rotate",
        summary: "Rotate an API key ({\"grace_s\": N}): a new secret, returned once; the old one works N more seconds",
        role: "admin",
        errors: &[400, 404, 409],
    },
    RouteDoc {
        method: "get",
        path: "/v2/admin/health/details",
        summary: "Readiness and every dependency the scheduled health checks track (audit log, disk, repository, memory, each version's smoke inference): state, critical, last check, last success, last error",
        role: "admin",
        errors: &[],
    },
    RouteDoc {
        method: "post",
        path: "/v2/repository/models/{name}/pin",
        summary: "Pin the version that serves requests naming none ({\"version\": N}), or unpin ({\"version\": null}); a pin wins over an automated rollback",
        role: "operator",
        errors: &[400, 404, 409],
    },
    RouteDoc {
        method: "post",
        path: "/v2/models/{name}/feedback",
        summary: "Ground truth for a prediction: {\"request_id\": the X-Request-Id of the inference answer, \"truth\": {\"shape\": [n, c, x, y], \"data\": [...]}} (physical units, the prediction's shape); or {\"input\": the inference input again ({\"shape\", \"data\"}, the same values), \"truth\": …} instead of the id (the newest prediction from exactly that input); joined with the kept mean and std, it feeds the version's online calibration. 400: neither or both of request_id and input; 404: no such prediction kept; 410: older than feedback.ttl_s; 400: wrong shape or a non-finite value",
        role: "operator",
        errors: &[400, 404, 409, 410, 413],
    },
    RouteDoc {
        method: "get",
        path: "/v2/models/{name}/calibration",
        summary: "Online calibration per version from feedback: functions joined, coverage of mean ± z·std at each served level with a one-sided binomial test against nominal (points thinned per function), collapse verdicts, mean CRPS, PIT histogram",
        role: "reader",
        errors: &[404],
    },
    RouteDoc {
        method: "get",
        path: "/v2/admin/alerts",
        summary: "In-process alerts: firing, pending and recently resolved (name, severity, model, version, signal, summary, runbook, times), each anomaly detector's last judgement (value, baseline median, robust scale, z) and each receiver's delivery counts",
        role: "admin",
        errors: &[],
    },
    RouteDoc {
        method: "get",
        path: "/v2/admin/series",
        summary: "In-memory time series: without a query the (model, version) series kept; with ?model=M[&version=V][&resolution=1s|1m][&last=N] the last N buckets (requests, failures by class, request rate, error rate, p50/p99 latency, queue depth, spread)",
        role: "admin",
        errors: &[400, 404],
    },
    RouteDoc {
        method: "get",
        path: "/v2/admin/audit/verify",
        summary: "Verify the audit log's hash chain",
        role: "admin",
        errors: &[404],
    },
];

fn reason(code: u16) -> &'static str {
    axum::http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error")
}

/// The document.
pub(crate) fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let mut responses = Map::new();
        responses.insert(
            "200".into(),
            json!({"description": "OK", "content": {"application/json": {}}}),
        );
        let mut codes: Vec<u16> = r.errors.to_vec();
        if r.role != "public" {
            codes.extend(AUTH);
        }
        codes.extend([404, 503]);
        codes.sort_unstable();
        codes.dedup();
        for c in codes {
            responses.insert(
                c.to_string(),
                json!({"description": reason(c), "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
            );
        }
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": r.summary,
            "parameters": params,
            "responses": responses,
            "x-role": r.role,
        });
        if r.role != "public" {
            op["security"] = json!([{"bearer": []}]);
        }
        if r.method == "post" && r.path.ends_with("/infer") {
            op["requestBody"] = json!({"required": true, "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}},
                "application/octet-stream": {"description": "Binary tensor data extension: JSON header (length in Inference-Header-Content-Length) followed by raw little-endian tensors"}
            }});
        }
        let item = paths
            .entry(r.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        item[r.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "pno-serve", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Open Inference Protocol v2 (KServe v2) REST API with Triton's binary tensor data extension, for probabilistic neural operators."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "class"], "properties": {
                    "error": {"type": "string"},
                    "class": {"type": "string", "enum": ["input", "security", "transient", "persistent", "internal"],
                              "description": "Failure class: the caller's fault (input), auth and limits (security), may succeed on retry (transient, with Retry-After), the model's fault (persistent), a bug (internal)"},
                    "breaker": {"type": "string", "enum": ["open"], "description": "Present when the version's circuit breaker refused the request"}}},
                "InferenceRequest": {"type": "object", "required": ["inputs"], "properties": {
                    "id": {"type": "string"},
                    "parameters": {"type": "object", "properties": {
                        "n_samples": {"type": "integer", "minimum": 1},
                        "seed": {"type": "integer", "minimum": 0},
                        "quantile_levels": {"oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}]},
                        "timeout": {"type": "integer", "description": "µs"},
                        "degrade": {"type": "boolean", "description": "false: under pressure answer 503 instead of fewer draws (default true)"},
                        "binary_data_output": {"type": "boolean"}}},
                    "inputs": {"type": "array", "items": {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
                        "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
                        "datatype": {"type": "string", "enum": ["FP32"]}, "data": {"type": "array"},
                        "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer"}}}}}},
                    "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string", "enum": ["mean", "std", "quantiles", "samples"]},
                        "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}}}}}}}
            }
        }
    })
}
