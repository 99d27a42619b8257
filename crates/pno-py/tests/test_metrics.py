"""Metrics on numpy arrays against properscoring and scoringrules (1e-6 relative), and bad input."""

import numpy as np
import properscoring as ps
import pytest
import scoringrules as sr

import pno

RTOL = 1e-6


def data(dtype=np.float64, m=24, n=12, shape=(1, 6, 7), seed=0):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, *shape))
    s = y[None] * 0.9 + rng.normal(scale=0.6, size=(m, n, *shape)) + 0.1
    return s.astype(dtype), y.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_crps_matches_properscoring_and_scoringrules(dtype):
    s, y = data(dtype)
    s64, y64 = s.astype(np.float64), y.astype(np.float64)
    want = ps.crps_ensemble(y64, np.moveaxis(s64, 0, -1)).mean()
    assert pno.crps_ensemble(s, y) == pytest.approx(want, rel=RTOL)
    fair = sr.crps_ensemble(y64, s64, m_axis=0, estimator="fair").mean()
    assert pno.crps_ensemble(s, y, fair=True) == pytest.approx(fair, rel=RTOL)
    mu, sd = s64.mean(0), s64.std(0) + 0.05
    g = ps.crps_gaussian(y64, mu, sd).mean()
    assert pno.crps_gaussian(mu.astype(dtype), sd.astype(dtype), y) == pytest.approx(g, rel=1e-5)


def test_energy_score_matches_scoringrules():
    s, y = data()
    n = y.shape[0]
    ys, ss = y.reshape(n, -1), np.moveaxis(s.reshape(s.shape[0], n, -1), 0, 1)
    for fair, est in [(True, "fair"), (False, "nrg")]:
        want = sr.es_ensemble(ys, ss, m_axis=-2, v_axis=-1, estimator=est).mean()
        assert pno.energy_score(s, y, fair=fair) == pytest.approx(want, rel=RTOL)


def test_interval_metrics_and_pit_against_numpy():
    s, y = data(m=40)
    lo, hi = np.quantile(s, 0.05, axis=0), np.quantile(s, 0.95, axis=0)
    inside = ((y >= lo) & (y <= hi)).mean()
    assert pno.coverage(s, y, 0.9) == pytest.approx(inside, abs=1e-12)
    winkler = (hi - lo) + 2 / 0.1 * ((lo - y) * (y < lo) + (y - hi) * (y > hi))
    assert pno.interval_score(s, y, 0.9) == pytest.approx(winkler.mean(), rel=RTOL)
    p = pno.pit(s, y)
    assert p.shape == y.shape and np.all((p >= 0) & (p <= 1))
    # Interior PIT of a continuous target: the fraction of draws below it.
    frac = (s < y[None]).mean(0)
    assert np.abs(p - frac).max() <= 1.0 / s.shape[0] + 1e-12
    rel = np.mean(np.linalg.norm((s.mean(0) - y).reshape(len(y), -1), axis=1)
                  / np.linalg.norm(y.reshape(len(y), -1), axis=1))
    assert pno.rel_l2(s.mean(0), y) == pytest.approx(rel, rel=RTOL)
    r = pno.report(s, y)
    assert r["crps"] == pytest.approx(pno.crps_ensemble(s, y), rel=RTOL)
    assert r["coverage_90"] == pytest.approx(inside, abs=1e-12)
    assert 0 <= pno.calibration_error(s, y) <= 0.5
    assert np.isfinite(pno.nll(s, y))


def test_non_contiguous_input_gives_the_same_numbers():
    s, y = data()
    sf = np.asfortranarray(s)
    assert not sf.flags.c_contiguous
    assert pno.crps_ensemble(sf, y) == pno.crps_ensemble(s, y)
    assert pno.crps_ensemble(s[:, :, :, ::1, :], y) == pno.crps_ensemble(s, y)
    big = np.concatenate([s, s], axis=-1)[..., ::2]
    assert not big.flags.c_contiguous
    assert pno.coverage(big, y[..., ::1]) == pno.coverage(np.ascontiguousarray(big), y)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s, y: pno.crps_ensemble(s.astype(np.int64), y), "float32 or float64"),
        (lambda s, y: pno.crps_ensemble(s.tolist(), y), "numpy array"),
        (lambda s, y: pno.crps_ensemble(s, y[:3]), "samples"),
        (lambda s, y: pno.crps_ensemble(s[:, :, 0], y), "samples"),
        (lambda s, y: pno.crps_ensemble(np.where(s > 2.5, np.nan, s), y), "finite"),
        (lambda s, y: pno.crps_gaussian(y, y[:2], y), "one shape"),
        (lambda s, y: pno.rel_l2(y, y[..., :2]), "one shape"),
        (lambda s, y: pno.coverage(s, y, 1.5), "level"),
        (lambda s, y: pno.report(s[..., 0, 0], y[..., 0, 0]), "target"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    s, y = data()
    with pytest.raises(ValueError, match=message):
        call(s, y)
