//! In-process alerting and anomaly detection, for deployments without Prometheus (and beside
//! it): windowed time series of every model version ([`series`]), anomaly detectors against a
//! learned baseline ([`detect`]), threshold rules, the alert book with its states and
//! deduplication ([`book`]), and grouped, routed webhook notifications ([`notify`]).
//! [`Monitor`] ties them together; the server's clock (`monitor` in the server) calls
//! [`Monitor::tick`] every second.

pub mod book;
pub mod config;
pub mod detect;
pub mod notify;
pub mod series;

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Value, json};

use self::book::{Book, Change, Observation};
pub use self::config::{AlertingConfig, ReceiverConfig, RuleConfig, Severity, Signal};
use self::detect::{Baseline, DETECTORS, Judgement};
use self::notify::{Dispatcher, Grouper, Notification, OnOutcome};
use self::series::{Finished, Store};

type Key = (String, String, Signal);

#[derive(Debug, Default)]
struct Engine {
    baselines: BTreeMap<Key, Baseline>,
    last: BTreeMap<Key, Judgement>,
    book: Book,
    grouper: Grouper,
    /// The end of the last judged window (unix s).
    judged_to: u64,
    window_s: u64,
}

/// The series, the detectors, the alerts and the receivers of one server.
#[derive(Debug, Default)]
pub struct Monitor {
    store: Mutex<Store>,
    engine: Mutex<Engine>,
    dispatch: Mutex<Option<Dispatcher>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a tick decided: alerts that changed and notifications handed to receivers.
#[derive(Debug, Default)]
pub struct Tick {
    /// Alerts that fired or resolved.
    pub changes: Vec<Change>,
    /// Notifications due, and per receiver whether it was queued.
    pub sent: Vec<(Notification, Vec<(String, bool)>)>,
}

fn what(signal: Signal) -> (&'static str, &'static str) {
    match signal {
        Signal::RequestRate => ("request rate", "/s"),
        Signal::ErrorRate => ("server-side error rate", ""),
        Signal::LatencyP50 => ("median latency", " ms"),
        Signal::LatencyP99 => ("p99 latency", " ms"),
        Signal::QueueDepth => ("queue depth", ""),
        Signal::Spread => ("mean predictive spread", ""),
        Signal::DriftPsi => ("largest input drift PSI", ""),
    }
}

const RUNBOOK: [(&str, &str); 3] = [
    (
        "LatencyAnomaly",
        "compare compute and queue time in /metrics; look for a noisy neighbour, a new version or a bigger request mix",
    ),
    (
        "ErrorRateAnomaly",
        "read the failure classes in /metrics and the log; a persistent class means the version is broken: unload it or roll back",
    ),
    (
        "SpreadAnomaly",
        "the model's uncertainty moved: check the inputs for drift and the version for a bad promotion",
    ),
];

impl Monitor {
    /// Build with receivers (their delivery tasks start on the current runtime).
    pub fn new(cfg: &AlertingConfig, on_outcome: OnOutcome) -> crate::Result<Self> {
        let m = Self::default();
        if !cfg.receivers.is_empty() {
            *lock(&m.dispatch) = Some(Dispatcher::start(&cfg.receivers, on_outcome)?);
        }
        Ok(m)
    }

    /// Record a finished inference request of `model`/`version` at unix second `now`.
    pub fn record(&self, model: &str, version: &str, now: u64, r: Finished) {
        lock(&self.store).record(model, version, now, r);
    }

    /// Record `model`'s queue depth at `now`.
    pub fn sample_queue(&self, model: &str, now: u64, depth: usize) {
        lock(&self.store).sample_queue(model, now, depth);
    }

    /// Once a second: judge the window that ended (when one did), update the alerts, retire
    /// those of versions no longer `loaded`, and route the notifications due. The receivers are
    /// rebuilt when the configuration's differ from theirs (a failure keeps the old ones and is
    /// returned).
    pub fn tick(
        &self,
        cfg: &AlertingConfig,
        now: u64,
        loaded: &dyn Fn(&str, &str) -> bool,
        on_outcome: &OnOutcome,
    ) -> (Tick, Option<crate::ServeError>) {
        let mut out = Tick::default();
        let mut rebuild_err = None;
        {
            let mut d = lock(&self.dispatch);
            let have = d.as_ref().map(Dispatcher::built_for).unwrap_or_default();
            if have != cfg.receivers {
                match Dispatcher::start(&cfg.receivers, on_outcome.clone()) {
                    Ok(n) => *d = (!cfg.receivers.is_empty()).then_some(n),
                    Err(e) => rebuild_err = Some(e),
                }
            }
        }
        if !cfg.enabled {
            return (out, rebuild_err);
        }
        lock(&self.store).retain(loaded);
        let mut e = lock(&self.engine);
        if e.window_s != cfg.window_s {
            // Windows of another length are another baseline.
            e.baselines.clear();
            e.last.clear();
            e.window_s = cfg.window_s;
            e.judged_to = 0;
        }
        // A window [end − w, end) is judged one second after it ends (late records land).
        let w = cfg.window_s;
        let end = now.saturating_sub(1) / w * w;
        if end > e.judged_to && end >= w {
            e.judged_to = end;
            let observations = self.judge(&mut e, cfg, end - w, end);
            for o in observations {
                if let Some(c) = e.book.observe(o, now) {
                    out.changes.push(c);
                }
            }
        }
        let retired = e.book.retire(|m, v| !loaded(m, v), now);
        e.baselines.retain(|(m, v, _), _| loaded(m, v));
        e.last.retain(|(m, v, _), _| loaded(m, v));
        out.changes.extend(retired);
        let Engine { book, grouper, .. } = &mut *e;
        for c in &out.changes {
            grouper.changed(c, now);
        }
        let due = grouper.due(book, now, cfg);
        drop(e);
        let mut d = lock(&self.dispatch);
        for n in due {
            let routed = d
                .as_mut()
                .map(|d| d.send(&n, on_outcome))
                .unwrap_or_default();
            out.sent.push((n, routed));
        }
        (out, rebuild_err)
    }

    fn judge(&self, e: &mut Engine, cfg: &AlertingConfig, from: u64, to: u64) -> Vec<Observation> {
        let store = lock(&self.store);
        let mut out = Vec::new();
        for (model, version) in store.keys() {
            let Some(sum) = store.summary(&model, &version, from, to) else {
                continue;
            };
            let enough = sum.requests >= cfg.min_requests;
            for (signal, name, severity) in DETECTORS {
                if !enough {
                    continue;
                }
                let Some(x) = sum.value(signal) else { continue };
                let key = (model.clone(), version.clone(), signal);
                let Some(j) =
                    e.baselines
                        .entry(key.clone())
                        .or_default()
                        .judge(signal, x, sum.requests, cfg)
                else {
                    continue;
                };
                e.last.insert(key, j);
                let (label, unit) = what(signal);
                out.push(Observation {
                    name: name.into(),
                    severity,
                    model: model.clone(),
                    version: version.clone(),
                    signal: signal.as_str(),
                    bad: j.anomalous,
                    value: x,
                    reference: j.median,
                    summary: format!(
                        "{model} v{version}: {label} {x:.4}{unit} against a baseline of {:.4}{unit} (robust z {:.1}) over the last {}s",
                        j.median, j.z, cfg.window_s
                    ),
                    runbook: RUNBOOK
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map_or("", |(_, r)| r)
                        .to_string(),
                    for_windows: cfg.for_windows,
                    resolve_windows: cfg.resolve_windows,
                });
            }
            for r in &cfg.rules {
                if r.model.as_ref().is_some_and(|m| *m != model) {
                    continue;
                }
                if r.signal.needs_requests() && !enough {
                    continue;
                }
                let Some(x) = sum.value(r.signal) else {
                    continue;
                };
                let (bad, threshold, cmp) = match (r.above, r.below) {
                    (Some(a), _) => (x > a, a, "above"),
                    (None, Some(b)) => (x < b, b, "below"),
                    (None, None) => continue,
                };
                let (label, unit) = what(r.signal);
                out.push(Observation {
                    name: r.name.clone(),
                    severity: r.severity,
                    model: model.clone(),
                    version: version.clone(),
                    signal: r.signal.as_str(),
                    bad,
                    value: x,
                    reference: threshold,
                    summary: format!(
                        "{model} v{version}: {label} {x:.4}{unit}, {cmp} the rule's {threshold}{unit} over the last {}s",
                        cfg.window_s
                    ),
                    runbook: r.runbook.clone().unwrap_or_default(),
                    for_windows: r.for_windows,
                    resolve_windows: cfg.resolve_windows,
                });
            }
        }
        out
    }

    /// Take a verdict from a detector outside this module (input drift): the same book,
    /// grouping and routing as the built-in ones.
    pub fn observe(&self, o: Observation, now: u64) -> Option<Change> {
        let mut e = lock(&self.engine);
        let c = e.book.observe(o, now);
        if let Some(c) = &c {
            e.grouper.changed(c, now);
        }
        c
    }

    /// Firing alerts by (name, severity), for `/metrics`.
    pub fn firing_counts(&self) -> BTreeMap<(String, Severity), usize> {
        let e = lock(&self.engine);
        let mut out = BTreeMap::new();
        for a in e.book.active() {
            if a.status == book::Status::Firing {
                *out.entry((a.name.clone(), a.severity)).or_default() += 1;
            }
        }
        out
    }

    /// The last robust z-score of every detector, for `/metrics`: (model, version, signal, z).
    pub fn scores(&self) -> Vec<(String, String, &'static str, f64)> {
        let e = lock(&self.engine);
        e.last
            .iter()
            .map(|((m, v, s), j)| (m.clone(), v.clone(), s.as_str(), j.z))
            .collect()
    }

    /// The admin listing: alerts by state, the detectors' last judgements and the receivers.
    pub fn alerts_json(&self, cfg: &AlertingConfig) -> Value {
        let e = lock(&self.engine);
        let (mut firing, mut pending) = (Vec::new(), Vec::new());
        for a in e.book.active() {
            if a.status == book::Status::Firing {
                firing.push(a);
            } else {
                pending.push(a);
            }
        }
        let resolved: Vec<_> = e.book.resolved().rev().collect();
        let detectors: Vec<Value> = e
            .last
            .iter()
            .map(|((m, v, s), j)| {
                json!({
                    "model": m, "version": v, "signal": s.as_str(),
                    "windows": e.baselines.get(&(m.clone(), v.clone(), *s)).map_or(0, Baseline::len),
                    "value": j.value, "median": j.median, "scale": j.scale, "z": j.z,
                    "anomalous": j.anomalous,
                })
            })
            .collect();
        let receivers = lock(&self.dispatch)
            .as_ref()
            .map(Dispatcher::status)
            .unwrap_or_default();
        json!({
            "enabled": cfg.enabled,
            "window_s": cfg.window_s,
            "judged_to": e.judged_to,
            "firing": firing,
            "pending": pending,
            "resolved": resolved,
            "detectors": detectors,
            "receivers": receivers,
        })
    }

    /// Record a drift test's largest feature PSI of `model`/`version` at `now`.
    pub fn record_drift(&self, model: &str, version: &str, now: u64, psi: f64) {
        lock(&self.store).record_drift(model, version, now, psi);
    }

    /// The summary of `model`/`version` over `[from, to)`.
    pub fn summary(
        &self,
        model: &str,
        version: &str,
        from: u64,
        to: u64,
    ) -> Option<series::Summary> {
        lock(&self.store).summary(model, version, from, to)
    }

    /// The series kept (model, version).
    pub fn series_keys(&self) -> Vec<(String, String)> {
        lock(&self.store).keys()
    }

    /// The last `last` points of a series at `res` seconds (1 or 60).
    pub fn points(&self, model: &str, version: &str, res: u64, last: u64, now: u64) -> Value {
        json!(lock(&self.store).points(model, version, res, last, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_latency_shift_fires_within_the_windows_and_resolves_when_it_ends() {
        let cfg = AlertingConfig {
            window_s: 1,
            warmup_windows: 5,
            baseline_windows: 20,
            for_windows: 2,
            resolve_windows: 2,
            min_requests: 5,
            group_wait_s: 0,
            rules: toml::from_str::<AlertingConfig>(
                "[[rules]]\nname = \"Busy\"\nsignal = \"request_rate\"\nabove = 50\nseverity = \"info\"",
            )
            .unwrap()
            .rules,
            ..Default::default()
        };
        let on: OnOutcome = Arc::new(|_, _, _| {});
        let m = Monitor::new(&cfg, on.clone()).unwrap();
        let loaded = |_: &str, _: &str| true;
        let mut fired = None;
        let mut events = Vec::new();
        for t in 1000..1040u64 {
            let slow = (1020..1030).contains(&t);
            for i in 0..10 {
                let ms = if slow { 100.0 } else { 20.0 + f64::from(i % 3) };
                m.record(
                    "m",
                    "1",
                    t,
                    Finished {
                        latency_ms: ms,
                        failure: None,
                        spread: Some(0.1),
                    },
                );
            }
            let (tick, err) = m.tick(&cfg, t + 1, &loaded, &on);
            assert!(err.is_none());
            for c in tick.changes {
                if c.alert.status == book::Status::Firing && fired.is_none() {
                    fired = Some(t);
                }
                events.push((t, c.alert.name.clone(), c.alert.signal, c.alert.status));
            }
        }
        // Shift from second 1020: windows 1020 and 1021 are anomalous; the window [1021, 1022)
        // is judged a second after it ends, at the tick of 1023 (the loop's t = 1022).
        assert_eq!(fired, Some(1022), "{events:?}");
        let names: Vec<_> = events.iter().map(|e| (e.1.as_str(), e.3)).collect();
        assert!(names.contains(&("LatencyAnomaly", book::Status::Firing)));
        assert!(
            names.contains(&("LatencyAnomaly", book::Status::Resolved)),
            "{events:?}"
        );
        assert!(
            !names.iter().any(|(n, _)| *n != "LatencyAnomaly"),
            "no rule or other detector fired: {events:?}"
        );
        // The detectors and series are listed.
        let j = m.alerts_json(&cfg);
        assert!(j["detectors"].as_array().unwrap().len() >= 3);
        assert_eq!(m.series_keys(), [("m".to_string(), "1".to_string())]);
        // Unloading the version drops its series.
        m.tick(&cfg, 1100, &|_, _| false, &on);
        assert!(m.series_keys().is_empty());
    }
}
