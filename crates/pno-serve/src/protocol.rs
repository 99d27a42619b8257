//! The Open Inference Protocol v2 inference request and response, in JSON and with Triton's
//! binary tensor data extension (`Inference-Header-Content-Length`; raw little-endian tensors
//! after the JSON header). Everything from the wire is checked here, before it reaches the model:
//! sizes, JSON depth, datatype, shape against the model's metadata, element count, finiteness
//! and FP32 range.

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::repository::clip;

/// The header that announces a binary body.
pub(crate) const HEADER_LENGTH: &str = "inference-header-content-length";

/// Output names a model offers.
pub(crate) const OUTPUTS: [&str; 4] = ["mean", "std", "quantiles", "samples"];

/// Quantile levels when `quantiles` is requested without `quantile_levels`.
pub(crate) const DEFAULT_LEVELS: [f64; 3] = [0.05, 0.5, 0.95];

/// What a request must satisfy, from the model's metadata and the server's limits.
#[derive(Debug, Clone)]
pub(crate) struct InputSpec {
    /// Input name.
    pub(crate) name: String,
    /// Channels.
    pub(crate) channels: usize,
    /// Training grid.
    pub(crate) grid: Vec<usize>,
    /// Accepted sizes per spatial dimension; None: exactly the training grid.
    pub(crate) resolution: Option<(usize, usize)>,
    /// Most inputs per request.
    pub(crate) max_batch: usize,
    /// Draws when not given.
    pub(crate) default_samples: usize,
    /// Most draws.
    pub(crate) max_samples: usize,
    /// Most output values (batch × draws × channels × points).
    pub(crate) max_sample_values: usize,
    /// Largest JSON header.
    pub(crate) max_json_bytes: usize,
    /// Deepest JSON nesting.
    pub(crate) max_json_depth: usize,
}

/// A requested output.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutputRequest {
    /// Name (one of [`OUTPUTS`]).
    pub(crate) name: String,
    /// Send as binary.
    pub(crate) binary: bool,
}

/// A validated inference request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InferRequest {
    /// Request id to echo.
    pub(crate) id: Option<String>,
    /// Inputs in the batch.
    pub(crate) n: usize,
    /// Spatial grid of the inputs.
    pub(crate) grid: Vec<usize>,
    /// Input values `[n, channels, points]`.
    pub(crate) x: Vec<f32>,
    /// Draws.
    pub(crate) n_samples: usize,
    /// Seed (None: the server picks one and echoes it).
    pub(crate) seed: Option<u64>,
    /// Quantile levels.
    pub(crate) levels: Vec<f64>,
    /// Deadline from the `timeout` parameter (µs).
    pub(crate) timeout_us: Option<u64>,
    /// The `degrade` parameter: false refuses a degraded answer (503 under pressure instead).
    pub(crate) degrade: Option<bool>,
    /// Outputs to send, in order.
    pub(crate) outputs: Vec<OutputRequest>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

/// Deepest nesting of arrays/objects in a JSON text (strings skipped); stops early past `max`.
pub(crate) fn json_depth(bytes: &[u8], max: usize) -> usize {
    let (mut depth, mut deepest, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_str {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > max {
                    return deepest;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn int_param(params: &Map<String, Value>, name: &str) -> Result<Option<u64>, ApiError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) => Ok(Some(v)),
            None => Err(bad(format!(
                "parameter '{name}' must be a non-negative integer, got {n}"
            ))),
        },
        Some(other) => Err(bad(format!(
            "parameter '{name}' must be a non-negative integer, got {}",
            kind(other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn levels_param(params: &Map<String, Value>) -> Result<Option<Vec<f64>>, ApiError> {
    let raw: Vec<f64> = match params.get("quantile_levels") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_f64())
            .collect::<Option<Vec<f64>>>()
            .ok_or_else(|| bad("parameter 'quantile_levels' must be numbers in (0, 1)"))?,
        // tritonclient parameters are scalars: accept "0.05,0.5,0.95" too.
        Some(Value::String(s)) => s
            .split(',')
            .map(|t| t.trim().parse::<f64>())
            .collect::<Result<Vec<f64>, _>>()
            .map_err(|_| {
                bad("parameter 'quantile_levels' must be comma-separated numbers in (0, 1)")
            })?,
        Some(Value::Number(n)) => vec![n.as_f64().unwrap_or(f64::NAN)],
        Some(other) => {
            return Err(bad(format!(
                "parameter 'quantile_levels' must be a list of numbers, got {}",
                kind(other)
            )));
        }
    };
    if raw.is_empty() || raw.len() > 99 {
        return Err(bad("parameter 'quantile_levels' must hold 1 to 99 levels"));
    }
    if let Some(q) = raw
        .iter()
        .find(|q| !(q.is_finite() && **q > 0.0 && **q < 1.0))
    {
        return Err(bad(format!(
            "parameter 'quantile_levels': levels must be in (0, 1), got {q}"
        )));
    }
    Ok(Some(raw))
}

fn bool_param(params: &Map<String, Value>, name: &str) -> Result<Option<bool>, ApiError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(bad(format!(
            "parameter '{name}' must be a boolean, got {}",
            kind(other)
        ))),
    }
}

fn params_of<'a>(
    v: Option<&'a Value>,
    what: &str,
) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(bad(format!(
            "{what} must be an object, got {}",
            kind(other)
        ))),
    }
}

fn number(v: &Value) -> Result<f32, ApiError> {
    let Value::Number(n) = v else {
        return Err(bad(format!("input data must be numbers, got {}", kind(v))));
    };
    let f = n
        .as_f64()
        .ok_or_else(|| bad("input data must be numbers"))?;
    if !f.is_finite() {
        return Err(bad("input data contains a non-finite value"));
    }
    if f.abs() > f64::from(f32::MAX) {
        return Err(bad(format!("input value {f} is out of FP32 range")));
    }
    Ok(f as f32)
}

/// Flatten flat or nested (row-major, exactly `shape`) JSON data.
fn flatten(data: &Value, shape: &[usize], count: usize) -> Result<Vec<f32>, ApiError> {
    let Value::Array(top) = data else {
        return Err(bad(format!(
            "input 'data' must be a (flat or nested) list of numbers, got {}",
            kind(data)
        )));
    };
    let mut out = Vec::with_capacity(count);
    if top.first().is_some_and(|v| v.is_array()) {
        fn walk(v: &Value, shape: &[usize], out: &mut Vec<f32>) -> Result<(), ApiError> {
            match (shape.split_first(), v) {
                (None, v) => {
                    out.push(number(v)?);
                    Ok(())
                }
                (Some((&d, rest)), Value::Array(a)) => {
                    if a.len() != d {
                        return Err(bad(format!(
                            "input 'data' is ragged or does not match its shape: a list of {} where {d} were expected",
                            a.len()
                        )));
                    }
                    a.iter().try_for_each(|e| walk(e, rest, out))
                }
                (Some(_), other) => Err(bad(format!(
                    "input 'data' is ragged or does not match its shape: {} where a list was expected",
                    kind(other)
                ))),
            }
        }
        walk(data, shape, &mut out)?;
    } else {
        if top.len() != count {
            return Err(bad(format!(
                "input 'data' holds {} values; shape {shape:?} needs {count}",
                top.len()
            )));
        }
        for v in top {
            out.push(number(v)?);
        }
    }
    Ok(out)
}

/// Split a body into its JSON header and binary part.
pub(crate) fn split_body<'a>(
    body: &'a [u8],
    header_len: Option<&str>,
) -> Result<(&'a [u8], &'a [u8]), ApiError> {
    match header_len {
        None => Ok((body, &[])),
        Some(h) => {
            let n: usize = h.trim().parse().map_err(|_| {
                bad(format!(
                    "Inference-Header-Content-Length must be an integer, got {:?}",
                    clip(h)
                ))
            })?;
            if n > body.len() {
                return Err(bad(format!(
                    "Inference-Header-Content-Length {n} exceeds the body ({} bytes)",
                    body.len()
                )));
            }
            Ok(body.split_at(n))
        }
    }
}

/// Parse and validate an inference request.
pub(crate) fn parse(
    spec: &InputSpec,
    json: &[u8],
    binary: &[u8],
) -> Result<InferRequest, ApiError> {
    if json.len() > spec.max_json_bytes {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "JSON part of the request is {} bytes; the limit is {}",
                json.len(),
                spec.max_json_bytes
            ),
        ));
    }
    let depth = json_depth(json, spec.max_json_depth);
    if depth > spec.max_json_depth {
        return Err(bad(format!(
            "JSON nesting deeper than {} levels",
            spec.max_json_depth
        )));
    }
    let req: Value = serde_json::from_slice(json).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let Value::Object(req) = req else {
        return Err(bad("the request must be a JSON object"));
    };
    let id = match req.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= 256 => Some(s.clone()),
        Some(Value::String(_)) => return Err(bad("'id' is longer than 256 characters")),
        Some(other) => return Err(bad(format!("'id' must be a string, got {}", kind(other)))),
    };
    let empty = Map::new();
    let params = params_of(req.get("parameters"), "'parameters'")?.unwrap_or(&empty);
    let n_samples = match int_param(params, "n_samples")? {
        None => spec.default_samples,
        Some(v) if v >= 1 && v <= spec.max_samples as u64 => v as usize,
        Some(v) => {
            return Err(bad(format!(
                "parameter 'n_samples' must be in [1, {}], got {v}",
                spec.max_samples
            )));
        }
    };
    let seed = int_param(params, "seed")?;
    let timeout_us = int_param(params, "timeout")?;
    let degrade = bool_param(params, "degrade")?;
    let levels_given = levels_param(params)?;
    let binary_default = bool_param(params, "binary_data_output")?.unwrap_or(false);

    // Inputs.
    let Some(Value::Array(inputs)) = req.get("inputs") else {
        return Err(bad("'inputs' must be a non-empty list"));
    };
    if inputs.len() != 1 {
        return Err(bad(format!(
            "expected exactly one input named '{}', got {} inputs",
            spec.name,
            inputs.len()
        )));
    }
    let Value::Object(input) = &inputs[0] else {
        return Err(bad("each input must be an object"));
    };
    match input.get("name") {
        Some(Value::String(s)) if *s == spec.name => {}
        Some(Value::String(s)) => {
            return Err(bad(format!(
                "unknown input '{}'; the model's input is '{}'",
                clip(s),
                spec.name
            )));
        }
        _ => return Err(bad("input 'name' must be a string")),
    }
    match input.get("datatype") {
        Some(Value::String(s)) if s == "FP32" => {}
        Some(Value::String(s)) => {
            return Err(bad(format!(
                "input '{}': datatype must be FP32, got {}",
                spec.name,
                clip(s)
            )));
        }
        _ => return Err(bad("input 'datatype' must be a string")),
    }
    let shape: Vec<u64> = match input.get("shape") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_u64())
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(|| bad("input 'shape' must be a list of non-negative integers"))?,
        _ => return Err(bad("input 'shape' must be a list of non-negative integers")),
    };
    let rank = 2 + spec.grid.len();
    let expected = || {
        let mut s = format!("[1..={}, {}", spec.max_batch, spec.channels);
        for g in &spec.grid {
            match spec.resolution {
                None => s.push_str(&format!(", {g}")),
                Some((lo, hi)) => s.push_str(&format!(", {lo}..={hi}")),
            }
        }
        s + "]"
    };
    let shape_err = || {
        bad(format!(
            "input '{}': shape must be {}, got {shape:?}",
            spec.name,
            expected()
        ))
    };
    if shape.len() != rank {
        return Err(shape_err());
    }
    let n = shape[0];
    if n == 0 || n > spec.max_batch as u64 || shape[1] != spec.channels as u64 {
        return Err(shape_err());
    }
    let mut grid = Vec::with_capacity(spec.grid.len());
    for (i, &d) in shape[2..].iter().enumerate() {
        let ok = match spec.resolution {
            None => d == spec.grid[i] as u64,
            Some((lo, hi)) => d >= lo as u64 && d <= hi as u64,
        };
        if !ok {
            return Err(shape_err());
        }
        grid.push(d as usize);
    }
    let n = n as usize;
    let points: usize = grid.iter().product();
    let count = n * spec.channels * points;
    let work = (n as u128) * (n_samples as u128) * (spec.channels as u128) * (points as u128);
    if work > spec.max_sample_values as u128 {
        return Err(bad(format!(
            "request would produce {work} sampled values (batch × n_samples × channels × points); the limit is {}",
            spec.max_sample_values
        )));
    }
    let in_params = params_of(input.get("parameters"), "input 'parameters'")?;
    let bin_size = match in_params {
        Some(p) => int_param(p, "binary_data_size")?,
        None => None,
    };
    let x = match bin_size {
        Some(size) => {
            if input.get("data").is_some() {
                return Err(bad("input has both 'data' and binary_data_size"));
            }
            let want = (count * 4) as u64;
            if size != want {
                return Err(bad(format!(
                    "input '{}': binary_data_size {size} does not match shape {shape:?} FP32 ({want} bytes)",
                    spec.name
                )));
            }
            if binary.len() as u64 != size {
                return Err(bad(format!(
                    "binary part of the body is {} bytes; the inputs announce {size}",
                    binary.len()
                )));
            }
            let mut x = Vec::with_capacity(count);
            for c in binary.chunks_exact(4) {
                let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                if !v.is_finite() {
                    return Err(bad("input data contains a non-finite value"));
                }
                x.push(v);
            }
            x
        }
        None => {
            if !binary.is_empty() {
                return Err(bad(
                    "the body has a binary part but no input announces binary_data_size",
                ));
            }
            let data = input
                .get("data")
                .ok_or_else(|| bad(format!("input '{}' has no 'data'", spec.name)))?;
            let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
            flatten(data, &dims, count)?
        }
    };

    // Outputs.
    let mut outputs = Vec::new();
    match req.get("outputs") {
        None | Some(Value::Null) => {
            outputs.push(OutputRequest {
                name: "mean".into(),
                binary: binary_default,
            });
            outputs.push(OutputRequest {
                name: "std".into(),
                binary: binary_default,
            });
            if levels_given.is_some() {
                outputs.push(OutputRequest {
                    name: "quantiles".into(),
                    binary: binary_default,
                });
            }
        }
        Some(Value::Array(a)) => {
            if a.is_empty() || a.len() > OUTPUTS.len() {
                return Err(bad("'outputs' must list 1 to 4 outputs"));
            }
            for o in a {
                let Value::Object(o) = o else {
                    return Err(bad("'outputs' must be a list of {\"name\": ...}"));
                };
                let name = match o.get("name") {
                    Some(Value::String(s)) if OUTPUTS.contains(&s.as_str()) => s.clone(),
                    Some(Value::String(s)) => {
                        return Err(bad(format!(
                            "unknown output '{}'; the model has {OUTPUTS:?}",
                            clip(s)
                        )));
                    }
                    _ => return Err(bad("output 'name' must be a string")),
                };
                if outputs.iter().any(|r: &OutputRequest| r.name == name) {
                    return Err(bad(format!("output '{name}' requested twice")));
                }
                let binary = match params_of(o.get("parameters"), "output 'parameters'")? {
                    Some(p) => bool_param(p, "binary_data")?.unwrap_or(binary_default),
                    None => binary_default,
                };
                outputs.push(OutputRequest { name, binary });
            }
        }
        Some(other) => {
            return Err(bad(format!(
                "'outputs' must be a list, got {}",
                kind(other)
            )));
        }
    }
    let levels = levels_given.unwrap_or_else(|| DEFAULT_LEVELS.to_vec());
    Ok(InferRequest {
        id,
        n,
        grid,
        x,
        n_samples,
        seed,
        levels,
        timeout_us,
        degrade,
        outputs,
    })
}

/// One output tensor of a response.
#[derive(Debug, Clone)]
pub(crate) struct OutputTensor<'a> {
    /// Name.
    pub(crate) name: &'a str,
    /// Shape.
    pub(crate) shape: Vec<usize>,
    /// Values.
    pub(crate) data: &'a [f32],
    /// Send as binary.
    pub(crate) binary: bool,
}

/// Encode a response: JSON, or a JSON header followed by binary tensors. Returns the body and,
/// when binary, the JSON header length.
pub(crate) fn encode(
    model: &str,
    version: &str,
    id: Option<&str>,
    parameters: &Value,
    outputs: &[OutputTensor<'_>],
) -> (Vec<u8>, Option<usize>) {
    let bytes: usize = outputs.iter().map(|o| o.data.len() * 12).sum();
    let mut out: Vec<u8> = Vec::with_capacity(bytes + 256);
    out.extend_from_slice(b"{\"model_name\":");
    push_json(&mut out, &Value::String(model.into()));
    out.extend_from_slice(b",\"model_version\":");
    push_json(&mut out, &Value::String(version.into()));
    if let Some(id) = id {
        out.extend_from_slice(b",\"id\":");
        push_json(&mut out, &Value::String(id.into()));
    }
    out.extend_from_slice(b",\"parameters\":");
    push_json(&mut out, parameters);
    out.extend_from_slice(b",\"outputs\":[");
    let mut any_binary = false;
    for (i, o) in outputs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        push_json(&mut out, &Value::String(o.name.into()));
        out.extend_from_slice(b",\"datatype\":\"FP32\",\"shape\":");
        push_json(&mut out, &serde_json::json!(o.shape));
        if o.binary {
            any_binary = true;
            out.extend_from_slice(b",\"parameters\":{\"binary_data_size\":");
            out.extend_from_slice((o.data.len() * 4).to_string().as_bytes());
            out.extend_from_slice(b"}}");
        } else {
            out.extend_from_slice(b",\"data\":[");
            let mut buf = ryu_like::Buffer::default();
            for (j, v) in o.data.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(buf.format(*v));
            }
            out.extend_from_slice(b"]}");
        }
    }
    out.extend_from_slice(b"]}");
    if !any_binary {
        return (out, None);
    }
    let header = out.len();
    for o in outputs.iter().filter(|o| o.binary) {
        for v in o.data {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    (out, Some(header))
}

fn push_json(out: &mut Vec<u8>, v: &Value) {
    // Serialising a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// Shortest round-trip formatting of finite f32 values (non-finite values never reach here:
/// responses are checked for finiteness first).
mod ryu_like {
    #[derive(Default)]
    pub(super) struct Buffer {
        s: String,
    }
    impl Buffer {
        pub(super) fn format(&mut self, v: f32) -> &[u8] {
            use std::fmt::Write;
            self.s.clear();
            let _ = write!(self.s, "{v:?}");
            self.s.as_bytes()
        }
    }
}
