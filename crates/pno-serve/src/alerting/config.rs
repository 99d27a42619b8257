//! `[alerting]`: the evaluation window, the anomaly detectors' thresholds, threshold rules and
//! the webhook receivers. Validated by [`AlertingConfig::validate`], which names the key.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How bad an alert is; receivers take alerts at or above their `min_severity`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Worth a look soon.
    #[default]
    Warning,
    /// Worth waking someone.
    Critical,
}

impl Severity {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// A per-window signal of one model version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Inference requests per second.
    RequestRate,
    /// Fraction of requests that failed on the server's side (transient, persistent,
    /// internal); input and security refusals are the client's.
    ErrorRate,
    /// Median request latency (ms).
    LatencyP50,
    /// 99th-percentile request latency (ms).
    LatencyP99,
    /// Mean of the per-second maximum queue depth of the model.
    QueueDepth,
    /// Mean predictive spread (the mean standard deviation of the answers).
    Spread,
    /// The largest feature PSI of the input drift tests in the window (`[drift]`).
    DriftPsi,
}

impl Signal {
    /// Every signal, in a stable order.
    pub const ALL: [Signal; 7] = [
        Self::RequestRate,
        Self::ErrorRate,
        Self::LatencyP50,
        Self::LatencyP99,
        Self::QueueDepth,
        Self::Spread,
        Self::DriftPsi,
    ];
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestRate => "request_rate",
            Self::ErrorRate => "error_rate",
            Self::LatencyP50 => "latency_p50",
            Self::LatencyP99 => "latency_p99",
            Self::QueueDepth => "queue_depth",
            Self::Spread => "spread",
            Self::DriftPsi => "drift_psi",
        }
    }
    /// Judged only in windows with at least `min_requests` requests (per-request signals).
    pub fn needs_requests(self) -> bool {
        !matches!(self, Self::RequestRate | Self::QueueDepth | Self::DriftPsi)
    }
}

/// A threshold rule: `signal` above `above` (or below `below`) for `for_windows` windows in a
/// row fires `name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The alert's name (e.g. `HighErrorRate`).
    pub name: String,
    /// What it watches.
    pub signal: Signal,
    /// Fires when the window's value is above this.
    #[serde(default)]
    pub above: Option<f64>,
    /// Fires when the window's value is below this.
    #[serde(default)]
    pub below: Option<f64>,
    /// Windows in a row before it fires.
    #[serde(default = "one")]
    pub for_windows: u32,
    /// Its severity.
    #[serde(default)]
    pub severity: Severity,
    /// Only this model (default: every model).
    #[serde(default)]
    pub model: Option<String>,
    /// One line for whoever answers it.
    #[serde(default)]
    pub runbook: Option<String>,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

/// A webhook that alert notifications are POSTed to (Alertmanager's webhook payload,
/// `"version": "4"`), retried with jittered backoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Its name (in metrics and the admin listing).
    pub name: String,
    /// `http://` or `https://` URL.
    pub url: String,
    /// PEM CA certificates to trust for `https://` (default: the Mozilla roots).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Alerts below this severity are not sent here.
    #[serde(default)]
    pub min_severity: Severity,
    /// Also send resolve notifications.
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// Only alerts of these models (default: every model).
    #[serde(default)]
    pub models: Vec<String>,
}

/// In-process alerting for deployments without Prometheus: every second the server keeps, per
/// model version, a bucket of request count, failures by class, a latency histogram, queue
/// depth and predictive spread (1 s buckets for the last 10 minutes, 1 min buckets for the last
/// 6 hours); every `window_s` it judges the last window against a baseline learned from the
/// previous `baseline_windows` windows (median and MAD, a robust z-score) and against the
/// threshold `rules`. An anomaly for `for_windows` windows in a row fires an alert; `resolve_windows`
/// normal windows resolve it. Alerts are logged, audited, listed at `GET /v2/admin/alerts` and
/// routed to the `receivers`, grouped by model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    /// Keep the series and judge them.
    pub enabled: bool,
    /// Seconds per judged window.
    pub window_s: u64,
    /// Windows in the baseline.
    pub baseline_windows: usize,
    /// Judged windows a series needs before its anomalies count.
    pub warmup_windows: usize,
    /// Robust z-score above which a window is anomalous.
    pub z: f64,
    /// Anomalous windows in a row before an alert fires.
    pub for_windows: u32,
    /// Normal windows in a row before a firing alert resolves.
    pub resolve_windows: u32,
    /// Windows with fewer requests are not judged on per-request signals.
    pub min_requests: u64,
    /// A latency change smaller than this fraction of the baseline is never an anomaly.
    pub latency_tolerance: f64,
    /// An error-rate rise smaller than this (absolute) is never an anomaly.
    pub error_rate_tolerance: f64,
    /// A spread change smaller than this fraction of the baseline is never an anomaly.
    pub spread_tolerance: f64,
    /// A new group's first notification waits this long to gather the alerts that come with it.
    pub group_wait_s: u64,
    /// A group still firing is notified again after this long.
    pub repeat_s: u64,
    /// Threshold rules.
    pub rules: Vec<RuleConfig>,
    /// Where notifications go.
    pub receivers: Vec<ReceiverConfig>,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window_s: 10,
            baseline_windows: 60,
            warmup_windows: 12,
            z: 5.0,
            for_windows: 2,
            resolve_windows: 3,
            min_requests: 20,
            latency_tolerance: 0.5,
            error_rate_tolerance: 0.05,
            spread_tolerance: 0.25,
            group_wait_s: 5,
            repeat_s: 4 * 3600,
            rules: Vec::new(),
            receivers: Vec::new(),
        }
    }
}

/// A bad value: the dotted key, what was expected, what was found.
pub type Bad = (String, &'static str, String);

impl AlertingConfig {
    /// Check ranges and names; `Err` names the key.
    pub fn validate(&self) -> Result<(), Bad> {
        let bad = |k: &str, e: &'static str, g: String| Err((format!("alerting.{k}"), e, g));
        if self.window_s == 0 || self.window_s > 600 {
            return bad("window_s", "1 to 600 seconds", self.window_s.to_string());
        }
        if !(4..=10_000).contains(&self.baseline_windows) {
            return bad(
                "baseline_windows",
                "4 to 10000 windows",
                self.baseline_windows.to_string(),
            );
        }
        if self.warmup_windows < 3 || self.warmup_windows > self.baseline_windows {
            return bad(
                "warmup_windows",
                "at least 3 and at most baseline_windows",
                self.warmup_windows.to_string(),
            );
        }
        if !(self.z.is_finite() && self.z >= 1.0) {
            return bad("z", "a z-score of at least 1", self.z.to_string());
        }
        if self.for_windows == 0 {
            return bad("for_windows", "at least 1", "0".into());
        }
        if self.resolve_windows == 0 {
            return bad("resolve_windows", "at least 1", "0".into());
        }
        for (k, v) in [
            ("latency_tolerance", self.latency_tolerance),
            ("error_rate_tolerance", self.error_rate_tolerance),
            ("spread_tolerance", self.spread_tolerance),
        ] {
            if !(v.is_finite() && (0.0..=10.0).contains(&v)) {
                return bad(k, "a number in [0, 10]", v.to_string());
            }
        }
        if self.repeat_s < self.window_s {
            return bad("repeat_s", "at least window_s", self.repeat_s.to_string());
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let k = |f: &str| format!("rules[{i}].{f}");
            if !is_name(&r.name) {
                return bad(
                    &k("name"),
                    "letters, digits and _ (e.g. HighErrorRate)",
                    format!("{:?}", r.name),
                );
            }
            if matches!(
                r.name.as_str(),
                "LatencyAnomaly" | "ErrorRateAnomaly" | "SpreadAnomaly"
            ) {
                return bad(
                    &k("name"),
                    "a name not used by the anomaly detectors",
                    r.name.clone(),
                );
            }
            match (r.above, r.below) {
                (None, None) => return bad(&k("above"), "`above` or `below`", "neither".into()),
                (Some(a), Some(b)) => {
                    return bad(
                        &k("below"),
                        "only one of `above` and `below`",
                        format!("above = {a}, below = {b}"),
                    );
                }
                (Some(v), None) | (None, Some(v)) if !v.is_finite() => {
                    return bad(&k("above"), "a finite number", v.to_string());
                }
                _ => {}
            }
            if r.for_windows == 0 {
                return bad(&k("for_windows"), "at least 1", "0".into());
            }
            if !names.insert((r.name.clone(), r.model.clone())) {
                return bad(&k("name"), "a name used once per model", r.name.clone());
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.receivers.iter().enumerate() {
            let k = |f: &str| format!("receivers[{i}].{f}");
            if !is_name(&r.name) || !names.insert(r.name.clone()) {
                return bad(
                    &k("name"),
                    "a unique name of letters, digits, _ and -",
                    format!("{:?}", r.name),
                );
            }
            if let Err(why) = crate::webhook::Target::parse(&r.url) {
                return bad(&k("url"), "an http:// or https:// URL", why);
            }
            if r.ca.is_some() && !r.url.starts_with("https://") {
                return bad(&k("ca"), "an https:// url to trust it for", r.url.clone());
            }
        }
        Ok(())
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> AlertingConfig {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        AlertingConfig::default().validate().unwrap();
        for (text, key) in [
            ("window_s = 0", "alerting.window_s"),
            ("z = 0.5", "alerting.z"),
            ("warmup_windows = 100", "alerting.warmup_windows"),
            ("for_windows = 0", "alerting.for_windows"),
            ("latency_tolerance = -1", "alerting.latency_tolerance"),
            ("repeat_s = 1", "alerting.repeat_s"),
            (
                "[[rules]]\nname = \"X\"\nsignal = \"error_rate\"",
                "alerting.rules[0].above",
            ),
            (
                "[[rules]]\nname = \"X\"\nsignal = \"error_rate\"\nabove = 0.1\nbelow = 0.5",
                "alerting.rules[0].below",
            ),
            (
                "[[rules]]\nname = \"a b\"\nsignal = \"spread\"\nbelow = 1",
                "alerting.rules[0].name",
            ),
            (
                "[[rules]]\nname = \"LatencyAnomaly\"\nsignal = \"spread\"\nbelow = 1",
                "alerting.rules[0].name",
            ),
            (
                "[[receivers]]\nname = \"r\"\nurl = \"ftp://x\"",
                "alerting.receivers[0].url",
            ),
            (
                "[[receivers]]\nname = \"r\"\nurl = \"http://x\"\nca = \"ca.pem\"",
                "alerting.receivers[0].ca",
            ),
            (
                "[[receivers]]\nname = \"r\"\nurl = \"http://x\"\n[[receivers]]\nname = \"r\"\nurl = \"http://y\"",
                "alerting.receivers[1].name",
            ),
        ] {
            let err = parse(text).validate().unwrap_err();
            assert_eq!(err.0, key, "{text}: {err:?}");
        }
        // Unknown keys are refused by serde, naming them.
        let e = toml::from_str::<AlertingConfig>("windw_s = 3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("windw_s"), "{e}");
        let e = toml::from_str::<AlertingConfig>(
            "[[receivers]]\nname = \"r\"\nurl = \"http://x\"\nsend_resovled = true",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("send_resovled"), "{e}");
    }
}
