//! The reference client behaviour for shedding: honour `Retry-After` on 429 and 503.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::error::{LoadError, Result};
use crate::http::{Client, HttpResponse};

/// How [`send_with_retry_after`] retries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so at most `max_retries + 1` attempts).
    pub max_retries: u32,
    /// Longest `Retry-After` honoured; longer values are cut to this.
    pub cap: Duration,
}

impl RetryPolicy {
    /// Never retry: one attempt.
    pub const NONE: Self = Self {
        max_retries: 0,
        cap: Duration::ZERO,
    };
}

impl Default for RetryPolicy {
    /// Three retries, `Retry-After` capped at 10 s.
    fn default() -> Self {
        Self {
            max_retries: 3,
            cap: Duration::from_secs(10),
        }
    }
}

/// The result of one logical request, over all its attempts.
#[derive(Debug)]
pub struct Attempted {
    /// The last answer, or why there was none ([`LoadError::Timeout`] past the deadline).
    pub result: Result<HttpResponse>,
    /// Attempts made (1 without retries).
    pub attempts: u32,
    /// The last `Retry-After` value seen on any attempt.
    pub retry_after: Option<String>,
}

/// Parses a `Retry-After` given in delay-seconds (an HTTP date is not honoured: `None`).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Sends `client`'s request, and while the answer is 429 or 503 with a `Retry-After` in
/// seconds, waits and tries again, at most `policy.max_retries` times.
///
/// This is the reference client behaviour for `pno serve`'s load shedding:
/// - the wait is the `Retry-After` delay `d`, capped at `policy.cap`, **plus full jitter**: a
///   term drawn uniformly from `[0, d)`. The client never comes back sooner than the server
///   asked, and a crowd of clients shed together spreads over twice the window instead of
///   returning in lockstep;
/// - only 429 and 503 are retried, and only with a `Retry-After` (any other failure is the
///   server's final word, and retrying a request that may have run is not safe in general);
/// - the whole exchange, waits included, is bounded by `deadline`: an attempt still running at
///   the deadline gives [`LoadError::Timeout`], and a wait that would pass the deadline is not
///   started — the last 429/503 is returned instead.
///
/// `rng` draws the jitter; seed it for reproducible runs.
pub async fn send_with_retry_after<R: Rng>(
    client: &Client,
    deadline: Instant,
    policy: &RetryPolicy,
    rng: &mut R,
) -> Attempted {
    let mut attempts = 0;
    let mut retry_after = None;
    loop {
        attempts += 1;
        let result = match tokio::time::timeout_at(deadline, client.send()).await {
            Ok(result) => result,
            Err(_) => Err(LoadError::Timeout),
        };
        let wait = match &result {
            Ok(resp) if resp.status == 429 || resp.status == 503 => {
                let value = resp.header("retry-after").map(str::to_owned);
                let wait = value.as_deref().and_then(parse_retry_after);
                retry_after = value.or(retry_after);
                wait
            }
            _ => None,
        };
        match wait {
            Some(delay) if attempts <= policy.max_retries => {
                let delay = delay.min(policy.cap);
                let wait = delay + delay.mul_f64(rng.random::<f64>());
                if Instant::now() + wait >= deadline {
                    return Attempted {
                        result,
                        attempts,
                        retry_after,
                    };
                }
                tokio::time::sleep(wait).await;
            }
            _ => {
                return Attempted {
                    result,
                    attempts,
                    retry_after,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_delay_seconds_only() {
        assert_eq!(parse_retry_after("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 30 "), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
