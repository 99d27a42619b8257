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
    inner: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    rate: f64,
    burst: f64,
    map: HashMap<String, Bucket>,
}

impl RateLimiter {
    /// `rate` per second, `burst` at most.
    pub(crate) fn new(rate: f64, burst: u32) -> Self {
        Self {
            inner: Mutex::new(Buckets {
                rate,
                burst: f64::from(burst),
                map: HashMap::new(),
            }),
        }
    }

    /// New rate and burst (a config reload); the buckets keep their tokens, capped at the new
    /// burst.
    pub(crate) fn reconfigure(&self, rate: f64, burst: u32) {
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        b.rate = rate;
        b.burst = f64::from(burst);
        let cap = b.burst;
        b.map
            .values_mut()
            .for_each(|x| x.tokens = x.tokens.min(cap));
    }

    /// Take a token for `key`: `Ok(())`, or `Err(seconds until one is available)`.
    pub(crate) fn check(&self, key: &str) -> Result<(), u64> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Buckets { rate, burst, map } = &mut *guard;
        let (rate, burst) = (*rate, *burst);
        if map.len() > 100_000 {
            // Forget idle clients (full buckets) so the map stays bounded.
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
        }
        let b = map.entry(key.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + dt * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    first: Instant,
    locked_until: Option<Instant>,
    /// Lockouts so far (each one longer), forgotten after a day without one.
    bans: u32,
    last_ban: Option<Instant>,
}

/// How long escalation remembers a client's lockouts.
const BAN_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// Lockout of client addresses after repeated failed authentication, escalating for repeat
/// offenders (fail2ban's `bantime.increment`): the n-th lockout lasts `lock × factor^(n-1)`, at
/// most `max_lock`.
#[derive(Debug)]
pub(crate) struct Lockout {
    params: Mutex<LockParams>,
    map: Mutex<HashMap<String, Failures>>,
}

/// The lockout's settings.
#[derive(Debug, Clone, Copy)]
struct LockParams {
    max: u32,
    window: Duration,
    lock: Duration,
    factor: f64,
    max_lock: Duration,
}

impl Lockout {
    /// `max` failures within `window` lock the address for `lock` (then `lock × factor`, …, at
    /// most `max_lock`).
    pub(crate) fn new(
        max: u32,
        window: Duration,
        lock: Duration,
        factor: f64,
        max_lock: Duration,
    ) -> Self {
        Self {
            params: Mutex::new(LockParams {
                max,
                window,
                lock,
                factor,
                max_lock: max_lock.max(lock),
            }),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// New settings (a config reload); current lockouts and histories stay.
    pub(crate) fn reconfigure(
        &self,
        max: u32,
        window: Duration,
        lock: Duration,
        factor: f64,
        max_lock: Duration,
    ) {
        *self.params.lock().unwrap_or_else(|p| p.into_inner()) = LockParams {
            max,
            window,
            lock,
            factor,
            max_lock: max_lock.max(lock),
        };
    }

    /// `Some(seconds left)` while `client` is locked out (rounded up: a client that waits that
    /// long is let in).
    pub(crate) fn locked(&self, client: &str) -> Option<u64> {
        self.locked_at(client, Instant::now())
    }

    fn locked_at(&self, client: &str, now: Instant) -> Option<u64> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let until = map.get(client)?.locked_until?;
        (until > now).then(|| until.duration_since(now).as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Record a failed authentication; `Some(seconds)` when this locks the client out.
    pub(crate) fn fail(&self, client: &str) -> Option<u64> {
        self.fail_at(client, Instant::now())
    }

    fn fail_at(&self, client: &str, now: Instant) -> Option<u64> {
        let p = *self.params.lock().unwrap_or_else(|p| p.into_inner());
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, f| {
                f.locked_until.is_some_and(|u| u > now)
                    || f.last_ban
                        .is_some_and(|b| now.duration_since(b) < BAN_MEMORY)
            });
        }
        let f = map.entry(client.to_string()).or_insert(Failures {
            count: 0,
            first: now,
            locked_until: None,
            bans: 0,
            last_ban: None,
        });
        if f.last_ban
            .is_some_and(|b| now.duration_since(b) >= BAN_MEMORY)
        {
            f.bans = 0;
            f.last_ban = None;
        }
        if now.duration_since(f.first) > p.window || f.locked_until.is_some_and(|u| u <= now) {
            f.count = 0;
            f.first = now;
            f.locked_until = None;
        }
        f.count += 1;
        if f.count >= p.max {
            let scale = p.factor.powi(f.bans.min(64) as i32);
            let lock = p.lock.mul_f64(scale.min(1e9)).min(p.max_lock);
            f.bans += 1;
            f.last_ban = Some(now);
            f.locked_until = Some(now + lock);
            return Some(lock.as_secs_f64().ceil().max(1.0) as u64);
        }
        None
    }

    /// Forget failures after a successful authentication (not the lockout history).
    pub(crate) fn succeed(&self, client: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = map.get_mut(client)
            && f.locked_until.is_none()
        {
            if f.bans == 0 {
                map.remove(client);
            } else {
                f.count = 0;
            }
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
    fn repeat_offenders_are_locked_out_longer_up_to_the_cap() {
        let l = Lockout::new(
            2,
            Duration::from_secs(60),
            Duration::from_secs(10),
            3.0,
            Duration::from_secs(50),
        );
        let mut t = Instant::now();
        let mut bans = Vec::new();
        for _ in 0..4 {
            assert_eq!(l.fail_at("ip", t), None);
            let b = l.fail_at("ip", t).unwrap();
            assert_eq!(l.locked_at("ip", t), Some(b));
            bans.push(b);
            t += Duration::from_secs(b);
            assert_eq!(l.locked_at("ip", t), None, "free once the ban ends");
        }
        assert_eq!(bans, [10, 30, 50, 50], "×3 each time, capped at 50 s");
        // A day later the history is forgotten.
        t += BAN_MEMORY;
        l.fail_at("ip", t);
        assert_eq!(l.fail_at("ip", t), Some(10));
    }

    #[test]
    fn lockout_after_max_failures() {
        let l = Lockout::new(
            3,
            Duration::from_secs(60),
            Duration::from_secs(30),
            1.0,
            Duration::from_secs(30),
        );
        assert_eq!(l.fail("ip"), None);
        assert_eq!(l.fail("ip"), None);
        assert_eq!(l.locked("ip"), None);
        assert_eq!(l.fail("ip"), Some(30));
        // Rounded up: a client that waits Retry-After seconds is no longer locked out.
        assert_eq!(l.locked("ip"), Some(30));
        assert!(l.locked("other").is_none());
    }
}
