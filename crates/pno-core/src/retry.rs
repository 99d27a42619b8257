//! Retries of transient I/O failures: exponential backoff with full jitter, bounded by a number
//! of attempts, a total time and an optional retry budget.
//!
//! # Retries
//!
//! **What is retried.** Only an operation that is safe to run again (idempotent, or made so by
//! its caller: an atomic file write rewrites its temporary file from scratch; an audit append
//! truncates the log back to its length before the attempt), and only when it failed with a
//! transient I/O error, see [`is_transient`]: `Interrupted`, `WouldBlock`, `TimedOut`,
//! `ResourceBusy`, `ConnectionReset`, `ConnectionAborted`.
//!
//! **Defaults** ([`Backoff::default`]) follow Envoy's retry backoff: a 25 ms base interval, a
//! 250 ms cap and *full jitter* (retry `n` waits a uniform draw from `[0, min(250 ms, 25 ms ·
//! 2ⁿ)]`), with 3 attempts (1 try + 2 retries) and at most 2 s spent in all. A [`RetryBudget`]
//! (tower's `TpsBudget` defaults: a 10 s window, a floor of 10 retries per second, retries at
//! most 20 % of first tries) stops a storm of retries when a whole disk or peer is failing.
//!
//! **Never retried.** Errors that say the request or the environment is wrong and will stay
//! wrong: `NotFound`, `PermissionDenied`, `InvalidData`, `InvalidInput`, `StorageFull`,
//! `AlreadyExists`, `UnexpectedEof` (a truncated file stays truncated), and every other kind.
//! Input errors (a malformed file, a bad request) never reach this module as I/O errors, and
//! operations with non-idempotent effects must not be wrapped in [`retry_io`].
//!
//! The retry loop blocks (`std::thread::sleep`): it is meant for blocking code (file I/O, or
//! inside `spawn_blocking`). Each retry is reported to an `on_retry` callback as a [`Retried`],
//! so callers log it with their own logger (failure class `transient`) and count it.
//!
//! The jitter of [`retry_io`] draws from the thread's OS-seeded generator on purpose: its job is
//! to decorrelate the retries of different processes, which a fixed seed would defeat.
//! [`Backoff::delay`] takes the generator as an argument, so tests draw from a seeded one.
//!
//! ```
//! use std::io;
//! use pno_core::retry::{Backoff, retry_io};
//!
//! let mut failures = 1;
//! let mut retries = 0;
//! let value = retry_io(
//!     &Backoff::default(),
//!     None,
//!     |_attempt| {
//!         if failures > 0 {
//!             failures -= 1;
//!             return Err(io::Error::from(io::ErrorKind::Interrupted));
//!         }
//!         Ok(42)
//!     },
//!     |_retried| retries += 1,
//! )
//! .unwrap();
//! assert_eq!((value, retries), (42, 1));
//! ```

use std::io::{self, ErrorKind};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often and how long to retry: exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first retry's delay cap; retry `n` (0-based) waits up to `base · 2ⁿ`.
    pub base: Duration,
    /// The largest delay cap, whatever the retry number.
    pub max: Duration,
    /// Calls in all, the first try included (`1` never retries; `0` is treated as `1`).
    pub attempts: u32,
    /// Total time budget from the first call: no delay is slept that would end past it.
    pub max_elapsed: Duration,
}

impl Default for Backoff {
    /// Envoy's retry backoff (25 ms base, 250 ms cap, full jitter), 3 attempts, 2 s in all.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(25),
            max: Duration::from_millis(250),
            attempts: 3,
            max_elapsed: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    /// A policy that never retries (one attempt).
    pub fn none() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }

    /// The delay cap of retry `retry` (0-based): `min(max, base · 2^retry)`, saturating.
    pub fn cap(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry `retry` (0-based), with full jitter: a uniform draw from
    /// `[0, min(max, base · 2^retry)]`.
    pub fn delay(&self, retry: u32, rng: &mut impl rand::Rng) -> Duration {
        let cap = u64::try_from(self.cap(retry).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=cap))
    }
}

/// A shared limit on retries, like tower's `TpsBudget`: over a sliding window of `ttl`, retries
/// may be at most `ratio` of the first tries plus a floor of `min_per_s` per second (so a
/// quiet process may still retry). Cheap to share: `&RetryBudget` is `Sync`.
#[derive(Debug)]
pub struct RetryBudget {
    ttl: Duration,
    reserve: f64,
    ratio: f64,
    window: Mutex<Window>,
}

/// Buckets of the sliding window.
const SLOTS: usize = 10;

#[derive(Debug)]
struct Window {
    /// (first tries, retries) per slot.
    slots: [(u64, u64); SLOTS],
    /// The slot the current time falls in.
    head: usize,
    /// When the head slot started; `None` before the first use.
    head_start: Option<Instant>,
}

impl Default for RetryBudget {
    /// tower's `TpsBudget::default()`: a 10 s window, 10 retries per second, 20 % of first tries.
    fn default() -> Self {
        Self::new(Duration::from_secs(10), 10, 0.2)
    }
}

impl RetryBudget {
    /// A budget over a window of `ttl` (clamped to 1 ms to 1 h) allowing `min_per_s` retries
    /// per second plus `ratio` (clamped to 0..=1000; NaN counts as 0) retries per first try.
    pub fn new(ttl: Duration, min_per_s: u32, ratio: f64) -> Self {
        let ttl = ttl.clamp(Duration::from_millis(1), Duration::from_secs(3600));
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1000.0)
        };
        Self {
            ttl,
            reserve: f64::from(min_per_s) * ttl.as_secs_f64(),
            ratio,
            window: Mutex::new(Window {
                slots: [(0, 0); SLOTS],
                head: 0,
                head_start: None,
            }),
        }
    }

    /// Record a first try (it earns `ratio` retries).
    pub fn deposit(&self) {
        self.deposit_at(Instant::now());
    }

    /// May I retry? `true` spends one retry from the budget; `false` spends nothing.
    pub fn withdraw(&self) -> bool {
        self.withdraw_at(Instant::now())
    }

    /// [`RetryBudget::deposit`] at a given time (tests inject the clock).
    pub(crate) fn deposit_at(&self, now: Instant) {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let head = self.advance(&mut w, now);
        w.slots[head].0 = w.slots[head].0.saturating_add(1);
    }

    /// [`RetryBudget::withdraw`] at a given time (tests inject the clock).
    pub(crate) fn withdraw_at(&self, now: Instant) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let head = self.advance(&mut w, now);
        let (tries, retries) = w
            .slots
            .iter()
            .fold((0u64, 0u64), |(a, b), &(t, r)| (a + t, b + r));
        let balance = self.reserve + self.ratio * tries as f64 - retries as f64;
        if balance >= 1.0 {
            w.slots[head].1 = w.slots[head].1.saturating_add(1);
            true
        } else {
            false
        }
    }

    /// Moves the window to `now`, clearing the slots that fell out of it; returns the head slot.
    fn advance(&self, w: &mut Window, now: Instant) -> usize {
        let slot = self.ttl / SLOTS as u32;
        let Some(start) = w.head_start else {
            w.head_start = Some(now);
            return w.head;
        };
        // A clock that went backwards (only possible with injected times) stays in the head slot.
        let elapsed = now.saturating_duration_since(start);
        let steps = (elapsed.as_nanos() / slot.as_nanos().max(1)) as u64;
        if steps >= SLOTS as u64 {
            w.slots = [(0, 0); SLOTS];
            w.head_start = Some(now);
            return w.head;
        }
        for _ in 0..steps {
            w.head = (w.head + 1) % SLOTS;
            w.slots[w.head] = (0, 0);
        }
        w.head_start = Some(start + slot * steps as u32);
        w.head
    }
}

/// Whether an I/O error is worth retrying: one that may well not happen again.
///
/// Transient: `Interrupted` (a signal), `WouldBlock` (non-blocking resource not ready),
/// `TimedOut`, `ResourceBusy` (`EBUSY`, `ETXTBSY`), `ConnectionReset` and `ConnectionAborted`
/// (network file systems, sockets). Everything else is not, notably `NotFound`,
/// `PermissionDenied`, `InvalidData`, `InvalidInput`, `StorageFull`, `AlreadyExists`, and
/// `UnexpectedEof`: a file that ends early is truncated, and reading it again reads the same
/// bytes, so retrying would only hide a corrupt file behind a delay.
pub fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Interrupted
            | ErrorKind::WouldBlock
            | ErrorKind::TimedOut
            | ErrorKind::ResourceBusy
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
    )
}

/// One retry about to happen, given to the `on_retry` callback of [`retry_io`] so the caller
/// logs it (failure class `transient`) and counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retried {
    /// The attempt that failed (0 is the first try).
    pub attempt: u32,
    /// How long we wait before the next attempt.
    pub delay: Duration,
    /// The transient error, rendered.
    pub error: String,
}

/// Runs `op(attempt)` (attempt 0 is the first try) until it succeeds, retrying transient I/O
/// errors ([`is_transient`]) after a jittered delay from `policy`.
///
/// Stops at the first non-transient error, after `policy.attempts` calls, when the next delay
/// would end past `policy.max_elapsed` since the first call, or when `budget` refuses a retry;
/// the error returned is then the last one `op` returned. The first try is deposited in
/// `budget`. `on_retry` is called before each sleep. Blocks the thread while it waits.
pub fn retry_io<T>(
    policy: &Backoff,
    budget: Option<&RetryBudget>,
    op: impl FnMut(u32) -> io::Result<T>,
    mut on_retry: impl FnMut(&Retried),
) -> io::Result<T> {
    let mut rng = rand::rng();
    run(
        policy,
        budget,
        op,
        &mut on_retry,
        &mut rng,
        &mut SystemClock { start: None },
    )
}

/// Time as the retry loop sees it: real in [`retry_io`], simulated in tests.
trait Clock {
    /// Time since the first call to `elapsed`.
    fn elapsed(&mut self) -> Duration;
    /// The instant `elapsed` refers to (for the budget).
    fn now(&mut self) -> Instant;
    /// Wait.
    fn sleep(&mut self, d: Duration);
}

struct SystemClock {
    start: Option<Instant>,
}

impl Clock for SystemClock {
    fn elapsed(&mut self) -> Duration {
        self.start.get_or_insert_with(Instant::now).elapsed()
    }
    fn now(&mut self) -> Instant {
        Instant::now()
    }
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
}

fn run<T>(
    policy: &Backoff,
    budget: Option<&RetryBudget>,
    mut op: impl FnMut(u32) -> io::Result<T>,
    on_retry: &mut dyn FnMut(&Retried),
    rng: &mut impl rand::Rng,
    clock: &mut impl Clock,
) -> io::Result<T> {
    clock.elapsed();
    if let Some(b) = budget {
        b.deposit_at(clock.now());
    }
    let attempts = policy.attempts.max(1);
    let mut attempt = 0u32;
    loop {
        let e = match op(attempt) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !is_transient(&e) || attempt + 1 >= attempts {
            return Err(e);
        }
        let delay = policy.delay(attempt, rng);
        if clock.elapsed().saturating_add(delay) > policy.max_elapsed {
            return Err(e);
        }
        if let Some(b) = budget
            && !b.withdraw_at(clock.now())
        {
            return Err(e);
        }
        on_retry(&Retried {
            attempt,
            delay,
            error: e.to_string(),
        });
        clock.sleep(delay);
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::cell::Cell;

    /// Simulated time shared with the op (which can take time too); every sleep is checked
    /// to end by `deadline`.
    struct FakeClock<'a> {
        t: &'a Cell<Duration>,
        base: Instant,
        deadline: Duration,
        slept: Duration,
    }

    impl Clock for FakeClock<'_> {
        fn elapsed(&mut self) -> Duration {
            self.t.get()
        }
        fn now(&mut self) -> Instant {
            self.base + self.t.get()
        }
        fn sleep(&mut self, d: Duration) {
            let end = self.t.get() + d;
            assert!(end <= self.deadline, "slept until {end:?}");
            self.t.set(end);
            self.slept += d;
        }
    }

    fn fast() -> Backoff {
        Backoff {
            base: Duration::from_millis(1),
            max: Duration::from_millis(4),
            attempts: 3,
            max_elapsed: Duration::from_secs(1),
        }
    }

    /// An op that fails `k` times with `kind`, then returns its attempt number.
    fn failing(
        k: u32,
        kind: ErrorKind,
        calls: &mut u32,
    ) -> impl FnMut(u32) -> io::Result<u32> + '_ {
        move |attempt| {
            assert_eq!(attempt, *calls, "attempts are numbered from 0");
            *calls += 1;
            if *calls <= k {
                Err(io::Error::new(kind, format!("failure {calls}")))
            } else {
                Ok(attempt)
            }
        }
    }

    #[test]
    fn defaults_follow_envoy_and_tower() {
        let b = Backoff::default();
        assert_eq!(b.base, Duration::from_millis(25));
        assert_eq!(b.max, Duration::from_millis(250));
        assert_eq!(b.attempts, 3);
        assert_eq!(b.max_elapsed, Duration::from_secs(2));
        assert_eq!(b.cap(0), Duration::from_millis(25));
        assert_eq!(b.cap(1), Duration::from_millis(50));
        assert_eq!(b.cap(3), Duration::from_millis(200));
        assert_eq!(b.cap(4), Duration::from_millis(250));
        assert_eq!(b.cap(200), Duration::from_millis(250));
        let budget = RetryBudget::default();
        assert_eq!(budget.ttl, Duration::from_secs(10));
        assert_eq!(budget.reserve, 100.0);
        assert_eq!(budget.ratio, 0.2);
    }

    #[test]
    fn fewer_failures_than_attempts_succeed_after_retries() {
        for k in 0..3 {
            let mut calls = 0;
            let mut seen = Vec::new();
            let got = retry_io(
                &fast(),
                None,
                failing(k, ErrorKind::Interrupted, &mut calls),
                |r| seen.push(r.clone()),
            );
            assert_eq!(got.unwrap(), k, "k = {k}");
            assert_eq!(calls, k + 1);
            assert_eq!(seen.len() as u32, k);
            for (i, r) in seen.iter().enumerate() {
                assert_eq!(r.attempt, i as u32);
                assert!(r.delay <= fast().cap(i as u32));
                assert!(r.error.contains(&format!("failure {}", i + 1)), "{r:?}");
            }
        }
    }

    #[test]
    fn as_many_failures_as_attempts_fail_with_the_last_error() {
        for k in [3, 4, 10] {
            let mut calls = 0;
            let mut retries = 0;
            let err = retry_io(
                &fast(),
                None,
                failing(k, ErrorKind::TimedOut, &mut calls),
                |_| retries += 1,
            )
            .unwrap_err();
            assert_eq!(calls, 3, "exactly `attempts` calls, k = {k}");
            assert_eq!(retries, 2);
            assert_eq!(err.kind(), ErrorKind::TimedOut);
            assert_eq!(err.to_string(), "failure 3", "the last error is returned");
        }
    }

    #[test]
    fn non_transient_errors_are_not_retried() {
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::PermissionDenied,
            ErrorKind::InvalidData,
            ErrorKind::InvalidInput,
            ErrorKind::StorageFull,
            ErrorKind::AlreadyExists,
            ErrorKind::UnexpectedEof,
            ErrorKind::Other,
        ] {
            let mut calls = 0;
            let mut retries = 0;
            let err = retry_io(&fast(), None, failing(5, kind, &mut calls), |_| {
                retries += 1
            })
            .unwrap_err();
            assert_eq!((calls, retries), (1, 0), "{kind:?}");
            assert_eq!(err.kind(), kind);
        }
        for kind in [
            ErrorKind::Interrupted,
            ErrorKind::WouldBlock,
            ErrorKind::TimedOut,
            ErrorKind::ResourceBusy,
            ErrorKind::ConnectionReset,
            ErrorKind::ConnectionAborted,
        ] {
            assert!(is_transient(&io::Error::from(kind)), "{kind:?}");
        }
    }

    #[test]
    fn zero_attempts_means_one_try() {
        let policy = Backoff {
            attempts: 0,
            ..fast()
        };
        let mut calls = 0;
        let r = retry_io(
            &policy,
            None,
            failing(1, ErrorKind::Interrupted, &mut calls),
            |_| {},
        );
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn max_elapsed_bounds_the_total_wait_in_simulated_time() {
        // Unlimited attempts, each failing call taking 7 ms: no sleep may end past 100 ms.
        let policy = Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(40),
            attempts: u32::MAX,
            max_elapsed: Duration::from_millis(100),
        };
        for seed in 0..50 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let t = Cell::new(Duration::ZERO);
            let mut clock = FakeClock {
                t: &t,
                base: Instant::now(),
                deadline: policy.max_elapsed,
                slept: Duration::ZERO,
            };
            let mut calls = 0u32;
            let mut announced = Duration::ZERO;
            let err = run(
                &policy,
                None,
                |_| {
                    calls += 1;
                    t.set(t.get() + Duration::from_millis(7));
                    Err::<(), _>(io::Error::from(ErrorKind::WouldBlock))
                },
                &mut |r: &Retried| announced += r.delay,
                &mut rng,
                &mut clock,
            )
            .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::WouldBlock);
            assert!(calls > 2, "seed {seed}: it retried ({calls} calls)");
            // At most 100 ms of waiting and calls; it stopped because the next delay did not fit.
            assert!(
                t.get() <= policy.max_elapsed + Duration::from_millis(7),
                "seed {seed}"
            );
            assert_eq!(announced, clock.slept, "on_retry saw every delay slept");
        }
    }

    #[test]
    fn max_elapsed_bounds_the_total_time_in_real_time() {
        let policy = Backoff {
            base: Duration::from_millis(20),
            max: Duration::from_millis(50),
            attempts: u32::MAX,
            max_elapsed: Duration::from_millis(150),
        };
        let start = Instant::now();
        let mut calls = 0u32;
        let err = retry_io(
            &policy,
            None,
            |_| {
                calls += 1;
                Err::<(), _>(io::Error::from(ErrorKind::Interrupted))
            },
            |_| {},
        )
        .unwrap_err();
        let took = start.elapsed();
        assert_eq!(err.kind(), ErrorKind::Interrupted);
        assert!(calls >= 2, "it retried ({calls} calls)");
        // The sleeps sum to at most max_elapsed; the generous margin is for a loaded machine.
        assert!(
            took < Duration::from_millis(150) + Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[test]
    fn jitter_is_uniform_on_zero_to_cap() {
        let b = Backoff::default();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for retry in [0u32, 1, 2, 5] {
            let cap = b.cap(retry).as_secs_f64();
            let n = 20_000;
            let mut sum = 0.0;
            let (mut lo, mut hi) = (f64::MAX, 0.0f64);
            for _ in 0..n {
                let d = b.delay(retry, &mut rng).as_secs_f64();
                assert!(
                    (0.0..=cap).contains(&d),
                    "retry {retry}: {d} outside [0, {cap}]"
                );
                sum += d;
                lo = lo.min(d);
                hi = hi.max(d);
            }
            // Uniform on [0, cap]: mean cap/2, standard error cap/sqrt(12 n) ≈ 0.002 cap;
            // a 0.02 cap tolerance is 10 standard errors (and the seed is fixed anyway).
            let mean = sum / n as f64;
            assert!(
                (mean - cap / 2.0).abs() < 0.02 * cap,
                "retry {retry}: mean {mean}"
            );
            // Full jitter reaches both ends of the range.
            assert!(
                lo < 0.01 * cap && hi > 0.99 * cap,
                "retry {retry}: [{lo}, {hi}]"
            );
        }
    }

    #[test]
    fn budget_refuses_once_exhausted_and_refills_over_time() {
        // 1 s window, floor 2/s (a reserve of 2), 50 % of first tries.
        let b = RetryBudget::new(Duration::from_secs(1), 2, 0.5);
        let t0 = Instant::now();
        assert!(b.withdraw_at(t0));
        assert!(b.withdraw_at(t0));
        assert!(!b.withdraw_at(t0), "the reserve of 2 is spent");
        // Two first tries earn one retry.
        b.deposit_at(t0);
        assert!(!b.withdraw_at(t0), "half a retry is not enough");
        b.deposit_at(t0);
        assert!(b.withdraw_at(t0));
        assert!(!b.withdraw_at(t0));
        // Half a window later nothing has expired yet.
        assert!(!b.withdraw_at(t0 + Duration::from_millis(500)));
        // A full window later the old retries have left it: the reserve is back.
        let t1 = t0 + Duration::from_millis(1100);
        assert!(b.withdraw_at(t1));
        assert!(b.withdraw_at(t1));
        assert!(!b.withdraw_at(t1));
        // Long idle: everything expires at once.
        let t2 = t1 + Duration::from_secs(60);
        assert!(b.withdraw_at(t2));
    }

    #[test]
    fn budget_slides_slot_by_slot() {
        // 1 s window in 100 ms slots, no ratio: retries spent at 0 ms come back at ≥ 1 s.
        let b = RetryBudget::new(Duration::from_secs(1), 3, 0.0);
        let t0 = Instant::now();
        assert!(b.withdraw_at(t0));
        assert!(b.withdraw_at(t0 + Duration::from_millis(450)));
        assert!(b.withdraw_at(t0 + Duration::from_millis(450)));
        assert!(!b.withdraw_at(t0 + Duration::from_millis(950)));
        // The first retry's slot has expired; the two at 450 ms have not.
        assert!(b.withdraw_at(t0 + Duration::from_millis(1050)));
        assert!(!b.withdraw_at(t0 + Duration::from_millis(1100)));
        assert!(b.withdraw_at(t0 + Duration::from_millis(1500)));
    }

    #[test]
    fn retry_io_stops_when_the_budget_refuses() {
        let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.0);
        let mut calls = 0;
        let err = retry_io(
            &fast(),
            Some(&budget),
            failing(5, ErrorKind::Interrupted, &mut calls),
            |_| {},
        )
        .unwrap_err();
        assert_eq!(calls, 1, "an empty budget allows no retry");
        assert_eq!(err.to_string(), "failure 1");
        // A budget with room: the first try is deposited, one retry is withdrawn.
        let budget = RetryBudget::new(Duration::from_secs(10), 0, 1.0);
        let mut calls = 0;
        let got = retry_io(
            &fast(),
            Some(&budget),
            failing(1, ErrorKind::Interrupted, &mut calls),
            |_| {},
        );
        assert_eq!(got.unwrap(), 1);
        assert!(!budget.withdraw(), "the one earned retry was spent");
    }

    #[test]
    fn budget_is_shareable_across_threads() {
        fn assert_sync<T: Sync + Send>() {}
        assert_sync::<RetryBudget>();
        let b = RetryBudget::new(Duration::from_secs(60), 1, 0.0); // a reserve of 60
        let granted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..50).filter(|_| b.withdraw()).count()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 60);
    }
}
