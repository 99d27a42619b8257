//! A circuit breaker per model version: closed → open → half-open → closed, on a count-based
//! sliding window of outcomes (after resilience4j's COUNT_BASED breaker, with Envoy's
//! consecutive-failure ejection).
//!
//! - **Closed**: calls pass; each model-attributable outcome (success, slow call, failure) enters
//!   the window. Once the window holds `min_calls`, the breaker opens when the failure rate
//!   reaches `failure_rate` or the slow-call rate reaches `slow_call_rate`; it also opens after
//!   `consecutive_failures` persistent or internal failures in a row, whatever the window says.
//! - **Open**: calls are refused at once (the caller answers 503 with `Retry-After`: the time
//!   left) until `open_ms` has passed.
//! - **Half-open**: at most `half_open_calls` probe calls pass at a time; `half_open_calls`
//!   successful probes close the breaker (with an empty window), one failed or slow probe opens
//!   it again for another `open_ms`.
//!
//! Input and security failures, shedding and the breaker's own refusals are not outcomes: they
//! never count against a version. Time is a parameter, so the state machine is tested without
//! sleeping.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::BreakerConfig;

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Calls pass.
    Closed,
    /// Calls are refused.
    Open,
    /// A few probe calls decide.
    HalfOpen,
}

impl State {
    /// `closed`, `open` or `half_open`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
    /// The gauge value: 0 closed, 1 open, 2 half-open.
    pub(crate) fn gauge(self) -> f64 {
        match self {
            State::Closed => 0.0,
            State::Open => 1.0,
            State::HalfOpen => 2.0,
        }
    }
}

/// How a call that was let through ended, as far as the version's health goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answered within the slow-call threshold.
    Success,
    /// Answered, but slower than `slow_call_ms`.
    Slow,
    /// The model's failure: `consecutive` for persistent and internal failures (they count
    /// towards `consecutive_failures`), not for a compute timeout.
    Failure {
        /// Counts towards the consecutive-failure trigger.
        consecutive: bool,
        /// Also slower than `slow_call_ms` (a timeout).
        slow: bool,
    },
    /// Not the model's business (input, security, shed, cancelled by the client).
    Ignored,
}

/// A call let through: an ordinary call, or one of the half-open probes (its outcome decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ticket {
    /// An ordinary call while closed (or with the breaker disabled).
    Call,
    /// A half-open probe.
    Probe,
}

/// A change of state, for the log, the audit log and the metrics.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Transition {
    /// From.
    pub(crate) from: State,
    /// To.
    pub(crate) to: State,
    /// Why.
    pub(crate) reason: String,
}

/// What `/stats` and readiness show.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    /// The state now.
    pub(crate) state: State,
    /// Outcomes in the window.
    pub(crate) calls: usize,
    /// Failure rate over the window (0 when empty).
    pub(crate) failure_rate: f64,
    /// Slow-call rate over the window (0 when empty).
    pub(crate) slow_call_rate: f64,
    /// Persistent/internal failures in a row.
    pub(crate) consecutive_failures: u32,
    /// Time left open (zero unless open).
    pub(crate) open_for: Duration,
    /// Times it has opened.
    pub(crate) opened: u64,
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    failed: bool,
    slow: bool,
}

#[derive(Debug)]
struct Inner {
    state: State,
    window: VecDeque<Mark>,
    failures: usize,
    slows: usize,
    consecutive: u32,
    opened_at: Instant,
    probes_in_flight: u32,
    probe_successes: u32,
    opened: u64,
}

/// The breaker of one model version.
#[derive(Debug)]
pub(crate) struct Breaker {
    cfg: BreakerConfig,
    inner: Mutex<Inner>,
}

impl Breaker {
    /// A closed breaker.
    pub(crate) fn new(cfg: BreakerConfig) -> Self {
        Self {
            inner: Mutex::new(Inner {
                state: State::Closed,
                window: VecDeque::with_capacity(cfg.window),
                failures: 0,
                slows: 0,
                consecutive: 0,
                opened_at: Instant::now(),
                probes_in_flight: 0,
                probe_successes: 0,
                opened: 0,
            }),
            cfg,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_for(&self) -> Duration {
        Duration::from_millis(self.cfg.open_ms)
    }

    /// May a call pass now? `Ok` with its ticket (and the transition to half-open when this call
    /// is the first probe), or `Err(time until a retry may pass)`.
    pub(crate) fn admit(&self, now: Instant) -> Result<(Ticket, Option<Transition>), Duration> {
        if !self.cfg.enabled {
            return Ok((Ticket::Call, None));
        }
        let mut i = self.lock();
        let mut moved = None;
        if i.state == State::Open {
            let until = i.opened_at + self.open_for();
            if now < until {
                return Err(until - now);
            }
            i.state = State::HalfOpen;
            i.probes_in_flight = 0;
            i.probe_successes = 0;
            moved = Some(Transition {
                from: State::Open,
                to: State::HalfOpen,
                reason: format!("open for {} ms; probing", self.cfg.open_ms),
            });
        }
        match i.state {
            State::Closed => Ok((Ticket::Call, None)),
            State::HalfOpen
                if i.probes_in_flight + i.probe_successes < self.cfg.half_open_calls =>
            {
                i.probes_in_flight += 1;
                Ok((Ticket::Probe, moved))
            }
            // Every probe is out: wait for them.
            _ => Err(Duration::from_secs(1)),
        }
    }

    /// Record how a call ended; returns the transition it caused, if any.
    pub(crate) fn record(
        &self,
        ticket: Ticket,
        outcome: Outcome,
        now: Instant,
    ) -> Option<Transition> {
        if !self.cfg.enabled {
            return None;
        }
        let mut i = self.lock();
        match (ticket, i.state) {
            (Ticket::Probe, State::HalfOpen) => {
                i.probes_in_flight = i.probes_in_flight.saturating_sub(1);
                match outcome {
                    Outcome::Ignored => None,
                    Outcome::Success => {
                        i.probe_successes += 1;
                        (i.probe_successes >= self.cfg.half_open_calls).then(|| {
                            reset(&mut i);
                            i.state = State::Closed;
                            Transition {
                                from: State::HalfOpen,
                                to: State::Closed,
                                reason: format!(
                                    "{} probe calls succeeded",
                                    self.cfg.half_open_calls
                                ),
                            }
                        })
                    }
                    Outcome::Slow | Outcome::Failure { .. } => {
                        let what = if outcome == Outcome::Slow {
                            "slow"
                        } else {
                            "failed"
                        };
                        Some(self.trip(
                            &mut i,
                            now,
                            State::HalfOpen,
                            format!("a probe call {what}"),
                        ))
                    }
                }
            }
            (Ticket::Call, State::Closed) => {
                let mark = match outcome {
                    Outcome::Ignored => return None,
                    Outcome::Success => Mark {
                        failed: false,
                        slow: false,
                    },
                    Outcome::Slow => Mark {
                        failed: false,
                        slow: true,
                    },
                    Outcome::Failure { slow, .. } => Mark { failed: true, slow },
                };
                match outcome {
                    Outcome::Failure {
                        consecutive: true, ..
                    } => i.consecutive += 1,
                    Outcome::Failure { .. } => {}
                    _ => i.consecutive = 0,
                }
                if i.window.len() == self.cfg.window
                    && let Some(old) = i.window.pop_front()
                {
                    i.failures -= usize::from(old.failed);
                    i.slows -= usize::from(old.slow);
                }
                i.window.push_back(mark);
                i.failures += usize::from(mark.failed);
                i.slows += usize::from(mark.slow);
                let n = i.window.len();
                let (fr, sr) = (i.failures as f64 / n as f64, i.slows as f64 / n as f64);
                if i.consecutive >= self.cfg.consecutive_failures {
                    let c = i.consecutive;
                    Some(self.trip(
                        &mut i,
                        now,
                        State::Closed,
                        format!("{c} persistent/internal failures in a row"),
                    ))
                } else if n >= self.cfg.min_calls && fr >= self.cfg.failure_rate {
                    Some(self.trip(
                        &mut i,
                        now,
                        State::Closed,
                        format!("failure rate {:.0} % over the last {n} calls", fr * 100.0),
                    ))
                } else if n >= self.cfg.min_calls && sr >= self.cfg.slow_call_rate {
                    Some(self.trip(
                        &mut i,
                        now,
                        State::Closed,
                        format!(
                            "slow-call rate {:.0} % (over {} ms) over the last {n} calls",
                            sr * 100.0,
                            self.cfg.slow_call_ms
                        ),
                    ))
                } else {
                    None
                }
            }
            // A call admitted before the state changed: its outcome no longer decides anything.
            _ => None,
        }
    }

    fn trip(&self, i: &mut Inner, now: Instant, from: State, reason: String) -> Transition {
        reset(i);
        i.state = State::Open;
        i.opened_at = now;
        i.opened += 1;
        Transition {
            from,
            to: State::Open,
            reason,
        }
    }

    /// Back to closed with an empty window (a version reloaded from disk is a new artifact).
    pub(crate) fn reset(&self, reason: &str) -> Option<Transition> {
        let mut i = self.lock();
        let from = i.state;
        reset(&mut i);
        i.state = State::Closed;
        (from != State::Closed).then(|| Transition {
            from,
            to: State::Closed,
            reason: reason.to_string(),
        })
    }

    /// The state and the window's rates now.
    pub(crate) fn snapshot(&self, now: Instant) -> Snapshot {
        let i = self.lock();
        let n = i.window.len();
        let rate = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
        Snapshot {
            state: i.state,
            calls: n,
            failure_rate: rate(i.failures),
            slow_call_rate: rate(i.slows),
            consecutive_failures: i.consecutive,
            open_for: if i.state == State::Open {
                (i.opened_at + self.open_for()).saturating_duration_since(now)
            } else {
                Duration::ZERO
            },
            opened: i.opened,
        }
    }

    /// The slow-call threshold.
    pub(crate) fn slow_call(&self) -> Duration {
        Duration::from_millis(self.cfg.slow_call_ms)
    }
}

fn reset(i: &mut Inner) {
    i.window.clear();
    i.failures = 0;
    i.slows = 0;
    i.consecutive = 0;
    i.probes_in_flight = 0;
    i.probe_successes = 0;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            window: 10,
            min_calls: 4,
            failure_rate: 0.5,
            slow_call_ms: 100,
            slow_call_rate: 1.0,
            consecutive_failures: 3,
            open_ms: 1000,
            half_open_calls: 2,
            ..BreakerConfig::default()
        }
    }
    const FAIL: Outcome = Outcome::Failure {
        consecutive: true,
        slow: false,
    };
    const TIMEOUT: Outcome = Outcome::Failure {
        consecutive: false,
        slow: true,
    };

    fn call(b: &Breaker, o: Outcome, t: Instant) -> Option<Transition> {
        let (ticket, _) = b.admit(t).unwrap();
        b.record(ticket, o, t)
    }

    #[test]
    fn opens_on_the_failure_rate_only_after_min_calls() {
        let b = Breaker::new(cfg());
        let t = Instant::now();
        // Alternate so that the consecutive trigger never fires.
        assert!(call(&b, TIMEOUT, t).is_none());
        assert!(call(&b, Outcome::Success, t).is_none());
        assert!(call(&b, TIMEOUT, t).is_none());
        // 2 of 3: 67 % but below min_calls.
        assert_eq!(b.snapshot(t).state, State::Closed);
        let tr = call(&b, Outcome::Success, t);
        // 2 of 4 = 50 %: opens.
        let tr = tr.unwrap();
        assert_eq!((tr.from, tr.to), (State::Closed, State::Open));
        assert!(tr.reason.contains("failure rate 50 %"), "{}", tr.reason);
        assert_eq!(b.admit(t).unwrap_err(), Duration::from_millis(1000));
    }

    #[test]
    fn opens_on_consecutive_persistent_failures_and_ignores_input_errors() {
        let b = Breaker::new(BreakerConfig {
            min_calls: 100,
            window: 100,
            ..cfg()
        });
        let t = Instant::now();
        for _ in 0..50 {
            assert!(call(&b, Outcome::Ignored, t).is_none());
        }
        assert_eq!(
            b.snapshot(t).calls,
            0,
            "ignored outcomes never enter the window"
        );
        call(&b, FAIL, t);
        call(&b, FAIL, t);
        call(&b, Outcome::Success, t);
        call(&b, FAIL, t);
        call(&b, FAIL, t);
        let tr = call(&b, FAIL, t).unwrap();
        assert!(
            tr.reason
                .contains("3 persistent/internal failures in a row")
        );
    }

    #[test]
    fn opens_on_the_slow_call_rate() {
        let b = Breaker::new(BreakerConfig {
            slow_call_rate: 0.75,
            consecutive_failures: 99,
            ..cfg()
        });
        let t = Instant::now();
        call(&b, Outcome::Slow, t);
        call(&b, Outcome::Slow, t);
        call(&b, Outcome::Success, t);
        assert!(
            call(&b, Outcome::Slow, t)
                .unwrap()
                .reason
                .contains("slow-call rate 75 %")
        );
    }

    #[test]
    fn half_open_probes_close_it_or_open_it_again() {
        let b = Breaker::new(cfg());
        let t0 = Instant::now();
        for _ in 0..3 {
            call(&b, FAIL, t0);
        }
        assert_eq!(b.snapshot(t0).state, State::Open);
        let t1 = t0 + Duration::from_millis(400);
        assert_eq!(b.admit(t1).unwrap_err(), Duration::from_millis(600));
        // After the open interval: two probes at once, the third waits.
        let t2 = t0 + Duration::from_millis(1000);
        let (p1, tr) = b.admit(t2).unwrap();
        assert_eq!(tr.unwrap().to, State::HalfOpen);
        let (p2, tr) = b.admit(t2).unwrap();
        assert!(tr.is_none());
        assert_eq!((p1, p2), (Ticket::Probe, Ticket::Probe));
        assert!(b.admit(t2).is_err());
        // An ignored probe frees its place without deciding.
        assert!(b.record(p1, Outcome::Ignored, t2).is_none());
        let (p3, _) = b.admit(t2).unwrap();
        assert!(b.record(p2, Outcome::Success, t2).is_none());
        let tr = b.record(p3, Outcome::Success, t2).unwrap();
        assert_eq!((tr.from, tr.to), (State::HalfOpen, State::Closed));
        assert_eq!(b.snapshot(t2).calls, 0);
        // Open again, and this time a probe fails.
        for _ in 0..3 {
            call(&b, FAIL, t2);
        }
        let t3 = t2 + Duration::from_millis(1000);
        let (p, _) = b.admit(t3).unwrap();
        let tr = b.record(p, FAIL, t3).unwrap();
        assert_eq!((tr.from, tr.to), (State::HalfOpen, State::Open));
        assert_eq!(b.snapshot(t3).opened, 3);
        assert!(b.admit(t3 + Duration::from_millis(999)).is_err());
    }

    #[test]
    fn the_window_slides() {
        let b = Breaker::new(BreakerConfig {
            window: 4,
            min_calls: 4,
            consecutive_failures: 99,
            ..cfg()
        });
        let t = Instant::now();
        call(&b, TIMEOUT, t);
        for _ in 0..4 {
            call(&b, Outcome::Success, t);
        }
        let s = b.snapshot(t);
        assert_eq!(
            (s.calls, s.failure_rate),
            (4, 0.0),
            "the old failure slid out"
        );
    }

    #[test]
    fn disabled_lets_everything_through() {
        let b = Breaker::new(BreakerConfig {
            enabled: false,
            ..cfg()
        });
        let t = Instant::now();
        for _ in 0..10 {
            assert!(call(&b, FAIL, t).is_none());
        }
        assert_eq!(b.snapshot(t).state, State::Closed);
    }
}
