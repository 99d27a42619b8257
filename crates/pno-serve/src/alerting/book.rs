//! The alert book: one entry per alert identity (name, model, version, signal), so a condition
//! that lasts is one alert, not one per window (deduplication). An entry is `pending` while its
//! condition holds for fewer than `for_windows` windows, `firing` after, and `resolved` after
//! `resolve_windows` normal windows; the last [`KEEP_RESOLVED`] resolved alerts are kept for the
//! admin listing.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use super::config::Severity;

/// Resolved alerts kept.
pub const KEEP_RESOLVED: usize = 100;

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The condition holds, not yet for long enough.
    Pending,
    /// Firing.
    Firing,
    /// Was firing, is over.
    Resolved,
}

/// One alert.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// `name|model|version|signal`, stable across windows.
    pub fingerprint: String,
    /// The alert's name (`LatencyAnomaly`, a rule's name).
    pub name: String,
    /// Its severity.
    pub severity: Severity,
    /// Model.
    pub model: String,
    /// Version.
    pub version: String,
    /// The signal judged.
    pub signal: &'static str,
    /// Where it is.
    pub status: Status,
    /// One line saying what is wrong, with the numbers.
    pub summary: String,
    /// What to do.
    pub runbook: String,
    /// The last window's value.
    pub value: f64,
    /// The baseline (anomalies) or the threshold (rules).
    pub reference: f64,
    /// When the condition was first seen (unix s).
    pub since_s: u64,
    /// When it started firing.
    pub fired_s: Option<u64>,
    /// When it resolved.
    pub resolved_s: Option<u64>,
    #[serde(skip)]
    bad: u32,
    #[serde(skip)]
    good: u32,
}

/// One window's verdict on one alert identity.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Name.
    pub name: String,
    /// Severity.
    pub severity: Severity,
    /// Model.
    pub model: String,
    /// Version.
    pub version: String,
    /// Signal.
    pub signal: &'static str,
    /// The condition holds in this window.
    pub bad: bool,
    /// The window's value.
    pub value: f64,
    /// Baseline or threshold.
    pub reference: f64,
    /// What is wrong.
    pub summary: String,
    /// What to do.
    pub runbook: String,
    /// Windows in a row to fire.
    pub for_windows: u32,
    /// Windows in a row to resolve.
    pub resolve_windows: u32,
}

/// An alert that started firing or resolved.
#[derive(Debug, Clone)]
pub struct Change {
    /// The alert after the change.
    pub alert: Alert,
}

/// Every alert pending or firing, and the recently resolved.
#[derive(Debug, Default)]
pub struct Book {
    active: BTreeMap<String, Alert>,
    resolved: VecDeque<Alert>,
}

impl Book {
    /// Take one window's verdict at `now`; a change when an alert fires or resolves.
    pub fn observe(&mut self, o: Observation, now: u64) -> Option<Change> {
        let fp = format!("{}|{}|{}|{}", o.name, o.model, o.version, o.signal);
        if !o.bad {
            let a = self.active.get_mut(&fp)?;
            match a.status {
                Status::Pending => {
                    self.active.remove(&fp);
                    None
                }
                _ => {
                    a.good += 1;
                    a.bad = 0;
                    a.value = o.value;
                    if a.good < o.resolve_windows {
                        return None;
                    }
                    let mut a = self.active.remove(&fp)?;
                    a.status = Status::Resolved;
                    a.resolved_s = Some(now);
                    self.keep_resolved(a.clone());
                    Some(Change { alert: a })
                }
            }
        } else {
            let a = self.active.entry(fp.clone()).or_insert_with(|| Alert {
                fingerprint: fp,
                name: o.name.clone(),
                severity: o.severity,
                model: o.model.clone(),
                version: o.version.clone(),
                signal: o.signal,
                status: Status::Pending,
                summary: String::new(),
                runbook: o.runbook.clone(),
                value: o.value,
                reference: o.reference,
                since_s: now,
                fired_s: None,
                resolved_s: None,
                bad: 0,
                good: 0,
            });
            a.bad += 1;
            a.good = 0;
            a.value = o.value;
            a.reference = o.reference;
            a.summary = o.summary;
            if a.status == Status::Pending && a.bad >= o.for_windows {
                a.status = Status::Firing;
                a.fired_s = Some(now);
                return Some(Change { alert: a.clone() });
            }
            None
        }
    }

    /// Resolve the alerts of versions `gone` says are gone (unloaded), with that reason.
    pub fn retire(&mut self, gone: impl Fn(&str, &str) -> bool, now: u64) -> Vec<Change> {
        let keys: Vec<String> = self
            .active
            .iter()
            .filter(|(_, a)| gone(&a.model, &a.version))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for k in keys {
            if let Some(mut a) = self.active.remove(&k)
                && a.status == Status::Firing
            {
                a.status = Status::Resolved;
                a.resolved_s = Some(now);
                a.summary = format!("{} (the version was unloaded)", a.summary);
                self.keep_resolved(a.clone());
                out.push(Change { alert: a });
            }
        }
        out
    }

    fn keep_resolved(&mut self, a: Alert) {
        self.resolved.push_back(a);
        while self.resolved.len() > KEEP_RESOLVED {
            self.resolved.pop_front();
        }
    }

    /// Pending and firing alerts.
    pub fn active(&self) -> impl Iterator<Item = &Alert> {
        self.active.values()
    }
    /// Firing alerts of `model`.
    pub fn firing_of<'a>(&'a self, model: &'a str) -> impl Iterator<Item = &'a Alert> {
        self.active
            .values()
            .filter(move |a| a.status == Status::Firing && a.model == model)
    }
    /// Recently resolved alerts, oldest first.
    pub fn resolved(&self) -> impl DoubleEndedIterator<Item = &Alert> {
        self.resolved.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(bad: bool) -> Observation {
        Observation {
            name: "LatencyAnomaly".into(),
            severity: Severity::Warning,
            model: "m".into(),
            version: "1".into(),
            signal: "latency_p99",
            bad,
            value: if bad { 90.0 } else { 40.0 },
            reference: 40.0,
            summary: "p99 90 ms".into(),
            runbook: "look".into(),
            for_windows: 2,
            resolve_windows: 3,
        }
    }

    #[test]
    fn an_alert_fires_after_for_windows_once_and_resolves_after_resolve_windows() {
        let mut b = Book::default();
        // A single bad window stays pending and vanishes when the next is normal.
        assert!(b.observe(obs(true), 10).is_none());
        assert_eq!(b.active().next().unwrap().status, Status::Pending);
        assert!(b.observe(obs(false), 20).is_none());
        assert_eq!(b.active().count(), 0);
        // Two in a row fire, once: further bad windows are the same alert (no duplicate).
        assert!(b.observe(obs(true), 30).is_none());
        let c = b.observe(obs(true), 40).unwrap();
        assert_eq!(
            (c.alert.status, c.alert.since_s, c.alert.fired_s),
            (Status::Firing, 30, Some(40))
        );
        for t in 5..10 {
            assert!(b.observe(obs(true), t * 10).is_none());
        }
        assert_eq!(b.active().count(), 1);
        // Normal windows: resolved on the third in a row; a bad one in between restarts the count.
        assert!(b.observe(obs(false), 100).is_none());
        assert!(b.observe(obs(false), 110).is_none());
        assert!(b.observe(obs(true), 120).is_none());
        assert!(b.observe(obs(false), 130).is_none());
        assert!(b.observe(obs(false), 140).is_none());
        let c = b.observe(obs(false), 150).unwrap();
        assert_eq!(
            (c.alert.status, c.alert.resolved_s),
            (Status::Resolved, Some(150))
        );
        assert_eq!(b.active().count(), 0);
        assert_eq!(b.resolved().count(), 1);
    }

    #[test]
    fn unloading_a_version_resolves_its_firing_alerts_and_drops_pending_ones() {
        let mut b = Book::default();
        b.observe(obs(true), 1);
        b.observe(obs(true), 2);
        let mut other = obs(true);
        other.version = "2".into();
        b.observe(other, 2);
        let gone = b.retire(|_, v| v == "1", 3);
        assert_eq!(gone.len(), 1);
        assert!(gone[0].alert.summary.contains("unloaded"));
        assert_eq!(b.active().count(), 1);
        let gone = b.retire(|_, _| true, 4);
        assert!(
            gone.is_empty(),
            "a pending alert never fired, so nothing resolves"
        );
        for i in 0..KEEP_RESOLVED + 3 {
            b.observe(obs(true), 10 + 4 * i as u64);
            b.observe(obs(true), 11 + 4 * i as u64);
            b.retire(|_, _| true, 12 + 4 * i as u64);
        }
        assert_eq!(b.resolved().count(), KEEP_RESOLVED);
    }
}
