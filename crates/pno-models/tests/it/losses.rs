//! Every differentiable loss against its plain-array twin in pno-metrics, plus gradient checks.

use pno_metrics::{Domain, GaussianPred, SamplePred, Shape};
use pno_models::burn::tensor::{Tensor, TensorData};
use pno_models::losses::{self, LossGrid};

use crate::{device, host, random, t3};

fn scalar(t: Tensor<1>) -> f64 {
    f64::from(host(t)[0])
}

fn close(a: f64, b: f64, rel: f64) {
    assert!((a - b).abs() <= rel * b.abs().max(1e-12), "{a} vs {b}");
}

const B: usize = 3;
const C: usize = 2;
const H: usize = 8;
const W: usize = 6;

#[test]
fn point_losses_match_pno_metrics() {
    let d = C * H * W;
    let p = random(B * d, 1);
    let y = random(B * d, 2);
    let shape = Shape::new(B, d).unwrap();
    let grid = LossGrid {
        dims: vec![H, W],
        lengths: vec![1.0, 2.0],
        periodic: false,
    };
    let dom = Domain::new(&[H, W], &[1.0, 2.0], C, false).unwrap();
    let pt = || t3(p.clone(), [B, C, H * W]);
    let yt = || t3(y.clone(), [B, C, H * W]);
    close(
        scalar(losses::l2_abs(pt(), yt(), &grid)),
        pno_metrics::l2_abs(&p, &y, shape, &dom).unwrap(),
        1e-5,
    );
    close(
        scalar(losses::l2_rel(pt(), yt())),
        pno_metrics::rel_l2(&p, &y, shape).unwrap(),
        1e-5,
    );
    close(
        scalar(losses::h1_rel(pt(), yt(), &grid)),
        pno_metrics::h1_rel(&p, &y, shape, &dom).unwrap(),
        1e-5,
    );
    let periodic = LossGrid {
        periodic: true,
        ..grid
    };
    let pdom = Domain::new(&[H, W], &[1.0, 2.0], C, true).unwrap();
    close(
        scalar(losses::h1_rel(pt(), yt(), &periodic)),
        pno_metrics::h1_rel(&p, &y, shape, &pdom).unwrap(),
        1e-5,
    );
}

#[test]
fn gaussian_losses_match_pno_metrics() {
    let d = C * H * W;
    let mu = random(B * d, 3);
    let sd: Vec<f32> = random(B * d, 4).iter().map(|v| 0.2 + v.abs()).collect();
    let y = random(B * d, 5);
    let g = GaussianPred::new(&mu, &sd, B, d).unwrap();
    let m = || t3(mu.clone(), [B, C, H * W]);
    let s = || t3(sd.clone(), [B, C, H * W]);
    let yt = || t3(y.clone(), [B, C, H * W]);
    close(
        scalar(losses::gaussian_nll(m(), s(), yt())),
        pno_metrics::nll_gaussian(&g, &y).unwrap(),
        1e-5,
    );
    close(
        scalar(losses::crps_gaussian(m(), s(), yt())),
        pno_metrics::crps_gaussian(&g, &y).unwrap(),
        1e-4,
    );
}

#[test]
fn sample_losses_match_pno_metrics() {
    let d = C * H * W;
    for m in [2usize, 3, 5] {
        let x = random(m * B * d, 6 + m as u64);
        let y = random(B * d, 9);
        let sp = SamplePred::new(&x, m, B, d).unwrap();
        let xt = || Tensor::<4>::from_data(TensorData::new(x.clone(), [m, B, C, H * W]), &device());
        let yt = || t3(y.clone(), [B, C, H * W]);
        close(
            scalar(losses::crps_fair(xt(), yt())),
            pno_metrics::crps_fair(&sp, &y).unwrap(),
            1e-5,
        );
        let grid = LossGrid::unit(&[H, W]);
        let dom = Domain::unit(&[H, W], C).unwrap();
        let want = pno_metrics::energy_score(&sp, &y, &dom, pno_metrics::Estimator::Fair).unwrap();
        close(scalar(losses::energy_score(xt(), yt(), &grid)), want, 1e-5);
    }
}

#[test]
fn energy_score_gradient_matches_finite_differences() {
    // d ES / d x at one coordinate, autodiff vs central differences in f64 on the host formula.
    let (m, b, c, n) = (3, 2, 1, 16);
    let x = random(m * b * c * n, 21);
    let y = random(b * c * n, 22);
    let dev = device().autodiff();
    let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), [m, b, c, n]), &dev).require_grad();
    let yt = Tensor::<3>::from_data(TensorData::new(y.clone(), [b, c, n]), &dev);
    let grid = LossGrid::unit(&[n]);
    let loss = losses::energy_score(xt.clone(), yt, &grid);
    let grads = loss.backward();
    let g = host(xt.grad(&grads).unwrap());
    let dom = Domain::unit(&[n], c).unwrap();
    let es = |v: &[f32]| {
        let sp = SamplePred::new(v, m, b, c * n).unwrap();
        pno_metrics::energy_score(&sp, &y, &dom, pno_metrics::Estimator::Fair).unwrap()
    };
    for k in [0usize, 7, 40, 95] {
        let h = 1e-3f32;
        let mut up = x.clone();
        up[k] += h;
        let mut dn = x.clone();
        dn[k] -= h;
        let fd = (es(&up) - es(&dn)) / (2.0 * f64::from(h));
        assert!(
            (f64::from(g[k]) - fd).abs() < 2e-3 * fd.abs().max(0.05),
            "coord {k}: autodiff {} vs fd {fd}",
            g[k]
        );
    }
}

#[test]
fn crps_gaussian_tends_to_absolute_error_as_sigma_vanishes() {
    let mu = random(B * 4, 30);
    let y = random(B * 4, 31);
    let sd = vec![1e-6f32; B * 4];
    let got = scalar(losses::crps_gaussian(
        t3(mu.clone(), [B, 1, 4]),
        t3(sd, [B, 1, 4]),
        t3(y.clone(), [B, 1, 4]),
    ));
    let mae: f64 = mu
        .iter()
        .zip(&y)
        .map(|(a, b)| f64::from((a - b).abs()))
        .sum::<f64>()
        / (B * 4) as f64;
    close(got, mae, 1e-4);
}
