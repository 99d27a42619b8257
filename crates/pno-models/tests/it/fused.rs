//! The fused bias + dropout + GELU op against an `f64` erf and against the unfused composition
//! of burn primitives (values and gradients), on odd shapes, with and without bias and mask; the
//! fused pointwise layer against burn's broadcast matmul (values, the three gradients, strided
//! inputs, and the same bits for a row alone or batched); the fused channel MLP against burn
//! primitives (values and all five gradients, with and without dropout) and against the layers
//! it fuses (the same bits); dropout alone against the drawn mask (the same bits, and its
//! gradient).

use pno_models::burn::tensor::activation::gelu;
use pno_models::burn::tensor::{Device, Tensor, TensorData};
use pno_models::fused::{self, math, pointwise};
use pno_models::noise::Noise;

use crate::{host, random};

/// `erf(x)` in `f64` to ~1e-15: the Maclaurin series for `|x| < 2.5`, Laplace's continued
/// fraction for `erfc` beyond.
fn erf_f64(x: f64) -> f64 {
    let a = x.abs();
    let v = if a < 2.5 {
        let (mut term, mut sum, mut n) = (a, a, 0.0f64);
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let mut k = a;
        for i in (1..200).rev() {
            k = a + f64::from(i) / 2.0 / k;
        }
        1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * k)
    };
    v.copysign(x)
}

#[test]
fn the_f64_reference_erf_matches_known_values() {
    // erf at 0.5, 1, 2, 3, 4 (DLMF / Abramowitz–Stegun tables, 16 digits).
    for (x, want) in [
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (2.0, 0.995_322_265_018_952_7),
        (3.0, 0.999_977_909_503_001_4),
        (4.0, 0.999_999_984_582_742_1),
        (-1.0, -0.842_700_792_949_714_9),
    ] {
        assert!((erf_f64(x) - want).abs() < 1e-14, "erf({x})");
    }
}

#[test]
fn vectorised_erf_and_gelu_are_within_1e_6_of_the_exact_functions() {
    let mut worst = [0.0f64; 3];
    for i in -200_000..=200_000 {
        let x = i as f32 * 5e-5; // [-10, 10]
        let xd = f64::from(x);
        let erf = erf_f64(xd);
        let e = (f64::from(math::erf(x)) - erf).abs();
        let cdf = 0.5 * (1.0 + erf_f64(xd / std::f64::consts::SQRT_2));
        let pdf = (-0.5 * xd * xd).exp() / (2.0 * std::f64::consts::PI).sqrt();
        // GELU and its derivative grow like |x|: compare relative to max(1, |x|).
        let scale = xd.abs().max(1.0);
        let g = (f64::from(math::gelu(x)) - xd * cdf).abs() / scale;
        let d = (f64::from(math::gelu_grad(x)) - (cdf + xd * pdf)).abs() / scale;
        worst = [worst[0].max(e), worst[1].max(g), worst[2].max(d)];
    }
    assert!(worst[0] <= 1e-6, "erf max abs error {}", worst[0]);
    assert!(worst[1] <= 1e-6, "gelu max error {}", worst[1]);
    assert!(worst[2] <= 1e-6, "gelu' max error {}", worst[2]);
    assert!(math::erf(f32::NAN).is_nan() && math::gelu(f32::NAN).is_nan());
    assert!((math::erf(f32::INFINITY) - 1.0).abs() < 1e-6);
}

#[test]
fn exp_of_nonpositive_arguments_is_accurate() {
    for i in 0..=100_000 {
        let t = -(i as f32) * 1e-3; // [0, -100]
        let want = f64::from(t).exp();
        let got = f64::from(math::exp_nonpositive(t));
        if t > -87.0 {
            assert!(
                (got - want).abs() <= 4e-7 * want,
                "exp({t}) = {got}, want {want}"
            );
        } else {
            assert!(got < 2e-38, "exp({t}) = {got}");
        }
    }
}

fn close(got: &[f32], want: &[f32], abs: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs() + abs,
            "{what}[{i}]: fused {g}, unfused {w}"
        );
    }
}

/// One case: `[b, c, n]`, bias or not, dropout probability (0 = no mask).
fn check(dims: [usize; 3], bias: bool, p: f64, seed: u64) {
    let [b, c, n] = dims;
    let device = Device::flex().autodiff();
    let x0 = random(b * c * n, seed)
        .iter()
        .map(|v| v * 4.0)
        .collect::<Vec<_>>();
    let b0 = random(c, seed + 1);
    let up = random(b * c * n, seed + 2);
    // The fused op makes the mask from the row streams inside the kernel; the composition gets
    // the same mask drawn as a tensor from an identical `Noise`.
    let masks = (p > 0.0).then(|| Noise::new(seed, 0, 0, b).mask_streams(p, c * n));
    let mask = (p > 0.0).then(|| Noise::new(seed, 0, 0, b).dropout_mask(p, dims, &device));
    let leaf = |v: &[f32], d: [usize; 3]| {
        Tensor::<3>::from_data(TensorData::new(v.to_vec(), d), &device).require_grad()
    };
    let bias_leaf =
        || Tensor::<1>::from_data(TensorData::new(b0.clone(), [c]), &device).require_grad();
    let upstream = Tensor::<3>::from_data(TensorData::new(up, dims), &device);

    // Fused.
    let xf = leaf(&x0, dims);
    let bf = bias.then(bias_leaf);
    let yf = fused::bias_dropout_gelu(xf.clone(), bf.clone(), masks);
    let gf = (yf.clone() * upstream.clone()).sum().backward();

    // Unfused: the same composition the layers used before.
    let xu = leaf(&x0, dims);
    let bu = bias.then(bias_leaf);
    let mut z = xu.clone();
    if let Some(bu) = &bu {
        z = z + bu.clone().reshape([1, -1, 1]);
    }
    if let Some(m) = &mask {
        z = z * m.clone();
    }
    let yu = gelu(z);
    let gu = (yu.clone() * upstream).sum().backward();

    let what = format!("{dims:?} bias={bias} p={p}");
    close(&host(yf), &host(yu), 1e-6, &format!("y {what}"));
    close(
        &host(xf.grad(&gf).unwrap()),
        &host(xu.grad(&gu).unwrap()),
        1e-6,
        &format!("dx {what}"),
    );
    if let (Some(bf), Some(bu)) = (bf, bu) {
        // A sum over b·n terms, each within ~1e-6.
        let abs = 1e-6 * (b * n) as f32;
        close(
            &host(bf.grad(&gf).unwrap()),
            &host(bu.grad(&gu).unwrap()),
            abs,
            &format!("dbias {what}"),
        );
    }
}

#[test]
fn fused_matches_the_unfused_composition_values_and_gradients() {
    let shapes = [
        [1, 1, 1],
        [3, 5, 7],
        [2, 17, 33],
        [1, 3, 1],
        // More than one parallel task, a task boundary inside neither row nor batch.
        [2, 9, 5_001],
        [4, 3, 70_001],
    ];
    for (i, &dims) in shapes.iter().enumerate() {
        for bias in [false, true] {
            for p in [0.0, 0.3] {
                check(dims, bias, p, 100 + i as u64);
            }
        }
    }
}

#[test]
fn fused_dropout_gives_the_drawn_masks_bits_and_its_gradient() {
    // [b, c, n] shapes with one row, rows split across parallel tasks, and a task boundary inside
    // a batch item; the input shared (out of place), unique (in place) and strided.
    for (i, dims) in [[1, 1, 1], [3, 5, 7], [2, 9, 5_001], [4, 3, 70_001]]
        .into_iter()
        .enumerate()
    {
        let [b, c, n] = dims;
        let seed = 40 + i as u64;
        let device = Device::flex().autodiff();
        let v = random(b * c * n, seed);
        let up = random(b * c * n, seed + 1);
        let masks = || Noise::new(seed, 2, 0, b).mask_streams(0.3, c * n);
        let drawn = host(Noise::new(seed, 2, 0, b).dropout_mask(0.3, dims, &device));
        let x = Tensor::<3>::from_data(TensorData::new(v.clone(), dims), &device).require_grad();
        let upstream = Tensor::<3>::from_data(TensorData::new(up.clone(), dims), &device);
        let y = fused::dropout(x.clone(), masks());
        let want: Vec<f32> = v.iter().zip(&drawn).map(|(x, m)| x * m).collect();
        assert_eq!(host(y.clone()), want, "{dims:?}: values");
        assert_eq!(
            host(x.clone()),
            v,
            "{dims:?}: the shared input was overwritten"
        );
        // d/dx Σ up · (x · mask) = up · mask
        let g = (y * upstream).sum().backward();
        let dx_want: Vec<f32> = up.iter().zip(&drawn).map(|(u, m)| u * m).collect();
        assert_eq!(host(x.grad(&g).unwrap()), dx_want, "{dims:?}: gradient");
        // in place on a unique buffer, and on a strided view
        let flex = Device::flex();
        let unique = Tensor::<3>::from_data(TensorData::new(v.clone(), dims), &flex);
        assert_eq!(
            host(fused::dropout(unique, masks())),
            want,
            "{dims:?}: in place"
        );
        let t = Tensor::<3>::from_data(TensorData::new(v.clone(), [b, n, c]), &flex);
        let strided = t.clone().swap_dims(1, 2);
        let want_t: Vec<f32> = host(strided.clone())
            .iter()
            .zip(&drawn)
            .map(|(x, m)| x * m)
            .collect();
        assert_eq!(
            host(fused::dropout(strided, masks())),
            want_t,
            "{dims:?}: strided"
        );
    }
}

#[test]
fn fused_forward_in_place_strided_and_shared_inputs_agree() {
    let device = Device::flex();
    let dims = [3, 4, 37];
    let v = random(3 * 4 * 37, 9);
    let bias = Tensor::<1>::from_data(TensorData::new(random(4, 10), [4]), &device);
    let x = Tensor::<3>::from_data(TensorData::new(v.clone(), dims), &device);
    let want = host(gelu(x.clone() + bias.clone().reshape([1, -1, 1])));
    // Shared input: computed out of place, the input is left as it was.
    let shared = fused::bias_dropout_gelu(x.clone(), Some(bias.clone()), None);
    close(&host(shared), &want, 1e-6, "shared");
    assert_eq!(host(x.clone()), v, "the shared input was overwritten");
    // Unique input: in place.
    close(
        &host(fused::bias_dropout_gelu(x, Some(bias.clone()), None)),
        &want,
        1e-6,
        "unique",
    );
    // A strided (transposed) view.
    let xt = Tensor::<3>::from_data(TensorData::new(v, [3, 37, 4]), &device).swap_dims(1, 2);
    let want_t = host(gelu(xt.clone() + bias.clone().reshape([1, -1, 1])));
    close(
        &host(fused::bias_dropout_gelu(xt, Some(bias), None)),
        &want_t,
        1e-6,
        "strided",
    );
}

#[test]
fn fused_backward_alone_matches_burn_gelu_backward() {
    let device = Device::flex();
    let dims = [2, 3, 11];
    let x = Tensor::<3>::from_data(TensorData::new(random(66, 1), dims), &device) * 3.0;
    let g = Tensor::<3>::from_data(TensorData::new(random(66, 2), dims), &device);
    let (dx, db) = fused::bias_dropout_gelu_backward(x.clone(), None, None, g.clone());
    assert!(db.is_none());
    // d/dx gelu through autodiff of burn's own gelu.
    let ad = Device::flex().autodiff();
    let xa = Tensor::<3>::from_data(x.into_data(), &ad).require_grad();
    let ga = Tensor::<3>::from_data(g.into_data(), &ad);
    let grads = (gelu(xa.clone()) * ga).sum().backward();
    close(&host(dx), &host(xa.grad(&grads).unwrap()), 1e-6, "dx");
}

/// One pointwise case: `x[b, i, n]`, `w[o, i]`, bias or not; values and the gradients of `x`,
/// `w` and the bias against burn's broadcast matmul and bias add under autodiff.
fn check_pointwise([b, i, o, n]: [usize; 4], bias: bool, seed: u64) {
    let device = Device::flex().autodiff();
    let x0 = random(b * i * n, seed);
    let w0 = random(o * i, seed + 1);
    let b0 = random(o, seed + 2);
    let up = random(b * o * n, seed + 3);
    let x =
        || Tensor::<3>::from_data(TensorData::new(x0.clone(), [b, i, n]), &device).require_grad();
    let w = || Tensor::<2>::from_data(TensorData::new(w0.clone(), [o, i]), &device).require_grad();
    let bl = || Tensor::<1>::from_data(TensorData::new(b0.clone(), [o]), &device).require_grad();
    let upstream = Tensor::<3>::from_data(TensorData::new(up, [b, o, n]), &device);

    let (xf, wf, bf) = (x(), w(), bias.then(bl));
    let yf = fused::pointwise(xf.clone(), wf.clone(), bf.clone());
    let gf = (yf.clone() * upstream.clone()).sum().backward();

    let (xu, wu, bu) = (x(), w(), bias.then(bl));
    let mut yu = wu.clone().unsqueeze_dim::<3>(0).matmul(xu.clone());
    if let Some(bu) = &bu {
        yu = yu + bu.clone().reshape([1, -1, 1]);
    }
    let gu = (yu.clone() * upstream).sum().backward();

    let what = format!("[{b}, {i}, {o}, {n}] bias={bias}");
    // Sums of `i` (values, dx), `b·n` (dw, dbias) products of numbers in [-1, 1].
    close(&host(yf), &host(yu), 1e-6 * i as f32, &format!("y {what}"));
    close(
        &host(xf.grad(&gf).unwrap()),
        &host(xu.grad(&gu).unwrap()),
        1e-6 * o as f32,
        &format!("dx {what}"),
    );
    let abs = 1e-6 * (b * n) as f32;
    close(
        &host(wf.grad(&gf).unwrap()),
        &host(wu.grad(&gu).unwrap()),
        abs,
        &format!("dw {what}"),
    );
    if let (Some(bf), Some(bu)) = (bf, bu) {
        close(
            &host(bf.grad(&gf).unwrap()),
            &host(bu.grad(&gu).unwrap()),
            abs,
            &format!("dbias {what}"),
        );
    }
}

#[test]
fn fused_pointwise_matches_the_broadcast_matmul_values_and_gradients() {
    let shapes = [
        [1, 1, 1, 1],
        [3, 5, 7, 11],
        [2, 3, 64, 17],
        [1, 32, 32, 1],
        // Several point blocks, the last one partial.
        [2, 7, 9, 2 * pointwise::COLS + 37],
        [5, 4, 3, pointwise::COLS],
    ];
    for (k, &dims) in shapes.iter().enumerate() {
        for bias in [false, true] {
            check_pointwise(dims, bias, 300 + k as u64);
        }
    }
}

#[test]
fn a_pointwise_row_gives_the_same_bits_alone_or_in_a_batch() {
    let device = Device::flex();
    let (b, i, o, n) = (6, 5, 8, pointwise::COLS + 300);
    let x = Tensor::<3>::from_data(TensorData::new(random(b * i * n, 1), [b, i, n]), &device);
    let w = Tensor::<2>::from_data(TensorData::new(random(o * i, 2), [o, i]), &device);
    let bias = Tensor::<1>::from_data(TensorData::new(random(o, 3), [o]), &device);
    let all = host(fused::pointwise(x.clone(), w.clone(), Some(bias.clone())));
    for r in [0, 3, 5] {
        let alone = host(fused::pointwise(
            x.clone().narrow(0, r, 1),
            w.clone(),
            Some(bias.clone()),
        ));
        assert_eq!(alone, all[r * o * n..(r + 1) * o * n], "row {r}");
    }
}

#[test]
fn fused_pointwise_reads_strided_inputs_and_its_backward_alone_matches() {
    let device = Device::flex();
    let (b, i, o, n) = (2, 3, 4, 29);
    // x given as a transposed view of [b, n, i].
    let xt = Tensor::<3>::from_data(TensorData::new(random(b * n * i, 4), [b, n, i]), &device)
        .swap_dims(1, 2);
    // w given as a transposed view of [i, o].
    let wt =
        Tensor::<2>::from_data(TensorData::new(random(i * o, 5), [i, o]), &device).swap_dims(0, 1);
    let want = host(wt.clone().unsqueeze_dim::<3>(0).matmul(xt.clone()));
    close(
        &host(fused::pointwise(xt.clone(), wt.clone(), None)),
        &want,
        1e-5,
        "strided",
    );

    let g = Tensor::<3>::from_data(TensorData::new(random(b * o * n, 6), [b, o, n]), &device);
    let (dx, dw, db) = fused::pointwise_backward(xt.clone(), wt.clone(), true, g.clone());
    let want_dx = wt.transpose().unsqueeze_dim::<3>(0).matmul(g.clone());
    let want_dw = g
        .clone()
        .matmul(xt.swap_dims(1, 2))
        .sum_dim(0)
        .reshape([o, i]);
    let want_db = g.sum_dim(0).sum_dim(2).reshape([o]);
    close(&host(dx), &host(want_dx), 1e-5, "dx");
    close(&host(dw), &host(want_dw), 1e-4, "dw");
    close(
        &host(db.expect("a bias gradient")),
        &host(want_db),
        1e-4,
        "db",
    );
}

/// One channel-MLP case `[b, i, h, o, n]` with dropout probability `p` (0 = no mask): the fused
/// op under autodiff against the same MLP written with burn primitives.
fn check_channel_mlp([b, i, h, o, n]: [usize; 5], p: f64, seed: u64) {
    let device = Device::flex().autodiff();
    let x0 = random(b * i * n, seed);
    let w10 = random(h * i, seed + 1);
    let b10 = random(h, seed + 2);
    let w20 = random(o * h, seed + 3);
    let b20 = random(o, seed + 4);
    let up = random(b * o * n, seed + 5);
    let masks = (p > 0.0).then(|| Noise::new(seed, 0, 0, b).mask_streams(p, h * n));
    let mask = (p > 0.0).then(|| Noise::new(seed, 0, 0, b).dropout_mask(p, [b, h, n], &device));
    let t3 = |v: &[f32], d: [usize; 3]| {
        Tensor::<3>::from_data(TensorData::new(v.to_vec(), d), &device).require_grad()
    };
    let t2 = |v: &[f32], d: [usize; 2]| {
        Tensor::<2>::from_data(TensorData::new(v.to_vec(), d), &device).require_grad()
    };
    let t1 = |v: &[f32]| {
        Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &device).require_grad()
    };
    let upstream = Tensor::<3>::from_data(TensorData::new(up, [b, o, n]), &device);
    let leaves = || {
        (
            t3(&x0, [b, i, n]),
            t2(&w10, [h, i]),
            t1(&b10),
            t2(&w20, [o, h]),
            t1(&b20),
        )
    };

    let f = leaves();
    let yf = fused::channel_mlp(
        f.0.clone(),
        f.1.clone(),
        f.2.clone(),
        f.3.clone(),
        f.4.clone(),
        masks,
    );
    let gf = (yf.clone() * upstream.clone()).sum().backward();

    let u = leaves();
    let mut z =
        u.1.clone().unsqueeze_dim::<3>(0).matmul(u.0.clone()) + u.2.clone().reshape([1, -1, 1]);
    if let Some(m) = &mask {
        z = z * m.clone();
    }
    let yu = u.3.clone().unsqueeze_dim::<3>(0).matmul(gelu(z)) + u.4.clone().reshape([1, -1, 1]);
    let gu = (yu.clone() * upstream).sum().backward();

    let what = format!("[{b}, {i}, {h}, {o}, {n}] p={p}");
    // Sums of `i` then `h` products of numbers in [-1, 1] (values, dx); `b·n` of them (weights
    // and biases).
    close(
        &host(yf),
        &host(yu),
        1e-6 * (i * h) as f32,
        &format!("y {what}"),
    );
    let abs = 1e-6 * (b * n * h) as f32;
    let grads = [
        (
            host(f.0.grad(&gf).unwrap()),
            host(u.0.grad(&gu).unwrap()),
            "dx",
        ),
        (
            host(f.1.grad(&gf).unwrap()),
            host(u.1.grad(&gu).unwrap()),
            "dw1",
        ),
        (
            host(f.2.grad(&gf).unwrap()),
            host(u.2.grad(&gu).unwrap()),
            "db1",
        ),
        (
            host(f.3.grad(&gf).unwrap()),
            host(u.3.grad(&gu).unwrap()),
            "dw2",
        ),
        (
            host(f.4.grad(&gf).unwrap()),
            host(u.4.grad(&gu).unwrap()),
            "db2",
        ),
    ];
    for (got, want, name) in grads {
        close(&got, &want, abs, &format!("{name} {what}"));
    }
}

#[test]
fn fused_channel_mlp_matches_burn_primitives_values_and_gradients() {
    let shapes = [
        [1, 1, 1, 1, 1],
        [3, 5, 7, 2, 11],
        [2, 3, 16, 1, 33],
        // Several point blocks, the last one partial; a block exactly full.
        [2, 3, 9, 4, 2 * pointwise::COLS + 37],
        [3, 2, 5, 3, pointwise::COLS],
    ];
    for (k, &dims) in shapes.iter().enumerate() {
        for p in [0.0, 0.3] {
            check_channel_mlp(dims, p, 500 + k as u64);
        }
    }
}

#[test]
fn fused_channel_mlp_gives_the_bits_of_the_layers_it_fuses_alone_or_batched() {
    let device = Device::flex();
    let (b, i, h, o, n) = (5, 3, 24, 2, 2 * pointwise::COLS + 300);
    let x = Tensor::<3>::from_data(TensorData::new(random(b * i * n, 7), [b, i, n]), &device);
    let w1 = Tensor::<2>::from_data(TensorData::new(random(h * i, 8), [h, i]), &device);
    let b1 = Tensor::<1>::from_data(TensorData::new(random(h, 9), [h]), &device);
    let w2 = Tensor::<2>::from_data(TensorData::new(random(o * h, 10), [o, h]), &device);
    let b2 = Tensor::<1>::from_data(TensorData::new(random(o, 11), [o]), &device);
    for p in [0.0, 0.25] {
        let masks = || (p > 0.0).then(|| Noise::new(3, 1, 0, b).mask_streams(p, h * n));
        let fused_y = host(fused::channel_mlp(
            x.clone(),
            w1.clone(),
            b1.clone(),
            w2.clone(),
            b2.clone(),
            masks(),
        ));
        // The layers one op at a time: pointwise, bias + dropout + GELU, pointwise.
        let hidden = fused::bias_dropout_gelu(
            fused::pointwise(x.clone(), w1.clone(), None),
            Some(b1.clone()),
            masks(),
        );
        let layered = host(fused::pointwise(hidden, w2.clone(), Some(b2.clone())));
        assert_eq!(fused_y, layered, "p={p}: fused and layered bits");
        // The hidden pre-activation the backward keeps is the first layer's product.
        let (y2, z) = fused::channel_mlp_with_hidden(
            x.clone(),
            w1.clone(),
            b1.clone(),
            w2.clone(),
            b2.clone(),
            masks(),
        );
        assert_eq!(
            host(y2),
            fused_y,
            "p={p}: with and without the hidden field"
        );
        assert_eq!(
            host(z),
            host(fused::pointwise(x.clone(), w1.clone(), None)),
            "p={p}: hidden pre-activation"
        );
    }
    // A row alone (its own stream) gives its bits in the batch.
    let all = host(fused::channel_mlp(
        x.clone(),
        w1.clone(),
        b1.clone(),
        w2.clone(),
        b2.clone(),
        None,
    ));
    for r in [0, 2, 4] {
        let alone = host(fused::channel_mlp(
            x.clone().narrow(0, r, 1),
            w1.clone(),
            b1.clone(),
            w2.clone(),
            b2.clone(),
            None,
        ));
        assert_eq!(alone, all[r * o * n..(r + 1) * o * n], "row {r}");
    }
}

#[test]
fn fused_channel_mlp_backward_alone_matches_the_layered_backward() {
    let device = Device::flex();
    let (b, i, h, o, n) = (2, 4, 6, 3, pointwise::COLS + 5);
    let x = Tensor::<3>::from_data(TensorData::new(random(b * i * n, 12), [b, i, n]), &device);
    let w1 = Tensor::<2>::from_data(TensorData::new(random(h * i, 13), [h, i]), &device);
    let b1 = Tensor::<1>::from_data(TensorData::new(random(h, 14), [h]), &device);
    let w2 = Tensor::<2>::from_data(TensorData::new(random(o * h, 15), [o, h]), &device);
    let b2 = Tensor::<1>::from_data(TensorData::new(random(o, 16), [o]), &device);
    let g = Tensor::<3>::from_data(TensorData::new(random(b * o * n, 17), [b, o, n]), &device);
    let masks = || Some(Noise::new(4, 0, 0, b).mask_streams(0.2, h * n));
    let (_, z) =
        fused::channel_mlp_with_hidden(x.clone(), w1.clone(), b1.clone(), w2.clone(), b2, masks());
    let (dx, dw1, db1, dw2, db2) = fused::channel_mlp_backward(
        x.clone(),
        w1.clone(),
        b1.clone(),
        w2.clone(),
        z.clone(),
        masks(),
        g.clone(),
    );
    // The same chain through the single-layer backward ops.
    let hid = fused::bias_dropout_gelu(z.clone(), Some(b1.clone()), masks());
    let (dh, want_dw2, want_db2) = fused::pointwise_backward(hid, w2, true, g);
    let (dz, want_db1) = fused::bias_dropout_gelu_backward(z, Some(b1), masks(), dh);
    let (want_dx, want_dw1, _) = fused::pointwise_backward(x, w1, false, dz);
    close(&host(dx), &host(want_dx), 1e-5, "dx");
    close(&host(dw1), &host(want_dw1), 1e-3, "dw1");
    close(
        &host(db1),
        &host(want_db1.expect("a bias gradient")),
        1e-3,
        "db1",
    );
    close(&host(dw2), &host(want_dw2), 1e-3, "dw2");
    close(
        &host(db2),
        &host(want_db2.expect("a bias gradient")),
        1e-3,
        "db2",
    );
}
