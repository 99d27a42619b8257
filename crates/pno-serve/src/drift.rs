//! Online input drift, per model version: the drift features (per channel mean, std and
//! spectral band energies, `pno_data::drift::field_features`) of recent request inputs are kept
//! in a bounded ring, and every `drift.window_s` the ring is tested against the version's
//! reference (the training inputs' features stored in its run folder, `reference.json`): a
//! two-sample Kolmogorov–Smirnov test per feature with a multiple-testing correction
//! (Bonferroni or FDR) and the PSI on the reference's quantile bins. The version drifts when some
//! feature is significant after correction **and** its PSI passes `psi_threshold` (a significant
//! but tiny shift of a large sample is not drift). Features are computed for at most
//! `max_samples_per_s` inputs a second per version (the rest are counted as skipped), and the
//! ring holds `samples` inputs, so memory and CPU stay bounded whatever the traffic. Inputs at
//! another resolution than the reference's are not comparable and are skipped, counted.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// `[drift]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    /// Test recent inputs against the reference.
    pub enabled: bool,
    /// Seconds between tests.
    pub window_s: u64,
    /// Recent inputs kept per version (the test's sample).
    pub samples: usize,
    /// A version is tested once it has this many recent inputs.
    pub min_samples: usize,
    /// Inputs whose features are computed per second per version at most.
    pub max_samples_per_s: u32,
    /// Significance level after correction.
    pub alpha: f64,
    /// `bonferroni` or `fdr` (Benjamini–Hochberg).
    pub correction: String,
    /// A significant feature drifts only with at least this PSI (0.1 moderate, 0.25 major).
    pub psi_threshold: f64,
    /// Reference-quantile bins of the PSI.
    pub psi_bins: usize,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window_s: 30,
            samples: 256,
            min_samples: 64,
            max_samples_per_s: 32,
            alpha: 0.01,
            correction: "bonferroni".into(),
            psi_threshold: 0.25,
            psi_bins: 10,
        }
    }
}

impl DriftConfig {
    /// Check ranges; `Err` names the key.
    pub fn validate(&self) -> Result<(), (String, &'static str, String)> {
        let bad = |k: &str, e: &'static str, g: String| Err((format!("drift.{k}"), e, g));
        if self.window_s == 0 || self.window_s > 3600 {
            return bad("window_s", "1 to 3600 seconds", self.window_s.to_string());
        }
        if !(8..=100_000).contains(&self.samples) {
            return bad("samples", "8 to 100000", self.samples.to_string());
        }
        if self.min_samples < 8 || self.min_samples > self.samples {
            return bad(
                "min_samples",
                "at least 8 and at most drift.samples",
                self.min_samples.to_string(),
            );
        }
        if self.max_samples_per_s == 0 {
            return bad("max_samples_per_s", "at least 1", "0".into());
        }
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return bad("alpha", "a level in (0, 0.5)", self.alpha.to_string());
        }
        if self.correction().is_none() {
            return bad(
                "correction",
                "bonferroni or fdr",
                format!("{:?}", self.correction),
            );
        }
        if !(self.psi_threshold.is_finite() && self.psi_threshold >= 0.0) {
            return bad(
                "psi_threshold",
                "a PSI of at least 0",
                self.psi_threshold.to_string(),
            );
        }
        if !(2..=50).contains(&self.psi_bins) {
            return bad("psi_bins", "2 to 50", self.psi_bins.to_string());
        }
        Ok(())
    }

    fn correction(&self) -> Option<pno_metrics::Correction> {
        use pno_metrics::Correction;
        match self.correction.as_str() {
            "bonferroni" => Some(Correction::Bonferroni),
            "fdr" => Some(Correction::Fdr),
            _ => None,
        }
    }
}

/// What a version's inputs are compared with: per feature, the training inputs' values (the
/// run's `reference.json`, [`pno_run::reference::ReferenceStats::inputs`]).
#[derive(Debug, Clone)]
pub struct Reference {
    /// Feature names (`x[0].mean`, `x[0].k2-3`, …).
    pub names: Vec<String>,
    /// Per feature, the reference sample.
    pub columns: Vec<Vec<f64>>,
    /// Channels of the reference inputs.
    pub channels: usize,
    /// Grid of the reference inputs.
    pub grid: Vec<usize>,
    stats: Option<Arc<pno_run::reference::ReferenceStats>>,
}

impl Reference {
    /// The reference of a run's statistics.
    pub fn of(stats: &Arc<pno_run::reference::ReferenceStats>) -> Self {
        let t = &stats.inputs;
        Self {
            names: t.names.clone(),
            columns: (0..t.names.len()).map(|j| t.column(j)).collect(),
            channels: stats.in_channels,
            grid: stats.grid.clone(),
            stats: Some(stats.clone()),
        }
    }

    /// The features of `n` input fields `x` (`[n, channels, grid…]`, physical units), one row
    /// per sample, computed as training computed the reference's; `None` when they are not
    /// comparable (another grid) or cannot be computed.
    pub fn features(&self, x: &[f32], n: usize, grid: &[usize]) -> Option<Vec<Vec<f64>>> {
        let f = self
            .stats
            .as_ref()?
            .request_features(x, n, self.channels, grid)
            .ok()??;
        if f.names != self.names {
            return None;
        }
        Some(
            f.values
                .chunks_exact(f.names.len())
                .map(<[f64]>::to_vec)
                .collect(),
        )
    }
}

/// One feature's test.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureTest {
    /// Feature.
    pub feature: String,
    /// PSI on the reference's quantile bins.
    pub psi: f64,
    /// KS statistic.
    pub ks: f64,
    /// KS p-value after the correction.
    pub p_value: f64,
    /// Significant and past the PSI threshold.
    pub drifted: bool,
}

/// A version's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The version's test number (1 for its first test since it was loaded): a client that
    /// waits for the next verdict watches it change.
    pub seq: u64,
    /// When (unix s).
    pub at_s: u64,
    /// Recent inputs tested.
    pub samples: usize,
    /// Some feature drifted.
    pub detected: bool,
    /// Per feature.
    pub features: Vec<FeatureTest>,
}

impl Verdict {
    /// The drifted features, most shifted first, as one line.
    pub fn describe(&self) -> String {
        let mut d: Vec<&FeatureTest> = self.features.iter().filter(|f| f.drifted).collect();
        d.sort_by(|a, b| b.psi.total_cmp(&a.psi));
        d.iter()
            .take(4)
            .map(|f| format!("{} (PSI {:.2}, p {:.1e})", f.feature, f.psi, f.p_value))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Test `recent` rows against `reference`.
pub fn test(reference: &Reference, recent: &[Vec<f64>], cfg: &DriftConfig, at_s: u64) -> Verdict {
    let k = reference.names.len();
    let mut raw = Vec::with_capacity(k);
    let mut out = Vec::with_capacity(k);
    for (j, name) in reference.names.iter().enumerate() {
        let cur: Vec<f64> = recent.iter().map(|r| r[j]).collect();
        let refc = &reference.columns[j];
        let ks = pno_metrics::ks_2samp(refc, &cur).ok();
        let psi = pno_metrics::psi_quantile(refc, &cur, cfg.psi_bins).unwrap_or(0.0);
        raw.push(ks.map_or(1.0, |t| t.p_value));
        out.push(FeatureTest {
            feature: name.clone(),
            psi,
            ks: ks.map_or(0.0, |t| t.statistic),
            p_value: 1.0,
            drifted: false,
        });
    }
    let adjusted = cfg
        .correction()
        .and_then(|c| c.adjust(&raw).ok())
        .unwrap_or(raw);
    for (f, p) in out.iter_mut().zip(adjusted) {
        f.p_value = p;
        f.drifted = p < cfg.alpha && f.psi >= cfg.psi_threshold;
    }
    Verdict {
        seq: 0,
        at_s,
        samples: recent.len(),
        detected: out.iter().any(|f| f.drifted),
        features: out,
    }
}

#[derive(Debug)]
struct Version {
    reference: Arc<Reference>,
    /// Which loaded reference it was built from.
    source: usize,
    recent: VecDeque<Vec<f64>>,
    /// Inputs added since the last test.
    fresh: usize,
    /// The second and how many inputs were featurised in it.
    second: (u64, u32),
    skipped: u64,
    incomparable: u64,
    tests: u64,
    last: Option<Verdict>,
}

/// Every version's recent inputs and last verdict.
#[derive(Debug, Default)]
pub struct Drift {
    versions: Mutex<BTreeMap<(String, u64), Version>>,
}

/// A version's new verdict.
#[derive(Debug, Clone)]
pub struct Tested {
    /// Model.
    pub model: String,
    /// Version.
    pub version: u64,
    /// The verdict.
    pub verdict: Verdict,
    /// It differs from the previous one (drift began or ended).
    pub changed: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drift {
    /// Whether an input of `model`/`version` at second `now` should be featurised (within the
    /// rate budget); the reference when so. Counts the skipped ones.
    pub fn admit(
        &self,
        model: &str,
        version: u64,
        stats: Option<&Arc<pno_run::reference::ReferenceStats>>,
        now: u64,
        cfg: &DriftConfig,
    ) -> Option<Arc<Reference>> {
        let stats = stats?;
        let id = Arc::as_ptr(stats) as usize;
        self.admit_as(model, version, id, &|| Reference::of(stats), now, cfg)
    }

    /// [`Drift::admit`] for the reference `make` builds, known by `id` (a version loaded again
    /// has another).
    fn admit_as(
        &self,
        model: &str,
        version: u64,
        id: usize,
        make: &dyn Fn() -> Reference,
        now: u64,
        cfg: &DriftConfig,
    ) -> Option<Arc<Reference>> {
        let mut vs = lock(&self.versions);
        let v = vs
            .entry((model.to_string(), version))
            .or_insert_with(|| Version {
                reference: Arc::new(make()),
                source: id,
                recent: VecDeque::new(),
                fresh: 0,
                second: (now, 0),
                skipped: 0,
                incomparable: 0,
                tests: 0,
                last: None,
            });
        if v.source != id {
            // The version was loaded again: a new reference, a new sample.
            v.reference = Arc::new(make());
            v.source = id;
            v.recent.clear();
            v.tests = 0;
            v.last = None;
        }
        if v.second.0 != now {
            v.second = (now, 0);
        }
        if v.second.1 >= cfg.max_samples_per_s {
            v.skipped += 1;
            return None;
        }
        v.second.1 += 1;
        Some(v.reference.clone())
    }

    /// Add the features of an admitted input (`None`: not comparable with the reference).
    pub fn add(&self, model: &str, version: u64, rows: Option<Vec<Vec<f64>>>, cfg: &DriftConfig) {
        let mut vs = lock(&self.versions);
        let Some(v) = vs.get_mut(&(model.to_string(), version)) else {
            return;
        };
        match rows {
            None => v.incomparable += 1,
            Some(rows) => {
                for r in rows {
                    v.recent.push_back(r);
                    v.fresh += 1;
                }
                while v.recent.len() > cfg.samples {
                    v.recent.pop_front();
                }
            }
        }
    }

    /// Test every version with enough recent inputs (and new ones since its last test);
    /// forget versions not `loaded`.
    pub fn evaluate(
        &self,
        cfg: &DriftConfig,
        now: u64,
        loaded: &dyn Fn(&str, u64) -> bool,
    ) -> Vec<Tested> {
        let mut vs = lock(&self.versions);
        vs.retain(|(m, v), _| loaded(m, *v));
        let mut out = Vec::new();
        for ((m, ver), v) in vs.iter_mut() {
            if v.recent.len() < cfg.min_samples || v.fresh == 0 {
                continue;
            }
            v.fresh = 0;
            v.tests += 1;
            let recent: Vec<Vec<f64>> = v.recent.iter().cloned().collect();
            let mut verdict = test(&v.reference, &recent, cfg, now);
            verdict.seq = v.tests;
            let was = v.last.as_ref().is_some_and(|l| l.detected);
            out.push(Tested {
                model: m.clone(),
                version: *ver,
                verdict: verdict.clone(),
                changed: verdict.detected != was,
            });
            v.last = Some(verdict);
        }
        out
    }

    /// Per version: the last verdict and the skip counts, for `/metrics` and the admin view.
    pub fn status(&self) -> Vec<(String, u64, Option<Verdict>, u64, u64, usize)> {
        lock(&self.versions)
            .iter()
            .map(|((m, ver), v)| {
                (
                    m.clone(),
                    *ver,
                    v.last.clone(),
                    v.skipped,
                    v.incomparable,
                    v.recent.len(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded normal draws (SplitMix64 + Box–Muller).
    fn normals(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed;
        let mut u = move || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (((z ^ (z >> 31)) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        move || (-2.0 * u().ln()).sqrt() * (std::f64::consts::TAU * u()).cos()
    }

    fn reference(g: &mut impl FnMut() -> f64, k: usize, n: usize) -> Reference {
        Reference {
            names: (0..k).map(|j| format!("f{j}")).collect(),
            columns: (0..k).map(|_| (0..n).map(|_| g()).collect()).collect(),
            channels: 1,
            grid: vec![4],
            stats: None,
        }
    }

    #[test]
    fn same_distribution_rarely_drifts_and_a_shift_always_does() {
        let cfg = DriftConfig::default();
        let mut g = normals(5);
        let r = reference(&mut g, 6, 1000);
        let mut false_alarms = 0;
        for w in 0..400 {
            let recent: Vec<Vec<f64>> = (0..cfg.samples)
                .map(|_| (0..6).map(|_| g()).collect())
                .collect();
            false_alarms += usize::from(test(&r, &recent, &cfg, w).detected);
        }
        // Bonferroni at 1 % bounds the family-wise rate by 1 %; the PSI gate lowers it further.
        assert!(false_alarms <= 4, "{false_alarms} of 400 windows");
        // One feature shifted by one standard deviation: found, named, the others not.
        for w in 0..20 {
            let recent: Vec<Vec<f64>> = (0..cfg.samples)
                .map(|_| {
                    (0..6)
                        .map(|j| g() + if j == 2 { 1.0 } else { 0.0 })
                        .collect()
                })
                .collect();
            let v = test(&r, &recent, &cfg, w);
            assert!(v.detected);
            assert!(
                v.features[2].drifted && v.features[2].psi > 0.25,
                "{:?}",
                v.features[2]
            );
            assert!(v.describe().starts_with("f2 "), "{}", v.describe());
        }
    }

    #[test]
    fn the_ring_and_the_rate_budget_bound_what_is_kept_and_computed() {
        let cfg = DriftConfig {
            samples: 16,
            min_samples: 8,
            max_samples_per_s: 3,
            ..Default::default()
        };
        let mut g = normals(9);
        let r = reference(&mut g, 2, 200);
        let d = Drift::default();
        let mut admitted = 0;
        for t in 0..10u64 {
            for _ in 0..10 {
                if d.admit_as("m", 1, 7, &|| r.clone(), 100 + t, &cfg)
                    .is_some()
                {
                    admitted += 1;
                    d.add("m", 1, Some(vec![vec![g(), g()]]), &cfg);
                }
            }
        }
        assert_eq!(admitted, 30, "3 a second");
        let st = d.status();
        assert_eq!((st[0].3, st[0].5), (70, 16), "skipped 70, ring holds 16");
        // A first verdict that is not drift is no change; a drifted one is.
        let t = d.evaluate(&cfg, 200, &|_, _| true);
        assert!(!t[0].changed && !t[0].verdict.detected);
        assert_eq!(t[0].verdict.seq, 1);
        for _ in 0..16 {
            d.add("m", 1, Some(vec![vec![g() + 5.0, g()]]), &cfg);
        }
        let c = d.evaluate(&cfg, 230, &|_, _| true);
        assert_eq!(c.len(), 1);
        assert!(c[0].verdict.detected && c[0].changed);
        assert_eq!(c[0].verdict.seq, 2, "the version's second test");
        // Without fresh inputs nothing is tested again; an unloaded version is forgotten.
        assert!(d.evaluate(&cfg, 260, &|_, _| true).is_empty());
        d.evaluate(&cfg, 290, &|_, _| false);
        assert!(d.status().is_empty());
        // Not comparable inputs are counted, not kept.
        let r2 = Reference { grid: vec![8], ..r };
        assert!(r2.features(&[0.0; 4], 1, &[4]).is_none());
    }
}
