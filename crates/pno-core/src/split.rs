//! Dataset splits.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A named part of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training samples.
    Train,
    /// Validation samples (early stopping, model selection).
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
            .find(|sp| sp.name() == s)
            .ok_or_else(|| Error::Invalid {
                field: "split",
                expected: "one of train, validation, calibration, test".into(),
                got: s.to_string(),
            })
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

#[cfg(test)]
mod tests {
    use super::*;

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
