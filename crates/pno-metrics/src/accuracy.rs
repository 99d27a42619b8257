//! Point-prediction errors: relative L2 (FNO convention), absolute discretised L2 (PNO
//! convention), MSE and RMSE.
//!
//! `pred` and `target` are `[n, d]` (see [`Shape`]); for a probabilistic model `pred` is the
//! predictive mean (sample mean of the draws).

use rayon::prelude::*;

use crate::domain::Domain;
use crate::error::{Error, Result};
use crate::view::{Real, Shape, mean_of};

fn check_pair<T: Real, Y: Real>(pred: &[T], target: &[Y], shape: Shape) -> Result<()> {
    shape.check_target("pred", pred)?;
    shape.check_target("target", target)
}

/// Per-function sums `(Σ_i (p_i − y_i)², Σ_i y_i²)`, in function order.
fn sq_sums<T: Real, Y: Real>(pred: &[T], target: &[Y], d: usize) -> Vec<(f64, f64)> {
    pred.par_chunks(d)
        .zip(target.par_chunks(d))
        .map(|(p, y)| {
            p.iter().zip(y).fold((0.0, 0.0), |(e, n), (&p, &y)| {
                let (p, y): (f64, f64) = (p.into(), y.into());
                (e + (p - y) * (p - y), n + y * y)
            })
        })
        .collect()
}

/// Relative L2 error, the FNO-paper convention (neuraloperator `LpLoss(p=2).rel` with mean
/// reduction).
///
/// Formula: `rel_l2 = (1/n) Σ_j ‖p_j − y_j‖₂ / ‖y_j‖₂`, norms over the `d` points of function `j`
/// (grid weights cancel in the ratio). Errors with [`Error::ZeroNorm`] if some `‖y_j‖ = 0`.
pub fn rel_l2<T: Real, Y: Real>(pred: &[T], target: &[Y], shape: Shape) -> Result<f64> {
    check_pair(pred, target, shape)?;
    let sums = sq_sums(pred, target, shape.d);
    mean_relative(sums)
}

/// Absolute discretised L2 error, the PNO-paper convention (the column the paper calls `MSE`,
/// which is neither squared nor relative; `LpLoss.abs` in cbuelt/pfno).
///
/// Formula: `l2_abs = (1/n) Σ_j (∏_k h_k)^{1/2} · ‖p_j − y_j‖₂` with `h_k = L_k/N_k` from
/// `domain` (channels flattened into the vector). With `Domain::unit` this is
/// `(1/n) Σ_j sqrt(Σ_i (p_ji − y_ji)² / N_spatial)`, i.e. the per-function RMSE over the grid
/// when there is one channel.
pub fn l2_abs<T: Real, Y: Real>(
    pred: &[T],
    target: &[Y],
    shape: Shape,
    domain: &Domain,
) -> Result<f64> {
    check_pair(pred, target, shape)?;
    domain.check_points(shape.d)?;
    let w = domain.cell_volume();
    let per: Vec<f64> = sq_sums(pred, target, shape.d)
        .into_iter()
        .map(|(e, _)| (w * e).sqrt())
        .collect();
    Ok(mean_of(&per))
}

/// Mean squared error over all functions and points.
///
/// Formula: `mse = (1/(n·d)) Σ_{j,i} (p_ji − y_ji)²` (a true squared error; not the PNO `MSE`
/// column, see [`l2_abs`]).
pub fn mse<T: Real, Y: Real>(pred: &[T], target: &[Y], shape: Shape) -> Result<f64> {
    check_pair(pred, target, shape)?;
    let per: Vec<f64> = sq_sums(pred, target, shape.d)
        .into_iter()
        .map(|(e, _)| e / shape.d as f64)
        .collect();
    Ok(mean_of(&per))
}

/// Root mean squared error over all functions and points.
///
/// Formula: `rmse = sqrt(mse)` (square root of the global mean, not a mean of per-function RMSEs).
pub fn rmse<T: Real, Y: Real>(pred: &[T], target: &[Y], shape: Shape) -> Result<f64> {
    mse(pred, target, shape).map(f64::sqrt)
}

/// Relative H1 error (neuraloperator `H1Loss.rel` structure, mean over functions).
///
/// Formula: for each function, with derivatives `∂_k` by second-order central differences
/// (periodic wrap, or one-sided at the ends of bounded axes; see [`Domain`]),
/// `e_j² = ‖p − y‖² + Σ_k ‖∂_k p − ∂_k y‖²`, `n_j² = ‖y‖² + Σ_k ‖∂_k y‖²` (Euclidean norms over
/// all channels and points; the cell volume cancels), and `h1_rel = (1/n) Σ_j e_j / n_j`.
/// The value depends on the spacing `h_k = L_k/N_k`, so pass the physical domain.
pub fn h1_rel<T: Real, Y: Real>(
    pred: &[T],
    target: &[Y],
    shape: Shape,
    domain: &Domain,
) -> Result<f64> {
    check_pair(pred, target, shape)?;
    domain.check_points(shape.d)?;
    let d = shape.d;
    let sums: Vec<(f64, f64)> = pred
        .par_chunks(d)
        .zip(target.par_chunks(d))
        .map_init(
            || (vec![0.0; d], vec![0.0; d], vec![0.0; d]),
            |(err, yv, deriv), (p, y)| {
                for ((e, t), (&p, &y)) in err.iter_mut().zip(yv.iter_mut()).zip(p.iter().zip(y)) {
                    let (p, y): (f64, f64) = (p.into(), y.into());
                    *e = p - y;
                    *t = y;
                }
                let sq = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>();
                let (mut num, mut den) = (sq(err), sq(yv));
                for axis in 0..domain.dims().len() {
                    // the derivative is linear: ∂p − ∂y = ∂(p − y)
                    domain.central_diff(err, axis, deriv);
                    num += sq(deriv);
                    domain.central_diff(yv, axis, deriv);
                    den += sq(deriv);
                }
                (num, den)
            },
        )
        .collect();
    mean_relative(sums)
}

/// Mean over functions of `sqrt(num_j / den_j)`; a zero denominator (zero-norm target `j`) is
/// reported as [`Error::ZeroNorm`].
fn mean_relative(sums: Vec<(f64, f64)>) -> Result<f64> {
    let mut per = Vec::with_capacity(sums.len());
    for (index, (num, den)) in sums.into_iter().enumerate() {
        if den == 0.0 {
            return Err(Error::ZeroNorm {
                argument: "target",
                index,
            });
        }
        per.push((num / den).sqrt());
    }
    Ok(mean_of(&per))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pno_core::testing::close;

    #[test]
    fn rel_l2_identical_is_zero() {
        let y = [1.0f32, -2.0, 3.0, 0.5, 0.1, 4.0];
        let s = Shape::new(2, 3).unwrap();
        assert_eq!(rel_l2(&y, &y, s).unwrap(), 0.0);
    }

    #[test]
    fn rel_l2_scaled_prediction_gives_scale_error() {
        let y = [1.0, -2.0, 3.0, 0.5, 0.1, 4.0];
        let p: Vec<f64> = y.iter().map(|v| 1.1 * v).collect();
        let s = Shape::new(2, 3).unwrap();
        assert!(close(rel_l2(&p, &y, s).unwrap(), 0.1, 1e-12, 0.0));
    }

    #[test]
    fn rel_l2_zero_target_is_zero_norm_error() {
        let s = Shape::new(1, 2).unwrap();
        assert_eq!(
            rel_l2(&[1.0, 1.0], &[0.0, 0.0], s),
            Err(Error::ZeroNorm {
                argument: "target",
                index: 0
            })
        );
    }

    #[test]
    fn l2_abs_unit_grid_is_rms_error() {
        let s = Shape::new(1, 4).unwrap();
        let dom = Domain::unit(&[4], 1).unwrap();
        let v = l2_abs(&[1.0, 1.0, 1.0, 1.0], &[0.0, 0.0, 0.0, 2.0], s, &dom).unwrap();
        assert!(close(v, 1.0, 1e-15, 0.0));
    }

    #[test]
    fn mse_rmse_known_values_match() {
        let s = Shape::new(2, 2).unwrap();
        let p = [1.0, 2.0, 3.0, 4.0];
        let y = [1.0, 0.0, 3.0, 2.0];
        assert!(close(mse(&p, &y, s).unwrap(), 2.0, 1e-15, 0.0));
        assert!(close(rmse(&p, &y, s).unwrap(), 2f64.sqrt(), 1e-15, 0.0));
    }

    #[test]
    fn h1_rel_constant_offset_matches_hand_value() {
        // y = sin(2πx) on a periodic grid, p = y + c: derivatives agree, so
        // e² = d c², n² = ‖y‖² + ‖∂y‖².
        let n = 32;
        let dom = Domain::unit(&[n], 1).unwrap();
        let s = Shape::new(1, n).unwrap();
        let tp = 2.0 * std::f64::consts::PI;
        let y: Vec<f64> = (0..n).map(|i| (tp * i as f64 / n as f64).sin()).collect();
        let p: Vec<f64> = y.iter().map(|v| v + 0.1).collect();
        let mut dy = vec![0.0; n];
        dom.central_diff(&y, 0, &mut dy);
        let den: f64 = y.iter().chain(&dy).map(|v| v * v).sum();
        let expected = (n as f64 * 0.01 / den).sqrt();
        assert!(close(
            h1_rel(&p, &y, s, &dom).unwrap(),
            expected,
            1e-12,
            0.0
        ));
    }
}
