//! Windowed time series in memory, per model version: a ring of 1 s buckets (the last
//! [`SECONDS`] seconds) and a ring of 1 min buckets (the last [`MINUTES`] minutes). A bucket
//! holds the request count, failures by class, a latency histogram (log-spaced, four bins an
//! octave from 0.1 ms, so a quantile read from it is within 9 % of the exact one), the sampled
//! queue depth and the sum of predictive spreads. Memory is fixed per series (about 300 KiB)
//! and the number of series is capped ([`MAX_SERIES`], least recently written evicted first),
//! so it is bounded whatever the traffic.

use std::collections::BTreeMap;

use serde::Serialize;

use super::config::Signal;
use crate::failure::FailureClass;

/// 1 s buckets kept.
pub const SECONDS: usize = 600;
/// 1 min buckets kept.
pub const MINUTES: usize = 360;
/// Series kept (model versions).
pub const MAX_SERIES: usize = 128;
/// Latency histogram bins.
pub const LAT_BINS: usize = 80;
const LAT_MIN_MS: f64 = 0.1;
const BINS_PER_OCTAVE: f64 = 4.0;

/// The bin of a latency (ms): bin 0 is `[0, 0.1]`, bin `i` is `(0.1·2^((i−1)/4), 0.1·2^(i/4)]`,
/// the last also takes everything above.
pub fn lat_bin(ms: f64) -> usize {
    if ms.is_nan() || ms <= LAT_MIN_MS {
        return 0;
    }
    let i = (BINS_PER_OCTAVE * (ms / LAT_MIN_MS).log2()).ceil();
    (i as usize).clamp(1, LAT_BINS - 1)
}

/// The value reported for bin `i`: its geometric middle.
pub fn lat_of_bin(i: usize) -> f64 {
    if i == 0 {
        LAT_MIN_MS / 2.0
    } else {
        LAT_MIN_MS * ((i as f64 - 0.5) / BINS_PER_OCTAVE).exp2()
    }
}

/// What one bucket saw.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Which slot of time it holds (`t / resolution`); a bucket of another slot is stale.
    at: u64,
    /// Requests finished.
    pub requests: u32,
    /// Failed requests by [`FailureClass`] (in [`FailureClass::ALL`] order).
    pub errors: [u32; 5],
    /// Latency histogram of finished requests.
    pub lat: [u32; LAT_BINS],
    /// Sum of sampled queue depths.
    pub queue_sum: u64,
    /// Queue depth samples.
    pub queue_n: u32,
    /// Sum of the mean predictive spread of successful answers.
    pub spread_sum: f64,
    /// Answers in `spread_sum`.
    pub spread_n: u32,
    /// The largest feature PSI of the drift tests that ended in the bucket (-1: none).
    pub drift_psi: f64,
}

impl Bucket {
    fn empty(at: u64) -> Self {
        Self {
            at,
            requests: 0,
            errors: [0; 5],
            lat: [0; LAT_BINS],
            queue_sum: 0,
            queue_n: 0,
            spread_sum: 0.0,
            spread_n: 0,
            drift_psi: -1.0,
        }
    }
}

/// A ring of buckets of `res` seconds.
#[derive(Debug, Clone)]
struct Ring {
    res: u64,
    buckets: Vec<Bucket>,
}

impl Ring {
    fn new(res: u64, len: usize) -> Self {
        Self {
            res,
            buckets: vec![Bucket::empty(u64::MAX); len],
        }
    }
    fn at_mut(&mut self, t: u64) -> &mut Bucket {
        let slot = t / self.res;
        let n = self.buckets.len();
        let b = &mut self.buckets[(slot % n as u64) as usize];
        if b.at != slot {
            *b = Bucket::empty(slot);
        }
        b
    }
    /// The buckets of `[from, to)` (seconds) still held, oldest first.
    fn range(&self, from: u64, to: u64) -> impl Iterator<Item = (u64, &Bucket)> {
        let n = self.buckets.len() as u64;
        let (a, b) = (from / self.res, to.div_ceil(self.res));
        let a = a.max(b.saturating_sub(n));
        (a..b).filter_map(move |slot| {
            let bk = &self.buckets[(slot % n) as usize];
            (bk.at == slot).then_some((slot * self.res, bk))
        })
    }
}

/// What a span of buckets adds up to.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Seconds covered.
    pub seconds: u64,
    /// Requests finished.
    pub requests: u64,
    /// Failures by class.
    pub errors: [u64; 5],
    lat: [u64; LAT_BINS],
    queue_sum: u64,
    queue_n: u64,
    spread_sum: f64,
    spread_n: u64,
    drift_psi: f64,
}

impl Summary {
    fn new(seconds: u64) -> Self {
        Self {
            seconds,
            requests: 0,
            errors: [0; 5],
            lat: [0; LAT_BINS],
            queue_sum: 0,
            queue_n: 0,
            spread_sum: 0.0,
            spread_n: 0,
            drift_psi: -1.0,
        }
    }
    fn add(&mut self, b: &Bucket) {
        self.requests += u64::from(b.requests);
        for (s, e) in self.errors.iter_mut().zip(b.errors) {
            *s += u64::from(e);
        }
        for (s, l) in self.lat.iter_mut().zip(b.lat) {
            *s += u64::from(l);
        }
        self.queue_sum += b.queue_sum;
        self.queue_n += u64::from(b.queue_n);
        self.spread_sum += b.spread_sum;
        self.spread_n += u64::from(b.spread_n);
        self.drift_psi = self.drift_psi.max(b.drift_psi);
    }

    /// The latency (ms) below which a fraction `q` of the requests finished (`None` without
    /// requests).
    pub fn latency_quantile(&self, q: f64) -> Option<f64> {
        let n: u64 = self.lat.iter().sum();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, c) in self.lat.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(lat_of_bin(i));
            }
        }
        Some(lat_of_bin(LAT_BINS - 1))
    }

    /// Failures on the server's side (transient, persistent, internal).
    pub fn server_errors(&self) -> u64 {
        FailureClass::ALL
            .iter()
            .zip(self.errors)
            .filter(|(c, _)| !matches!(c, FailureClass::Input | FailureClass::Security))
            .map(|(_, e)| e)
            .sum()
    }

    /// The value of `signal` over this span (`None` when it has no data: no requests, no
    /// answers, no queue samples).
    pub fn value(&self, signal: Signal) -> Option<f64> {
        match signal {
            Signal::RequestRate => Some(self.requests as f64 / self.seconds.max(1) as f64),
            Signal::ErrorRate => {
                (self.requests > 0).then(|| self.server_errors() as f64 / self.requests as f64)
            }
            Signal::LatencyP50 => self.latency_quantile(0.5),
            Signal::LatencyP99 => self.latency_quantile(0.99),
            Signal::QueueDepth => {
                (self.queue_n > 0).then(|| self.queue_sum as f64 / self.queue_n as f64)
            }
            Signal::Spread => (self.spread_n > 0).then(|| self.spread_sum / self.spread_n as f64),
            Signal::DriftPsi => (self.drift_psi >= 0.0).then_some(self.drift_psi),
        }
    }
}

/// One point of a series as the admin endpoint shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Unix time of the bucket's start.
    pub t: u64,
    /// Requests.
    pub requests: u64,
    /// Failures by class (classes with none left out).
    pub errors: BTreeMap<&'static str, u64>,
    /// Signals with data.
    #[serde(flatten)]
    pub values: BTreeMap<&'static str, f64>,
}

/// Both rings of one model version.
#[derive(Debug, Clone)]
struct Series {
    second: Ring,
    minute: Ring,
    written_s: u64,
}

impl Series {
    fn new() -> Self {
        Self {
            second: Ring::new(1, SECONDS),
            minute: Ring::new(60, MINUTES),
            written_s: 0,
        }
    }
    fn both(&mut self, t: u64, f: impl Fn(&mut Bucket)) {
        f(self.second.at_mut(t));
        f(self.minute.at_mut(t));
        self.written_s = self.written_s.max(t);
    }
}

/// A finished inference request, as a series records it.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    /// End-to-end latency (ms).
    pub latency_ms: f64,
    /// Its failure class, if it failed.
    pub failure: Option<FailureClass>,
    /// The mean predictive standard deviation of a successful answer.
    pub spread: Option<f64>,
}

/// Every model version's series.
#[derive(Debug, Default)]
pub struct Store {
    map: BTreeMap<(String, String), Series>,
}

impl Store {
    fn series(&mut self, model: &str, version: &str, t: u64) -> &mut Series {
        let key = (model.to_string(), version.to_string());
        if !self.map.contains_key(&key) && self.map.len() >= MAX_SERIES {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, s)| s.written_s)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.map.remove(&k);
            }
        }
        let s = self.map.entry(key).or_insert_with(Series::new);
        s.written_s = s.written_s.max(t);
        s
    }

    /// Record a finished request at unix second `t`.
    pub fn record(&mut self, model: &str, version: &str, t: u64, r: Finished) {
        let bin = lat_bin(r.latency_ms);
        let class = r
            .failure
            .and_then(|c| FailureClass::ALL.iter().position(|x| *x == c));
        let spread = r.spread.filter(|s| s.is_finite());
        self.series(model, version, t).both(t, |b| {
            b.requests += 1;
            b.lat[bin] += 1;
            if let Some(i) = class {
                b.errors[i] += 1;
            }
            if let Some(s) = spread {
                b.spread_sum += s;
                b.spread_n += 1;
            }
        });
    }

    /// Record the largest feature PSI of a drift test of `model`/`version` that ended at `t`
    /// (only into a series that exists: a version that served requests).
    pub fn record_drift(&mut self, model: &str, version: &str, t: u64, psi: f64) {
        if !psi.is_finite() {
            return;
        }
        if let Some(s) = self.map.get_mut(&(model.to_string(), version.to_string())) {
            s.both(t, |b| b.drift_psi = b.drift_psi.max(psi));
        }
    }

    /// Record a queue-depth sample of `model` at second `t` in each of its versions' series.
    pub fn sample_queue(&mut self, model: &str, t: u64, depth: usize) {
        for ((m, _), s) in self.map.iter_mut() {
            if m == model {
                s.both(t, |b| {
                    b.queue_sum += depth as u64;
                    b.queue_n += 1;
                });
            }
        }
    }

    /// The series' keys (model, version).
    pub fn keys(&self) -> Vec<(String, String)> {
        self.map.keys().cloned().collect()
    }

    /// Drop the series of versions not in `keep`.
    pub fn retain(&mut self, keep: impl Fn(&str, &str) -> bool) {
        self.map.retain(|(m, v), _| keep(m, v));
    }

    /// The summary of `[from, to)` (1 s buckets; spans reaching past them use the minute ring).
    pub fn summary(&self, model: &str, version: &str, from: u64, to: u64) -> Option<Summary> {
        let s = self.map.get(&(model.to_string(), version.to_string()))?;
        let mut sum = Summary::new(to.saturating_sub(from));
        let ring = if to.saturating_sub(from) <= SECONDS as u64 {
            &s.second
        } else {
            &s.minute
        };
        for (_, b) in ring.range(from, to) {
            sum.add(b);
        }
        Some(sum)
    }

    /// The points of the last `last` buckets up to `now` at resolution `res` (1 or 60 s).
    pub fn points(&self, model: &str, version: &str, res: u64, last: u64, now: u64) -> Vec<Point> {
        let Some(s) = self.map.get(&(model.to_string(), version.to_string())) else {
            return Vec::new();
        };
        let ring = if res >= 60 { &s.minute } else { &s.second };
        let to = (now / ring.res + 1) * ring.res;
        let from = to.saturating_sub(last * ring.res);
        ring.range(from, to)
            .map(|(t, b)| {
                let mut one = Summary::new(ring.res);
                one.add(b);
                Point {
                    t,
                    requests: one.requests,
                    errors: FailureClass::ALL
                        .iter()
                        .zip(one.errors)
                        .filter(|(_, e)| *e > 0)
                        .map(|(c, e)| (c.as_str(), e))
                        .collect(),
                    values: Signal::ALL
                        .iter()
                        .filter_map(|s| one.value(*s).map(|v| (s.as_str(), v)))
                        .collect(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_nine_percent_of_the_exact_ones() {
        // A deterministic heavy-tailed sample: exact quantiles from the sorted values.
        let mut xs: Vec<f64> = (0..5000u64)
            .map(|i| {
                let u = ((i * 2_654_435_761) % 1_000_003) as f64 / 1_000_003.0;
                0.3 * (-(1.0 - u).ln()).powf(1.5) * 40.0 + 0.2
            })
            .collect();
        let mut store = Store::default();
        for (i, x) in xs.iter().enumerate() {
            let failure = (i % 10 == 0).then_some(FailureClass::Transient);
            store.record(
                "m",
                "1",
                100 + (i as u64 % 5),
                Finished {
                    latency_ms: *x,
                    failure,
                    spread: Some(2.0),
                },
            );
        }
        xs.sort_by(f64::total_cmp);
        let s = store.summary("m", "1", 100, 105).unwrap();
        for q in [0.5, 0.9, 0.99] {
            let exact = xs[((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len()) - 1];
            let got = s.latency_quantile(q).unwrap();
            assert!(
                (got / exact - 1.0).abs() <= 0.0906,
                "q{q}: {got} vs exact {exact}"
            );
        }
        assert_eq!(s.requests, 5000);
        assert_eq!(s.value(Signal::ErrorRate), Some(0.1));
        assert_eq!(s.value(Signal::RequestRate), Some(1000.0));
        assert_eq!(s.value(Signal::Spread), Some(2.0));
        assert_eq!(s.value(Signal::DriftPsi), None, "no drift test yet");
        store.record_drift("m", "1", 101, 0.3);
        store.record_drift("m", "1", 103, 0.1);
        store.record_drift("nope", "1", 103, 9.0);
        let s = store.summary("m", "1", 100, 105).unwrap();
        assert_eq!(s.value(Signal::DriftPsi), Some(0.3), "the window's largest");
        // Bins: edges land in the lower bin, extremes are clamped.
        assert_eq!(lat_bin(0.1), 0);
        assert_eq!(lat_bin(0.2), 4);
        assert_eq!(lat_bin(0.2001), 5);
        assert_eq!(lat_bin(1e9), LAT_BINS - 1);
        assert_eq!(lat_bin(f64::NAN), 0);
    }

    #[test]
    fn rings_forget_what_is_older_than_they_hold_and_memory_stays_bounded() {
        let mut store = Store::default();
        let ok = |ms| Finished {
            latency_ms: ms,
            failure: None,
            spread: None,
        };
        store.record("m", "1", 1000, ok(1.0));
        // 600 s later the 1 s slot is reused: the old count is gone from the second ring …
        store.record("m", "1", 1000 + SECONDS as u64, ok(1.0));
        let s = store.summary("m", "1", 1000, 1001).unwrap();
        assert_eq!(s.requests, 0, "a stale bucket is never read");
        let s = store
            .summary("m", "1", 1000 + SECONDS as u64, 1001 + SECONDS as u64)
            .unwrap();
        assert_eq!(s.requests, 1);
        // … but the minute ring still has both.
        let s = store
            .summary("m", "1", 960, 1000 + SECONDS as u64 + 60)
            .unwrap();
        assert_eq!(s.requests, 2);
        // Queue samples go to every version of the model.
        store.record("m", "2", 1700, ok(1.0));
        store.sample_queue("m", 1700, 4);
        store.sample_queue("m", 1701, 2);
        for v in ["1", "2"] {
            let s = store.summary("m", v, 1700, 1702).unwrap();
            assert_eq!(s.value(Signal::QueueDepth), Some(3.0));
        }
        // Points: one per bucket with data.
        let p = store.points("m", "2", 1, 10, 1701);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].t, p[0].requests), (1700, 1));
        // The cap: the least recently written series goes first.
        for i in 0..MAX_SERIES + 5 {
            store.record("n", &i.to_string(), 2000 + i as u64, ok(1.0));
        }
        assert_eq!(store.keys().len(), MAX_SERIES);
        assert!(store.summary("m", "1", 0, 10).is_none());
        assert!(
            store
                .summary("n", &(MAX_SERIES + 4).to_string(), 0, 10)
                .is_some()
        );
    }
}
