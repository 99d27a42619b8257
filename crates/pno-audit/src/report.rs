//! Audit reports: what happened in a time window, counted the ways a compliance review asks —
//! by actor, role, action, outcome, status and replica; the most refused clients; each key's
//! use; and every configuration and rollout change (actions `config.*`, `keys.*`, `model.*`,
//! `rollback*`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::log::{AuditRecord, scan};

/// Use of one key (actor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyUse {
    /// Records.
    pub requests: u64,
    /// Records with status ≥ 400.
    pub refused: u64,
    /// First and last record time (ms since the Unix epoch).
    pub first_ms: u64,
    /// Last record time.
    pub last_ms: u64,
}

/// A change to the server's configuration, keys or models.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Sequence number.
    pub seq: u64,
    /// Time (ms since the Unix epoch).
    pub ts_ms: u64,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On which model/version.
    pub target: String,
    /// `ok` or `error`.
    pub outcome: String,
}

/// Counts over a window of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Report {
    /// Records in the log.
    pub records_total: u64,
    /// Records in the window.
    pub records: u64,
    /// Window start (ms, inclusive), if any.
    pub since_ms: Option<u64>,
    /// Window end (ms, exclusive), if any.
    pub until_ms: Option<u64>,
    /// By actor.
    pub by_actor: BTreeMap<String, u64>,
    /// By role.
    pub by_role: BTreeMap<String, u64>,
    /// By action.
    pub by_action: BTreeMap<String, u64>,
    /// By outcome.
    pub by_outcome: BTreeMap<String, u64>,
    /// By replica (the server process that wrote the record; `unnamed` for records written
    /// before replicas were named).
    pub by_replica: BTreeMap<String, u64>,
    /// By HTTP status.
    pub by_status: BTreeMap<u16, u64>,
    /// Failed and refused records by failure class (`input`, `security`, `transient`,
    /// `persistent`, `internal`; `unclassified` for records written before classes existed).
    pub by_class: BTreeMap<String, u64>,
    /// Clients with the most refused requests (status ≥ 400), most first (at most 10).
    pub top_refused_clients: Vec<(String, u64)>,
    /// Use of each key.
    pub keys: BTreeMap<String, KeyUse>,
    /// Every configuration, key and model change, in order.
    pub changes: Vec<Change>,
}

/// Configuration, key, model and health changes (reloads, key changes, loads and unloads,
/// breaker transitions, rollbacks); reads such as `model.metadata` are not changes.
fn is_change(action: &str) -> bool {
    const READS: [&str; 4] = [
        "model.metadata",
        "model.ready",
        "model.stats",
        "repository.index",
    ];
    !READS.contains(&action)
        && [
            "config.",
            "keys.",
            "model.",
            "rollback",
            "repository.",
            "breaker.",
        ]
        .iter()
        .any(|p| action.starts_with(p))
}

/// The report of the log at `path` (every segment, verified while read) over
/// `[since_ms, until_ms)`.
pub fn report(path: &Path, since_ms: Option<u64>, until_ms: Option<u64>) -> Result<Report> {
    let mut r = Report {
        since_ms,
        until_ms,
        ..Report::default()
    };
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    let v = scan(path, |_, rec: &AuditRecord| {
        if since_ms.is_some_and(|s| rec.ts_ms < s) || until_ms.is_some_and(|u| rec.ts_ms >= u) {
            return;
        }
        let e = &rec.event;
        r.records += 1;
        *r.by_actor.entry(e.actor.clone()).or_default() += 1;
        *r.by_role.entry(e.role.clone()).or_default() += 1;
        *r.by_action.entry(e.action.clone()).or_default() += 1;
        *r.by_outcome.entry(e.outcome.clone()).or_default() += 1;
        *r.by_status.entry(e.status).or_default() += 1;
        let replica = rec.replica.as_deref().unwrap_or("unnamed");
        *r.by_replica.entry(replica.to_string()).or_default() += 1;
        if e.status >= 400 {
            let class = e.class.as_deref().unwrap_or("unclassified");
            *r.by_class.entry(class.to_string()).or_default() += 1;
        }
        let k = r.keys.entry(e.actor.clone()).or_insert(KeyUse {
            requests: 0,
            refused: 0,
            first_ms: rec.ts_ms,
            last_ms: rec.ts_ms,
        });
        k.requests += 1;
        k.last_ms = k.last_ms.max(rec.ts_ms);
        k.first_ms = k.first_ms.min(rec.ts_ms);
        if e.status >= 400 {
            k.refused += 1;
            *refused.entry(e.client.clone()).or_default() += 1;
        }
        if is_change(&e.action) {
            r.changes.push(Change {
                seq: rec.seq,
                ts_ms: rec.ts_ms,
                actor: e.actor.clone(),
                action: e.action.clone(),
                target: match (&e.model, &e.version) {
                    (Some(m), Some(v)) => format!("{m}/{v}"),
                    (Some(m), None) => m.clone(),
                    _ => String::new(),
                },
                outcome: e.outcome.clone(),
            });
        }
    })?;
    r.records_total = v.records;
    let mut top: Vec<(String, u64)> = refused.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(10);
    r.top_refused_clients = top;
    Ok(r)
}
