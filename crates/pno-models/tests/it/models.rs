//! Model factory, every kind's predict contract, seeds, batch invariance, weights round trip,
//! config validation and the Laplace evidence fit.

use pno_models::config::ModelConfig;
use pno_models::laplace::LaplaceStats;
use pno_models::weights::{load_named, named_tensors};
use pno_models::{Kind, ModelError, num_params};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::{device, random, t3};

fn cfg(kind: &str) -> ModelConfig {
    ModelConfig {
        kind: Some(kind.into()),
        hidden_channels: Some(8),
        n_layers: Some(2),
        n_modes: Some(vec![4, 4]),
        lifting_channels: Some(16),
        projection_channels: Some(16),
        ..Default::default()
    }
}

/// `c` with the FNO-only keys of [`cfg`] cleared, for a DeepONet network.
fn without_fno_keys(mut c: ModelConfig) -> ModelConfig {
    c.n_modes = None;
    c.lifting_channels = None;
    c.projection_channels = None;
    c
}

/// Gradients of the squared error of member 0's training draws (step seed 11, rows 0 and 1)
/// against `y[b, 2, h·w]` for inputs `x[b, 1, h·w]`, on `model`'s autodiff device.
fn squared_error_grads(
    model: &pno_models::Model,
    dev: &pno_models::burn::tensor::Device,
    x: &[f32],
    y: &[f32],
    [b, h, w]: [usize; 3],
) -> pno_models::burn::tensor::Gradients {
    use pno_models::burn::tensor::{Tensor, TensorData};
    let xt = Tensor::<3>::from_data(TensorData::new(x.to_vec(), [b, 1, h * w]), dev);
    let yt = Tensor::<3>::from_data(TensorData::new(y.to_vec(), [b, 2, h * w]), dev);
    let (draws, _) = model.train_forward(0, xt, &[h, w], 11, &[0, 1]);
    let [m, _, _, _] = draws.dims();
    (draws - yt.unsqueeze_dim::<4>(0).expand([m, b, 2, h * w]))
        .powi_scalar(2)
        .mean()
        .backward()
}

#[test]
fn fno_has_the_pno_paper_parameter_count() {
    let c = ModelConfig {
        kind: Some("fno".into()),
        hidden_channels: Some(32),
        n_layers: Some(4),
        n_modes: Some(vec![12, 12]),
        lifting_channels: Some(256),
        projection_channels: Some(256),
        ..Default::default()
    };
    let m = c.validate(1, 1, &[64, 64]).unwrap().init(0, &device());
    assert_eq!(num_params(&m), 710_305);
    // PNO_R adds a second projection head (the paper's PFNO: 719,010 with its smaller head).
    let r = ModelConfig {
        kind: Some("pno_r".into()),
        ..c
    }
    .validate(1, 1, &[64, 64])
    .unwrap()
    .init(0, &device());
    assert_eq!(num_params(&r), 710_305 + 256 * 32 + 256 + 256 + 1);
}

#[test]
fn every_kind_predicts_with_the_same_contract() {
    let (b, h, w, s) = (3, 12, 10, 6);
    let x = random(b * h * w, 3);
    for kind in Kind::ALL {
        let mut c = cfg(kind.name());
        if kind == Kind::Deeponet {
            c = without_fno_keys(c);
        }
        let spec = c.validate(1, 2, &[h, w]).unwrap();
        let mut model = spec.init(1, &device());
        if kind == Kind::Laplace {
            let p = 16 + 1;
            let mut g = vec![0.0; p * p];
            for i in 0..p {
                g[i * p + i] = 10.0;
            }
            model.laplace = Some(
                LaplaceStats {
                    gram: g,
                    features: p,
                    rss: 1.0,
                    points: 100.0,
                    outputs: 2,
                    theta_sq: 1.0,
                }
                .fit()
                .unwrap(),
            );
        }
        let pred = model
            .predict(t3(x.clone(), [b, 1, h * w]), &[h, w], s, 9, 0, 64)
            .unwrap();
        let d = b * 2 * h * w;
        assert_eq!(pred.samples.len(), s * d, "{kind:?}");
        assert_eq!((pred.mean.len(), pred.std.len()), (d, d));
        assert!(
            pred.samples
                .iter()
                .chain(&pred.mean)
                .chain(&pred.std)
                .all(|v| v.is_finite()),
            "{kind:?}"
        );
        let spread = pred.std.iter().map(|&v| f64::from(v)).sum::<f64>() / d as f64;
        if matches!(kind, Kind::Fno | Kind::Deeponet) {
            assert_eq!(spread, 0.0, "{kind:?} must be deterministic");
        } else {
            assert!(spread > 0.0, "{kind:?} must have spread");
        }
        // Same seed, same draws; another seed, other draws (for stochastic kinds).
        let again = model
            .predict(t3(x.clone(), [b, 1, h * w]), &[h, w], s, 9, 0, 64)
            .unwrap();
        assert!(
            pred == again,
            "{kind:?}: the same seed gave different draws"
        );
        // Draws depend on the seed (a plain ensemble's draws are its members: seed-free).
        if model.is_stochastic() && kind != Kind::Ensemble {
            let other = model
                .predict(t3(x.clone(), [b, 1, h * w]), &[h, w], s, 10, 0, 64)
                .unwrap();
            assert!(
                pred.samples != other.samples,
                "{kind:?}: another seed gave the same draws"
            );
        }
        // Row 1 predicted alone (first_row = 1) equals row 1 of the batch: batch invariance.
        let one = model
            .predict(
                t3(x[h * w..2 * h * w].to_vec(), [1, 1, h * w]),
                &[h, w],
                s,
                9,
                1,
                64,
            )
            .unwrap();
        let per = 2 * h * w;
        for k in 0..s {
            let a = &pred.samples[k * d + per..k * d + 2 * per];
            let bb = &one.samples[k * per..(k + 1) * per];
            let diff = a
                .iter()
                .zip(bb)
                .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(
                diff < 1e-5,
                "{kind:?}: draw {k} differs by {diff} when predicted alone"
            );
        }
        let q = pred.quantiles(&[0.05, 0.5, 0.95]);
        assert!(
            (0..d).all(|i| q[i] <= q[d + i] && q[d + i] <= q[2 * d + i]),
            "{kind:?}: quantiles not ordered"
        );
    }
}

#[test]
fn fno_predicts_at_other_resolutions_and_1d() {
    let spec = cfg("pno_d").validate(1, 1, &[16, 16]).unwrap();
    let m = spec.init(0, &device());
    let p = m
        .predict(
            t3(random(2 * 32 * 32, 1), [2, 1, 32 * 32]),
            &[32, 32],
            4,
            0,
            0,
            64,
        )
        .unwrap();
    assert_eq!(p.mean.len(), 2 * 32 * 32);
    let mut c1 = cfg("pno_r");
    c1.n_modes = Some(vec![8]);
    let m1 = c1.validate(2, 1, &[64]).unwrap().init(0, &device());
    let p1 = m1
        .predict(t3(random(3 * 2 * 64, 2), [3, 2, 64]), &[64], 5, 0, 0, 64)
        .unwrap();
    assert_eq!(p1.samples.len(), 5 * 3 * 64);
    // Wrong channel count is an error, not a panic.
    let err = m1
        .predict(t3(random(3 * 64, 2), [3, 1, 64]), &[64], 5, 0, 0, 64)
        .unwrap_err();
    assert!(matches!(err, ModelError::Input { .. }), "{err}");
}

#[test]
fn weights_round_trip_by_name() {
    let spec = cfg("ensemble").validate(1, 1, &[8, 8]).unwrap();
    let a = spec.init(1, &device());
    let b = spec.init(2, &device());
    let x = t3(random(64, 5), [1, 1, 64]);
    let pa = a.predict(x.clone(), &[8, 8], 5, 0, 0, 64).unwrap();
    let pb = b.predict(x.clone(), &[8, 8], 5, 0, 0, 64).unwrap();
    assert_ne!(pa, pb);
    let t = named_tensors(&a);
    assert!(
        t.contains_key("members.4.fno.blocks.1.spectral.weight_re"),
        "{:?}",
        t.keys().take(5).collect::<Vec<_>>()
    );
    let b = load_named(b, &t).unwrap();
    assert_eq!(b.predict(x, &[8, 8], 5, 0, 0, 64).unwrap(), pa);
    // A shape mismatch, a missing tensor and a NaN are refused with the tensor named.
    let mut bad = t.clone();
    bad.get_mut("members.0.fno.lifting.fc1.bias").unwrap().shape = vec![3];
    let e = load_named(spec.init(0, &device()), &bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("members.0.fno.lifting.fc1.bias"), "{e}");
    let mut missing = t.clone();
    missing.remove("members.1.fno.projection.fc2.weight");
    assert!(
        load_named(spec.init(0, &device()), &missing)
            .unwrap_err()
            .to_string()
            .contains("missing")
    );
    let mut nan = t;
    nan.get_mut("members.2.fno.blocks.0.skip.weight")
        .unwrap()
        .values[3] = f32::NAN;
    assert!(
        load_named(spec.init(0, &device()), &nan)
            .unwrap_err()
            .to_string()
            .contains("finite")
    );
}

#[test]
fn config_errors_name_the_key() {
    let check = |c: ModelConfig, key: &str| {
        let e = c.validate(1, 1, &[16, 16]).unwrap_err().to_string();
        assert!(e.contains(key), "{e} should name {key}");
    };
    check(
        ModelConfig {
            kind: Some("gp".into()),
            ..Default::default()
        },
        "model.kind",
    );
    check(
        ModelConfig {
            n_modes: Some(vec![32, 8]),
            ..Default::default()
        },
        "model.n_modes",
    );
    check(
        ModelConfig {
            n_modes: Some(vec![8]),
            ..Default::default()
        },
        "model.n_modes",
    );
    check(
        ModelConfig {
            kind: Some("pno_d".into()),
            dropout: Some(1.5),
            ..Default::default()
        },
        "model.dropout",
    );
    check(
        ModelConfig {
            kind: Some("fno".into()),
            n_members: Some(3),
            ..Default::default()
        },
        "model.n_members",
    );
    check(
        ModelConfig {
            kind: Some("pno_r".into()),
            train_samples: Some(1),
            ..Default::default()
        },
        "model.train_samples",
    );
    check(
        ModelConfig {
            kind: Some("fno".into()),
            noise: Some("white".into()),
            ..Default::default()
        },
        "model.noise",
    );
    check(
        ModelConfig {
            hidden_channels: Some(0),
            ..Default::default()
        },
        "model.hidden_channels",
    );
    // Unknown keys in the raw table are refused by serde with the key named.
    let e = serde_json::from_value::<ModelConfig>(serde_json::json!({"widht": 3}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("widht"), "{e}");
}

#[test]
fn laplace_evidence_recovers_the_noise_level_of_a_linear_model() {
    // y = θᵀφ + σ ε with σ = 0.3 over 4000 points and 6 features: the evidence maximiser
    // finds σ within a few percent.
    let (n, p, sigma) = (4000usize, 6usize, 0.3f64);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let theta: Vec<f64> = (0..p).map(|i| 0.5 - i as f64 * 0.2).collect();
    let mut g = vec![0.0; p * p];
    let mut rss = 0.0;
    for _ in 0..n {
        let phi: Vec<f64> = (0..p)
            .map(|i| {
                if i + 1 == p {
                    1.0
                } else {
                    StandardNormal.sample(&mut rng)
                }
            })
            .collect();
        let e: f64 = StandardNormal.sample(&mut rng);
        rss += (sigma * e).powi(2);
        for i in 0..p {
            for j in 0..p {
                g[i * p + j] += phi[i] * phi[j];
            }
        }
        let _ = theta.iter().zip(&phi).map(|(a, b)| a * b).sum::<f64>();
    }
    let post = LaplaceStats {
        gram: g,
        features: p,
        rss,
        points: n as f64,
        outputs: 1,
        theta_sq: theta.iter().map(|t| t * t).sum(),
    }
    .fit()
    .unwrap();
    println!("sigma {} lambda {}", post.sigma_obs, post.prior_precision);
    assert!(
        (post.sigma_obs / sigma - 1.0).abs() < 0.05,
        "sigma {}",
        post.sigma_obs
    );
    assert!(post.prior_precision > 0.0 && post.prior_precision.is_finite());
}

#[test]
fn correlated_noise_has_unit_variance_and_the_gaussian_correlation() {
    // 400 fields of 64 points, length 0.1: pointwise variance ≈ 1 and the lag-k correlation
    // ≈ exp(−(k/64)² / (2·0.1²)) (the kernel is truncated at 3σ, so small lags are exact).
    use pno_models::noise::Noise;
    let (rows, n, len) = (400usize, 64usize, 0.1f64);
    let mut noise = Noise::new(7, 0, 0, rows);
    let v = crate::host(noise.correlated(1, &[n], len, &device()));
    let mut var = 0.0f64;
    let mut cov = [0.0f64; 4];
    for r in 0..rows {
        let f = &v[r * n..(r + 1) * n];
        for i in 0..n {
            var += f64::from(f[i]).powi(2);
            for (k, c) in cov.iter_mut().enumerate() {
                *c += f64::from(f[i]) * f64::from(f[(i + 2 * k + 2) % n]);
            }
        }
    }
    let m = (rows * n) as f64;
    var /= m;
    assert!((var - 1.0).abs() < 0.05, "variance {var}");
    for (k, c) in cov.iter().enumerate() {
        let lag = (2 * k + 2) as f64 / n as f64;
        let want = (-lag * lag / (2.0 * len * len)).exp();
        let got = c / m / var;
        assert!((got - want).abs() < 0.05, "lag {lag}: {got} vs {want}");
    }
}

#[test]
fn variational_kl_matches_the_closed_form() {
    // One layer with every posterior std = σ0 and known means: KL = Σ [ln(s/σ0) + (σ0² + μ²)/(2s²) − ½].
    use pno_models::burn::tensor::Tensor;
    use pno_models::init::Init;
    use pno_models::spectral::SpectralConv;
    let sigma0 = 0.05;
    let conv = SpectralConv::new(&mut Init::new(2), 2, 3, &[4], Some(sigma0), &device());
    let prior = 0.3;
    let kl: Tensor<1> = conv.kl(prior).unwrap();
    let got = f64::from(crate::host(kl)[0]);
    let mut want = 0.0;
    for w in [
        conv.weight_re.as_ref().unwrap().val(),
        conv.weight_im.as_ref().unwrap().val(),
    ] {
        for mu in crate::host(w) {
            let mu = f64::from(mu);
            want +=
                (prior / sigma0).ln() + (sigma0 * sigma0 + mu * mu) / (2.0 * prior * prior) - 0.5;
        }
    }
    assert!((got - want).abs() < 1e-4 * want.abs(), "{got} vs {want}");
}

#[test]
fn factorized_spectral_weights_work_for_every_fno_kind_and_train() {
    use pno_models::burn::module::Module;
    let (b, h, w, s) = (2, 8, 6, 4);
    let x = random(b * h * w, 7);
    let y = random(b * 2 * h * w, 8);
    for f in ["tucker", "cp"] {
        for kind in Kind::ALL {
            if kind == Kind::Deeponet {
                continue;
            }
            let mut c = cfg(kind.name());
            c.factorization = Some(f.into());
            c.rank = Some(0.5);
            let spec = c.validate(1, 2, &[h, w]).unwrap();
            let dense = cfg(kind.name()).validate(1, 2, &[h, w]).unwrap();
            let dev = device().autodiff();
            let model = spec.init(3, &dev);
            assert!(
                num_params(&model) < num_params(&dense.init(3, &device())),
                "{f} {kind:?}: a rank-0.5 factorisation must be smaller than dense"
            );
            let names = named_tensors(&model);
            assert!(
                names.contains_key("members.0.fno.blocks.1.spectral.factorized.core_re"),
                "{f} {kind:?}: {:?}",
                names.keys().collect::<Vec<_>>()
            );
            assert!(
                !names.keys().any(|k| k.ends_with("spectral.weight_re")),
                "{f} {kind:?}: dense weights kept beside the factors"
            );
            // A training forward and backward: every factor of every spectral layer gets a
            // finite, non-zero gradient.
            let grads = squared_error_grads(&model, &dev, &x, &y, [b, h, w]);
            let net = model.members[0].fno.as_ref().unwrap();
            for block in &net.blocks {
                let fw = block.spectral.factorized.as_ref().unwrap();
                for p in fw.factors_re.iter().chain(&fw.factors_im) {
                    let g = crate::host(p.val().grad(&grads).unwrap());
                    assert!(g.iter().all(|v| v.is_finite()), "{f} {kind:?}");
                    assert!(g.iter().any(|v| *v != 0.0), "{f} {kind:?}: zero gradient");
                }
                let g = crate::host(fw.core_re.val().grad(&grads).unwrap());
                assert!(g.iter().any(|v| *v != 0.0), "{f} {kind:?}: core gradient");
            }
            if kind == Kind::Laplace {
                continue; // predicts only with a fitted posterior (tested above)
            }
            // Prediction contract on the plain device, weights carried over by name.
            let plain =
                load_named(spec.init(0, &device()), &named_tensors(&model.valid())).unwrap();
            let pred = plain
                .predict(t3(x.clone(), [b, 1, h * w]), &[h, w], s, 9, 0, 64)
                .unwrap();
            assert!(pred.samples.iter().all(|v| v.is_finite()), "{f} {kind:?}");
            let spread: f32 = pred.std.iter().sum();
            assert_eq!(spread > 0.0, plain.is_stochastic(), "{f} {kind:?}");
        }
    }
}

#[test]
fn factorized_variational_kl_matches_the_closed_form_on_the_core() {
    use pno_models::burn::tensor::Tensor;
    use pno_models::factorized::Factorization;
    use pno_models::init::Init;
    use pno_models::spectral::SpectralConv;
    // The posterior sits on the core with std σ0·s/std_dense and the prior is rescaled the same
    // way: KL = Σ_core [ln(p/σ) + (σ² + μ²)/(2p²) − ½] with p = prior·s/std_dense.
    let (sigma0, prior) = (0.05, 0.3);
    let conv = SpectralConv::with_factorization(
        &mut Init::new(2),
        2,
        3,
        &[4, 4],
        Some(Factorization::Tucker { rank: 0.6 }),
        Some(sigma0),
        &device(),
    );
    let f = conv.factorized.as_ref().unwrap();
    let std_dense = (2.0f64 / 5.0).sqrt();
    let (sig, p) = (sigma0 * f.scale / std_dense, prior * f.scale / std_dense);
    let kl: Tensor<1> = conv.kl(prior).unwrap();
    let got = f64::from(crate::host(kl)[0]);
    let mut want = 0.0;
    for mu in crate::host(f.core_re.val())
        .into_iter()
        .chain(crate::host(f.core_im.val()))
    {
        let mu = f64::from(mu);
        want += (p / sig).ln() + (sig * sig + mu * mu) / (2.0 * p * p) - 0.5;
    }
    assert!((got - want).abs() < 1e-4 * want.abs(), "{got} vs {want}");
}

#[test]
fn factorization_config_errors_name_the_key() {
    let check = |c: ModelConfig, key: &str, what: &str| {
        let e = c.validate(1, 1, &[16, 16]).unwrap_err().to_string();
        assert!(
            e.contains(key) && e.contains(what),
            "{e} should name {key} and {what}"
        );
    };
    let with = |f: Option<&str>, r: Option<f64>| ModelConfig {
        factorization: f.map(Into::into),
        rank: r,
        ..cfg("fno")
    };
    check(with(Some("tt"), None), "model.factorization", "tucker");
    check(with(None, Some(0.5)), "model.rank", "only with");
    check(with(Some("tucker"), Some(0.0)), "model.rank", "(0, 1]");
    check(with(Some("cp"), Some(1.5)), "model.rank", "(0, 1]");
    check(with(Some("cp"), Some(f64::NAN)), "model.rank", "(0, 1]");
    let mut d = without_fno_keys(with(Some("tucker"), Some(0.5)));
    d.kind = Some("ensemble".into());
    d.backbone = Some("deeponet".into());
    check(d, "model.factorization", "fno backbone");
}

#[test]
fn block_mlp_matches_neuraloperator_and_is_wired_as_its_fno_block() {
    use pno_models::burn::module::Param;
    use pno_models::burn::tensor::Tensor;
    use pno_models::burn::tensor::activation::gelu;
    use pno_models::fno::Pass;
    // neuraloperator 0.3.0's FNO(n_modes=(16,16), hidden_channels=32, projection_channels=64,
    // use_mlp=True, mlp_dropout=0.1) on the small Darcy files has 1,199,713 parameters
    // (../shared/peers/neuralop/darcy16_peer.json, "mc_dropout_fno", counted by torch): per block
    // a 32 → 16 → 32 MLP with biases and 32 soft-gating weights on top of the dense FNO.
    let darcy = |use_mlp: Option<bool>| ModelConfig {
        kind: Some("mc_dropout".into()),
        hidden_channels: Some(32),
        n_layers: Some(4),
        n_modes: Some(vec![16, 16]),
        lifting_channels: Some(256),
        projection_channels: Some(64),
        dropout: Some(0.0),
        fourier_dropout: Some(0.0),
        use_mlp,
        mlp_dropout: use_mlp.map(|_| 0.1),
        ..Default::default()
    };
    let count =
        |c: ModelConfig| num_params(&c.validate(1, 1, &[16, 16]).unwrap().init(0, &device()));
    assert_eq!(count(darcy(Some(true))), 1_199_713);
    assert_eq!(
        count(ModelConfig {
            mlp_expansion: Some(1.0),
            ..darcy(Some(true))
        }),
        1_195_297 + 4 * (2 * (32 * 32 + 32) + 32)
    );
    // Without it, an MC-dropout model with no dropout anywhere is refused, naming the key.
    let e = darcy(None)
        .validate(1, 1, &[16, 16])
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.dropout"), "{e}");

    // Wiring: the network's forward equals neuraloperator's block composition written out
    // with the model's own layers, `fc2(gelu(fc1(gelu(spectral(x) + skip(x))))) + g ⊙ x`, GELU
    // between blocks and none after the last.
    let (b, h, w) = (2, 8, 6);
    let mut c = cfg("fno");
    c.use_mlp = Some(true);
    let spec = c.validate(1, 1, &[h, w]).unwrap();
    let mut model = spec.init(4, &device());
    let net = model.members[0].fno.as_mut().unwrap();
    for (i, block) in net.blocks.iter_mut().enumerate() {
        // Gates away from their initial ones, so a missing or misplaced gate shows.
        block.mlp_gate = Some(Param::from_tensor(Tensor::from_data(
            pno_models::burn::tensor::TensorData::new(random(8, 20 + i as u64), [8]),
            &device(),
        )));
    }
    let net = model.members[0].fno.as_ref().unwrap();
    let x = t3(random(b * h * w, 6), [b, 1, h * w]);
    let out = crate::host(
        net.forward(x.clone(), &[h, w], &mut Pass::deterministic())
            .mean,
    );
    let g = pno_models::fno::grid_channels(&[h, w], &device());
    let xin = Tensor::cat(vec![x.clone(), g.expand([b, 2, h * w])], 1);
    let mut z = net.lifting.forward(xin.clone(), None);
    for (i, block) in net.blocks.iter().enumerate() {
        let mlp = block.mlp.as_ref().unwrap();
        let y =
            gelu(block.spectral.forward(z.clone(), &[h, w], None) + block.skip.forward(z.clone()));
        let y = mlp.fc2.as_ref().unwrap().forward(gelu(mlp.fc1.forward(y)))
            + z * block.mlp_gate.as_ref().unwrap().val().reshape([1, -1, 1]);
        z = if i + 1 < net.blocks.len() { gelu(y) } else { y };
    }
    let manual = crate::host(net.projection.forward(z, None));
    let diff = out
        .iter()
        .zip(&manual)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff < 1e-5, "block MLP wiring differs by {diff}");

    // Invariant: with the MLPs' last layers zero and the gates one, every block passes its input
    // through (then GELU between blocks), so the network is projection ∘ GELU^(layers-1) ∘
    // lifting whatever the spectral weights.
    let mut model = spec.init(4, &device());
    let net = model.members[0].fno.as_mut().unwrap();
    for block in net.blocks.iter_mut() {
        let fc2 = block.mlp.as_mut().unwrap().fc2.as_mut().unwrap();
        fc2.weight = Param::from_tensor(Tensor::zeros([8, 4], &device()));
        fc2.bias = Some(Param::from_tensor(Tensor::zeros([8], &device())));
    }
    let net = model.members[0].fno.as_ref().unwrap();
    let out = crate::host(net.forward(x, &[h, w], &mut Pass::deterministic()).mean);
    let mut z = net.lifting.forward(xin, None);
    for _ in 1..net.blocks.len() {
        z = gelu(z);
    }
    let manual = crate::host(net.projection.forward(z, None));
    let diff = out
        .iter()
        .zip(&manual)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff < 1e-5, "identity blocks differ by {diff}");
}

#[test]
fn block_mlp_dropout_is_seeded_batch_invariant_and_every_fno_kind_trains_it() {
    let (b, h, w, s) = (2, 8, 6, 5);
    let x = random(b * h * w, 7);
    let y = random(b * 2 * h * w, 8);
    // Dropout only inside the block MLPs: MC dropout has spread, seeded and batch invariant.
    let mut c = cfg("mc_dropout");
    c.dropout = Some(0.0);
    c.fourier_dropout = Some(0.0);
    c.use_mlp = Some(true);
    c.mlp_dropout = Some(0.3);
    let model = c.validate(1, 2, &[h, w]).unwrap().init(1, &device());
    let pred = model
        .predict(t3(x.clone(), [b, 1, h * w]), &[h, w], s, 9, 0, 64)
        .unwrap();
    assert!(
        pred.std.iter().any(|&v| v > 0.0),
        "block-MLP dropout gave no spread"
    );
    let again = model
        .predict(t3(x.clone(), [b, 1, h * w]), &[h, w], s, 9, 0, 64)
        .unwrap();
    assert!(pred == again);
    let one = model
        .predict(t3(x[h * w..].to_vec(), [1, 1, h * w]), &[h, w], s, 9, 1, 64)
        .unwrap();
    let (d, per) = (b * 2 * h * w, 2 * h * w);
    for k in 0..s {
        let diff = pred.samples[k * d + per..k * d + 2 * per]
            .iter()
            .zip(&one.samples[k * per..(k + 1) * per])
            .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            diff < 1e-5,
            "draw {k} differs by {diff} when predicted alone"
        );
    }
    // Every FNO kind builds it, names it, and trains it: a finite, non-zero gradient on both
    // MLP layers and on the gate of every block.
    for kind in Kind::ALL {
        if kind == Kind::Deeponet {
            continue;
        }
        let mut c = cfg(kind.name());
        c.use_mlp = Some(true);
        let dev = device().autodiff();
        let model = c.validate(1, 2, &[h, w]).unwrap().init(3, &dev);
        let names = named_tensors(&model);
        for n in [
            "blocks.1.mlp.fc1.weight",
            "blocks.1.mlp.fc2.bias",
            "blocks.1.mlp_gate",
        ] {
            assert!(
                names.contains_key(&format!("members.0.fno.{n}")),
                "{kind:?}: no {n} in {:?}",
                names.keys().collect::<Vec<_>>()
            );
        }
        let grads = squared_error_grads(&model, &dev, &x, &y, [b, h, w]);
        for block in &model.members[0].fno.as_ref().unwrap().blocks {
            let mlp = block.mlp.as_ref().unwrap();
            for g in [
                crate::host(mlp.fc1.weight.val().grad(&grads).unwrap()),
                crate::host(mlp.fc2.as_ref().unwrap().weight.val().grad(&grads).unwrap()),
                crate::host(block.mlp_gate.as_ref().unwrap().val().grad(&grads).unwrap()),
            ] {
                assert!(g.iter().all(|v| v.is_finite()), "{kind:?}");
                assert!(g.iter().any(|v| *v != 0.0), "{kind:?}: zero gradient");
            }
        }
    }
}

#[test]
fn block_mlp_config_errors_name_the_key() {
    let check = |c: ModelConfig, key: &str, what: &str| {
        let e = c.validate(1, 1, &[16, 16]).unwrap_err().to_string();
        assert!(
            e.contains(key) && e.contains(what),
            "{e} should name {key} and {what}"
        );
    };
    let with = |u: Option<bool>, e: Option<f64>, p: Option<f64>| ModelConfig {
        use_mlp: u,
        mlp_expansion: e,
        mlp_dropout: p,
        ..cfg("pno_d")
    };
    check(
        with(None, Some(0.5), None),
        "model.mlp_expansion",
        "use_mlp = true",
    );
    check(
        with(Some(false), None, Some(0.1)),
        "model.mlp_dropout",
        "use_mlp = true",
    );
    check(
        with(Some(true), Some(0.0), None),
        "model.mlp_expansion",
        "(0, 16]",
    );
    check(
        with(Some(true), Some(f64::NAN), None),
        "model.mlp_expansion",
        "(0, 16]",
    );
    check(
        with(Some(true), None, Some(1.0)),
        "model.mlp_dropout",
        "[0, 1)",
    );
    let mut d = without_fno_keys(with(Some(true), None, None));
    d.kind = Some("deeponet".into());
    check(d, "model.use_mlp", "fno backbone");
}

#[test]
fn rows_of_different_seeds_in_one_pass_get_their_own_draws() {
    // Dynamic batching: request A (seed 9, rows 0..2) and request B (seed 4, row 0) in one pass
    // give each exactly the draws it gets alone, for every kind whose rows draw independently.
    let (h, w, s) = (8, 6, 4);
    let xa = random(2 * h * w, 31);
    let xb = random(h * w, 32);
    let both: Vec<f32> = xa.iter().chain(&xb).copied().collect();
    for kind in Kind::ALL {
        let mut c = cfg(kind.name());
        if kind == Kind::Deeponet {
            c = without_fno_keys(c);
        }
        let model = c.validate(1, 2, &[h, w]).unwrap().init(5, &device());
        let rows = [(9, 0), (9, 1), (4, 0)];
        if model.shares_draws_across_rows() {
            let e = model
                .predict_rows(t3(both.clone(), [3, 1, h * w]), &[h, w], s, &rows, 64, None)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("rows") && e.contains("one seed"),
                "{kind:?}: {e}"
            );
            continue;
        }
        let joint = model
            .predict_rows(t3(both.clone(), [3, 1, h * w]), &[h, w], s, &rows, 64, None)
            .unwrap();
        let a = model
            .predict(t3(xa.clone(), [2, 1, h * w]), &[h, w], s, 9, 0, 64)
            .unwrap();
        let b = model
            .predict(t3(xb.clone(), [1, 1, h * w]), &[h, w], s, 4, 0, 64)
            .unwrap();
        let per = 2 * h * w;
        for k in 0..s {
            let j = &joint.samples[k * 3 * per..(k + 1) * 3 * per];
            let alone: Vec<f32> = a.samples[k * 2 * per..(k + 1) * 2 * per]
                .iter()
                .chain(&b.samples[k * per..(k + 1) * per])
                .copied()
                .collect();
            let diff = j
                .iter()
                .zip(&alone)
                .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(
                diff < 1e-5,
                "{kind:?}: draw {k} differs by {diff} in a shared pass"
            );
        }
        // A different seed for B changes B's draws (for kinds with seeded draws) and not A's.
        if model.is_stochastic() && kind != Kind::Ensemble {
            let other = model
                .predict_rows(
                    t3(both.clone(), [3, 1, h * w]),
                    &[h, w],
                    s,
                    &[(9, 0), (9, 1), (5, 0)],
                    64,
                    None,
                )
                .unwrap();
            assert_eq!(
                other.samples[..2 * per],
                joint.samples[..2 * per],
                "{kind:?}"
            );
            assert_ne!(
                other.samples[2 * per..3 * per],
                joint.samples[2 * per..3 * per],
                "{kind:?}"
            );
        }
    }
}
