//! Spectral convolution against a naive DFT, at power-of-two and odd resolutions, with
//! truncated modes, and resolution invariance on band-limited inputs; the fused 2-D kernel (what
//! inference runs) against the composition of burn primitives (what training differentiates).

use std::f64::consts::PI;

use pno_models::init::Init;
use pno_models::spectral::{SpectralConv, full_axis_freqs, mode_count, real_axis_freqs};

use pno_models::burn::tensor::{Tensor, TensorData};

use crate::{device, host, random, t3};

/// y[b,o,h,w] = Re Σ_{kh,kw} c_kw · (Σ_c X[b,c,kh,kw] W[kh,kw,c,o]) e^{+iθ} + bias[o], with
/// X = (1/HW) Σ x e^{−iθ}, kept modes as in neuraloperator (evaluated in f64).
#[allow(clippy::too_many_arguments)]
fn naive_2d(x: &[f32], b: usize, c: usize, h: usize, w: usize, conv: &SpectralConv) -> Vec<f64> {
    let (wr, wi) = conv.dense_weights();
    let (wr, wi) = (host(wr), host(wi));
    let bias = host(conv.bias.val());
    let co = conv.d_out();
    let f1 = full_axis_freqs(conv.n_modes[0]);
    let f2 = real_axis_freqs(conv.n_modes[1]);
    let mut out = vec![0.0; b * co * h * w];
    for bi in 0..b {
        for (i1, &k1) in f1.iter().enumerate() {
            if !(-((h / 2) as i64) <= k1 && k1 <= (h as i64 - 1) / 2) {
                continue;
            }
            for (i2, &k2) in f2.iter().enumerate() {
                if 2 * k2 > w as i64 {
                    continue;
                }
                let m = i1 * f2.len() + i2;
                // forward DFT of every input channel
                let mut xr = vec![0.0; c];
                let mut xi = vec![0.0; c];
                for ci in 0..c {
                    for hh in 0..h {
                        for ww in 0..w {
                            let t = 2.0
                                * PI
                                * (k1 as f64 * hh as f64 / h as f64
                                    + k2 as f64 * ww as f64 / w as f64);
                            let v =
                                f64::from(x[((bi * c + ci) * h + hh) * w + ww]) / (h * w) as f64;
                            xr[ci] += v * t.cos();
                            xi[ci] -= v * t.sin();
                        }
                    }
                }
                let ck = if k2 == 0 || 2 * k2 == w as i64 {
                    1.0
                } else {
                    2.0
                };
                for o in 0..co {
                    let (mut yr, mut yi) = (0.0, 0.0);
                    for ci in 0..c {
                        let (a, bb) = (
                            f64::from(wr[(m * c + ci) * co + o]),
                            f64::from(wi[(m * c + ci) * co + o]),
                        );
                        yr += xr[ci] * a - xi[ci] * bb;
                        yi += xr[ci] * bb + xi[ci] * a;
                    }
                    for hh in 0..h {
                        for ww in 0..w {
                            let t = 2.0
                                * PI
                                * (k1 as f64 * hh as f64 / h as f64
                                    + k2 as f64 * ww as f64 / w as f64);
                            out[((bi * co + o) * h + hh) * w + ww] +=
                                ck * (yr * t.cos() - yi * t.sin());
                        }
                    }
                }
            }
        }
        for o in 0..co {
            for p in 0..h * w {
                out[(bi * co + o) * h * w + p] += f64::from(bias[o]);
            }
        }
    }
    out
}

fn check_2d(h: usize, w: usize, modes: [usize; 2]) {
    let conv = SpectralConv::new(&mut Init::new(7), 3, 2, &modes, None, &device());
    check_conv_2d(&conv, h, w, modes);
}

fn check_conv_2d(conv: &SpectralConv, h: usize, w: usize, modes: [usize; 2]) {
    let (b, c) = (2, 3);
    let x = random(b * c * h * w, 11 + (h * w) as u64);
    let y = host(conv.forward(t3(x.clone(), [b, c, h * w]), &[h, w], None));
    let want = naive_2d(&x, b, c, h, w, conv);
    let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let err = y
        .iter()
        .zip(&want)
        .fold(0.0f64, |a, (&g, &e)| a.max((f64::from(g) - e).abs()));
    println!("2d {h}x{w} modes {modes:?}: max err {err:.2e} (scale {scale:.2e})");
    assert!(
        err <= 2e-5 * scale.max(1.0),
        "{h}x{w} modes {modes:?}: max err {err} vs scale {scale}"
    );
}

#[test]
fn spectral_conv_2d_matches_naive_dft_power_of_two() {
    check_2d(16, 16, [6, 6]);
}

#[test]
fn spectral_conv_2d_matches_naive_dft_odd_and_rectangular() {
    // 17 × 12 with an odd mode count on the full axis and the Nyquist column kept on the real axis.
    check_2d(17, 12, [5, 12]);
}

#[test]
fn spectral_conv_2d_truncates_modes_above_the_resolution() {
    // 12 modes configured, evaluated on an 8 × 8 grid: only the frequencies that fit are used.
    check_2d(8, 8, [12, 12]);
}

#[test]
fn cached_bases_follow_the_grid_and_stay_bounded() {
    // One layer at interleaved grids (the cache's key includes both axes and the kept modes):
    // every answer still matches the naive DFT, revisited grids included.
    let modes = [6, 6];
    let conv = SpectralConv::new(&mut Init::new(7), 3, 2, &modes, None, &device());
    for (h, w) in [
        (8, 8),
        (8, 12),
        (12, 8),
        (8, 8),
        (5, 7),
        (8, 12),
        (4, 4),
        (8, 8),
    ] {
        check_conv_2d(&conv, h, w, modes);
    }
    let other = SpectralConv::new(&mut Init::new(8), 3, 2, &[4, 4], None, &device());
    check_conv_2d(&other, 8, 8, [4, 4]);
    check_conv_2d(&conv, 8, 8, modes);
    // more distinct grids than the cache keeps: the oldest sets are dropped
    for n in 4..(4 + pno_models::spectral::BASIS_CACHE_CAPACITY + 8) {
        let x = t3(random(3 * n * n, 1), [1, 3, n * n]);
        let _ = conv.forward(x, &[n, n], None);
    }
    let kept = pno_models::spectral::cached_basis_sets();
    assert!(
        (1..=pno_models::spectral::BASIS_CACHE_CAPACITY).contains(&kept),
        "{kept} basis sets cached"
    );
    check_conv_2d(&conv, 12, 8, modes);
}

#[test]
fn spectral_conv_1d_matches_naive_dft() {
    let (b, c, co, n) = (2, 2, 3, 21);
    let modes = [8];
    let conv = SpectralConv::new(&mut Init::new(3), c, co, &modes, None, &device());
    let x = random(b * c * n, 5);
    let y = host(conv.forward(t3(x.clone(), [b, c, n]), &[n], None));
    // 1-D is the 2-D formula with a single row: reuse it with h = 1 and one frequency 0.
    let (wr, wi) = conv.dense_weights();
    let (wr, wi) = (host(wr), host(wi));
    let bias = host(conv.bias.val());
    let k = mode_count(&modes);
    for bi in 0..b {
        for o in 0..co {
            for p in 0..n {
                let mut acc = f64::from(bias[o]);
                for kk in 0..k {
                    let ck = if kk == 0 || 2 * kk == n { 1.0 } else { 2.0 };
                    let (mut yr, mut yi) = (0.0, 0.0);
                    for ci in 0..c {
                        let (mut xr, mut xi) = (0.0, 0.0);
                        for q in 0..n {
                            let t = 2.0 * PI * (kk * q) as f64 / n as f64;
                            let v = f64::from(x[(bi * c + ci) * n + q]) / n as f64;
                            xr += v * t.cos();
                            xi -= v * t.sin();
                        }
                        let (a, bb) = (
                            f64::from(wr[(kk * c + ci) * co + o]),
                            f64::from(wi[(kk * c + ci) * co + o]),
                        );
                        yr += xr * a - xi * bb;
                        yi += xr * bb + xi * a;
                    }
                    let t = 2.0 * PI * (kk * p) as f64 / n as f64;
                    acc += ck * (yr * t.cos() - yi * t.sin());
                }
                let got = f64::from(y[(bi * co + o) * n + p]);
                assert!(
                    (got - acc).abs() < 1e-5 * acc.abs().max(1.0),
                    "{bi} {o} {p}: {got} vs {acc}"
                );
            }
        }
    }
}

#[test]
fn spectral_conv_is_resolution_invariant_on_band_limited_inputs() {
    // A field with frequencies ≤ 3 sampled at 32² and 64²: the layer's outputs agree at the
    // shared points (zero-shot super-resolution is exact for band-limited inputs).
    let conv = SpectralConv::new(&mut Init::new(1), 1, 1, &[8, 8], None, &device());
    let f = |n: usize| -> Vec<f32> {
        let mut v = Vec::with_capacity(n * n);
        for i in 0..n {
            for j in 0..n {
                let (x, y) = (i as f64 / n as f64, j as f64 / n as f64);
                v.push(
                    ((2.0 * PI * x).sin()
                        + 0.5 * (2.0 * PI * (2.0 * x + 3.0 * y)).cos()
                        + 0.25 * (6.0 * PI * y).sin()) as f32,
                );
            }
        }
        v
    };
    let lo = host(conv.forward(t3(f(32), [1, 1, 32 * 32]), &[32, 32], None));
    let hi = host(conv.forward(t3(f(64), [1, 1, 64 * 64]), &[64, 64], None));
    let mut err = 0.0f32;
    for i in 0..32 {
        for j in 0..32 {
            err = err.max((lo[i * 32 + j] - hi[(2 * i) * 64 + 2 * j]).abs());
        }
    }
    println!("super-resolution max diff {err:.2e}");
    assert!(err < 1e-5, "max diff {err}");
}

/// Host copies of a factorised layer's core and factors, as f64 complex parts.
fn factor_parts(f: &pno_models::factorized::FactorizedWeights) -> FactorParts {
    let c = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
    FactorParts {
        core_re: c(host(f.core_re.val())),
        core_im: c(host(f.core_im.val())),
        u_re: f.factors_re.iter().map(|u| c(host(u.val()))).collect(),
        u_im: f.factors_im.iter().map(|u| c(host(u.val()))).collect(),
    }
}

struct FactorParts {
    core_re: Vec<f64>,
    core_im: Vec<f64>,
    u_re: Vec<Vec<f64>>,
    u_im: Vec<Vec<f64>>,
}

/// Row-major multi-index of `flat` in `dims`.
fn unravel(mut flat: usize, dims: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; dims.len()];
    for a in (0..dims.len()).rev() {
        idx[a] = flat % dims[a];
        flat /= dims[a];
    }
    idx
}

/// W[i_0…i_{d-1}] = Σ_r core[r] Π_k U_k[i_k, r_k] (Tucker) or Σ_r λ_r Π_k U_k[i_k, r] (CP), in f64
/// complex arithmetic, one entry at a time.
fn explicit_weights(f: &pno_models::factorized::FactorizedWeights) -> (Vec<f64>, Vec<f64>) {
    use pno_models::factorized::Factorization;
    let p = factor_parts(f);
    let shape = &f.shape;
    let total: usize = shape.iter().product();
    let (mut wr, mut wi) = (vec![0.0; total], vec![0.0; total]);
    let tucker = matches!(f.kind, Factorization::Tucker { .. });
    let terms = p.core_re.len();
    for (e, (wr_e, wi_e)) in wr.iter_mut().zip(wi.iter_mut()).enumerate() {
        let ie = unravel(e, shape);
        for t in 0..terms {
            let rk = if tucker {
                unravel(t, &f.ranks)
            } else {
                vec![t; shape.len()]
            };
            let (mut a, mut b) = (p.core_re[t], p.core_im[t]);
            for k in 0..shape.len() {
                let cols = if tucker { f.ranks[k] } else { f.ranks[0] };
                let (ur, ui) = (
                    p.u_re[k][ie[k] * cols + rk[k]],
                    p.u_im[k][ie[k] * cols + rk[k]],
                );
                (a, b) = (a * ur - b * ui, a * ui + b * ur);
            }
            *wr_e += a;
            *wi_e += b;
        }
    }
    (wr, wi)
}

#[test]
fn factorized_weights_match_an_explicit_tucker_and_cp_sum() {
    use pno_models::factorized::Factorization;
    for (modes, c, co) in [(vec![5], 3, 2), (vec![6, 5], 2, 3), (vec![4, 4], 3, 3)] {
        for kind in [
            Factorization::Tucker { rank: 0.5 },
            Factorization::Cp { rank: 0.3 },
        ] {
            let conv = SpectralConv::with_factorization(
                &mut Init::new(4),
                c,
                co,
                &modes,
                Some(kind),
                None,
                &device(),
            );
            let f = conv.factorized.as_ref().unwrap();
            let (er, ei) = explicit_weights(f);
            let (wr, wi) = conv.dense_weights();
            assert_eq!(wr.dims(), [mode_count(&modes), c, co]);
            let scale = er.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (got, want) in host(wr).iter().zip(&er).chain(host(wi).iter().zip(&ei)) {
                assert!(
                    (f64::from(*got) - want).abs() < 1e-5 * scale.max(1e-3),
                    "{kind:?} {modes:?}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn factorized_spectral_conv_matches_naive_dft_at_odd_sizes() {
    use pno_models::factorized::Factorization;
    // The reconstructed weights go through the same transforms as dense ones: naive DFT oracle
    // at an odd grid (no Nyquist column) and an even one (Nyquist column kept).
    for (h, w) in [(9, 7), (8, 10)] {
        let (b, c, co) = (2, 3, 2);
        let conv = SpectralConv::with_factorization(
            &mut Init::new(9),
            c,
            co,
            &[6, 8],
            Some(Factorization::Tucker { rank: 0.42 }),
            None,
            &device(),
        );
        let x = random(b * c * h * w, 13);
        let y = host(conv.forward(t3(x.clone(), [b, c, h * w]), &[h, w], None));
        let want = naive_2d(&x, b, c, h, w, &conv);
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (g, e) in y.iter().zip(&want) {
            assert!(
                (f64::from(*g) - e).abs() < 1e-4 * scale,
                "{h}x{w}: {g} vs {e}"
            );
        }
    }
}

#[test]
fn tfno_ranks_and_size_match_neuraloperator() {
    use pno_models::factorized::{Factorization, cp_rank, tucker_ranks};
    // neuraloperator 0.3.0's TFNO(n_modes=(16,16), hidden_channels=32, rank=0.42) on the small
    // Darcy files: Tucker ranks (26, 26, 13, 7) for each (in, out, 16, 9) weight and 523,257
    // parameters in all (../shared/peers/neuralop/darcy16_peer_tfno.json, counted by torch);
    // the dense FNO has 1,195,297.
    assert_eq!(tucker_ranks(&[16, 9, 32, 32], 0.42), vec![13, 7, 26, 26]);
    assert_eq!(tucker_ranks(&[32, 32, 16, 9], 0.42), vec![26, 26, 13, 7]);
    // TensorLy's CP rank for a fraction: round(rank · Πn / Σn).
    assert_eq!(cp_rank(&[16, 9, 32, 32], 0.42), 696);
    let cfg = |f: Option<&str>, rank: Option<f64>| pno_models::ModelConfig {
        kind: Some("fno".into()),
        hidden_channels: Some(32),
        n_layers: Some(4),
        n_modes: Some(vec![16, 16]),
        lifting_channels: Some(256),
        projection_channels: Some(64),
        factorization: f.map(Into::into),
        rank,
        ..Default::default()
    };
    let count = |c: pno_models::ModelConfig| {
        pno_models::num_params(&c.validate(1, 1, &[16, 16]).unwrap().init(0, &device()))
    };
    assert_eq!(count(cfg(None, None)), 1_195_297);
    assert_eq!(count(cfg(Some("dense"), None)), 1_195_297);
    assert_eq!(count(cfg(Some("tucker"), Some(0.42))), 523_257);
    let spec = cfg(Some("cp"), Some(0.42))
        .validate(1, 1, &[16, 16])
        .unwrap();
    match &spec.backbone {
        pno_models::config::BackboneSpec::Fno(f) => {
            assert_eq!(f.factorization, Some(Factorization::Cp { rank: 0.42 }));
        }
        other => panic!("{other:?}"),
    }
    // CP: 696 complex components × (16 + 9 + 32 + 32 + 1) values per layer, plus the rest.
    assert_eq!(
        pno_models::num_params(&spec.init(0, &device())),
        1_195_297 - 4 * 2 * 144 * 32 * 32 + 4 * 2 * 696 * 90
    );
}

#[test]
fn factorized_weights_start_at_neuraloperators_scale() {
    use pno_models::factorized::Factorization;
    // Reconstructed entries have neuraloperator's modulus std sqrt(2/(in+out)): per real
    // component that std over √2 (the dense layer has the full std per component).
    let (c, co) = (32, 32);
    let want = (2.0 / (c + co) as f64).sqrt() / 2f64.sqrt();
    for kind in [
        Factorization::Tucker { rank: 0.42 },
        Factorization::Cp { rank: 0.42 },
    ] {
        let conv = SpectralConv::with_factorization(
            &mut Init::new(5),
            c,
            co,
            &[16, 16],
            Some(kind),
            None,
            &device(),
        );
        let (wr, wi) = conv.dense_weights();
        let v: Vec<f64> = host(wr)
            .into_iter()
            .chain(host(wi))
            .map(f64::from)
            .collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        assert!(
            (std / want - 1.0).abs() < 0.15,
            "{kind:?}: std {std} vs {want}"
        );
    }
}

/// The 2-D spectral convolution written here with burn's tensor API, independently of the
/// library's kernels: the two forward transforms, separate real and imaginary matmuls per mode,
/// the mask, the two inverse transforms and the bias. Shapes as [`fused::spectral2d`].
fn reference_spectral2d(
    x: Tensor<3>,
    wr: Tensor<3>,
    wi: Tensor<3>,
    bias: Tensor<1>,
    [fw, mh, gh, gw]: [Tensor<2>; 4],
    h: usize,
    mask: Option<Tensor<3>>,
) -> Tensor<3> {
    let [b, c, hw] = x.dims();
    let [m, _, co] = wr.dims();
    let w = hw / h;
    let (k1, k2) = (mh.dims()[0] / 2, fw.dims()[1] / 2);
    let a = x
        .reshape([b * c * h, w])
        .matmul(fw)
        .reshape([b * c, h, 2, k2])
        .swap_dims(1, 2)
        .reshape([b * c, 2 * h, k2]);
    let s = mh.unsqueeze_dim::<3>(0).matmul(a).reshape([b, c, 2, m]);
    let part = |s: Tensor<4>, k| s.narrow(2, k, 1).reshape([b, c, m]).permute([2, 0, 1]);
    let (sre, sim) = (part(s.clone(), 0), part(s, 1)); // [m, b, c]
    let ore = sre.clone().matmul(wr.clone()) - sim.clone().matmul(wi.clone()); // [m, b, co]
    let oim = sre.matmul(wi) + sim.matmul(wr);
    let o = Tensor::cat(
        vec![ore.unsqueeze_dim::<4>(2), oim.unsqueeze_dim::<4>(2)],
        2,
    )
    .permute([1, 3, 2, 0]); // [b, co, 2, m]
    let o = match mask {
        Some(mask) => o * mask.unsqueeze_dim::<4>(2),
        None => o,
    };
    gh.unsqueeze_dim::<3>(0)
        .matmul(o.reshape([b * co, 2 * k1, k2]))
        .reshape([b * co, 2, h, k2])
        .swap_dims(1, 2)
        .reshape([b * co * h, 2 * k2])
        .matmul(gw)
        .reshape([b, co, hw])
        + bias.reshape([1, co, 1])
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |a, v| a.max(v.abs())).max(1e-3);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * scale,
            "{what}[{i}]: fused {g}, reference {w} (scale {scale})"
        );
    }
}

/// The fused op against [`reference_spectral2d`] under autodiff — the field and the gradients
/// of the input, both weights and the bias — with and without Fourier dropout, on odd grids,
/// grids whose Nyquist column is kept, modes truncated by the resolution and a single row. The
/// op's backward alone matches too, natively (`f32`) and through the default body from burn
/// primitives that other backends run (reached on Flex with `f64` operands).
#[test]
fn fused_spectral_conv_values_and_gradients_match_a_reference_composition() {
    use pno_models::burn::tensor::{DType, Device};
    use pno_models::fused;
    use pno_models::noise::Noise;
    type Case = ([usize; 2], [usize; 2], usize, usize, usize);
    let cases: [Case; 5] = [
        // (grid, modes, batch, in, out)
        ([10, 8], [7, 8], 3, 4, 5),
        ([7, 9], [6, 6], 2, 3, 2),
        ([16, 16], [12, 12], 4, 6, 6),
        ([5, 4], [12, 12], 2, 2, 3),
        ([1, 6], [4, 4], 1, 1, 1),
    ];
    let ad = Device::flex().autodiff();
    for (k, (grid, modes, b, c, co)) in cases.into_iter().enumerate() {
        let (h, w) = (grid[0], grid[1]);
        let conv = SpectralConv::new(&mut Init::new(9), c, co, &modes, None, &ad);
        let bases = conv.bases_2d(grid, &ad);
        let m = bases[1].dims()[0] / 2 * (bases[0].dims()[1] / 2);
        let seed = 40 + 10 * k as u64;
        let x = random(b * c * h * w, seed);
        let wr = random(m * c * co, seed + 1);
        let wi = random(m * c * co, seed + 2);
        let bias = random(co, seed + 3);
        let up = random(b * co * h * w, seed + 4);
        for p in [0.0, 0.3] {
            let what = format!("grid {grid:?} modes {modes:?} p {p}");
            let masks = (p > 0.0).then(|| Noise::new(5, 2, 0, b).mask_streams(p, co * m));
            let leaves = || {
                (
                    Tensor::<3>::from_data(TensorData::new(x.clone(), [b, c, h * w]), &ad)
                        .require_grad(),
                    Tensor::<3>::from_data(TensorData::new(wr.clone(), [m, c, co]), &ad)
                        .require_grad(),
                    Tensor::<3>::from_data(TensorData::new(wi.clone(), [m, c, co]), &ad)
                        .require_grad(),
                    Tensor::<1>::from_data(TensorData::new(bias.clone(), [co]), &ad).require_grad(),
                )
            };
            let upstream = Tensor::<3>::from_data(TensorData::new(up.clone(), [b, co, h * w]), &ad);
            let (xf, wrf, wif, bf) = leaves();
            let yf = fused::spectral2d(
                xf.clone(),
                wrf.clone(),
                wif.clone(),
                bf.clone(),
                bases.clone(),
                h,
                masks.clone(),
            );
            let gf = (yf.clone() * upstream.clone()).sum().backward();
            let (xr, wrr, wir, br) = leaves();
            let mask = masks
                .as_ref()
                .map(|ms| Tensor::<3>::from_data(TensorData::new(ms.to_vec(), [b, co, m]), &ad));
            let yr = reference_spectral2d(
                xr.clone(),
                wrr.clone(),
                wir.clone(),
                br.clone(),
                bases.clone(),
                h,
                mask,
            );
            let gr = (yr.clone() * upstream).sum().backward();
            assert_close(&host(yf), &host(yr), &format!("y {what}"));
            let want = [
                host(xr.grad(&gr).unwrap()),
                host(wrr.grad(&gr).unwrap()),
                host(wir.grad(&gr).unwrap()),
                host(br.grad(&gr).unwrap()),
            ];
            let got = [
                host(xf.grad(&gf).unwrap()),
                host(wrf.grad(&gf).unwrap()),
                host(wif.grad(&gf).unwrap()),
                host(bf.grad(&gf).unwrap()),
            ];
            for (name, (g, w)) in ["dx", "dwr", "dwi", "dbias"]
                .iter()
                .zip(got.iter().zip(&want))
            {
                assert_close(g, w, &format!("{name} {what}"));
            }

            // The backward alone, native (f32) and the default body (f64), on plain Flex.
            let flex = Device::flex();
            for dtype in [DType::F32, DType::F64] {
                let t3 = |v: &[f32], d: [usize; 3]| {
                    Tensor::<3>::from_data(TensorData::new(v.to_vec(), d), &flex).cast(dtype)
                };
                let (dx, dwr, dwi, db) = fused::spectral2d_backward(
                    t3(&x, [b, c, h * w]),
                    t3(&wr, [m, c, co]),
                    t3(&wi, [m, c, co]),
                    Tensor::<1>::from_data(TensorData::new(bias.clone(), [co]), &flex).cast(dtype),
                    bases
                        .clone()
                        .map(|t| Tensor::<2>::from_data(t.into_data(), &flex).cast(dtype)),
                    h,
                    masks.clone(),
                    t3(&up, [b, co, h * w]),
                );
                let alone = [host(dx), host(dwr), host(dwi), host(db)];
                for (name, (g, w)) in ["dx", "dwr", "dwi", "dbias"]
                    .iter()
                    .zip(alone.iter().zip(&want))
                {
                    assert_close(g, w, &format!("{name} alone {dtype:?} {what}"));
                }
            }
        }
    }
}

/// The fused kernel gives a row the same bits alone or in a batch (dynamic batching's contract).
#[test]
fn fused_spectral_conv_row_gives_the_same_bits_alone_or_batched() {
    let (b, c, co, h, w) = (5, 4, 3, 12, 10);
    let conv = SpectralConv::new(&mut Init::new(3), c, co, &[8, 8], None, &device());
    let x = random(b * c * h * w, 21);
    let all = host(conv.forward(t3(x.clone(), [b, c, h * w]), &[h, w], None));
    for r in [0, 2, 4] {
        let one = x[r * c * h * w..(r + 1) * c * h * w].to_vec();
        let alone = host(conv.forward(t3(one, [1, c, h * w]), &[h, w], None));
        assert_eq!(alone, all[r * co * h * w..(r + 1) * co * h * w], "row {r}");
    }
}

/// The fused FNO block (`gelu(conv(x) + skip(x))`, untracked: one op with the skip GEMM and GELU
/// inside) against [`reference_spectral2d`] plus burn's matmul and GELU, with and without the
/// activation, a skip bias and Fourier dropout; under autodiff with tracked operands the block
/// is the composition of the fused ops and its gradients match the reference's; a row gives the
/// same bits alone or batched.
#[test]
fn fused_spectral_block_matches_the_reference_and_its_rows_do_not_depend_on_the_batch() {
    use pno_models::burn::tensor::Device;
    use pno_models::burn::tensor::activation::gelu;
    use pno_models::fused;
    use pno_models::noise::Noise;
    type Case = ([usize; 2], [usize; 2], usize, usize, usize);
    let cases: [Case; 3] = [
        ([10, 8], [7, 8], 3, 4, 5),
        ([1, 9], [4, 4], 2, 3, 3),
        ([16, 16], [12, 12], 2, 6, 6),
    ];
    for (k, (grid, modes, b, c, co)) in cases.into_iter().enumerate() {
        let (h, w) = (grid[0], grid[1]);
        let seed = 90 + 10 * k as u64;
        let flex = Device::flex();
        let conv = SpectralConv::new(&mut Init::new(9), c, co, &modes, None, &flex);
        let bases = conv.bases_2d(grid, &flex);
        let m = bases[1].dims()[0] / 2 * (bases[0].dims()[1] / 2);
        let data = [
            random(b * c * h * w, seed),
            random(m * c * co, seed + 1),
            random(m * c * co, seed + 2),
            random(co, seed + 3),
            random(co * c, seed + 4),
            random(co, seed + 5),
            random(b * co * h * w, seed + 6),
        ];
        for (activate, with_bias, p) in [(true, false, 0.0), (false, true, 0.3), (true, true, 0.3)]
        {
            let what = format!("grid {grid:?} activate {activate} skip bias {with_bias} p {p}");
            let masks = (p > 0.0).then(|| Noise::new(3, 1, 0, b).mask_streams(p, co * m));
            let run = |device: &Device, fused_op: bool, track: bool| {
                let t3 = |v: &[f32], d: [usize; 3]| {
                    let t = Tensor::<3>::from_data(TensorData::new(v.to_vec(), d), device);
                    if track { t.require_grad() } else { t }
                };
                let x = t3(&data[0], [b, c, h * w]);
                let wr = t3(&data[1], [m, c, co]);
                let wi = t3(&data[2], [m, c, co]);
                let bias = Tensor::<1>::from_data(TensorData::new(data[3].clone(), [co]), device);
                let sw = Tensor::<2>::from_data(TensorData::new(data[4].clone(), [co, c]), device);
                let sb = with_bias.then(|| {
                    Tensor::<1>::from_data(TensorData::new(data[5].clone(), [co]), device)
                });
                let bases = bases
                    .clone()
                    .map(|t| Tensor::<2>::from_data(t.into_data(), device));
                let y = if fused_op {
                    fused::spectral_block(
                        x.clone(),
                        wr.clone(),
                        wi.clone(),
                        bias,
                        sw,
                        sb,
                        bases,
                        h,
                        masks.clone(),
                        activate,
                    )
                } else {
                    let mask = masks.as_ref().map(|ms| {
                        Tensor::<3>::from_data(TensorData::new(ms.to_vec(), [b, co, m]), device)
                    });
                    let conv = reference_spectral2d(
                        x.clone(),
                        wr.clone(),
                        wi.clone(),
                        bias,
                        bases,
                        h,
                        mask,
                    );
                    let mut skip = sw.unsqueeze_dim::<3>(0).matmul(x.clone());
                    if let Some(sb) = sb {
                        skip = skip + sb.reshape([1, co, 1]);
                    }
                    let z = conv + skip;
                    if activate { gelu(z) } else { z }
                };
                let grads = track.then(|| {
                    let up = Tensor::<3>::from_data(
                        TensorData::new(data[6].clone(), [b, co, h * w]),
                        device,
                    );
                    let g = (y.clone() * up).sum().backward();
                    [x, wr, wi].map(|t| host(t.grad(&g).unwrap()))
                });
                (host(y), grads)
            };
            let (fused_y, _) = run(&flex, true, false);
            let (want_y, _) = run(&flex, false, false);
            assert_close(&fused_y, &want_y, &format!("y {what}"));
            let ad = flex.clone().autodiff();
            let (tracked_y, got) = run(&ad, true, true);
            let (_, want) = run(&ad, false, true);
            assert_close(&tracked_y, &want_y, &format!("tracked y {what}"));
            for (name, (g, w)) in ["dx", "dwr", "dwi"]
                .iter()
                .zip(got.unwrap().iter().zip(&want.unwrap()))
            {
                assert_close(g, w, &format!("{name} {what}"));
            }
            // A row alone gives the bits it has in the batch.
            let one = |r: usize| {
                let sl = |v: &[f32], n: usize| v[r * n..(r + 1) * n].to_vec();
                fused::spectral_block(
                    t3(sl(&data[0], c * h * w), [1, c, h * w]),
                    t3(data[1].clone(), [m, c, co]),
                    t3(data[2].clone(), [m, c, co]),
                    Tensor::<1>::from_data(TensorData::new(data[3].clone(), [co]), &flex),
                    Tensor::<2>::from_data(TensorData::new(data[4].clone(), [co, c]), &flex),
                    with_bias.then(|| {
                        Tensor::<1>::from_data(TensorData::new(data[5].clone(), [co]), &flex)
                    }),
                    bases.clone(),
                    h,
                    None,
                    activate,
                )
            };
            let all = fused::spectral_block(
                t3(data[0].clone(), [b, c, h * w]),
                t3(data[1].clone(), [m, c, co]),
                t3(data[2].clone(), [m, c, co]),
                Tensor::<1>::from_data(TensorData::new(data[3].clone(), [co]), &flex),
                Tensor::<2>::from_data(TensorData::new(data[4].clone(), [co, c]), &flex),
                with_bias
                    .then(|| Tensor::<1>::from_data(TensorData::new(data[5].clone(), [co]), &flex)),
                bases.clone(),
                h,
                None,
                activate,
            );
            let all = host(all);
            for r in 0..b {
                let n = co * h * w;
                assert_eq!(host(one(r)), all[r * n..(r + 1) * n], "row {r} {what}");
            }
        }
    }
}
