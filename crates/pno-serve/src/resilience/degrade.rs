//! Graceful degradation: when a model is under pressure — its queue filling or its compute
//! latency (an EWMA) above a threshold — or a request asks for more work than the budget, serve
//! fewer draws (down to a configured floor), or only the mean for a model whose mean is
//! deterministic, instead of queueing into timeouts. A request may opt out (`"degrade": false`)
//! and is then refused with 503 under the same pressure. Fewer draws are the first draws of the
//! full answer: draw `d` of row `r` depends only on the seed, `d` and `r`.

use std::sync::Mutex;

use crate::config::DegradeConfig;

/// Why a request was degraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The model's queue is at or above the threshold.
    Queue,
    /// The model's compute latency (EWMA) is at or above the threshold.
    Latency,
    /// The request asks for more values than the work budget.
    Work,
}

impl Reason {
    /// `queue`, `latency` or `work`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Queue => "queue",
            Reason::Latency => "latency",
            Reason::Work => "work",
        }
    }
}

/// What the model is under now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pressure {
    /// Requests waiting in the model's queue.
    pub(crate) waiting: usize,
    /// The model's queue size.
    pub(crate) queue: usize,
    /// Compute latency EWMA (ms), when known.
    pub(crate) latency_ms: Option<f64>,
}

/// The request's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ask {
    /// Draws asked for.
    pub(crate) samples: usize,
    /// Values one draw produces (batch × channels × points).
    pub(crate) values_per_draw: usize,
    /// The request allows degraded answers.
    pub(crate) allow: bool,
    /// The model's mean is deterministic (one pass gives it exactly).
    pub(crate) deterministic_mean: bool,
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Serve as asked.
    Full,
    /// Serve `samples` draws (fewer than asked); `mean_only` when that is a single pass for
    /// the mean.
    Degraded {
        /// Draws to compute.
        samples: usize,
        /// Why.
        reason: Reason,
        /// Only the mean is meaningful (one pass of a deterministic-mean model).
        mean_only: bool,
    },
    /// Under pressure, but the request opted out: refuse (503).
    Refuse(Reason),
}

/// Decide how to serve `ask` under `p`.
pub(crate) fn plan(cfg: &DegradeConfig, p: Pressure, ask: Ask) -> Plan {
    if !cfg.enabled {
        return Plan::Full;
    }
    let reason = if p.queue > 0
        && p.waiting as f64 >= cfg.queue_fraction * p.queue as f64
        && p.waiting > 0
    {
        Some(Reason::Queue)
    } else if cfg.latency_ewma_ms > 0
        && p.latency_ms
            .is_some_and(|l| l >= cfg.latency_ewma_ms as f64)
    {
        Some(Reason::Latency)
    } else if cfg.max_work > 0 && ask.samples.saturating_mul(ask.values_per_draw) > cfg.max_work {
        Some(Reason::Work)
    } else {
        None
    };
    let Some(reason) = reason else {
        return Plan::Full;
    };
    if !ask.allow {
        return Plan::Refuse(reason);
    }
    let floor = cfg.min_samples.min(ask.samples);
    let samples = match reason {
        Reason::Work => {
            let fit = cfg.max_work / ask.values_per_draw.max(1);
            fit.clamp(floor, ask.samples)
        }
        _ => floor,
    };
    if cfg.mean_only && ask.deterministic_mean && reason != Reason::Work {
        return Plan::Degraded {
            samples: 1,
            reason,
            mean_only: ask.samples > 1,
        };
    }
    if samples >= ask.samples {
        // Already at or below the floor: nothing to take away.
        return Plan::Full;
    }
    Plan::Degraded {
        samples,
        reason,
        mean_only: false,
    }
}

/// An exponentially weighted moving average of compute latency.
#[derive(Debug, Default)]
pub(crate) struct Ewma(Mutex<Option<f64>>);

impl Ewma {
    /// Weight of a new observation.
    const ALPHA: f64 = 0.2;

    /// Add an observation (ms).
    pub(crate) fn observe(&self, ms: f64) {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *v = Some(match *v {
            None => ms,
            Some(old) => old + Self::ALPHA * (ms - old),
        });
    }

    /// The average, once observed.
    pub(crate) fn get(&self) -> Option<f64> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DegradeConfig {
        DegradeConfig {
            enabled: true,
            queue_fraction: 0.5,
            latency_ewma_ms: 200,
            max_work: 1000,
            min_samples: 8,
            mean_only: false,
        }
    }
    fn calm() -> Pressure {
        Pressure {
            waiting: 0,
            queue: 10,
            latency_ms: Some(50.0),
        }
    }
    fn ask(samples: usize) -> Ask {
        Ask {
            samples,
            values_per_draw: 10,
            allow: true,
            deterministic_mean: false,
        }
    }

    #[test]
    fn calm_is_full_and_pressure_steps_down_to_the_floor() {
        assert_eq!(plan(&cfg(), calm(), ask(64)), Plan::Full);
        let busy = Pressure {
            waiting: 5,
            ..calm()
        };
        assert_eq!(
            plan(&cfg(), busy, ask(64)),
            Plan::Degraded {
                samples: 8,
                reason: Reason::Queue,
                mean_only: false
            }
        );
        let slow = Pressure {
            latency_ms: Some(250.0),
            ..calm()
        };
        assert!(matches!(
            plan(&cfg(), slow, ask(64)),
            Plan::Degraded {
                reason: Reason::Latency,
                ..
            }
        ));
        // At or below the floor there is nothing to take away.
        assert_eq!(plan(&cfg(), busy, ask(8)), Plan::Full);
        assert_eq!(plan(&cfg(), busy, ask(4)), Plan::Full);
    }

    #[test]
    fn the_work_budget_keeps_as_many_draws_as_fit() {
        // 200 draws × 10 values = 2000 > 1000: 100 draws fit.
        assert_eq!(
            plan(&cfg(), calm(), ask(200)),
            Plan::Degraded {
                samples: 100,
                reason: Reason::Work,
                mean_only: false
            }
        );
        // Never below the floor.
        let big = Ask {
            values_per_draw: 1000,
            ..ask(64)
        };
        assert_eq!(
            plan(&cfg(), calm(), big),
            Plan::Degraded {
                samples: 8,
                reason: Reason::Work,
                mean_only: false
            }
        );
    }

    #[test]
    fn opting_out_refuses_and_disabled_never_degrades() {
        let busy = Pressure {
            waiting: 9,
            ..calm()
        };
        let no = Ask {
            allow: false,
            ..ask(64)
        };
        assert_eq!(plan(&cfg(), busy, no), Plan::Refuse(Reason::Queue));
        let off = DegradeConfig {
            enabled: false,
            ..cfg()
        };
        assert_eq!(plan(&off, busy, ask(64)), Plan::Full);
    }

    #[test]
    fn mean_only_for_deterministic_means() {
        let c = DegradeConfig {
            mean_only: true,
            ..cfg()
        };
        let busy = Pressure {
            waiting: 9,
            ..calm()
        };
        let det = Ask {
            deterministic_mean: true,
            ..ask(64)
        };
        assert_eq!(
            plan(&c, busy, det),
            Plan::Degraded {
                samples: 1,
                reason: Reason::Queue,
                mean_only: true
            }
        );
        // A sampling model keeps the floor.
        assert!(matches!(
            plan(&c, busy, ask(64)),
            Plan::Degraded { samples: 8, .. }
        ));
    }

    #[test]
    fn ewma_moves_a_fifth_of_the_way() {
        let e = Ewma::default();
        assert_eq!(e.get(), None);
        e.observe(100.0);
        e.observe(200.0);
        assert!((e.get().unwrap_or(0.0) - 120.0).abs() < 1e-9);
    }
}
