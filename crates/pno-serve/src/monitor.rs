//! The in-process monitor's clock: every second it samples each model's queue depth into its
//! series, lets [`crate::alerting::Monitor::tick`] judge the window that ended and route the
//! notifications due, and logs and audits every alert that fires or resolves. Every
//! `drift.window_s` it tests each version's recent inputs for drift ([`crate::drift`]): a
//! verdict that changes is logged and audited (`drift.detected`, `drift.cleared`), and every
//! verdict feeds the `InputDrift` alert. Delivery outcomes are counted in
//! `pno_alert_notifications_total{receiver,outcome}`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::alerting::book::Status;
use crate::alerting::notify::OnOutcome;
use crate::state::{AppState, now_s, system_event};

/// Run until aborted.
pub(crate) async fn run(st: AppState) {
    let weak = st.downgrade();
    let on: OnOutcome = Arc::new(move |receiver, outcome, detail| {
        let Some(st) = weak.upgrade() else { return };
        st.metrics().inc(
            "pno_alert_notifications_total",
            format!(
                "receiver=\"{}\",outcome=\"{outcome}\"",
                crate::metrics::escape(receiver)
            ),
            1.0,
        );
        if outcome != "delivered" {
            tracing::warn!(
                receiver,
                outcome,
                detail,
                class = "transient",
                "alert notification not delivered"
            );
        }
    });
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut drift_at = 0;
    let mut rollback_at = 0;
    loop {
        every.tick().await;
        let now = now_s();
        let cfg = st.config();
        if cfg.drift.enabled && now >= drift_at + cfg.drift.window_s {
            drift_at = now;
            drift(&st, now).await;
        }
        if cfg.feedback.enabled {
            calibration(&st, now).await;
        }
        if cfg.rollback.enabled && now >= rollback_at + cfg.alerting.window_s {
            rollback_at = now;
            rollback(&st, now).await;
        }
        once(&st, &on).await;
    }
}

/// Test recent inputs for drift; log and audit changes; feed the `InputDrift` alert.
async fn drift(st: &AppState, now: u64) {
    let cfg = st.config();
    let loaded: HashSet<(String, u64)> = st.repository().loaded().into_iter().collect();
    let d = st.clone();
    let dcfg = cfg.drift.clone();
    let Ok(tested) = tokio::task::spawn_blocking(move || {
        d.drift()
            .evaluate(&dcfg, now, &|m, v| loaded.contains(&(m.to_string(), v)))
    })
    .await
    else {
        return;
    };
    for t in tested {
        let v = &t.verdict;
        let worst = v.features.iter().map(|f| f.psi).fold(0.0, f64::max);
        st.monitor()
            .record_drift(&t.model, &t.version.to_string(), now, worst);
        let what = if v.detected {
            format!(
                "{} v{}: inputs drifted from the training data in {} ({} recent inputs)",
                t.model,
                t.version,
                v.describe(),
                v.samples
            )
        } else {
            format!(
                "{} v{}: recent inputs match the training data ({} inputs, largest PSI {worst:.3})",
                t.model, t.version, v.samples
            )
        };
        if t.changed {
            if v.detected {
                tracing::warn!(model = %t.model, version = t.version, samples = v.samples, "input drift detected: {what}");
            } else {
                tracing::info!(model = %t.model, version = t.version, "input drift cleared: {what}");
            }
            let action = if v.detected {
                "drift.detected"
            } else {
                "drift.cleared"
            };
            st.record_async(system_event(
                action,
                &t.model,
                &t.version.to_string(),
                what.clone(),
            ))
            .await;
        }
        let change = st.monitor().observe(
            crate::alerting::book::Observation {
                name: "InputDrift".into(),
                severity: crate::alerting::Severity::Warning,
                model: t.model.clone(),
                version: t.version.to_string(),
                signal: "input_drift",
                bad: v.detected,
                value: worst,
                reference: cfg.drift.psi_threshold,
                summary: what,
                runbook: "compare the drifted features with the training data (GET /v2/admin/alerts, drift); retrain on current inputs or route them elsewhere".into(),
                for_windows: 1,
                resolve_windows: cfg.alerting.resolve_windows,
            },
            now,
        );
        if let Some(ch) = change {
            announce(st, &ch.alert).await;
        }
    }
}

/// The rollback policy's window: each loaded version's health; a version unhealthy for
/// `rollback.windows` windows in a row has its unpinned traffic moved to an older version.
async fn rollback(st: &AppState, now: u64) {
    use crate::alerting::Signal;
    let cfg = st.config();
    let rb = &cfg.rollback;
    let w = cfg.alerting.window_s;
    let collapsed: HashSet<(String, u64)> = if rb.on_coverage_collapse {
        st.feedback()
            .status(&cfg.feedback)
            .into_iter()
            .filter(|c| c.collapsed)
            .map(|c| (c.model, c.version))
            .collect()
    } else {
        HashSet::new()
    };
    let drifted: HashSet<(String, u64)> = if rb.on_drift {
        st.drift()
            .status()
            .into_iter()
            .filter(|(_, _, v, ..)| v.as_ref().is_some_and(|v| v.detected))
            .map(|(m, v, ..)| (m, v))
            .collect()
    } else {
        HashSet::new()
    };
    for (model, version) in st.repository().loaded() {
        let key = (model.clone(), version);
        let mut why = Vec::new();
        if collapsed.contains(&key) {
            why.push("coverage collapsed (binomial test on feedback)".to_string());
        }
        if drifted.contains(&key) {
            why.push("inputs drifted from the training data".to_string());
        }
        let end = now.saturating_sub(1);
        if let Some(s) =
            st.monitor()
                .summary(&model, &version.to_string(), end.saturating_sub(w), end)
            && s.requests >= rb.min_requests
        {
            if let Some(e) = s.value(Signal::ErrorRate)
                && rb.error_rate > 0.0
                && e > rb.error_rate
            {
                why.push(format!(
                    "server-side error rate {e:.2} > rollback.error_rate = {}",
                    rb.error_rate
                ));
            }
            if let Some(p) = s.value(Signal::LatencyP99)
                && rb.p99_ms > 0.0
                && p > rb.p99_ms
            {
                why.push(format!(
                    "p99 latency {p:.0} ms > rollback.p99_ms = {}",
                    rb.p99_ms
                ));
            }
        }
        let reason = why.join("; ");
        if !st.routing().observe(
            &model,
            version,
            (!why.is_empty()).then_some(reason.as_str()),
            now,
            rb,
        ) {
            continue;
        }
        let gate_passed = |v: u64| {
            st.repository()
                .get(&model, Some(&v.to_string()))
                .ok()
                .and_then(|m| m.model.run.read_gate().ok().flatten())
                .is_some_and(|g| g.passed)
        };
        let mut older = st.repository().loaded_versions(&model);
        older.retain(|&v| v < version);
        older.sort_unstable_by(|a, b| b.cmp(a));
        let to = older
            .into_iter()
            .find(|&v| !rb.require_gate || gate_passed(v));
        st.routing()
            .roll_back(&model, version, to, reason.clone(), now);
        let to_label = to.map_or("none".to_string(), |v| v.to_string());
        st.metrics().inc(
            "pno_rollbacks_total",
            format!(
                "{},to=\"{to_label}\"",
                crate::metrics::model_labels(&model, &version.to_string())
            ),
            1.0,
        );
        let what = match to {
            Some(t) => format!(
                "{model} v{version} rolled back: unpinned traffic goes to v{t} ({reason}, {} windows in a row)",
                rb.windows
            ),
            None => format!(
                "{model} v{version} is unhealthy ({reason}, {} windows in a row) and no older version{} is loaded: it keeps serving, degraded",
                rb.windows,
                if rb.require_gate {
                    " with a passing gate record"
                } else {
                    ""
                }
            ),
        };
        tracing::warn!(model = %model, version, to = ?to, "{what}");
        st.record_async(system_event(
            "model.rollback",
            &model,
            &version.to_string(),
            what,
        ))
        .await;
    }
}

/// Log and audit an alert that fired or resolved.
async fn announce(st: &AppState, a: &crate::alerting::book::Alert) {
    let firing = a.status == Status::Firing;
    if firing {
        tracing::warn!(alert = %a.name, severity = a.severity.as_str(), model = %a.model, version = %a.version, signal = a.signal, value = a.value, reference = a.reference, "alert firing: {}", a.summary);
    } else {
        tracing::info!(alert = %a.name, severity = a.severity.as_str(), model = %a.model, version = %a.version, signal = a.signal, value = a.value, "alert resolved: {}", a.summary);
    }
    let action = if firing {
        "alert.firing"
    } else {
        "alert.resolved"
    };
    let outcome = format!("{} ({}): {}", a.name, a.severity.as_str(), a.summary);
    st.record_async(system_event(action, &a.model, &a.version, outcome))
        .await;
}

/// The online calibration of every version with feedback feeds the `CoverageCollapse` alert.
async fn calibration(st: &AppState, now: u64) {
    let cfg = st.config();
    let loaded: HashSet<(String, u64)> = st.repository().loaded().into_iter().collect();
    st.feedback()
        .retain(&|m, v| loaded.contains(&(m.to_string(), v)));
    for c in st.feedback().status(&cfg.feedback) {
        if c.functions < cfg.feedback.min_functions {
            continue;
        }
        let worst = c
            .levels
            .iter()
            .min_by(|a, b| (a.coverage - a.level).total_cmp(&(b.coverage - b.level)));
        let Some(w) = worst else { continue };
        let summary = format!(
            "{} v{}: the {:.0} % interval covers {:.1} % of the truth over the last {} functions (binomial p {:.1e})",
            c.model,
            c.version,
            w.level * 100.0,
            w.coverage * 100.0,
            c.functions,
            w.p_value
        );
        let change = st.monitor().observe(
            crate::alerting::book::Observation {
                name: "CoverageCollapse".into(),
                severity: crate::alerting::Severity::Critical,
                model: c.model.clone(),
                version: c.version.to_string(),
                signal: "coverage",
                bad: c.collapsed,
                value: w.coverage,
                reference: w.level,
                summary,
                runbook: "the version's intervals no longer hold: GET /v2/models/NAME/calibration; recalibrate (pno calibrate) or roll back to the previous version".into(),
                for_windows: 1,
                resolve_windows: 1,
            },
            now,
        );
        if let Some(ch) = change {
            announce(st, &ch.alert).await;
        }
    }
}

async fn once(st: &AppState, on: &OnOutcome) {
    let cfg = st.config();
    let now = now_s();
    let loaded: HashSet<(String, String)> = st
        .repository()
        .loaded()
        .into_iter()
        .map(|(m, v)| (m, v.to_string()))
        .collect();
    if cfg.alerting.enabled {
        let models: HashSet<&String> = loaded.iter().map(|(m, _)| m).collect();
        for m in models {
            let depth = st.bulkheads().model(m).waiting();
            st.monitor().sample_queue(m, now, depth);
        }
    }
    let is_loaded = |m: &str, v: &str| loaded.contains(&(m.to_string(), v.to_string()));
    let (tick, err) = st.monitor().tick(&cfg.alerting, now, &is_loaded, on);
    if let Some(e) = err {
        tracing::error!(error = %e, class = "persistent", "alert receivers not rebuilt: the previous ones stay");
    }
    for c in tick.changes {
        announce(st, &c.alert).await;
    }
    for (n, routed) in tick.sent {
        tracing::info!(
            group = %n.group,
            alerts = n.alerts.len(),
            repeat = n.repeat,
            receivers = ?routed,
            "alert notification"
        );
    }
}
