//! Energy score over whole functions with the discretised L² norm (the PNO training loss).

use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, MatRef, Par};
use rayon::prelude::*;

use crate::crps::Estimator;
use crate::domain::Domain;
use crate::error::Result;
use crate::view::{Real, SamplePred, check_size, mean_of, vectorized};

/// Points per chunk of the Gram accumulation: `Z` of a chunk, `(m + 1) × CHUNK` `f64`, stays in
/// L2 (400 KB at m = 100).
const CHUNK: usize = 512;

/// Energy score of an ensemble of functions, averaged over the `n` test functions.
///
/// Formula (per function, draws `x_1..x_m` and target `y`, all `d` points):
/// `ES = (1/m) Σ_k ‖x_k − y‖ − c · Σ_{k<l} ‖x_k − x_l‖` with `c = 1/(m(m − 1))` for
/// [`Estimator::Fair`] (the PNO estimator, `1/(2m(m−1)) Σ_{k≠l}`) or `1/m²` for
/// [`Estimator::Standard`]; the norm is the discretised L² norm
/// `‖f‖ = (∏_k h_k)^{1/2} ‖vec(f)‖₂` of `domain` ([`Domain::euclidean`] gives the plain
/// Euclidean norm of `scoringrules.energy_score`). In 1-D (`d = 1`, unit weight) ES equals the CRPS.
///
/// Estimator: per function, centre the draws on the ensemble mean, `z_k = x_k − x̄`, append
/// `z_{m+1} = y − x̄`, accumulate the lower triangle of the Gram matrix `G = Z Zᵀ`
/// ((m+1) × (m+1), f64) over chunks of 512 points (faer triangular matmul; `Z` of a chunk
/// stays in L2), and read every squared distance as `‖z_k − z_l‖² = G_kk + G_ll − 2G_kl`
/// (clamped at 0); centring keeps the cancellation relative to the spread. O(n·m²·d/2) flops,
/// parallel over functions.
pub fn energy_score<T: Real, Y: Real>(
    pred: &SamplePred<'_, T>,
    target: &[Y],
    domain: &Domain,
    estimator: Estimator,
) -> Result<f64> {
    Ok(energy_pass(pred, target, domain, estimator, false)?.0)
}

/// The sample mean and unbiased std `[n, d]`, as [`SamplePred::mean_std`] computes them.
pub(crate) type Moments = (Vec<f64>, Vec<f64>);

/// [`energy_score`], and with `moments` also the pointwise sample mean and std from the same
/// read of the draws (the energy score centres on that mean anyway); same arithmetic, in the
/// same order, as [`SamplePred::mean_std`], so the values are identical.
pub(crate) fn energy_pass<T: Real, Y: Real>(
    pred: &SamplePred<'_, T>,
    target: &[Y],
    domain: &Domain,
    estimator: Estimator,
    moments: bool,
) -> Result<(f64, Option<Moments>)> {
    let shape = pred.shape();
    shape.check_target("target", target)?;
    domain.check_points(shape.d)?;
    if estimator == Estimator::Fair {
        check_size("m", 2, pred.m())?;
    }
    let (n, d, m) = (shape.n, shape.d, pred.m());
    let w = domain.cell_volume();
    let mf = m as f64;
    let c = match estimator {
        Estimator::Standard => 1.0 / (mf * mf),
        Estimator::Fair => 1.0 / (mf * (mf - 1.0)),
    };
    let (inv, denom) = (1.0 / mf, if m > 1 { (m - 1) as f64 } else { 1.0 });
    let per: Vec<(f64, Option<Moments>)> = (0..n)
        .into_par_iter()
        .map_init(
            || {
                (
                    vec![0.0f64; (m + 1) * CHUNK],
                    Mat::<f64>::zeros(m + 1, m + 1),
                )
            },
            |(z, g), j| {
                let mut mom = moments.then(|| (vec![0.0; d], vec![0.0; d]));
                for c0 in (0..d).step_by(CHUNK) {
                    let cw = CHUNK.min(d - c0);
                    vectorized(
                        #[inline(always)]
                        || {
                            let (rows, last) = z.split_at_mut(m * CHUNK);
                            let last = &mut last[..cw];
                            // last row: the ensemble mean x̄, then y − x̄
                            last.iter_mut().for_each(|v| *v = 0.0);
                            for k in 0..m {
                                let draw = &pred.draw(k, j)[c0..c0 + cw];
                                for (acc, &x) in last.iter_mut().zip(draw) {
                                    *acc += x.into();
                                }
                            }
                            last.iter_mut().for_each(|v| *v *= inv);
                            for (k, row) in rows.chunks_exact_mut(CHUNK).enumerate() {
                                let draw = &pred.draw(k, j)[c0..c0 + cw];
                                for ((dst, &x), &mu) in row.iter_mut().zip(draw).zip(last.iter()) {
                                    *dst = x.into() - mu;
                                }
                            }
                            if let Some((mean, std)) = mom.as_mut() {
                                mean[c0..c0 + cw].copy_from_slice(last);
                                let var = &mut std[c0..c0 + cw];
                                for row in rows.chunks_exact(CHUNK) {
                                    for (acc, &e) in var.iter_mut().zip(row) {
                                        *acc += e * e;
                                    }
                                }
                                var.iter_mut().for_each(|v| *v = (*v / denom).sqrt());
                            }
                            let y = &target[j * d + c0..j * d + c0 + cw];
                            for (v, &t) in last.iter_mut().zip(y) {
                                *v = t.into() - *v;
                            }
                        },
                    );
                    // Z stored row-major [m + 1, CHUNK] is the column-major cw × (m + 1) matrix
                    // A = Zᵀ (column stride CHUNK); G += AᵀA, lower triangle only.
                    let a = MatRef::from_column_major_slice_with_stride(z, cw, m + 1, CHUNK);
                    let accum = if c0 == 0 { Accum::Replace } else { Accum::Add };
                    triangular::matmul(
                        g.as_mut(),
                        BlockStructure::TriangularLower,
                        accum,
                        a.transpose(),
                        BlockStructure::Rectangular,
                        a,
                        BlockStructure::Rectangular,
                        1.0,
                        Par::Seq,
                    );
                }
                // lower triangle: G_lk with l > k
                let dist = |k: usize, l: usize| {
                    let d2 = g[(k, k)] + g[(l, l)] - 2.0 * g[(l, k)];
                    (w * d2.max(0.0)).sqrt()
                };
                let mut abs = 0.0;
                let mut pair = 0.0;
                for k in 0..m {
                    abs += dist(k, m);
                    for l in k + 1..m {
                        pair += dist(k, l);
                    }
                }
                (abs / mf - c * pair, mom)
            },
        )
        .collect();
    let es: Vec<f64> = per.iter().map(|p| p.0).collect();
    let moments = moments.then(|| {
        let mut mean = Vec::with_capacity(n * d);
        let mut std = Vec::with_capacity(n * d);
        for (_, mom) in per {
            if let Some((mu, sd)) = mom {
                mean.extend(mu);
                std.extend(sd);
            }
        }
        (mean, std)
    });
    Ok((mean_of(&es), moments))
}
