//! The open-loop scheduler: requests start on a fixed schedule, whatever the server does.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::{LoadError, Result};
use crate::http::{Client, Target};
use crate::record::{Outcome, Record};
use crate::retry::{RetryPolicy, send_with_retry_after};

/// Most requests one run may schedule.
const MAX_REQUESTS: f64 = 10_000_000.0;

/// What to send, how fast and for how long.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The loopback target.
    pub target: Target,
    /// Extra request headers (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
    /// The request body: `POST` with it, `GET` without.
    pub body: Option<Vec<u8>>,
    /// Arrivals per second.
    pub rate: f64,
    /// How long requests keep starting.
    pub duration: Duration,
    /// Client timeout of each request, retries and waits included.
    pub timeout: Duration,
    /// Most outstanding requests; an arrival beyond it is recorded as `client_dropped`.
    pub max_in_flight: usize,
    /// Poisson arrivals (exponential gaps) instead of evenly spaced ones.
    pub poisson: bool,
    /// Retry policy for 429/503 with `Retry-After` ([`RetryPolicy::NONE`] for none).
    pub retry: RetryPolicy,
    /// Seed of the arrival times and the retry jitter.
    pub seed: u64,
}

impl RunConfig {
    fn validate(&self) -> Result<()> {
        let bad = |field, expected, got: String| {
            Err(LoadError::Config {
                field,
                expected,
                got,
            })
        };
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return bad(
                "rate",
                "a positive number of requests per second",
                self.rate.to_string(),
            );
        }
        if self.duration.is_zero() {
            return bad("duration", "more than 0 s", format!("{:?}", self.duration));
        }
        if self.rate * self.duration.as_secs_f64() > MAX_REQUESTS {
            return bad(
                "rate × duration",
                "at most 10 000 000 requests",
                format!("{}", self.rate * self.duration.as_secs_f64()),
            );
        }
        if self.timeout.is_zero() {
            return bad("timeout", "more than 0 ms", format!("{:?}", self.timeout));
        }
        if self.max_in_flight == 0 {
            return bad("max-in-flight", "at least 1", "0".into());
        }
        Ok(())
    }
}

/// Start offsets of the arrivals in `[0, duration)`: `i / rate` evenly spaced, or with
/// exponential gaps of mean `1 / rate` (a Poisson process) drawn from `seed`.
pub fn arrivals(rate: f64, duration: Duration, poisson: bool, seed: u64) -> Vec<Duration> {
    let end = duration.as_secs_f64();
    if !(rate.is_finite() && rate > 0.0) {
        return Vec::new();
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut t = 0.0;
    for i in 0u64.. {
        if poisson {
            t += -(1.0 - rng.random::<f64>()).ln() / rate;
        } else {
            t = i as f64 / rate;
        }
        if t >= end || out.len() as f64 >= MAX_REQUESTS {
            break;
        }
        out.push(Duration::from_secs_f64(t));
    }
    out
}

/// Runs the load: starts every arrival on time, each bounded by `timeout`, and returns one
/// [`Record`] per arrival, in `id` order. Ends by `duration + timeout` (plus scheduling slack).
pub async fn run(cfg: &RunConfig) -> Result<Vec<Record>> {
    cfg.validate()?;
    let schedule = arrivals(cfg.rate, cfg.duration, cfg.poisson, cfg.seed);
    let client = Arc::new(Client::new(&cfg.target, &cfg.headers, cfg.body.as_deref()));
    let slots = Arc::new(Semaphore::new(cfg.max_in_flight));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    let mut records = Vec::with_capacity(schedule.len());
    for (id, offset) in (0u64..).zip(schedule) {
        let at = start + offset;
        tokio::time::sleep_until(at).await;
        while let Some(done) = tasks.try_join_next() {
            records.push(done?);
        }
        let start_ms = offset.as_secs_f64() * 1e3;
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            records.push(Record::unanswered(
                id,
                start_ms,
                0.0,
                Outcome::ClientDropped,
            ));
            continue;
        };
        let client = Arc::clone(&client);
        let (timeout, policy) = (cfg.timeout, cfg.retry);
        let seed = cfg.seed ^ id.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        tasks.spawn(async move {
            let _slot = slot;
            let mut rng = StdRng::seed_from_u64(seed);
            let done = send_with_retry_after(&client, at + timeout, &policy, &mut rng).await;
            let latency_ms = at.elapsed().as_secs_f64() * 1e3;
            let mut rec = match &done.result {
                Ok(resp) => Record::answered(id, start_ms, latency_ms, resp),
                Err(LoadError::Timeout) => {
                    let mut rec = Record::unanswered(
                        id,
                        start_ms,
                        timeout.as_secs_f64() * 1e3,
                        Outcome::Hung,
                    );
                    rec.error = Some(LoadError::Timeout.to_string());
                    rec
                }
                Err(e) => {
                    let mut rec = Record::unanswered(id, start_ms, latency_ms, Outcome::Error);
                    rec.error = Some(e.to_string());
                    rec
                }
            };
            rec.attempts = done.attempts;
            rec.retry_after = done.retry_after;
            rec
        });
    }
    while let Some(done) = tasks.join_next().await {
        records.push(done?);
    }
    records.sort_by_key(|r| r.id);
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_arrivals_are_rate_times_duration() {
        let a = arrivals(50.0, Duration::from_secs(2), false, 0);
        assert_eq!(a.len(), 100);
        assert_eq!(a[1], Duration::from_millis(20));
        assert_eq!(a[99], Duration::from_millis(1980));
    }

    #[test]
    fn poisson_arrivals_are_seeded_with_the_right_mean() {
        let a = arrivals(1000.0, Duration::from_secs(10), true, 7);
        assert_eq!(a, arrivals(1000.0, Duration::from_secs(10), true, 7));
        // 10 000 expected; a Poisson count has sd 100, so ±5 sd.
        assert!((a.len() as f64 - 10_000.0).abs() < 500.0, "{}", a.len());
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
    }
}
