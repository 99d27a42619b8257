//! Admission control with shared state: token buckets per API key and per client address, and
//! lockout after repeated failed authentication.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens per second up to `burst`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Keyed token buckets.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `rate` per second, `burst` at most.
    pub(crate) fn new(rate: f64, burst: u32) -> Self {
        Self {
            rate,
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take a token for `key`: `Ok(())`, or `Err(seconds until one is available)`.
    pub(crate) fn check(&self, key: &str) -> Result<(), u64> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            // Forget idle clients (full buckets) so the map stays bounded.
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
        }
        let b = map.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + dt * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

/// Lockout of client addresses after repeated failed authentication.
#[derive(Debug)]
pub(crate) struct Lockout {
    max: u32,
    window: Duration,
    lock: Duration,
    map: Mutex<HashMap<String, Failures>>,
}

impl Lockout {
    /// `max` failures within `window` lock the address for `lock`.
    pub(crate) fn new(max: u32, window: Duration, lock: Duration) -> Self {
        Self {
            max,
            window,
            lock,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(seconds left)` while `client` is locked out.
    pub(crate) fn locked(&self, client: &str) -> Option<u64> {
        let now = Instant::now();
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let until = map.get(client)?.locked_until?;
        (until > now).then(|| until.duration_since(now).as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Record a failed authentication; `Some(seconds)` when this locks the client out.
    pub(crate) fn fail(&self, client: &str) -> Option<u64> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, f| f.locked_until.is_some_and(|u| u > now));
        }
        let f = map.entry(client.to_string()).or_insert(Failures {
            count: 0,
            first: now,
            locked_until: None,
        });
        if now.duration_since(f.first) > self.window || f.locked_until.is_some_and(|u| u <= now) {
            *f = Failures {
                count: 0,
                first: now,
                locked_until: None,
            };
        }
        f.count += 1;
        if f.count >= self.max {
            f.locked_until = Some(now + self.lock);
            return Some(self.lock.as_secs().max(1));
        }
        None
    }

    /// Forget failures after a successful authentication.
    pub(crate) fn succeed(&self, client: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(client).is_some_and(|f| f.locked_until.is_none()) {
            map.remove(client);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills() {
        let r = RateLimiter::new(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(r.check_at("a", t0).is_ok());
        }
        assert_eq!(r.check_at("a", t0), Err(1));
        assert!(r.check_at("b", t0).is_ok(), "buckets are per key");
        assert!(r.check_at("a", t0 + Duration::from_millis(600)).is_ok());
        assert!(r.check_at("a", t0 + Duration::from_millis(600)).is_err());
    }

    #[test]
    fn lockout_after_max_failures() {
        let l = Lockout::new(3, Duration::from_secs(60), Duration::from_secs(30));
        assert_eq!(l.fail("ip"), None);
        assert_eq!(l.fail("ip"), None);
        assert_eq!(l.locked("ip"), None);
        assert_eq!(l.fail("ip"), Some(30));
        // Rounded up: a client that waits Retry-After seconds is no longer locked out.
        assert_eq!(l.locked("ip"), Some(30));
        assert!(l.locked("other").is_none());
    }
}
