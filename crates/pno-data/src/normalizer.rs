//! Per-channel unit-Gaussian normalisation, after neuraloperator's `UnitGaussianNormalizer`
//! (`neuralop/data/transforms/normalizers.py`, used there with `dim=[0, 2, 3, ...]`, i.e. one
//! mean and std per channel over samples and grid points).
//!
//! Data are flat `f32` slices in the layout `[n, channels, points]` (row-major; `points` is the
//! product of the spatial sizes). Statistics are accumulated in `f64` with [`Moments`].
//!
//! Differences from neuraloperator, on purpose:
//! - the standard deviation is the population one (`ddof = 0`, numpy's default;
//!   `torch.std(..., unbiased=False)`). neuraloperator's `fit` uses `torch.std`'s default
//!   `ddof = 1` and its `partial_fit` yet another estimate; for `N` values per channel the
//!   relative difference is about `1/(2N)`, far below `f32` noise for realistic `N`;
//! - a channel whose std is exactly 0 (a constant channel, e.g. a mask that is all ones) gets
//!   std 1, so it is only shifted to 0 instead of being divided by `eps`;
//! - non-finite values are rejected rather than propagated into every statistic.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::stats::Moments;

/// Per-channel mean and standard deviation, applied as `(x − mean) / (std + eps)`.
///
/// Serialises to JSON as `{"mean": [...], "std": [...], "eps": ...}`; check a deserialised
/// value with [`Normalizer::validate`] (every transform does so too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalizer {
    /// Mean of each channel.
    pub mean: Vec<f64>,
    /// Population standard deviation (`ddof = 0`) of each channel; 1 where the data were
    /// constant.
    pub std: Vec<f64>,
    /// Added to `std` before dividing (neuraloperator's default, 1e-7, from [`Normalizer::fit`]).
    pub eps: f64,
}

impl Normalizer {
    /// The `eps` [`Normalizer::fit`] uses: neuraloperator's `UnitGaussianNormalizer` default.
    pub const DEFAULT_EPS: f64 = 1e-7;

    /// Fits per-channel mean and population std over `data` laid out as
    /// `[n, channels, points]`, accumulating in `f64`; `eps` is [`Normalizer::DEFAULT_EPS`].
    ///
    /// Errors ([`Error::Invalid`]) when `channels` is 0, when there are no values per channel
    /// (`n · points == 0`), when `data.len() != n · channels · points`, or when a value is NaN
    /// or infinite (naming its flat index, sample, channel and point). A channel whose std is
    /// exactly 0 gets std 1.
    pub fn fit(data: &[f32], n: usize, channels: usize, points: usize) -> Result<Normalizer> {
        const FIELD: &str = "normalizer fit data";
        if channels == 0 {
            return Err(Error::invalid(
                "normalizer fit channels",
                "at least one channel",
                "0",
            ));
        }
        if n == 0 || points == 0 {
            return Err(Error::invalid(
                FIELD,
                "at least one value per channel",
                format!("{n} samples of {points} points"),
            ));
        }
        let want = n.checked_mul(channels).and_then(|x| x.checked_mul(points));
        if want != Some(data.len()) {
            return Err(Error::invalid(
                FIELD,
                format!("n·channels·points = {n}·{channels}·{points} values"),
                format!("{} values", data.len()),
            ));
        }
        if let Some((i, x)) = data.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            let (sample, rest) = (i / (channels * points), i % (channels * points));
            return Err(Error::invalid(
                format!(
                    "{FIELD}[{i}] (sample {sample}, channel {}, point {})",
                    rest / points,
                    rest % points
                ),
                "a finite value",
                x.to_string(),
            ));
        }
        let mut moments = vec![Moments::default(); channels];
        for (k, row) in data.chunks_exact(points).enumerate() {
            // `channels > 0`, and `k % channels` is in range.
            if let Some(m) = moments.get_mut(k % channels) {
                m.extend_f32(row);
            }
        }
        Ok(Normalizer {
            mean: moments.iter().map(|m| m.mean).collect(),
            std: moments
                .iter()
                .map(|m| if m.std == 0.0 { 1.0 } else { m.std })
                .collect(),
            eps: Self::DEFAULT_EPS,
        })
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// Checks a normalizer built by hand or read from a file: as many stds as means (at least
    /// one), every mean finite, every std finite and `>= 0`, `eps` finite and `>= 0`, and
    /// `std + eps > 0` for every channel.
    pub fn validate(&self) -> Result<()> {
        if self.mean.is_empty() || self.mean.len() != self.std.len() {
            return Err(Error::invalid(
                "normalizer std",
                format!(
                    "one std per mean ({} channels, at least 1)",
                    self.mean.len()
                ),
                format!("{} stds", self.std.len()),
            ));
        }
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(Error::invalid(
                "normalizer eps",
                "a finite value >= 0",
                self.eps.to_string(),
            ));
        }
        for (c, (&m, &s)) in self.mean.iter().zip(&self.std).enumerate() {
            if !m.is_finite() {
                return Err(Error::invalid(
                    format!("normalizer mean[{c}]"),
                    "a finite value",
                    m.to_string(),
                ));
            }
            if !(s.is_finite() && s >= 0.0 && s + self.eps > 0.0) {
                return Err(Error::invalid(
                    format!("normalizer std[{c}]"),
                    "a finite value >= 0 with std + eps > 0",
                    s.to_string(),
                ));
            }
        }
        Ok(())
    }

    /// Normalises `data` (`[n, channels, points]`, any `n`) in place:
    /// `x ← (x − mean[c]) / (std[c] + eps)`, computed in `f64`.
    ///
    /// Errors ([`Error::Invalid`]) when the normalizer is invalid, `channels` differs from
    /// [`Normalizer::channels`], or `data.len()` is not a multiple of `channels · points`.
    pub fn transform(&self, data: &mut [f32], channels: usize, points: usize) -> Result<()> {
        self.apply("transform", data, channels, points, |x, m, s| (x - m) / s)
    }

    /// Undoes [`Normalizer::transform`] in place: `x ← x · (std[c] + eps) + mean[c]`.
    ///
    /// Errors as [`Normalizer::transform`].
    pub fn inverse_transform(
        &self,
        data: &mut [f32],
        channels: usize,
        points: usize,
    ) -> Result<()> {
        self.apply("inverse_transform", data, channels, points, |x, m, s| {
            x * s + m
        })
    }

    /// Maps a standard deviation predicted in normalised units back to data units, in place:
    /// `σ ← σ · (std[c] + eps)` (a scale, no shift).
    ///
    /// Errors as [`Normalizer::transform`].
    pub fn inverse_std(&self, std: &mut [f32], channels: usize, points: usize) -> Result<()> {
        self.apply("inverse_std", std, channels, points, |x, _, s| x * s)
    }

    /// Applies `f(x, mean[c], std[c] + eps)` to every element, in `f64`.
    fn apply(
        &self,
        op: &str,
        data: &mut [f32],
        channels: usize,
        points: usize,
        f: impl Fn(f64, f64, f64) -> f64,
    ) -> Result<()> {
        self.validate()?;
        if channels != self.channels() {
            return Err(Error::invalid(
                format!("normalizer {op} channels"),
                format!("{} (the fitted channels)", self.channels()),
                channels.to_string(),
            ));
        }
        let per_sample = channels.checked_mul(points).unwrap_or(0);
        let whole = if per_sample == 0 {
            data.is_empty()
        } else {
            data.len().is_multiple_of(per_sample)
        };
        if !whole {
            return Err(Error::invalid(
                format!("normalizer {op} data"),
                format!("a multiple of channels·points = {channels}·{points} values"),
                format!("{} values", data.len()),
            ));
        }
        if points == 0 {
            return Ok(());
        }
        let params: Vec<(f64, f64)> = self
            .mean
            .iter()
            .zip(&self.std)
            .map(|(&m, &s)| (m, s + self.eps))
            .collect();
        for (k, row) in data.chunks_exact_mut(points).enumerate() {
            if let Some(&(m, s)) = params.get(k % channels) {
                for x in row {
                    *x = f(f64::from(*x), m, s) as f32;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pno_core::testing::assert_close;

    /// `n = 4` samples, 2 channels, 5 points. Channel 0 holds `3 + 0.5·z`, channel 1 holds
    /// `-7 + 4·z`, with `z` cycling through {-2, -1, 0, 1, 2} (mean 0, population std √2), all
    /// exact in `f32`: means are exactly 3 and -7, stds exactly 0.5·√2 and 4·√2.
    fn manufactured() -> Vec<f32> {
        let (n, channels, points) = (4, 2, 5);
        let mut out = Vec::with_capacity(n * channels * points);
        for s in 0..n {
            for c in 0..channels {
                let (mu, sigma) = if c == 0 { (3.0, 0.5) } else { (-7.0, 4.0) };
                for p in 0..points {
                    let z = ((s + p) % 5) as f32 - 2.0;
                    out.push(mu + sigma * z);
                }
            }
        }
        out
    }

    fn channel_values(data: &[f32], channels: usize, points: usize, c: usize) -> Vec<f64> {
        data.chunks_exact(points)
            .enumerate()
            .filter(|(k, _)| k % channels == c)
            .flat_map(|(_, row)| row.iter().map(|&x| f64::from(x)))
            .collect()
    }

    fn mean_std(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        (mean, var.sqrt())
    }

    #[test]
    fn fit_manufactured_data_gives_exact_channel_mean_and_population_std() {
        let norm = Normalizer::fit(&manufactured(), 4, 2, 5).unwrap();
        let r2 = 2f64.sqrt();
        assert_close(&norm.mean, &[3.0, -7.0], 1e-14, 1e-14);
        assert_close(&norm.std, &[0.5 * r2, 4.0 * r2], 1e-14, 0.0);
        assert_eq!(norm.eps, Normalizer::DEFAULT_EPS);
    }

    #[test]
    fn fit_matches_two_pass_reference_per_channel() {
        let (n, channels, points) = (6, 3, 700);
        let data: Vec<f32> = (0..n * channels * points)
            .map(|i| ((i as f32) * 0.37).sin() * (1.0 + (i % 3) as f32) + (i % 7) as f32)
            .collect();
        let norm = Normalizer::fit(&data, n, channels, points).unwrap();
        for c in 0..channels {
            let (m, s) = mean_std(&channel_values(&data, channels, points, c));
            assert_close(&[norm.mean[c], norm.std[c]], &[m, s], 1e-12, 1e-12);
        }
    }

    #[test]
    fn transform_gives_zero_mean_unit_std_and_inverse_restores() {
        let (n, channels, points) = (6, 3, 700);
        let data: Vec<f32> = (0..n * channels * points)
            .map(|i| ((i as f32) * 0.11).cos() * (0.5 + (i % 5) as f32) - 40.0 * (i % 2) as f32)
            .collect();
        let norm = Normalizer::fit(&data, n, channels, points).unwrap();
        let mut z = data.clone();
        norm.transform(&mut z, channels, points).unwrap();
        for c in 0..channels {
            let (m, s) = mean_std(&channel_values(&z, channels, points, c));
            assert_close(&[m, s], &[0.0, 1.0], 1e-6, 1e-6);
        }
        norm.inverse_transform(&mut z, channels, points).unwrap();
        let back: Vec<f64> = z.iter().map(|&x| f64::from(x)).collect();
        let orig: Vec<f64> = data.iter().map(|&x| f64::from(x)).collect();
        assert_close(&back, &orig, 1e-6, 1e-5);
    }

    #[test]
    fn constant_channel_gets_unit_std_and_round_trips() {
        // Channel 1 is a constant mask of ones.
        let data: Vec<f32> = (0..2 * 2 * 3)
            .map(|i| if (i / 3) % 2 == 1 { 1.0 } else { i as f32 })
            .collect();
        let norm = Normalizer::fit(&data, 2, 2, 3).unwrap();
        assert_eq!((norm.mean[1], norm.std[1]), (1.0, 1.0));
        let mut z = data.clone();
        norm.transform(&mut z, 2, 3).unwrap();
        assert!(channel_values(&z, 2, 3, 1).iter().all(|&x| x == 0.0));
        norm.inverse_transform(&mut z, 2, 3).unwrap();
        assert_eq!(channel_values(&z, 2, 3, 1), vec![1.0; 6]);
        assert_close(
            &channel_values(&z, 2, 3, 0),
            &channel_values(&data, 2, 3, 0),
            1e-6,
            1e-6,
        );
    }

    #[test]
    fn inverse_std_scales_without_shift() {
        let norm = Normalizer {
            mean: vec![100.0, -5.0],
            std: vec![2.0, 0.5],
            eps: 0.0,
        };
        let mut s = vec![1.0f32, 0.5, 1.0, 0.5, 2.0, 2.0, 4.0, 4.0];
        norm.inverse_std(&mut s, 2, 2).unwrap();
        assert_eq!(s, vec![2.0, 1.0, 0.5, 0.25, 4.0, 4.0, 2.0, 2.0]);
    }

    #[test]
    fn json_round_trip_preserves_values() {
        let norm = Normalizer::fit(&manufactured(), 4, 2, 5).unwrap();
        let json = serde_json::to_string(&norm).unwrap();
        assert!(
            json.contains("\"mean\"") && json.contains("\"eps\""),
            "{json}"
        );
        let back: Normalizer = serde_json::from_str(&json).unwrap();
        assert_eq!(back.channels(), 2);
        assert_close(&back.mean, &norm.mean, 1e-15, 0.0);
        assert_close(&back.std, &norm.std, 1e-15, 0.0);
        assert_close(&[back.eps], &[norm.eps], 1e-15, 0.0);
        let extra = r#"{"mean":[0.0],"std":[1.0],"eps":0.0,"ddof":1}"#;
        assert!(serde_json::from_str::<Normalizer>(extra).is_err());
    }

    #[test]
    fn fit_nan_errors_naming_index_sample_channel_point() {
        let mut data = manufactured();
        data[17] = f32::NAN; // sample 1 (10 values each), channel 1, point 2
        let e = Normalizer::fit(&data, 4, 2, 5).unwrap_err().to_string();
        assert!(
            e.contains("[17]")
                && e.contains("sample 1")
                && e.contains("channel 1")
                && e.contains("point 2")
                && e.contains("NaN"),
            "{e}"
        );
        data[17] = f32::NEG_INFINITY;
        let e = Normalizer::fit(&data, 4, 2, 5).unwrap_err().to_string();
        assert!(e.contains("-inf"), "{e}");
    }

    #[test]
    fn fit_wrong_length_or_empty_layout_errors() {
        let data = manufactured();
        let e = Normalizer::fit(&data[..39], 4, 2, 5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("4·2·5") && e.contains("39 values"), "{e}");
        assert!(Normalizer::fit(&data, 4, 0, 5).is_err());
        assert!(Normalizer::fit(&[], 0, 2, 5).is_err());
        assert!(Normalizer::fit(&[], 4, 2, 0).is_err());
        assert!(Normalizer::fit(&data, usize::MAX, 2, 5).is_err());
    }

    #[test]
    fn transform_wrong_channels_length_or_invalid_normalizer_errors() {
        let norm = Normalizer::fit(&manufactured(), 4, 2, 5).unwrap();
        let mut data = manufactured();
        let e = norm.transform(&mut data, 3, 5).unwrap_err().to_string();
        assert!(e.contains("channels") && e.contains('3'), "{e}");
        let e = norm
            .inverse_transform(&mut data[..39], 2, 5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("39 values"), "{e}");
        let mut empty: [f32; 0] = [];
        norm.transform(&mut empty, 2, 5).unwrap();
        let bad = Normalizer {
            std: vec![1.0, -1.0],
            ..norm.clone()
        };
        let e = bad.inverse_std(&mut data, 2, 5).unwrap_err().to_string();
        assert!(e.contains("std[1]"), "{e}");
        let short = Normalizer {
            std: vec![1.0],
            ..norm
        };
        assert!(short.validate().is_err());
        assert_eq!(data, manufactured(), "failed calls leave data untouched");
    }
}
