//! Online training telemetry: loss spikes, gradient-norm explosions and validation plateaus,
//! detected while training runs — before the NaN guard has to act — and written as `anomaly`
//! events to `log.jsonl`.
//!
//! Spikes and explosions use a robust z-score against the last [`WatchConfig::window`] steps:
//! `(x − median) / (1.4826 · MAD)` above [`WatchConfig::z`] *and* `x` at least
//! [`WatchConfig::ratio`] (losses) or [`WatchConfig::grad_ratio`] (gradient norms) times the
//! median (so tiny absolute wobbles of a converged run, and the heavy tail of small-batch
//! gradient norms, do not count), after [`WatchConfig::warmup`] steps. A flagged value does not enter the window (one
//! spike cannot raise the baseline). Each detector reports at most once per epoch; the event says
//! how many steps it flagged. A plateau is [`WatchConfig::plateau_epochs`] epochs in a row without
//! a relative improvement of [`WatchConfig::plateau_rel`] of the best validation metric; it is
//! reported once, and again only after an improvement.
//!
//! ```
//! use pno_train::watch::{Watch, WatchConfig};
//! let mut w = Watch::new(WatchConfig::default());
//! for s in 0..200u64 {
//!     let loss = 1.0 / (1.0 + s as f64 * 0.01) * (1.0 + 0.01 * ((s * 7919 % 13) as f64 - 6.0) / 6.0);
//!     w.step(s, loss, Some(1.0));
//! }
//! assert!(w.end_epoch(1, 0.5).is_empty());
//! w.step(200, 10.0, Some(1.0)); // a 12x spike
//! let found = w.end_epoch(2, 0.49);
//! assert_eq!(found[0].detector, "loss_spike");
//! ```

use std::collections::VecDeque;

use serde::Serialize;

/// Thresholds of the detectors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WatchConfig {
    /// Steps in the rolling baseline.
    pub window: usize,
    /// Steps before the step detectors act.
    pub warmup: usize,
    /// Robust z-score above which a step is flagged.
    pub z: f64,
    /// A flagged loss is also at least this multiple of the median.
    pub ratio: f64,
    /// A flagged gradient norm is also at least this multiple of the median (gradient norms
    /// of small batches are heavy-tailed: a few times the median is normal and clipping
    /// handles it).
    pub grad_ratio: f64,
    /// Epochs without improvement that make a plateau.
    pub plateau_epochs: usize,
    /// The relative improvement of the best validation metric that ends a plateau.
    pub plateau_rel: f64,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            window: 64,
            warmup: 32,
            z: 8.0,
            ratio: 2.0,
            grad_ratio: 10.0,
            plateau_epochs: 8,
            plateau_rel: 1e-3,
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    /// `loss_spike`, `grad_explosion` or `plateau`.
    pub detector: &'static str,
    /// Epoch (1-based).
    pub epoch: usize,
    /// The first flagged step of the epoch (step detectors).
    pub step: Option<u64>,
    /// Steps flagged this epoch (step detectors).
    pub count: usize,
    /// The flagged value (the largest of the epoch), or the best metric (plateau).
    pub value: f64,
    /// The baseline it was compared with: the window's median, or the best metric
    /// `plateau_epochs` ago.
    pub baseline: f64,
    /// A sentence for people.
    pub message: String,
}

/// A robust rolling baseline of one quantity.
#[derive(Debug, Clone, Default)]
struct Rolling {
    values: VecDeque<f64>,
    seen: usize,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

impl Rolling {
    /// The window's median when `x` is an outlier (robust z above `cfg.z` and at least `ratio`
    /// times the median); `x` joins the window otherwise.
    fn check(&mut self, x: f64, ratio: f64, cfg: &WatchConfig) -> Option<f64> {
        if !x.is_finite() {
            return None; // the NaN guard's business
        }
        let mut flagged = None;
        if self.seen >= cfg.warmup && !self.values.is_empty() {
            let mut v: Vec<f64> = self.values.iter().copied().collect();
            let med = median(&mut v);
            let mut dev: Vec<f64> = v.iter().map(|y| (y - med).abs()).collect();
            // A floor on the spread: a perfectly flat window would flag any wiggle.
            let mad = (1.4826 * median(&mut dev))
                .max(1e-3 * med.abs())
                .max(f64::MIN_POSITIVE);
            if (x - med) / mad > cfg.z && x > ratio * med {
                flagged = Some(med);
            }
        }
        self.seen += 1;
        if flagged.is_none() {
            self.values.push_back(x);
            while self.values.len() > cfg.window {
                self.values.pop_front();
            }
        }
        flagged
    }
}

/// Per-epoch tally of one step detector.
#[derive(Debug, Clone, Default)]
struct Tally {
    first: Option<u64>,
    count: usize,
    worst: f64,
    baseline: f64,
}

impl Tally {
    fn add(&mut self, step: u64, x: f64, baseline: f64) {
        if self.first.is_none() {
            self.first = Some(step);
        }
        self.count += 1;
        if x > self.worst {
            self.worst = x;
            self.baseline = baseline;
        }
    }
}

/// The detectors of one training run.
#[derive(Debug, Clone)]
pub struct Watch {
    cfg: WatchConfig,
    loss: Rolling,
    norm: Rolling,
    spikes: Tally,
    explosions: Tally,
    best: f64,
    history: Vec<f64>,
    plateau_reported: bool,
}

impl Watch {
    /// Fresh detectors.
    pub fn new(cfg: WatchConfig) -> Self {
        Self {
            cfg,
            loss: Rolling::default(),
            norm: Rolling::default(),
            spikes: Tally::default(),
            explosions: Tally::default(),
            best: f64::INFINITY,
            history: Vec::new(),
            plateau_reported: false,
        }
    }

    /// One optimiser step: its loss and (when applied) its gradient norm before clipping.
    pub fn step(&mut self, step: u64, loss: f64, grad_norm: Option<f64>) {
        if let Some(med) = self.loss.check(loss, self.cfg.ratio, &self.cfg) {
            self.spikes.add(step, loss, med);
        }
        if let Some(n) = grad_norm
            && let Some(med) = self.norm.check(n, self.cfg.grad_ratio, &self.cfg)
        {
            self.explosions.add(step, n, med);
        }
    }

    /// The epoch ended with validation metric `val` (lower is better): what it found.
    pub fn end_epoch(&mut self, epoch: usize, val: f64) -> Vec<Anomaly> {
        let mut out = Vec::new();
        for (detector, what, tally) in [
            (
                "loss_spike",
                "training loss",
                std::mem::take(&mut self.spikes),
            ),
            (
                "grad_explosion",
                "gradient norm",
                std::mem::take(&mut self.explosions),
            ),
        ] {
            if let Some(step) = tally.first {
                out.push(Anomaly {
                    detector,
                    epoch,
                    step: Some(step),
                    count: tally.count,
                    value: tally.worst,
                    baseline: tally.baseline,
                    message: format!(
                        "{detector} in epoch {epoch}: {what} {:.4e} at its worst, {:.1}x the median {:.4e} of the last {} steps ({} step(s) flagged, first at step {})",
                        tally.worst,
                        tally.worst / tally.baseline.max(f64::MIN_POSITIVE),
                        tally.baseline,
                        self.cfg.window,
                        tally.count,
                        step + 1
                    ),
                });
            }
        }
        if val.is_finite() {
            if val < self.best * (1.0 - self.cfg.plateau_rel) || !self.best.is_finite() {
                self.plateau_reported = false;
            }
            self.best = self.best.min(val);
            self.history.push(self.best);
            let p = self.cfg.plateau_epochs;
            if !self.plateau_reported && self.history.len() > p {
                let then = self.history[self.history.len() - 1 - p];
                if self.best > then * (1.0 - self.cfg.plateau_rel) {
                    self.plateau_reported = true;
                    out.push(Anomaly {
                        detector: "plateau",
                        epoch,
                        step: None,
                        count: p,
                        value: self.best,
                        baseline: then,
                        message: format!(
                            "plateau at epoch {epoch}: the best validation metric {:.4e} improved by less than {} (relative) in {p} epochs (it was {then:.4e})",
                            self.best, self.cfg.plateau_rel
                        ),
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A noisy decaying loss curve like a real run's: exponential decay to a floor with 10 %
    /// multiplicative noise, and gradient norms with 30 % noise.
    fn curve(steps: u64, seed: u64) -> Vec<(f64, f64)> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..steps)
            .map(|s| {
                let base = 0.05 + (-(s as f64) / 400.0).exp();
                let l = base * (1.0 + 0.1 * (rng.random::<f64>() * 2.0 - 1.0));
                let n = 2.0 * base.sqrt() * (1.0 + 0.3 * (rng.random::<f64>() * 2.0 - 1.0));
                (l, n)
            })
            .collect()
    }

    #[test]
    fn steady_runs_raise_nothing() {
        // 40 runs × 2000 steps (50 epochs of 40 steps) with a steadily improving metric.
        let mut alarms = 0;
        for seed in 0..40 {
            let mut w = Watch::new(WatchConfig::default());
            for (s, (l, n)) in curve(2000, seed).into_iter().enumerate() {
                w.step(s as u64, l, Some(n));
                if (s + 1) % 40 == 0 {
                    let epoch = (s + 1) / 40;
                    alarms += w.end_epoch(epoch, 1.0 / epoch as f64).len();
                }
            }
        }
        assert_eq!(alarms, 0);
    }

    #[test]
    fn spikes_and_explosions_are_flagged_at_their_step_once_per_epoch() {
        let mut w = Watch::new(WatchConfig::default());
        let c = curve(400, 7);
        for (s, &(l, n)) in c.iter().enumerate() {
            let s = s as u64;
            let l = if s == 250 || s == 260 { l * 8.0 } else { l };
            let n = if s == 300 { n * 50.0 } else { n };
            w.step(s, l, Some(n));
        }
        let found = w.end_epoch(1, 0.3);
        assert_eq!(found.len(), 2, "{found:?}");
        let spike = &found[0];
        assert_eq!(
            (spike.detector, spike.step, spike.count),
            ("loss_spike", Some(250), 2)
        );
        assert!(spike.value / spike.baseline > 6.0, "{spike:?}");
        let boom = &found[1];
        assert_eq!(
            (boom.detector, boom.step, boom.count),
            ("grad_explosion", Some(300), 1)
        );
        // The next epoch starts clean.
        assert!(w.end_epoch(2, 0.2).is_empty());
    }

    #[test]
    fn a_plateau_is_reported_once_and_again_only_after_an_improvement() {
        let cfg = WatchConfig {
            plateau_epochs: 3,
            ..WatchConfig::default()
        };
        let mut w = Watch::new(cfg);
        let vals = [
            1.0, 0.5, 0.4, 0.4, 0.3999, 0.4, 0.4, 0.4, 0.2, 0.2, 0.2, 0.2,
        ];
        let got: Vec<usize> = vals
            .iter()
            .enumerate()
            .filter_map(|(i, &v)| {
                let a = w.end_epoch(i + 1, v);
                a.first().map(|a| {
                    assert_eq!(a.detector, "plateau");
                    a.epoch
                })
            })
            .collect();
        // 0.4 at epoch 3; no real gain by epoch 6 → reported; 0.2 at epoch 9 resets; epoch 12.
        assert_eq!(got, [6, 12]);
    }
}
