#!/usr/bin/env python3
"""Golden values for pno-metrics from independent Python libraries.

Run:
    python3 -m venv /work/.venv-metrics
    /work/.venv-metrics/bin/pip install scoringrules properscoring uncertainty-toolbox numpy scipy
    /work/.venv-metrics/bin/python gen_golden.py   # writes golden.json beside this file

Layouts match the Rust crate: targets/mean/std [N, D] row-major, samples samples-first [M, N, D].
Everything is written flattened; shapes are recorded.
"""
import json
import pathlib
from importlib.metadata import version

import numpy as np
import properscoring as ps
import scipy
import scipy.stats as st
import scoringrules as sr
import uncertainty_toolbox as uct
from uncertainty_toolbox import metrics_scoring_rule as uct_sr

SEED = 20250217
N, D, M = 5, 7, 9

rng = np.random.default_rng(SEED)
y = rng.normal(size=(N, D))
mean = y + rng.normal(scale=0.8, size=(N, D))
std = rng.uniform(0.3, 1.5, size=(N, D))
# draws: slightly under-dispersed around the mean, so calibration is imperfect
samples = mean[None] + 0.7 * std[None] * rng.normal(size=(M, N, D))
drift_a = rng.normal(size=40)
drift_b = rng.normal(loc=0.4, scale=1.3, size=50)
psi_edges = np.array([-1.5, -0.5, 0.0, 0.5, 1.5])

out = {}
# --- Gaussian prediction ---------------------------------------------------------------------
out["crps_gaussian"] = float(ps.crps_gaussian(y, mean, std).mean())
out["nll_gaussian"] = float(-st.norm.logpdf(y, mean, std).mean())
mf, sf, yf = mean.ravel(), std.ravel(), y.ravel()
out["ut_mace"] = float(uct.mean_absolute_calibration_error(mf, sf, yf))
out["ut_miscal_area"] = float(uct.miscalibration_area(mf, sf, yf))
out["ut_sharpness"] = float(uct.sharpness(sf))
out["ut_interval_score"] = float(uct_sr.interval_score(mf, sf, yf))
levels = [0.5, 0.8, 0.9, 0.95, 0.99]
z = {p: st.norm.ppf(0.5 + p / 2) for p in levels}
out["gauss_coverage"] = [float(np.mean((mean - z[p] * std < y) & (y < mean + z[p] * std))) for p in levels]
lo, hi = mean - z[0.9] * std, mean + z[0.9] * std
a = 0.1
wink = (hi - lo) + 2 / a * (lo - y) * (y < lo) + 2 / a * (y - hi) * (y > hi)
out["gauss_winkler_90"] = float(wink.mean())
out["gauss_width_90"] = float((hi - lo).mean())
out["gauss_pit"] = st.norm.cdf((y - mean) / std).ravel().tolist()

# --- ensemble prediction ---------------------------------------------------------------------
ens_last = np.moveaxis(samples, 0, -1)  # [N, D, M]
out["crps_ensemble_properscoring"] = float(ps.crps_ensemble(y, ens_last).mean())
out["crps_ensemble_sr_nrg"] = float(sr.crps_ensemble(y, ens_last, m_axis=-1, estimator="nrg").mean())
out["crps_ensemble_sr_fair"] = float(sr.crps_ensemble(y, ens_last, m_axis=-1, estimator="fair").mean())
ens_nmd = np.moveaxis(samples, 0, 1)  # [N, M, D]
out["energy_sr_nrg"] = float(sr.es_ensemble(y, ens_nmd, m_axis=-2, v_axis=-1, estimator="nrg").mean())
out["energy_sr_fair"] = float(sr.es_ensemble(y, ens_nmd, m_axis=-2, v_axis=-1, estimator="fair").mean())
smu = samples.mean(0)
ssd = samples.std(0, ddof=1)
out["nll_samples"] = float(-st.norm.logpdf(y, smu, np.clip(ssd, 1e-6, 1e6)).mean())
q = lambda p: np.quantile(samples, p, axis=0, method="linear")
out["sample_coverage"] = [float(np.mean((q(0.5 - p / 2) < y) & (y < q(0.5 + p / 2)))) for p in levels]
lo, hi = q(0.05), q(0.95)
wink = (hi - lo) + 2 / a * (lo - y) * (y < lo) + 2 / a * (y - hi) * (y > hi)
out["sample_winkler_90"] = float(wink.mean())
out["sample_width_90"] = float((hi - lo).mean())
exp_p = np.linspace(0, 1, 100)
obs_p = np.array([np.mean((q(0.5 - p / 2) <= y) & (y <= q(0.5 + p / 2))) for p in exp_p])
out["sample_mace_numpy"] = float(np.mean(np.abs(obs_p - exp_p)))
out["sample_miscal_area_ut"] = float(uct.metrics_calibration.miscalibration_area_from_proportions(exp_p, obs_p))
out["sample_sharpness"] = float(np.sqrt(np.mean(ssd**2)))
out["sample_spread_skill"] = float(np.sqrt((M + 1) / M * np.mean(ssd**2)) / np.sqrt(np.mean((smu - y) ** 2)))
out["sample_function_coverage_95"] = float(np.mean(np.all((q(0.025) < y) & (y < q(0.975)), axis=1)))

# --- point metrics of the sample mean (Domain::unit([D], 1): cell volume 1/D) -----------------
err = smu - y
out["rel_l2"] = float(np.mean(np.linalg.norm(err, axis=1) / np.linalg.norm(y, axis=1)))
out["mse"] = float(np.mean(err**2))
out["l2_abs_unit"] = float(np.mean(np.sqrt(1.0 / D) * np.linalg.norm(err, axis=1)))

# --- drift ---------------------------------------------------------------------------------
out["ks_2samp"] = float(st.ks_2samp(drift_a, drift_b).statistic)
def frac(x):
    c, _ = np.histogram(np.clip(x, psi_edges[0], psi_edges[-1]), bins=psi_edges)
    return np.maximum(c / len(x), 1e-4)
e_, a_ = frac(drift_a), frac(drift_b)
out["psi"] = float(np.sum((a_ - e_) * np.log(a_ / e_)))

golden = {
    "seed": SEED,
    "n": N, "d": D, "m": M,
    "versions": {p: version(p) for p in ["numpy", "scipy", "properscoring", "scoringrules", "uncertainty-toolbox"]},
    "inputs": {
        "target": y.ravel().tolist(),
        "mean": mean.ravel().tolist(),
        "std": std.ravel().tolist(),
        "samples": samples.ravel().tolist(),
        "drift_a": drift_a.tolist(),
        "drift_b": drift_b.tolist(),
        "psi_edges": psi_edges.tolist(),
    },
    "outputs": out,
}
path = pathlib.Path(__file__).with_name("golden.json")
path.write_text(json.dumps(golden, indent=1) + "\n")
print(f"wrote {path}")
