//! Online calibration from ground truth: the server keeps what it predicted (mean and std per
//! point) for every successful inference, keyed by request id (and by a SHA-256 digest of its
//! input, so a client that kept no id can send the input again), for `feedback.ttl_s` and within
//! `feedback.max_mib`; `POST /v2/models/{name}/feedback` joins a ground-truth field (from a
//! solver or a measurement) with it. Per version, over the last `feedback.window` joined
//! functions, it tracks the coverage of the central Gaussian intervals `mean ± z·std` at the
//! served `levels`, the CRPS, a PIT histogram and a one-sided binomial test of coverage against
//! each nominal level. The test uses `points_per_function` evenly spaced points of each function
//! (neighbouring points of a field are correlated; counting all of them would overstate the
//! evidence). Coverage **collapses** at a level when the test's p-value is below `alpha` and the
//! observed coverage is more than `tolerance` under the nominal one.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// `[feedback]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackConfig {
    /// Keep predictions and accept feedback.
    pub enabled: bool,
    /// Predictions are joinable this long (seconds).
    pub ttl_s: u64,
    /// Memory for kept predictions (MiB); the oldest go first.
    pub max_mib: u64,
    /// Joined functions per version in the rolling statistics.
    pub window: usize,
    /// Central interval levels tracked.
    pub levels: Vec<f64>,
    /// Points per function in the binomial test.
    pub points_per_function: usize,
    /// Significance of a coverage collapse.
    pub alpha: f64,
    /// A collapse also needs coverage this far under nominal.
    pub tolerance: f64,
    /// Joined functions before a verdict.
    pub min_functions: usize,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl_s: 3600,
            max_mib: 64,
            window: 200,
            levels: vec![0.5, 0.9, 0.95],
            points_per_function: 16,
            alpha: 0.001,
            tolerance: 0.05,
            min_functions: 10,
        }
    }
}

impl FeedbackConfig {
    /// Check ranges; `Err` names the key.
    pub fn validate(&self) -> Result<(), (String, &'static str, String)> {
        let bad = |k: &str, e: &'static str, g: String| Err((format!("feedback.{k}"), e, g));
        if self.ttl_s == 0 {
            return bad("ttl_s", "at least 1 second", "0".into());
        }
        if self.max_mib == 0 || self.max_mib > 1 << 20 {
            return bad("max_mib", "1 to 1048576", self.max_mib.to_string());
        }
        if !(1..=100_000).contains(&self.window) {
            return bad("window", "1 to 100000", self.window.to_string());
        }
        if self.levels.is_empty()
            || self
                .levels
                .iter()
                .any(|l| !(l.is_finite() && *l > 0.0 && *l < 1.0))
        {
            return bad("levels", "levels in (0, 1)", format!("{:?}", self.levels));
        }
        if !(1..=4096).contains(&self.points_per_function) {
            return bad(
                "points_per_function",
                "1 to 4096",
                self.points_per_function.to_string(),
            );
        }
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return bad("alpha", "a level in (0, 0.5)", self.alpha.to_string());
        }
        if !(self.tolerance.is_finite() && (0.0..1.0).contains(&self.tolerance)) {
            return bad(
                "tolerance",
                "a fraction in [0, 1)",
                self.tolerance.to_string(),
            );
        }
        if self.min_functions == 0 || self.min_functions > self.window {
            return bad(
                "min_functions",
                "at least 1 and at most feedback.window",
                self.min_functions.to_string(),
            );
        }
        Ok(())
    }
}

/// A kept prediction.
#[derive(Debug, Clone)]
pub struct Kept {
    /// Model.
    pub model: String,
    /// Version.
    pub version: u64,
    /// When (unix s).
    pub at_s: u64,
    /// Shape `[n, channels, grid…]`.
    pub shape: Vec<usize>,
    /// Predicted mean.
    pub mean: Vec<f32>,
    /// Predicted std.
    pub std: Vec<f32>,
    /// [`input_digest`] of the input it was predicted from.
    pub input: Option<[u8; 32]>,
}

impl Kept {
    fn bytes(&self) -> usize {
        8 * self.mean.len() + 64 + self.model.len() + if self.input.is_some() { 96 } else { 0 }
    }
}

/// The digest that names an inference input: SHA-256 of the sample count, the value count and
/// the values as little-endian f32 (the precision inference computes in), so the same input sent
/// again as JSON numbers or as binary tensors, in any shape spelling, has the same digest.
pub fn input_digest(x: &[f32], n: usize) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update((n as u64).to_le_bytes());
    h.update((x.len() as u64).to_le_bytes());
    for v in x {
        h.update(v.to_le_bytes());
    }
    h.finalize().into()
}

/// One joined function's numbers.
#[derive(Debug, Clone)]
struct Joined {
    /// Per level: the fraction of points covered.
    covered: Vec<f64>,
    /// Per level: thinned points covered.
    thinned: Vec<usize>,
    /// Thinned points.
    k: usize,
    /// Mean CRPS over points.
    crps: f64,
    /// PIT of the thinned points.
    pit: Vec<f64>,
}

/// Why feedback could not be joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No prediction with that id for the model (never made, or evicted for memory).
    Unknown,
    /// Kept, but older than `ttl_s`.
    Expired(u64),
    /// The truth's shape differs from the prediction's.
    Shape(Vec<usize>, Vec<usize>),
    /// A non-finite truth value.
    NonFinite(usize),
}

/// Per level: tracked numbers of one version.
#[derive(Debug, Clone, Serialize)]
pub struct LevelStats {
    /// Nominal level.
    pub level: f64,
    /// Observed coverage (all points).
    pub coverage: f64,
    /// Points in the binomial test.
    pub n: usize,
    /// Covered among them.
    pub covered: usize,
    /// One-sided p-value of coverage this low under the nominal level.
    pub p_value: f64,
    /// Collapsed (significant and under nominal by more than the tolerance).
    pub collapsed: bool,
}

/// A version's calibration detail.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    /// Model.
    pub model: String,
    /// Version.
    pub version: u64,
    /// Joined functions in the window.
    pub functions: usize,
    /// Mean CRPS.
    pub crps: f64,
    /// Per level.
    pub levels: Vec<LevelStats>,
    /// PIT histogram (10 bins) of the thinned points; flat when calibrated.
    pub pit_histogram: Vec<usize>,
    /// Some level collapsed (needs `min_functions`).
    pub collapsed: bool,
}

#[derive(Debug, Default)]
struct Inner {
    kept: HashMap<(String, String), Kept>,
    /// (model, input digest) → the newest request id predicted from that input.
    by_input: HashMap<(String, [u8; 32]), String>,
    order: VecDeque<(u64, (String, String))>,
    bytes: usize,
    windows: BTreeMap<(String, u64), VecDeque<Joined>>,
}

/// Kept predictions and per-version rolling calibration.
#[derive(Debug, Default)]
pub struct Feedback {
    inner: Mutex<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Feedback {
    /// Keep a prediction for request `id` (replacing one of the same id).
    pub fn keep(&self, id: &str, k: Kept, cfg: &FeedbackConfig) {
        let mut i = lock(&self.inner);
        let key = (k.model.clone(), id.to_string());
        let (at, size) = (k.at_s, k.bytes());
        if let Some(d) = k.input {
            i.by_input.insert((k.model.clone(), d), id.to_string());
        }
        if let Some(old) = i.kept.insert(key.clone(), k) {
            i.bytes -= old.bytes();
        }
        i.bytes += size;
        i.order.push_back((at, key));
        let cap = (cfg.max_mib as usize) << 20;
        while i.bytes > cap || i.order.front().is_some_and(|(t, _)| t + cfg.ttl_s * 2 < at) {
            let Some((t, key)) = i.order.pop_front() else {
                break;
            };
            // An entry replaced later has a newer time: only the current one is removed.
            if i.kept.get(&key).is_some_and(|k| k.at_s == t)
                && let Some(old) = i.kept.remove(&key)
            {
                i.bytes -= old.bytes();
                if let Some(d) = old.input {
                    let at = (key.0.clone(), d);
                    if i.by_input.get(&at) == Some(&key.1) {
                        i.by_input.remove(&at);
                    }
                }
            }
        }
    }

    /// The request id of the newest kept prediction of `model` from the input with `digest`.
    pub fn request_of_input(&self, model: &str, digest: &[u8; 32]) -> Option<String> {
        lock(&self.inner)
            .by_input
            .get(&(model.to_string(), *digest))
            .cloned()
    }

    /// Join `truth` (shape `shape`) with the prediction of request `id` of `model` at `now`.
    pub fn join(
        &self,
        model: &str,
        id: &str,
        shape: &[usize],
        truth: &[f32],
        now: u64,
        cfg: &FeedbackConfig,
    ) -> Result<(u64, usize), Refused> {
        let mut i = lock(&self.inner);
        let key = (model.to_string(), id.to_string());
        let k = i.kept.get(&key).ok_or(Refused::Unknown)?;
        if now > k.at_s + cfg.ttl_s {
            return Err(Refused::Expired(now - k.at_s));
        }
        if shape != k.shape.as_slice() || truth.len() != k.mean.len() {
            return Err(Refused::Shape(k.shape.clone(), shape.to_vec()));
        }
        if let Some(p) = truth.iter().position(|v| !v.is_finite()) {
            return Err(Refused::NonFinite(p));
        }
        let n = k.shape[0].max(1);
        let per = k.mean.len() / n;
        let version = k.version;
        let mut joined = Vec::with_capacity(n);
        for f in 0..n {
            let r = f * per..(f + 1) * per;
            joined.push(score(&k.mean[r.clone()], &k.std[r.clone()], &truth[r], cfg));
        }
        let w = i.windows.entry((model.to_string(), version)).or_default();
        for j in joined {
            w.push_back(j);
        }
        while w.len() > cfg.window {
            w.pop_front();
        }
        Ok((version, n))
    }

    /// The calibration of every version with feedback.
    pub fn status(&self, cfg: &FeedbackConfig) -> Vec<Calibration> {
        let i = lock(&self.inner);
        i.windows
            .iter()
            .map(|((m, v), w)| summarise(m, *v, w, cfg))
            .collect()
    }

    /// Forget versions not `loaded`.
    pub fn retain(&self, loaded: &dyn Fn(&str, u64) -> bool) {
        lock(&self.inner).windows.retain(|(m, v), _| loaded(m, *v));
    }
}

/// Score one function: coverage per level, thinned counts, CRPS, PIT.
fn score(mean: &[f32], std: &[f32], truth: &[f32], cfg: &FeedbackConfig) -> Joined {
    let z: Vec<f64> = cfg
        .levels
        .iter()
        .map(|l| pno_metrics::normal_quantile(0.5 + l / 2.0))
        .collect();
    let p = mean.len().max(1);
    let mut covered = vec![0usize; z.len()];
    let mut crps = 0.0;
    for ((m, s), y) in mean.iter().zip(std).zip(truth) {
        let (m, s, y) = (f64::from(*m), f64::from(*s).max(0.0), f64::from(*y));
        for (c, z) in covered.iter_mut().zip(&z) {
            *c += usize::from((y - m).abs() <= z * s);
        }
        crps += pno_metrics::crps_gaussian_point(m, s, y);
    }
    let k = cfg.points_per_function.min(p);
    let mut thinned = vec![0usize; z.len()];
    let mut pit = Vec::with_capacity(k);
    for t in 0..k {
        let i = (2 * t + 1) * p / (2 * k);
        let (m, s, y) = (
            f64::from(mean[i]),
            f64::from(std[i]).max(0.0),
            f64::from(truth[i]),
        );
        for (c, z) in thinned.iter_mut().zip(&z) {
            *c += usize::from((y - m).abs() <= z * s);
        }
        pit.push(if s > 0.0 {
            pno_metrics::normal_cdf((y - m) / s)
        } else if y >= m {
            1.0
        } else {
            0.0
        });
    }
    Joined {
        covered: covered.iter().map(|c| *c as f64 / p as f64).collect(),
        thinned,
        k,
        crps: crps / p as f64,
        pit,
    }
}

/// One-sided lower-tail binomial p-value `P(X ≤ x)`, `X ~ Bin(n, p)` (exact, in log space).
pub fn binomial_lower_tail(x: usize, n: usize, p: f64) -> f64 {
    if x >= n {
        return 1.0;
    }
    let lp = p.ln();
    let lq = (1.0 - p).ln();
    let mut log_c = 0.0; // ln C(n, 0)
    let mut total = 0.0;
    for k in 0..=x {
        if k > 0 {
            log_c += ((n - k + 1) as f64).ln() - (k as f64).ln();
        }
        total += (log_c + k as f64 * lp + (n - k) as f64 * lq).exp();
    }
    total.min(1.0)
}

fn summarise(model: &str, version: u64, w: &VecDeque<Joined>, cfg: &FeedbackConfig) -> Calibration {
    let f = w.len();
    let levels: Vec<LevelStats> = cfg
        .levels
        .iter()
        .enumerate()
        .map(|(j, &level)| {
            let coverage = w
                .iter()
                .map(|r| r.covered.get(j).copied().unwrap_or(0.0))
                .sum::<f64>()
                / f.max(1) as f64;
            let n: usize = w.iter().map(|r| r.k).sum();
            let covered: usize = w
                .iter()
                .map(|r| r.thinned.get(j).copied().unwrap_or(0))
                .sum();
            let p_value = binomial_lower_tail(covered, n, level);
            let collapsed =
                f >= cfg.min_functions && p_value < cfg.alpha && coverage < level - cfg.tolerance;
            LevelStats {
                level,
                coverage,
                n,
                covered,
                p_value,
                collapsed,
            }
        })
        .collect();
    let mut pit_histogram = vec![0usize; 10];
    for r in w {
        for p in &r.pit {
            pit_histogram[((p * 10.0) as usize).min(9)] += 1;
        }
    }
    Calibration {
        model: model.to_string(),
        version,
        functions: f,
        crps: w.iter().map(|r| r.crps).sum::<f64>() / f.max(1) as f64,
        collapsed: levels.iter().any(|l| l.collapsed),
        levels,
        pit_histogram,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binomial_tail_matches_the_exact_sum() {
        // The exact sum with Python's integers: sum(comb(n, k) * p**k * (1-p)**(n-k) for k ≤ x).
        assert!((binomial_lower_tail(5, 10, 0.5) - 0.623046875).abs() < 1e-12);
        assert!((binomial_lower_tail(80, 100, 0.9) - 0.001978560865771226).abs() < 1e-12);
        assert!((binomial_lower_tail(0, 20, 0.9) - 1e-20).abs() < 1e-30);
        assert_eq!(binomial_lower_tail(20, 20, 0.9), 1.0);
    }

    fn kept(mean: f32, std: f32, points: usize) -> Kept {
        Kept {
            model: "m".into(),
            version: 1,
            at_s: 100,
            shape: vec![1, 1, points],
            mean: vec![mean; points],
            std: vec![std; points],
            input: None,
        }
    }

    #[test]
    fn calibrated_truth_covers_at_nominal_and_a_shifted_one_collapses() {
        let cfg = FeedbackConfig::default();
        let fb = Feedback::default();
        let points = 64;
        // Truth at evenly spaced standard-normal quantiles: the empirical coverage of mean ± z·std
        // is the nominal level up to one point in 64.
        let truth: Vec<f32> = (0..points)
            .map(|i| pno_metrics::normal_quantile((i as f64 + 0.5) / points as f64) as f32)
            .collect();
        for f in 0..40 {
            fb.keep(&format!("r{f}"), kept(0.0, 1.0, points), &cfg);
            fb.join("m", &format!("r{f}"), &[1, 1, points], &truth, 110, &cfg)
                .unwrap();
        }
        let c = &fb.status(&cfg)[0];
        assert_eq!(c.functions, 40);
        for l in &c.levels {
            assert!(
                (l.coverage - l.level).abs() <= 1.0 / points as f64 + 1e-9,
                "{l:?}"
            );
            assert!(!l.collapsed, "{l:?}");
        }
        assert!(!c.collapsed);
        // CRPS of N(0, 1) against its own quantiles: E|X - y| terms, about 0.56 (1/√π).
        assert!((c.crps - 0.5642).abs() < 0.02, "{}", c.crps);
        // Truth three standard deviations off: coverage collapses at every level.
        let far: Vec<f32> = truth.iter().map(|t| t + 3.0).collect();
        for f in 0..200 {
            fb.keep(&format!("s{f}"), kept(0.0, 1.0, points), &cfg);
            fb.join("m", &format!("s{f}"), &[1, 1, points], &far, 120, &cfg)
                .unwrap();
        }
        let c = &fb.status(&cfg)[0];
        assert_eq!(c.functions, cfg.window);
        assert!(c.collapsed && c.levels.iter().all(|l| l.collapsed), "{c:?}");
        assert!(
            c.pit_histogram[9] > c.pit_histogram[0] * 5,
            "{:?}",
            c.pit_histogram
        );
    }

    #[test]
    fn unknown_expired_misshapen_and_non_finite_feedback_is_refused_and_memory_is_bounded() {
        let cfg = FeedbackConfig {
            max_mib: 1,
            ttl_s: 60,
            ..Default::default()
        };
        let fb = Feedback::default();
        fb.keep("a", kept(0.0, 1.0, 8), &cfg);
        assert_eq!(
            fb.join("m", "zz", &[1, 1, 8], &[0.0; 8], 100, &cfg),
            Err(Refused::Unknown)
        );
        assert_eq!(
            fb.join("other", "a", &[1, 1, 8], &[0.0; 8], 100, &cfg),
            Err(Refused::Unknown)
        );
        assert_eq!(
            fb.join("m", "a", &[1, 1, 8], &[0.0; 8], 161, &cfg),
            Err(Refused::Expired(61))
        );
        assert!(matches!(
            fb.join("m", "a", &[1, 8], &[0.0; 8], 100, &cfg),
            Err(Refused::Shape(..))
        ));
        let mut t = [0.0f32; 8];
        t[3] = f32::NAN;
        assert_eq!(
            fb.join("m", "a", &[1, 1, 8], &t, 100, &cfg),
            Err(Refused::NonFinite(3))
        );
        // 1 MiB holds about 4000 predictions of 32 points: the oldest are evicted first.
        for i in 0..10_000 {
            fb.keep(&format!("k{i}"), kept(0.0, 1.0, 32), &cfg);
        }
        let i = lock(&fb.inner);
        assert!(
            i.bytes <= 1 << 20 && i.kept.len() < 5000,
            "{} bytes",
            i.bytes
        );
        assert!(i.kept.contains_key(&("m".to_string(), "k9999".to_string())));
        assert!(!i.kept.contains_key(&("m".to_string(), "k0".to_string())));
    }

    #[test]
    fn a_prediction_is_found_again_by_its_input_until_it_is_evicted() {
        let cfg = FeedbackConfig {
            max_mib: 1,
            ..Default::default()
        };
        let fb = Feedback::default();
        let x = [0.5f32, -1.0, 2.0, 3.0];
        let d = input_digest(&x, 1);
        assert_ne!(
            d,
            input_digest(&x, 2),
            "the sample count is part of the name"
        );
        assert_ne!(d, input_digest(&[0.5, -1.0, 2.0, 3.000_001], 1));
        let with = |id: &str| {
            let mut k = kept(0.0, 1.0, 4);
            k.input = Some(d);
            fb.keep(id, k, &cfg);
        };
        with("first");
        assert_eq!(fb.request_of_input("m", &d).as_deref(), Some("first"));
        assert_eq!(fb.request_of_input("other", &d), None);
        // The same input predicted again: the newest prediction is the one joined.
        with("second");
        assert_eq!(fb.request_of_input("m", &d).as_deref(), Some("second"));
        // Evicting the older one keeps the name of the newer.
        for i in 0..20_000 {
            fb.keep(&format!("k{i}"), kept(0.0, 1.0, 4), &cfg);
            if i == 100 {
                assert_eq!(fb.request_of_input("m", &d).as_deref(), Some("second"));
            }
        }
        assert_eq!(
            fb.request_of_input("m", &d),
            None,
            "evicted with its prediction"
        );
    }
}
