//! Dataset splits: the [`Split`] names, contiguous [`SplitFractions`], and the seeded
//! [`SplitPlan`] that training carves into [`SplitIndices`] (and that the data-quality gate
//! checks for leakage, so the gate tests the splits training really uses).

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::seed::{mix, salt};

/// A named part of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training samples.
    Train,
    /// Validation samples (early stopping, model selection).
    #[serde(alias = "val")]
    Validation,
    /// Calibration samples (conformal prediction).
    Calibration,
    /// Held-out test samples.
    Test,
}

impl Split {
    /// All splits in their canonical order.
    pub const ALL: [Split; 4] = [
        Split::Train,
        Split::Validation,
        Split::Calibration,
        Split::Test,
    ];

    /// The snake_case name.
    pub fn name(&self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Calibration => "calibration",
            Split::Test => "test",
        }
    }
}

impl std::str::FromStr for Split {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Split::ALL
            .into_iter()
            .find(|sp| sp.name() == s || (s == "val" && *sp == Split::Validation))
            .ok_or_else(|| Error::Invalid {
                field: "split",
                expected: "one of train, validation, calibration, test".into(),
                got: s.to_string(),
            })
    }
}

/// Serde for `Option<Split>` where `None` means every sample (`"all"`), as evaluation and
/// calibration records write it: `#[serde(with = "pno_core::split_or_all")]`.
pub mod split_or_all {
    use super::Split;
    use serde::{Deserialize, Deserializer, Serializer};

    /// `None` → `"all"`, else the split's name.
    pub fn serialize<S: Serializer>(v: &Option<Split>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.map_or("all", |sp| sp.name()))
    }

    /// `"all"` → `None`; a split name (or `"val"`) → that split.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Split>, D::Error> {
        let name = String::deserialize(d)?;
        if name == "all" {
            return Ok(None);
        }
        name.parse().map(Some).map_err(serde::de::Error::custom)
    }
}

/// Fractions of a dataset assigned to each split, in sample order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitFractions {
    /// Training fraction.
    pub train: f64,
    /// Validation fraction.
    #[serde(default)]
    pub validation: f64,
    /// Calibration fraction.
    #[serde(default)]
    pub calibration: f64,
    /// Test fraction.
    pub test: f64,
}

impl Default for SplitFractions {
    fn default() -> Self {
        Self {
            train: 0.8,
            validation: 0.0,
            calibration: 0.0,
            test: 0.2,
        }
    }
}

impl SplitFractions {
    /// Checks that every fraction is in `[0, 1]` and that they sum to 1.
    pub fn validate(&self) -> Result<()> {
        let parts = [self.train, self.validation, self.calibration, self.test];
        let sum: f64 = parts.iter().sum();
        if parts.iter().any(|f| !(0.0..=1.0).contains(f)) || (sum - 1.0).abs() > 1e-9 {
            return Err(Error::Invalid {
                field: "splits",
                expected: "fractions in [0, 1] summing to 1".into(),
                got: format!("{parts:?} (sum {sum})"),
            });
        }
        Ok(())
    }

    /// Contiguous index ranges of each split out of `n` samples (train first, test last).
    pub fn ranges(&self, n: usize) -> Vec<(Split, std::ops::Range<usize>)> {
        let mut out = Vec::new();
        let mut acc = 0.0;
        let mut start = 0;
        for (split, f) in [
            (Split::Train, self.train),
            (Split::Validation, self.validation),
            (Split::Calibration, self.calibration),
            (Split::Test, self.test),
        ] {
            acc += f;
            let end = if split == Split::Test {
                n
            } else {
                ((acc * n as f64).round() as usize).min(n)
            };
            out.push((split, start..end.max(start)));
            start = end.max(start);
        }
        out
    }
}

/// How training carves a dataset of `n` samples: the last `n_test` samples are the test split;
/// a seeded permutation of the rest gives `n_calibration` calibration samples, then
/// `round(val_fraction · rest)` validation samples and the training samples (optionally only the
/// first `n_train` of them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitPlan {
    /// Held-out test samples at the end of the file.
    pub n_test: usize,
    /// Conformal-calibration samples carved from the training part.
    pub n_calibration: usize,
    /// Fraction of the remaining samples used for validation.
    pub val_fraction: f64,
    /// Training-sample limit.
    pub n_train: Option<usize>,
    /// Seed of the permutation.
    pub seed: u64,
}

/// Sample indices of each split (each sorted). Serialised as `provenance.json`'s `splits`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SplitIndices {
    /// Training samples.
    pub train: Vec<usize>,
    /// Validation samples.
    pub val: Vec<usize>,
    /// Test samples.
    pub test: Vec<usize>,
    /// Conformal-calibration samples (never trained or validated on).
    #[serde(default)]
    pub calibration: Vec<usize>,
}

impl SplitPlan {
    /// Carves the splits of `n` samples. Errors name the `data.*` key at fault.
    ///
    /// ```
    /// use pno_core::SplitPlan;
    /// let plan = SplitPlan { n_test: 2, n_calibration: 1, val_fraction: 0.25, n_train: None, seed: 0 };
    /// let s = plan.carve(10)?;
    /// assert_eq!(s.test, vec![8, 9]);
    /// assert_eq!((s.train.len(), s.val.len(), s.calibration.len()), (5, 2, 1));
    /// # Ok::<(), pno_core::Error>(())
    /// ```
    pub fn carve(&self, n: usize) -> Result<SplitIndices> {
        if self.n_test >= n {
            return Err(Error::Invalid {
                field: "data.n_test",
                expected: format!("fewer than the {n} samples"),
                got: self.n_test.to_string(),
            });
        }
        let pool = n - self.n_test;
        let mut perm: Vec<usize> = (0..pool).collect();
        perm.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(&[
            self.seed,
            salt::SPLITS,
        ])));
        if self.n_calibration >= pool {
            return Err(Error::Invalid {
                field: "data.n_calibration",
                expected: format!("fewer than the {pool} samples left after the test split"),
                got: self.n_calibration.to_string(),
            });
        }
        let mut calibration = perm[..self.n_calibration].to_vec();
        let perm = &perm[self.n_calibration..];
        let n_val = ((perm.len() as f64) * self.val_fraction).round() as usize;
        let mut val = perm[..n_val.min(perm.len())].to_vec();
        let mut train = perm[n_val.min(perm.len())..].to_vec();
        if let Some(k) = self.n_train {
            train.truncate(k);
        }
        if train.is_empty() {
            return Err(Error::Invalid {
                field: "data.val_fraction",
                expected: "a split that leaves training samples".into(),
                got: self.val_fraction.to_string(),
            });
        }
        train.sort_unstable();
        val.sort_unstable();
        calibration.sort_unstable();
        Ok(SplitIndices {
            train,
            val,
            test: (pool..n).collect(),
            calibration,
        })
    }
}

impl SplitIndices {
    /// The indices of `split`.
    pub fn get(&self, split: Split) -> &[usize] {
        match split {
            Split::Train => &self.train,
            Split::Validation => &self.val,
            Split::Calibration => &self.calibration,
            Split::Test => &self.test,
        }
    }

    /// The split of every sample `0..n` (`None`: in no split, e.g. beyond `n_train`).
    pub fn labels(&self, n: usize) -> Vec<Option<Split>> {
        let mut out = vec![None; n];
        for split in Split::ALL {
            for &i in self.get(split) {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(split);
                }
            }
        }
        out
    }
}

impl SplitFractions {
    /// The split of every sample `0..n` under the contiguous ranges of [`SplitFractions::ranges`].
    pub fn labels(&self, n: usize) -> Vec<Option<Split>> {
        let mut out = vec![None; n];
        for (split, r) in self.ranges(n) {
            for slot in &mut out[r] {
                *slot = Some(split);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carve_partitions_and_is_reproducible() {
        let plan = SplitPlan {
            n_test: 10,
            n_calibration: 7,
            val_fraction: 0.2,
            n_train: None,
            seed: 3,
        };
        let a = plan.carve(100).unwrap();
        assert_eq!(a, plan.carve(100).unwrap());
        let mut all: Vec<usize> = [&a.train, &a.val, &a.calibration, &a.test]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..100).collect::<Vec<_>>(),
            "a partition of every sample"
        );
        assert_eq!(a.test, (90..100).collect::<Vec<_>>());
        assert_eq!(a.calibration.len(), 7);
        assert_eq!(a.val.len(), 17); // round(0.2 · 83)
        let b = SplitPlan { seed: 4, ..plan }.carve(100).unwrap();
        assert_ne!(a.train, b.train, "the seed moves samples between splits");
        let labels = a.labels(100);
        assert_eq!(labels[95], Some(Split::Test));
        assert!(a.val.iter().all(|&i| labels[i] == Some(Split::Validation)));
        let err = SplitPlan {
            n_test: 100,
            ..plan
        }
        .carve(100)
        .unwrap_err();
        assert!(err.to_string().contains("data.n_test"), "{err}");
        let err = SplitPlan {
            val_fraction: 1.0,
            ..plan
        }
        .carve(100)
        .unwrap_err();
        assert!(err.to_string().contains("data.val_fraction"), "{err}");
    }

    #[test]
    fn split_or_all_round_trips() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct R {
            #[serde(with = "split_or_all")]
            split: Option<Split>,
        }
        for (v, text) in [
            (None, r#"{"split":"all"}"#),
            (Some(Split::Validation), r#"{"split":"validation"}"#),
        ] {
            assert_eq!(serde_json::to_string(&R { split: v }).unwrap(), text);
            assert_eq!(serde_json::from_str::<R>(text).unwrap(), R { split: v });
        }
        let old: R = serde_json::from_str(r#"{"split":"val"}"#).unwrap();
        assert_eq!(old.split, Some(Split::Validation));
        assert!(serde_json::from_str::<R>(r#"{"split":"nope"}"#).is_err());
    }

    #[test]
    fn val_is_an_alias_of_validation() {
        assert_eq!("val".parse::<Split>().unwrap(), Split::Validation);
        let s: Split = serde_json::from_str("\"val\"").unwrap();
        assert_eq!(s, Split::Validation);
    }

    #[test]
    fn split_ranges_cover_all_samples() {
        let f = SplitFractions {
            train: 0.7,
            validation: 0.1,
            calibration: 0.1,
            test: 0.1,
        };
        f.validate().unwrap();
        let r = f.ranges(10);
        assert_eq!(r[0].1, 0..7);
        assert_eq!(r[3].1, 9..10);
        assert!(
            SplitFractions {
                train: 0.9,
                validation: 0.0,
                calibration: 0.0,
                test: 0.2
            }
            .validate()
            .is_err()
        );
    }
}
