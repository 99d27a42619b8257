//! Anomaly detection against a learned baseline: a window's value is compared with the median
//! of the previous `baseline_windows` windows, in units of a robust scale (1.4826 × the median
//! absolute deviation, floored by the signal's sampling noise), no seasonality assumed. A window
//! is anomalous when its robust z-score passes `z` **and** the change is larger than the
//! signal's practical tolerance (so a statistically clear but harmless wobble of a very steady
//! series never alerts). Nothing is judged before `warmup_windows` windows were seen. Every
//! window enters the baseline, anomalous ones too: the median is unmoved until a shift lasts for
//! half the baseline, after which it is the new normal and the alert resolves.

use std::collections::VecDeque;

use serde::Serialize;

use super::config::{AlertingConfig, Signal};

/// The detectors the server runs on every model version, with the alert each raises.
pub const DETECTORS: [(Signal, &str, super::config::Severity); 4] = [
    (
        Signal::LatencyP50,
        "LatencyAnomaly",
        super::config::Severity::Warning,
    ),
    (
        Signal::LatencyP99,
        "LatencyAnomaly",
        super::config::Severity::Warning,
    ),
    (
        Signal::ErrorRate,
        "ErrorRateAnomaly",
        super::config::Severity::Critical,
    ),
    (
        Signal::Spread,
        "SpreadAnomaly",
        super::config::Severity::Warning,
    ),
];

/// What one judgement found.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Judgement {
    /// The window's value.
    pub value: f64,
    /// The baseline's median.
    pub median: f64,
    /// The robust scale used.
    pub scale: f64,
    /// `(value − median) / scale`.
    pub z: f64,
    /// Past both thresholds, in the direction that matters for the signal.
    pub anomalous: bool,
}

/// The recent windows of one signal of one series.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    history: VecDeque<f64>,
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

impl Baseline {
    /// Windows in the baseline.
    pub fn len(&self) -> usize {
        self.history.len()
    }
    /// No window yet.
    pub fn is_empty(&self) -> bool {
        self.history.is_empty()
    }

    /// Judge a window's `value` of `signal` (with `requests` requests in it), then add it to the
    /// baseline. `None` during warm-up.
    pub fn judge(
        &mut self,
        signal: Signal,
        value: f64,
        requests: u64,
        cfg: &AlertingConfig,
    ) -> Option<Judgement> {
        if !value.is_finite() {
            return None;
        }
        let verdict = (self.history.len() >= cfg.warmup_windows)
            .then(|| self.compare(signal, value, requests, cfg));
        self.history.push_back(value);
        while self.history.len() > cfg.baseline_windows {
            self.history.pop_front();
        }
        verdict
    }

    fn compare(&self, signal: Signal, x: f64, requests: u64, cfg: &AlertingConfig) -> Judgement {
        let mut v: Vec<f64> = self.history.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        let m = median(&v);
        let mut dev: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
        dev.sort_by(f64::total_cmp);
        let mad = 1.4826 * median(&dev);
        let (floor, tolerance, two_sided) = match signal {
            // The histogram's resolution (half a bin, ~9 %) bounds how steady a quantile looks.
            Signal::LatencyP50 | Signal::LatencyP99 => {
                (0.1 * m.abs(), cfg.latency_tolerance * m.abs(), false)
            }
            // Binomial noise of a rate over `requests`, with a 1 % floor on the base rate.
            Signal::ErrorRate => {
                let p = m.clamp(0.01, 0.99);
                (
                    (p * (1.0 - p) / requests.max(1) as f64).sqrt(),
                    cfg.error_rate_tolerance,
                    false,
                )
            }
            Signal::Spread => (1e-6 * m.abs(), cfg.spread_tolerance * m.abs(), true),
            Signal::RequestRate | Signal::QueueDepth | Signal::DriftPsi => {
                (0.5, 0.5 * m.abs(), false)
            }
        };
        let scale = mad.max(floor).max(1e-12);
        let z = (x - m) / scale;
        let far = (x - m).abs() > tolerance;
        let anomalous = far
            && if two_sided {
                z.abs() > cfg.z
            } else {
                z > cfg.z
            };
        Judgement {
            value: x,
            median: m,
            scale,
            z,
            anomalous,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded stream of uniforms (SplitMix64).
    fn uniforms(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed;
        move || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// A latency window's (p50, p99) over `n` lognormal requests (median 40 ms, σ 0.3),
    /// through the same histogram the server keeps.
    fn latency_window(u: &mut impl FnMut() -> f64, n: usize, factor: f64) -> (f64, f64) {
        use super::super::series::{Finished, Store};
        let mut s = Store::default();
        for _ in 0..n {
            // Box–Muller.
            let g = (-2.0 * u().max(1e-300).ln()).sqrt() * (std::f64::consts::TAU * u()).cos();
            let ms = 40.0 * (0.3 * g).exp() * factor;
            s.record(
                "m",
                "1",
                0,
                Finished {
                    latency_ms: ms,
                    failure: None,
                    spread: None,
                },
            );
        }
        let sum = s.summary("m", "1", 0, 1).unwrap();
        (
            sum.value(Signal::LatencyP50).unwrap(),
            sum.value(Signal::LatencyP99).unwrap(),
        )
    }

    #[test]
    fn steady_latency_raises_no_alert_and_a_doubling_is_flagged_at_once() {
        let cfg = AlertingConfig::default();
        let mut u = uniforms(7);
        let (mut p50, mut p99) = (Baseline::default(), Baseline::default());
        // Per detector: windows judged, anomalous windows, the current run, alerts.
        let mut count = [[0usize; 4]; 2];
        let windows = 5000;
        for _ in 0..windows {
            let (a, b) = latency_window(&mut u, 50, 1.0);
            for (i, j) in [
                p50.judge(Signal::LatencyP50, a, 50, &cfg),
                p99.judge(Signal::LatencyP99, b, 50, &cfg),
            ]
            .into_iter()
            .enumerate()
            {
                let Some(j) = j else { continue };
                let c = &mut count[i];
                c[0] += 1;
                c[1] += usize::from(j.anomalous);
                // An alert needs `for_windows` anomalous windows in a row.
                c[2] = if j.anomalous { c[2] + 1 } else { 0 };
                c[3] += usize::from(c[2] == cfg.for_windows as usize);
            }
        }
        for c in count {
            assert_eq!(c[0], windows - cfg.warmup_windows);
            // The p99 of 50 requests is nearly their maximum: single windows stray now and
            // then, two in a row did not.
            assert!(c[1] * 200 < c[0], "{} anomalous windows of {}", c[1], c[0]);
            assert_eq!(c[3], 0, "false alerts in {} steady windows", c[0]);
        }
        // Latency doubles: the median flags every window of the shift; the noisier p99 most.
        let (mut a_hits, mut b_hits) = (0, 0);
        for _ in 0..20 {
            let (a, b) = latency_window(&mut u, 50, 2.0);
            a_hits += usize::from(
                p50.judge(Signal::LatencyP50, a, 50, &cfg)
                    .unwrap()
                    .anomalous,
            );
            b_hits += usize::from(
                p99.judge(Signal::LatencyP99, b, 50, &cfg)
                    .unwrap()
                    .anomalous,
            );
        }
        assert_eq!(a_hits, 20);
        assert!(b_hits >= 3, "{b_hits}");
    }

    #[test]
    fn error_rates_need_more_than_binomial_noise_and_the_tolerance() {
        let cfg = AlertingConfig::default();
        let mut u = uniforms(11);
        let mut b = Baseline::default();
        let n = 40u64;
        let window = |u: &mut dyn FnMut() -> f64, p: f64| {
            (0..n).filter(|_| u() < p).count() as f64 / n as f64
        };
        let mut flagged = 0;
        for _ in 0..5000 {
            let x = window(&mut u, 0.01);
            flagged += usize::from(
                b.judge(Signal::ErrorRate, x, n, &cfg)
                    .is_some_and(|j| j.anomalous),
            );
        }
        assert!(
            flagged <= 2,
            "{flagged} false alarms in 5000 windows at a 1 % base rate"
        );
        // 30 % of requests failing is caught in every window.
        for _ in 0..10 {
            let x = window(&mut u, 0.3);
            assert!(
                b.judge(Signal::ErrorRate, x, n, &cfg).unwrap().anomalous,
                "{x}"
            );
        }
        // One failure in a quiet window is not an alarm (binomial floor, tolerance).
        let mut b = Baseline::default();
        for _ in 0..20 {
            b.judge(Signal::ErrorRate, 0.0, n, &cfg);
        }
        assert!(
            !b.judge(Signal::ErrorRate, 1.0 / n as f64, n, &cfg)
                .unwrap()
                .anomalous
        );
    }

    #[test]
    fn spread_is_judged_both_ways_and_warm_up_judges_nothing() {
        let cfg = AlertingConfig::default();
        let mut u = uniforms(3);
        let mut b = Baseline::default();
        for i in 0..40 {
            let j = b.judge(Signal::Spread, 0.2 + 0.01 * (u() - 0.5), 30, &cfg);
            assert_eq!(j.is_none(), i < cfg.warmup_windows, "window {i}");
        }
        assert!(
            b.judge(Signal::Spread, 0.05, 30, &cfg).unwrap().anomalous,
            "collapse"
        );
        assert!(
            b.judge(Signal::Spread, 0.6, 30, &cfg).unwrap().anomalous,
            "growth"
        );
        assert!(!b.judge(Signal::Spread, 0.21, 30, &cfg).unwrap().anomalous);
        assert!(b.judge(Signal::Spread, f64::NAN, 30, &cfg).is_none());
    }
}
