//! Spectral convolution against a naive DFT, at power-of-two and odd resolutions, with
//! truncated modes, and resolution invariance on band-limited inputs.

use std::f64::consts::PI;

use pno_models::init::Init;
use pno_models::spectral::{SpectralConv, full_axis_freqs, mode_count, real_axis_freqs};

use crate::{device, host, random, t3};

/// y[b,o,h,w] = Re Σ_{kh,kw} c_kw · (Σ_c X[b,c,kh,kw] W[kh,kw,c,o]) e^{+iθ} + bias[o], with
/// X = (1/HW) Σ x e^{−iθ}, kept modes as in neuraloperator (evaluated in f64).
#[allow(clippy::too_many_arguments)]
fn naive_2d(x: &[f32], b: usize, c: usize, h: usize, w: usize, conv: &SpectralConv) -> Vec<f64> {
    let wr = host(conv.weight_re.val());
    let wi = host(conv.weight_im.val());
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
    let (b, c, co) = (2, 3, 2);
    let conv = SpectralConv::new(&mut Init::new(7), c, co, &modes, None, &device());
    let x = random(b * c * h * w, 11);
    let y = host(conv.forward(t3(x.clone(), [b, c, h * w]), &[h, w], None));
    let want = naive_2d(&x, b, c, h, w, &conv);
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
fn spectral_conv_1d_matches_naive_dft() {
    let (b, c, co, n) = (2, 2, 3, 21);
    let modes = [8];
    let conv = SpectralConv::new(&mut Init::new(3), c, co, &modes, None, &device());
    let x = random(b * c * n, 5);
    let y = host(conv.forward(t3(x.clone(), [b, c, n]), &[n], None));
    // 1-D is the 2-D formula with a single row: reuse it with h = 1 and one frequency 0.
    let wr = host(conv.weight_re.val());
    let wi = host(conv.weight_im.val());
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
