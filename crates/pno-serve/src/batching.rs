//! Dynamic batching (`[batching]`): concurrent requests for the same model version, grid and
//! number of draws join one batch, which the handler of its first request drives
//! (`handlers::infer`): it waits up to `max_wait_ms` for more (or until the batch holds
//! `max_rows` inputs), closes the batch, queues once for the model's bulkhead slot and computes
//! every request in one pass with [`pno_run::TrainedModel::predict_many`], where input `i` of a
//! request with seed `s` draws from the streams of `(s, i)` — the numbers it would get alone and
//! from `pno predict` with that seed.
//!
//! Each request still owns its deadline and cancellation: one that leaves before its batch
//! starts is left out of it; once the batch computes, it runs to its end for the requests
//! still waiting. A request's own failures (its checks, an injected fault) stay its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pno_models::Predictive;
use tokio::sync::{Notify, oneshot};

use crate::error::ApiError;
use crate::failure::JobError;
use crate::resilience::cancel::Token;

/// What a batched request gets back: its prediction (or its own failure) and the batch's
/// compute time, or the error that stopped the whole batch (queue full, deadline in the queue).
pub(crate) type Done = Result<(Result<Predictive, JobError>, Duration), ApiError>;

/// Requests that may share a batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    /// Model name.
    pub(crate) model: String,
    /// Version.
    pub(crate) version: u64,
    /// Input grid.
    pub(crate) grid: Vec<usize>,
    /// Draws per input.
    pub(crate) n_samples: usize,
}

/// One request in a batch.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Inputs `[n, in_channels, points]` in physical units.
    pub(crate) x: Vec<f32>,
    /// Number of inputs.
    pub(crate) n: usize,
    /// The request's seed.
    pub(crate) seed: u64,
    /// The request's cancellation token (set at its deadline or when its client leaves).
    pub(crate) token: Token,
    /// The request's deadline.
    pub(crate) deadline: tokio::time::Instant,
    /// The fault injected into this request (test builds).
    #[cfg(feature = "fault-injection")]
    pub(crate) fault: Option<crate::faults::Fault>,
    /// Where the answer goes.
    pub(crate) tx: oneshot::Sender<Done>,
}

#[derive(Debug, Default)]
struct GroupState {
    entries: Vec<Entry>,
    rows: usize,
    closed: bool,
}

/// A batch being filled.
#[derive(Debug, Default)]
pub(crate) struct Group {
    state: Mutex<GroupState>,
    full: Notify,
}

impl Group {
    /// Wait until the batch is full or `max_wait` has passed.
    pub(crate) async fn wait(&self, max_wait: Duration) {
        if lock(&self.state).closed {
            return;
        }
        // A notification sent before this point is kept as a permit, so none is missed.
        let _ = tokio::time::timeout(max_wait, self.full.notified()).await;
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.full.notify_one();
    }
}

/// The open batches, one per [`Key`].
#[derive(Debug, Default)]
pub(crate) struct Batcher {
    open: Mutex<HashMap<Key, Arc<Group>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Batcher {
    /// Add `entry` to the open batch of `key`, or open a new one with it when there is none or
    /// it has no room for `entry.n` more inputs under `max_rows`. Returns the new batch when
    /// this entry opened it: the caller then drives it ([`Group::wait`], [`Batcher::close`]).
    pub(crate) fn join(&self, key: &Key, entry: Entry, max_rows: usize) -> Option<Arc<Group>> {
        let mut open = lock(&self.open);
        if let Some(g) = open.get(key).cloned() {
            let mut st = lock(&g.state);
            if !st.closed && st.rows + entry.n <= max_rows {
                st.rows += entry.n;
                st.entries.push(entry);
                if st.rows >= max_rows {
                    drop(st);
                    open.remove(key);
                    g.close();
                }
                return None;
            }
            // No room: that batch leaves now and this entry opens the next one.
            drop(st);
            open.remove(key);
            g.close();
        }
        let full = entry.n >= max_rows;
        let g = Arc::new(Group {
            state: Mutex::new(GroupState {
                rows: entry.n,
                entries: vec![entry],
                closed: full,
            }),
            full: Notify::new(),
        });
        if !full {
            open.insert(key.clone(), g.clone());
        }
        Some(g)
    }

    /// Close `group` (nothing joins it any more) and take its requests.
    pub(crate) fn close(&self, key: &Key, group: &Arc<Group>) -> Vec<Entry> {
        let mut open = lock(&self.open);
        if open.get(key).is_some_and(|g| Arc::ptr_eq(g, group)) {
            open.remove(key);
        }
        let mut st = lock(&group.state);
        st.closed = true;
        std::mem::take(&mut st.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> (Entry, oneshot::Receiver<Done>) {
        let (tx, rx) = oneshot::channel();
        (
            Entry {
                x: vec![0.0; n],
                n,
                seed: n as u64,
                token: Token::default(),
                deadline: tokio::time::Instant::now(),
                #[cfg(feature = "fault-injection")]
                fault: None,
                tx,
            },
            rx,
        )
    }

    fn key(grid: usize) -> Key {
        Key {
            model: "m".into(),
            version: 1,
            grid: vec![grid],
            n_samples: 4,
        }
    }

    #[tokio::test]
    async fn batches_fill_to_the_row_budget_and_keys_do_not_mix() {
        let b = Batcher::default();
        let first = b
            .join(&key(8), entry(2).0, 5)
            .expect("the first request opens a batch");
        assert!(
            b.join(&key(8), entry(2).0, 5).is_none(),
            "joins the open batch"
        );
        // Another grid opens a batch of its own.
        let other = b
            .join(&key(16), entry(1).0, 5)
            .expect("another key, another batch");
        // 2 + 2 + 2 > 5: this one opens the next batch, and the full one leaves at once.
        let next = b
            .join(&key(8), entry(2).0, 5)
            .expect("no room: a new batch");
        tokio::time::timeout(
            Duration::from_millis(100),
            first.wait(Duration::from_secs(60)),
        )
        .await
        .expect("a batch without room must not wait");
        let rows = |g: &Arc<Group>| b.close(&key(8), g).iter().map(|e| e.n).collect::<Vec<_>>();
        assert_eq!(rows(&first), vec![2, 2]);
        assert_eq!(b.close(&key(16), &other).len(), 1);
        // Filling a batch exactly closes it too.
        assert!(b.join(&key(8), entry(3).0, 5).is_none());
        tokio::time::timeout(
            Duration::from_millis(100),
            next.wait(Duration::from_secs(60)),
        )
        .await
        .expect("a full batch must not wait");
        assert_eq!(rows(&next), vec![2, 3]);
        // A request as large as the budget is a batch of its own, already closed.
        let alone = b.join(&key(8), entry(5).0, 5).unwrap();
        tokio::time::timeout(
            Duration::from_millis(100),
            alone.wait(Duration::from_secs(60)),
        )
        .await
        .unwrap();
        assert!(
            b.join(&key(8), entry(1).0, 5).is_some(),
            "it took no joiners"
        );
    }

    #[tokio::test]
    async fn an_open_batch_waits_for_its_time_then_takes_no_more() {
        let b = Batcher::default();
        let g = b.join(&key(8), entry(1).0, 64).unwrap();
        let t = std::time::Instant::now();
        g.wait(Duration::from_millis(30)).await;
        assert!(
            t.elapsed() >= Duration::from_millis(25),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(b.close(&key(8), &g).len(), 1);
        // After closing, a request opens a new batch instead of joining the closed one.
        let again = b.join(&key(8), entry(1).0, 64).unwrap();
        assert!(!Arc::ptr_eq(&g, &again));
    }
}
