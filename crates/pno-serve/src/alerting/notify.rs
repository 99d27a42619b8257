//! Notifications: alerts are grouped by model; a group's first notification waits
//! `group_wait_s` to gather the alerts that come together, later changes go out at the next
//! tick, and a group still firing is notified again every `repeat_s`. Each receiver gets the
//! alerts at or above its `min_severity` (and of its `models`), resolved ones only with
//! `send_resolved`, never the same set twice in a row (except as a repeat), as Alertmanager's
//! webhook payload (`"version": "4"`). Delivery goes through a bounded queue per receiver to a
//! task that retries with jittered backoff ([`crate::webhook::Webhook`]); a full queue drops the
//! notification and counts it, so an unreachable receiver never slows requests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::{Value, json};

use super::book::{Alert, Book, Change, Status};
use super::config::{AlertingConfig, ReceiverConfig};
use crate::error::Result;

/// Notifications waiting per receiver before new ones are dropped.
pub const QUEUE: usize = 32;

#[derive(Debug, Default)]
struct Group {
    /// An unsent change since this time.
    changed_s: Option<u64>,
    /// Resolved since the last notification.
    resolved: Vec<Alert>,
    last_sent_s: Option<u64>,
    /// The last notification had firing alerts.
    open: bool,
}

/// A group's notification: its firing alerts and those resolved since the last one.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The model the group is of.
    pub group: String,
    /// Firing, then resolved.
    pub alerts: Vec<Alert>,
    /// Sent again only because `repeat_s` passed.
    pub repeat: bool,
}

/// The groups and when each is due.
#[derive(Debug, Default)]
pub struct Grouper {
    groups: BTreeMap<String, Group>,
}

impl Grouper {
    /// Note a change of an alert of the group.
    pub fn changed(&mut self, c: &Change, now: u64) {
        let g = self.groups.entry(c.alert.model.clone()).or_default();
        g.changed_s.get_or_insert(now);
        if c.alert.status == Status::Resolved {
            g.resolved.push(c.alert.clone());
        }
    }

    /// The notifications due at `now`.
    pub fn due(&mut self, book: &Book, now: u64, cfg: &AlertingConfig) -> Vec<Notification> {
        let mut out = Vec::new();
        for (model, g) in &mut self.groups {
            let firing: Vec<Alert> = book.firing_of(model).cloned().collect();
            let changed = g.changed_s.is_some_and(|t| {
                // A group that was quiet waits to gather; an open one reports at once.
                g.open || now >= t + cfg.group_wait_s
            });
            let repeat = !changed
                && !firing.is_empty()
                && g.last_sent_s.is_some_and(|t| now >= t + cfg.repeat_s);
            if !(changed || repeat) {
                continue;
            }
            let mut alerts = firing;
            alerts.append(&mut g.resolved);
            g.changed_s = None;
            g.last_sent_s = Some(now);
            g.open = alerts.iter().any(|a| a.status == Status::Firing);
            if !alerts.is_empty() {
                out.push(Notification {
                    group: model.clone(),
                    alerts,
                    repeat,
                });
            }
        }
        out
    }
}

/// The Alertmanager webhook payload of `alerts` for `receiver`.
pub fn payload(group: &str, receiver: &str, alerts: &[&Alert]) -> Value {
    let status = if alerts.iter().any(|a| a.status == Status::Firing) {
        "firing"
    } else {
        "resolved"
    };
    let labels = |a: &Alert| {
        json!({
            "alertname": a.name,
            "severity": a.severity.as_str(),
            "model": a.model,
            "version": a.version,
            "signal": a.signal,
        })
    };
    let items: Vec<Value> = alerts
        .iter()
        .map(|a| {
            json!({
                "status": if a.status == Status::Firing { "firing" } else { "resolved" },
                "labels": labels(a),
                "annotations": {
                    "summary": a.summary,
                    "runbook": a.runbook,
                    "value": a.value,
                    "reference": a.reference,
                },
                "startsAt": crate::auth::utc(a.fired_s.unwrap_or(a.since_s)),
                "endsAt": a.resolved_s.map_or("0001-01-01T00:00:00Z".to_string(), crate::auth::utc),
                "generatorURL": "",
                "fingerprint": &pno_core::sha256_hex(a.fingerprint.as_bytes())[..16],
            })
        })
        .collect();
    // Labels every alert shares.
    let mut common = labels(alerts[0]);
    if let Value::Object(c) = &mut common {
        c.retain(|k, v| alerts.iter().all(|a| labels(a).get(k) == Some(v)));
    }
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{model=\"{group}\"}}"),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": { "model": group },
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "",
        "alerts": items,
    })
}

/// What a receiver's delivery task counted.
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    /// Delivered (2xx).
    pub delivered: AtomicU64,
    /// Failed after retries.
    pub failed: AtomicU64,
    /// Dropped because its queue was full.
    pub dropped: AtomicU64,
}

/// Called with (receiver, outcome, detail) after each delivery attempt ends.
pub type OnOutcome = Arc<dyn Fn(&str, &'static str, &str) + Send + Sync>;

struct Route {
    config: ReceiverConfig,
    tx: tokio::sync::mpsc::Sender<String>,
    counts: Arc<Counts>,
    /// The last set sent per group (fingerprint and status), for deduplication.
    last: BTreeMap<String, String>,
}

/// The receivers and their delivery tasks.
pub struct Dispatcher {
    routes: Vec<Route>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("receivers", &self.routes.len())
            .finish()
    }
}

impl Dispatcher {
    /// Build the receivers (reading CA files) and start a delivery task for each on the current
    /// tokio runtime; `on_outcome` hears how each delivery ended.
    pub fn start(receivers: &[ReceiverConfig], on_outcome: OnOutcome) -> Result<Self> {
        let mut routes = Vec::new();
        for (i, r) in receivers.iter().enumerate() {
            let hook = crate::webhook::Webhook::new(
                &r.url,
                r.ca.as_deref(),
                &format!("alerting.receivers[{i}].url"),
                &format!("alerting.receivers[{i}].ca"),
            )?;
            let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(QUEUE);
            let counts = Arc::new(Counts::default());
            let (c, name, on) = (counts.clone(), r.name.clone(), on_outcome.clone());
            tokio::spawn(async move {
                while let Some(body) = rx.recv().await {
                    match hook.deliver(&body, "application/json").await {
                        Ok(status) => {
                            c.delivered.fetch_add(1, Ordering::Relaxed);
                            on(&name, "delivered", &format!("HTTP {status}"));
                        }
                        Err(e) => {
                            c.failed.fetch_add(1, Ordering::Relaxed);
                            on(&name, "failed", &e);
                        }
                    }
                }
            });
            routes.push(Route {
                config: r.clone(),
                tx,
                counts,
                last: BTreeMap::new(),
            });
        }
        Ok(Self { routes })
    }

    /// The receivers this was built for.
    pub fn built_for(&self) -> Vec<ReceiverConfig> {
        self.routes.iter().map(|r| r.config.clone()).collect()
    }

    /// Route a notification to every receiver that takes some of its alerts; returns the
    /// receivers it was queued for and those whose queue was full.
    pub fn send(&mut self, n: &Notification, on_outcome: &OnOutcome) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        for r in &mut self.routes {
            let c = &r.config;
            let alerts: Vec<&Alert> = n
                .alerts
                .iter()
                .filter(|a| a.severity >= c.min_severity)
                .filter(|a| c.models.is_empty() || c.models.contains(&a.model))
                .filter(|a| a.status == Status::Firing || c.send_resolved)
                .collect();
            if alerts.is_empty() {
                // Nothing for it; an empty set is also what it last knew when all resolved.
                r.last.remove(&n.group);
                continue;
            }
            let digest: String = alerts
                .iter()
                .map(|a| format!("{}={:?};", a.fingerprint, a.status))
                .collect();
            if !n.repeat && r.last.get(&n.group) == Some(&digest) {
                continue;
            }
            let body = payload(&n.group, &c.name, &alerts).to_string();
            let queued = r.tx.try_send(body).is_ok();
            if queued {
                r.last.insert(n.group.clone(), digest);
            } else {
                r.counts.dropped.fetch_add(1, Ordering::Relaxed);
                on_outcome(&c.name, "dropped", "queue full");
            }
            out.push((c.name.clone(), queued));
        }
        out
    }

    /// Per receiver: name, URL, counts, notifications waiting.
    pub fn status(&self) -> Vec<Value> {
        self.routes
            .iter()
            .map(|r| {
                json!({
                    "name": r.config.name,
                    "url": r.config.url,
                    "min_severity": r.config.min_severity.as_str(),
                    "delivered": r.counts.delivered.load(Ordering::Relaxed),
                    "failed": r.counts.failed.load(Ordering::Relaxed),
                    "dropped": r.counts.dropped.load(Ordering::Relaxed),
                    "queued": QUEUE - r.tx.capacity(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::book::Observation;
    use super::super::config::Severity;
    use super::*;

    fn obs(name: &str, model: &str, bad: bool, severity: Severity) -> Observation {
        Observation {
            name: name.into(),
            severity,
            model: model.into(),
            version: "1".into(),
            signal: "error_rate",
            bad,
            value: 0.5,
            reference: 0.0,
            summary: "errors".into(),
            runbook: "look".into(),
            for_windows: 1,
            resolve_windows: 1,
        }
    }

    #[test]
    fn groups_wait_to_gather_then_report_changes_at_once_and_repeat() {
        let cfg = AlertingConfig {
            group_wait_s: 5,
            repeat_s: 100,
            ..Default::default()
        };
        let (mut book, mut g) = (Book::default(), Grouper::default());
        let c = book
            .observe(obs("A", "m", true, Severity::Critical), 10)
            .unwrap();
        g.changed(&c, 10);
        assert!(g.due(&book, 12, &cfg).is_empty(), "group_wait gathers");
        let c = book
            .observe(obs("B", "m", true, Severity::Info), 13)
            .unwrap();
        g.changed(&c, 13);
        let n = g.due(&book, 15, &cfg);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].alerts.len(), 2, "both alerts in one notification");
        assert!(
            g.due(&book, 16, &cfg).is_empty(),
            "nothing new: nothing sent"
        );
        // A resolve in an open group goes out at once, with the alert still firing.
        let c = book
            .observe(obs("B", "m", false, Severity::Info), 20)
            .unwrap();
        g.changed(&c, 20);
        let n = g.due(&book, 20, &cfg);
        let st: Vec<_> = n[0]
            .alerts
            .iter()
            .map(|a| (a.name.as_str(), a.status))
            .collect();
        assert_eq!(st, [("A", Status::Firing), ("B", Status::Resolved)]);
        // Repeat after repeat_s while firing.
        assert!(g.due(&book, 119, &cfg).is_empty());
        let n = g.due(&book, 120, &cfg);
        assert!(n[0].repeat);
        // Another model is its own group.
        let c = book
            .observe(obs("A", "other", true, Severity::Warning), 121)
            .unwrap();
        g.changed(&c, 121);
        assert!(g.due(&book, 122, &cfg).is_empty());
        assert_eq!(g.due(&book, 126, &cfg)[0].group, "other");
    }

    #[tokio::test]
    async fn receivers_take_their_severities_once_and_the_payload_is_alertmanagers() {
        let receivers: Vec<ReceiverConfig> = toml::from_str::<AlertingConfig>(
            "[[receivers]]\nname = \"pager\"\nurl = \"http://127.0.0.1:9/\"\nmin_severity = \"critical\"\nsend_resolved = false\n\
             [[receivers]]\nname = \"chat\"\nurl = \"http://127.0.0.1:9/\"\nmin_severity = \"info\"",
        )
        .unwrap()
        .receivers;
        let on: OnOutcome = Arc::new(|_, _, _| {});
        let mut d = Dispatcher::start(&receivers, on.clone()).unwrap();
        let mut book = Book::default();
        let a = book
            .observe(obs("A", "m", true, Severity::Critical), 10)
            .unwrap()
            .alert;
        let b = book
            .observe(obs("B", "m", true, Severity::Info), 10)
            .unwrap()
            .alert;
        let n = Notification {
            group: "m".into(),
            alerts: vec![a.clone(), b],
            repeat: false,
        };
        assert_eq!(
            d.send(&n, &on),
            [("pager".to_string(), true), ("chat".to_string(), true)]
        );
        // The info alert resolves: the pager's set is unchanged (deduplicated), chat hears it.
        let b2 = book
            .observe(obs("B", "m", false, Severity::Info), 20)
            .unwrap()
            .alert;
        let n = Notification {
            group: "m".into(),
            alerts: vec![a.clone(), b2.clone()],
            repeat: false,
        };
        assert_eq!(d.send(&n, &on), [("chat".to_string(), true)]);
        // The payload: Alertmanager's webhook shape.
        let p = payload("m", "chat", &[&a, &b2]);
        assert_eq!(p["version"], "4");
        assert_eq!(p["status"], "firing");
        assert_eq!(p["groupLabels"]["model"], "m");
        assert_eq!(p["commonLabels"]["model"], "m");
        assert!(p["commonLabels"].get("alertname").is_none());
        assert_eq!(p["alerts"][1]["status"], "resolved");
        assert_eq!(p["alerts"][1]["endsAt"], "1970-01-01T00:00:20Z");
        assert_eq!(p["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(p["alerts"][0]["labels"]["severity"], "critical");
        // A receiver whose queue is full drops, counts, and never blocks (port 9: discard,
        // closed here, so deliveries fail slowly with retries while the queue fills).
        let mut dropped = 0;
        for i in 0..(QUEUE as u64 + 8) {
            let c = book
                .observe(obs(&format!("X{i}"), "m", true, Severity::Critical), 30)
                .unwrap()
                .alert;
            let n = Notification {
                group: "m".into(),
                alerts: vec![c],
                repeat: false,
            };
            dropped += d.send(&n, &on).iter().filter(|(_, q)| !q).count();
        }
        assert!(dropped >= 8, "{dropped}");
        let st = d.status();
        assert!(st[0]["dropped"].as_u64().unwrap() >= 4);
    }
}
