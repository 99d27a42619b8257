//! Training anomaly events to a webhook (`pno train --anomaly-webhook URL`).
//!
//! Each event the training watch raises (`pno_train::watch`: loss spike, gradient explosion,
//! plateau) is POSTed as one JSON object — the fields of its `log.jsonl` line plus the run
//! folder and the time — by one background thread running a small current-thread tokio runtime
//! and [`Webhook::deliver`] (retries with jittered backoff on connection errors, 408, 429, 5xx).
//! Training never waits for it: events pass through a bounded queue ([`QUEUE`] deep) and are
//! dropped, and counted, when it is full. At the end of the run [`AnomalyHook::finish`] waits at
//! most [`FLUSH`] for the queue to drain and reports how many events were delivered, failed,
//! dropped or left unsent. `log.jsonl` stays the record; the webhook is a copy for people.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use pno_serve::webhook::Webhook;
use pno_train::watch::Anomaly;

/// Events waiting for delivery at most; more are dropped.
pub(crate) const QUEUE: usize = 64;
/// How long the end of a run waits for undelivered events.
pub(crate) const FLUSH: Duration = Duration::from_secs(10);
const CONTENT_TYPE: &str = "application/json";

/// The JSON body of one event.
#[derive(Serialize)]
struct Body<'a> {
    kind: &'static str,
    /// The run folder.
    run: &'a str,
    /// When it was raised, milliseconds since the Unix epoch.
    ts_ms: u64,
    #[serde(flatten)]
    anomaly: &'a Anomaly,
}

/// Counts kept by the delivery thread.
#[derive(Default)]
struct Tally {
    delivered: AtomicUsize,
    failed: AtomicUsize,
    last_error: Mutex<Option<String>>,
}

/// The sender side: owned by the training progress sink.
pub(crate) struct AnomalyHook {
    url: String,
    run: String,
    tx: Option<SyncSender<String>>,
    worker: Option<JoinHandle<()>>,
    tally: Arc<Tally>,
    queued: usize,
    dropped: usize,
}

/// What became of one run's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    /// The webhook's URL.
    pub(crate) url: String,
    /// Events raised.
    pub(crate) raised: usize,
    /// Answered with 2xx.
    pub(crate) delivered: usize,
    /// Given up on (a final status, or retries exhausted).
    pub(crate) failed: usize,
    /// Not queued: the queue was full.
    pub(crate) dropped: usize,
    /// Still queued or in flight when the flush deadline passed.
    pub(crate) pending: usize,
    /// The last failure's reason.
    pub(crate) last_error: Option<String>,
}

impl AnomalyHook {
    /// Validate `url` (and the CA file `ca`) and start the delivery thread. Errors name
    /// `--anomaly-webhook` or `--anomaly-webhook-ca`.
    pub(crate) fn start(url: &str, ca: Option<&Path>, run: &Path) -> Result<Self> {
        let hook = Webhook::new(url, ca, "--anomaly-webhook", "--anomaly-webhook-ca")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("--anomaly-webhook: starting its delivery runtime")?;
        let (tx, rx) = sync_channel::<String>(QUEUE);
        let tally = Arc::new(Tally::default());
        let t = tally.clone();
        let worker = std::thread::Builder::new()
            .name("anomaly-webhook".into())
            .spawn(move || {
                while let Ok(body) = rx.recv() {
                    match rt.block_on(hook.deliver(&body, CONTENT_TYPE)) {
                        Ok(_) => {
                            t.delivered.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "anomaly webhook delivery failed");
                            *t.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            t.failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
            .context("--anomaly-webhook: starting its delivery thread")?;
        let run = std::path::absolute(run).unwrap_or_else(|_| run.to_path_buf());
        Ok(Self {
            url: url.to_string(),
            run: run.display().to_string(),
            tx: Some(tx),
            worker: Some(worker),
            tally,
            queued: 0,
            dropped: 0,
        })
    }

    /// Queue `a` for delivery without waiting; dropped (and counted) when the queue is full.
    pub(crate) fn send(&mut self, a: &Anomaly) {
        let ts_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let body = Body {
            kind: "anomaly",
            run: &self.run,
            ts_ms,
            anomaly: a,
        };
        let Ok(body) = serde_json::to_string(&body) else {
            self.dropped += 1;
            return;
        };
        match self.tx.as_ref().map(|tx| tx.try_send(body)) {
            Some(Ok(())) => self.queued += 1,
            Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => {
                self.dropped += 1;
            }
        }
    }

    /// Close the queue, wait at most `wait` for it to drain, and count.
    pub(crate) fn finish(mut self, wait: Duration) -> Report {
        drop(self.tx.take());
        let deadline = Instant::now() + wait;
        if let Some(w) = self.worker.take() {
            while !w.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if w.is_finished() {
                let _ = w.join();
            } // else: left behind; the process exit ends it.
        }
        let delivered = self.tally.delivered.load(Ordering::SeqCst);
        let failed = self.tally.failed.load(Ordering::SeqCst);
        Report {
            url: self.url.clone(),
            raised: self.queued + self.dropped,
            delivered,
            failed,
            dropped: self.dropped,
            pending: self.queued.saturating_sub(delivered + failed),
            last_error: self
                .tally
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

impl Report {
    /// Every raised event was delivered.
    pub(crate) fn complete(&self) -> bool {
        self.delivered == self.raised
    }

    /// One line for people.
    pub(crate) fn line(&self) -> String {
        let mut s = format!(
            "anomaly webhook {}: {} of {} event(s) delivered",
            self.url, self.delivered, self.raised
        );
        if self.failed > 0 {
            s += &format!(", {} failed", self.failed);
            if let Some(e) = &self.last_error {
                s += &format!(" (last: {e})");
            }
        }
        if self.dropped > 0 {
            s += &format!(", {} dropped (queue of {QUEUE} full)", self.dropped);
        }
        if self.pending > 0 {
            s += &format!(
                ", {} not sent within {} s of the end of training",
                self.pending,
                FLUSH.as_secs()
            );
        }
        s
    }

    /// Report on stderr (a warning when anything was not delivered; nothing when no event was
    /// raised; `quiet` hides the all-delivered line) and as a tracing event.
    pub(crate) fn print(&self, quiet: bool) {
        tracing::info!(
            url = %self.url,
            raised = self.raised,
            delivered = self.delivered,
            failed = self.failed,
            dropped = self.dropped,
            pending = self.pending,
            "anomaly webhook"
        );
        if self.raised == 0 {
            return;
        }
        if !self.complete() {
            eprintln!("warning: {}", self.line());
        } else if !quiet {
            eprintln!("{}", self.line());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anomaly() -> Anomaly {
        Anomaly {
            detector: "plateau",
            epoch: 9,
            step: None,
            count: 8,
            value: 0.5,
            baseline: 0.5,
            message: "plateau at epoch 9".into(),
        }
    }

    #[test]
    fn bad_urls_name_the_flag() {
        let run = Path::new("runs/x");
        for url in ["ftp://x", "not a url", "http://"] {
            let e = AnomalyHook::start(url, None, run).err().unwrap();
            assert!(
                format!("{e:#}").contains("--anomaly-webhook"),
                "{url}: {e:#}"
            );
        }
        let e = AnomalyHook::start("https://x/", Some(Path::new("/nonexistent.pem")), run)
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("--anomaly-webhook-ca"), "{e:#}");
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        // A listener that accepts and never answers: the first delivery hangs in its attempt,
        // the queue fills, the rest are dropped, the flush gives up at its deadline.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let mut h = AnomalyHook::start(&url, None, Path::new("r")).unwrap();
        let t0 = Instant::now();
        for _ in 0..QUEUE + 10 {
            h.send(&anomaly());
        }
        assert!(t0.elapsed() < Duration::from_secs(1), "send never waits");
        let r = h.finish(Duration::from_millis(200));
        assert_eq!(r.raised, QUEUE + 10);
        assert!(r.dropped >= 9, "{r:?}");
        assert_eq!(r.delivered + r.failed, 0, "{r:?}");
        assert_eq!(r.pending + r.dropped, r.raised, "{r:?}");
        assert!(!r.complete());
        assert!(r.line().contains("dropped"), "{}", r.line());
        drop(l);
    }
}
