//! The spatial grid behind the `d` points of a function: quadrature weight and finite differences.

use crate::error::{Error, Result};

/// A uniform tensor-product grid with `channels` fields, flattened channels-first as
/// `[channels, dims[0], dims[1], …]` (row-major) into the `d` points of a function.
///
/// Spacing along axis `k` is `h_k = L_k / N_k` (the PNO convention, `get_domain_range()` with
/// min–max normalised coordinates gives `L_k = 1`), so the quadrature weight of one point is the
/// cell volume `∏_k h_k` and the discretised L²(D) norm is `‖f‖ = (∏_k h_k)^{1/2}·‖vec(f)‖₂`
/// (channels flattened into the vector).
#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    dims: Vec<usize>,
    lengths: Vec<f64>,
    channels: usize,
    periodic: bool,
}

impl Domain {
    /// The unit domain `[0, 1]^k` with sizes `dims`, `channels` fields, periodic boundaries.
    pub fn unit(dims: &[usize], channels: usize) -> Result<Self> {
        Self::new(dims, &vec![1.0; dims.len()], channels, true)
    }

    /// A grid with axis sizes `dims`, physical lengths `lengths`, `channels` fields and periodic
    /// (`true`) or bounded (`false`) axes. Sizes must be ≥ 1 (≥ 2 for derivatives), lengths > 0.
    pub fn new(dims: &[usize], lengths: &[f64], channels: usize, periodic: bool) -> Result<Self> {
        if dims.is_empty() || dims.contains(&0) {
            return Err(Error::InvalidDomain {
                argument: "dims",
                expected: "at least one axis, every size >= 1",
                got: format!("{dims:?}"),
            });
        }
        if lengths.len() != dims.len() || lengths.iter().any(|&l| !(l.is_finite() && l > 0.0)) {
            return Err(Error::InvalidDomain {
                argument: "lengths",
                expected: "one finite length > 0 per axis",
                got: format!("{lengths:?}"),
            });
        }
        if channels == 0 {
            return Err(Error::InvalidDomain {
                argument: "channels",
                expected: "at least 1",
                got: "0".to_owned(),
            });
        }
        Ok(Self {
            dims: dims.to_vec(),
            lengths: lengths.to_vec(),
            channels,
            periodic,
        })
    }

    /// A 1-D grid of `d` points with unit spacing (`h = 1`, cell volume 1): the discretised norm
    /// is then the plain Euclidean norm (as in `scoringrules.energy_score`).
    pub fn euclidean(d: usize) -> Result<Self> {
        Self::new(&[d], &[d as f64], 1, false)
    }

    /// Points per function, `d = channels · ∏_k N_k`.
    pub fn points(&self) -> usize {
        self.channels * self.dims.iter().product::<usize>()
    }

    /// Axis sizes `N_k`.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Whether the axes are periodic.
    pub fn periodic(&self) -> bool {
        self.periodic
    }

    /// Spacing `h_k = L_k / N_k` along each axis.
    pub fn spacing(&self) -> Vec<f64> {
        self.dims
            .iter()
            .zip(&self.lengths)
            .map(|(&n, &l)| l / n as f64)
            .collect()
    }

    /// Quadrature weight of one point, `∏_k h_k`.
    pub fn cell_volume(&self) -> f64 {
        self.spacing().iter().product()
    }

    /// Checks that this domain describes `d` points.
    pub(crate) fn check_points(&self, d: usize) -> Result<()> {
        if self.points() == d {
            Ok(())
        } else {
            Err(Error::InvalidDomain {
                argument: "domain",
                expected: "channels · ∏ dims equal to d",
                got: format!("{} points for d = {d}", self.points()),
            })
        }
    }

    /// Central-difference derivative of `f` (one function, `d` values) along `axis`, written to
    /// `out`: `(f[i+1] − f[i−1]) / (2h)`; on a periodic axis the neighbours wrap, on a bounded
    /// axis the end points use one-sided differences `(f[1] − f[0]) / h` and
    /// `(f[N−1] − f[N−2]) / h` (neuraloperator's `central_diff_*d` with `fix_bnd`).
    pub(crate) fn central_diff(&self, f: &[f64], axis: usize, out: &mut [f64]) {
        let n = self.dims[axis];
        let h = self.lengths[axis] / n as f64;
        let inner: usize = self.dims[axis + 1..].iter().product();
        let outer = f.len() / (n * inner);
        for o in 0..outer {
            for i in 0..n {
                for r in 0..inner {
                    let at = |k: usize| f[(o * n + k) * inner + r];
                    let v = if n < 2 {
                        0.0
                    } else if i == 0 {
                        if self.periodic {
                            (at(1) - at(n - 1)) / (2.0 * h)
                        } else {
                            (at(1) - at(0)) / h
                        }
                    } else if i == n - 1 {
                        if self.periodic {
                            (at(0) - at(n - 2)) / (2.0 * h)
                        } else {
                            (at(n - 1) - at(n - 2)) / h
                        }
                    } else {
                        (at(i + 1) - at(i - 1)) / (2.0 * h)
                    };
                    out[(o * n + i) * inner + r] = v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pno_core::testing::close;

    #[test]
    fn cell_volume_unit_square_is_inverse_point_count() {
        let dom = Domain::unit(&[8, 4], 2).unwrap();
        assert_eq!(dom.points(), 64);
        assert!(close(dom.cell_volume(), 1.0 / 32.0, 1e-15, 0.0));
    }

    #[test]
    fn central_diff_periodic_sine_matches_cosine() {
        let n = 64;
        let dom = Domain::unit(&[n], 1).unwrap();
        let two_pi = 2.0 * std::f64::consts::PI;
        let f: Vec<f64> = (0..n)
            .map(|i| (two_pi * i as f64 / n as f64).sin())
            .collect();
        let mut df = vec![0.0; n];
        dom.central_diff(&f, 0, &mut df);
        for (i, v) in df.iter().enumerate() {
            let exact = two_pi * (two_pi * i as f64 / n as f64).cos();
            // second-order: error ~ (2π)³ h² / 6
            assert!((v - exact).abs() < 0.02, "{i}: {v} vs {exact}");
        }
    }

    #[test]
    fn central_diff_bounded_linear_is_exact() {
        let dom = Domain::new(&[3, 5], &[1.0, 1.0], 1, false).unwrap();
        // f = 2x + 3y with x along axis 0 (h = 1/3), y along axis 1 (h = 1/5)
        let f: Vec<f64> = (0..15)
            .map(|k| 2.0 * (k / 5) as f64 / 3.0 + 3.0 * (k % 5) as f64 / 5.0)
            .collect();
        let mut d = vec![0.0; 15];
        dom.central_diff(&f, 0, &mut d);
        assert!(d.iter().all(|v| close(*v, 2.0, 1e-12, 1e-12)));
        dom.central_diff(&f, 1, &mut d);
        assert!(d.iter().all(|v| close(*v, 3.0, 1e-12, 1e-12)));
    }

    #[test]
    fn domain_zero_channels_is_rejected() {
        assert!(matches!(
            Domain::unit(&[4], 0),
            Err(Error::InvalidDomain {
                argument: "channels",
                ..
            })
        ));
    }
}
