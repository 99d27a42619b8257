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
use crate::audit::AuditEvent;
use crate::state::{AppState, now_s};

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
    loop {
        every.tick().await;
        let now = now_s();
        let cfg = st.config();
        if cfg.drift.enabled && now >= drift_at + cfg.drift.window_s {
            drift_at = now;
            drift(&st, now).await;
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
            st.record_async(AuditEvent {
                actor: "server".into(),
                role: "system".into(),
                client: "local".into(),
                action: if v.detected {
                    "drift.detected"
                } else {
                    "drift.cleared"
                }
                .into(),
                model: Some(t.model.clone()),
                version: Some(t.version.to_string()),
                outcome: what.clone(),
                status: 0,
                request_id: String::new(),
                input_sha256: None,
                class: None,
            })
            .await;
        }
        st.monitor().observe(
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
        let a = &c.alert;
        let firing = a.status == Status::Firing;
        if firing {
            tracing::warn!(alert = %a.name, severity = a.severity.as_str(), model = %a.model, version = %a.version, signal = a.signal, value = a.value, reference = a.reference, "alert firing: {}", a.summary);
        } else {
            tracing::info!(alert = %a.name, severity = a.severity.as_str(), model = %a.model, version = %a.version, signal = a.signal, value = a.value, "alert resolved: {}", a.summary);
        }
        st.record_async(AuditEvent {
            actor: "server".into(),
            role: "system".into(),
            client: "local".into(),
            action: if firing {
                "alert.firing"
            } else {
                "alert.resolved"
            }
            .into(),
            model: Some(a.model.clone()),
            version: Some(a.version.clone()),
            outcome: format!("{} ({}): {}", a.name, a.severity.as_str(), a.summary),
            status: 0,
            request_id: String::new(),
            input_sha256: None,
            class: None,
        })
        .await;
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
