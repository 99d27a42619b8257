#!/usr/bin/env python3
"""Golden values for the drift statistics of pno-metrics (src/drift/), from scipy and numpy.

Run:
    python3 -m venv /tmp/venv
    /tmp/venv/bin/pip install numpy scipy
    /tmp/venv/bin/python gen_drift_golden.py   # writes drift_golden.json beside this file

Sections:
- ks_random: scipy.stats.ks_2samp(a, b) (method='auto', two-sided) on seeded normal samples, some
  with ties; every size <= 10000, so scipy's exact path.
- ks_grid: samples too large to store, rebuilt identically in Rust from (n1, n2, scale, shift):
  a = arange(n1)/n1, b = arange(n2)/n2*scale + shift. Cases above 10000 take scipy's asymptotic
  path (kstwo.sf at round(n1*n2/(n1+n2))); 'exact_p' is ks_2samp(method='exact') where feasible.
- kolmogorov_sf: scipy.stats.kstwo.sf(x, n) on a grid of n > 140 and z = x*sqrt(n).
- corrections: scipy.stats.false_discovery_control(p) (method='bh') and Bonferroni min(1, m*p).
- psi_quantile: numpy reference of PSI on reference-quantile bins (np.quantile linear, cuts
  deduplicated, bins (-inf,c1),[c1,c2),...,[c_{B-1},inf), fractions floored at 1e-4).
- mmd: numpy/scipy reference of the median-heuristic bandwidth (median of scipy pdist over the
  pooled rows) and the unbiased MMD^2 with k(a,b) = exp(-|a-b|^2 / (2 sigma^2)).
"""
import json
import pathlib
from importlib.metadata import version

import numpy as np
import scipy.stats as st
from scipy.spatial.distance import pdist, cdist

SEED = 20250305
rng = np.random.default_rng(SEED)
out = {}

# --- KS on stored samples ----------------------------------------------------------------------
cases = []
for n1, n2, loc, scale, decimals in [
    (1, 1, 0.0, 1.0, None),
    (5, 5, 1.0, 1.0, None),
    (7, 13, 0.5, 1.0, None),
    (40, 50, 0.4, 1.3, None),
    (64, 64, 0.0, 1.0, None),
    (100, 37, 0.6, 1.0, None),
    (60, 45, 0.2, 1.0, 1),      # ties: values rounded to 1 decimal
    (300, 250, 0.15, 1.0, None),
    (1000, 1200, 0.1, 1.0, None),
    (1000, 1000, 0.0, 1.0, 2),
]:
    a = rng.normal(size=n1)
    b = rng.normal(loc=loc, scale=scale, size=n2)
    if decimals is not None:
        a, b = np.round(a, decimals), np.round(b, decimals)
    r = st.ks_2samp(a, b)
    cases.append({"a": a.tolist(), "b": b.tolist(),
                  "statistic": float(r.statistic), "pvalue": float(r.pvalue)})
out["ks_random"] = cases

# --- KS on rebuilt grids (large samples) -------------------------------------------------------
grid = []
for n1, n2, scale, shift in [
    (6000, 9000, 1.0, 0.02),
    (8000, 8000, 1.0, 0.015),
    (12000, 15000, 1.0, 0.01),
    (12000, 15000, 1.0, 0.03),
    (30000, 20000, 1.0, 0.004),
    (30000, 20000, 1.0, 0.002),
    (20000, 11000, 1.05, 0.0),
    (20000, 100, 1.0, 0.1),
]:
    a = np.arange(n1) / n1
    b = np.arange(n2) / n2 * scale + shift
    r = st.ks_2samp(a, b)
    case = {"n1": n1, "n2": n2, "scale": scale, "shift": shift,
            "statistic": float(r.statistic), "pvalue": float(r.pvalue),
            "method": "exact" if max(n1, n2) <= 10000 else "asymptotic"}
    if min(n1, n2) <= 200:
        case["exact_p"] = float(st.ks_2samp(a, b, method="exact").pvalue)
    grid.append(case)
out["ks_grid"] = grid

# --- Kolmogorov distribution, large n ----------------------------------------------------------
ksf = []
for n in [141, 500, 5000, 100000]:
    for z in [0.3, 0.5, 0.8, 1.0, 1.2, 1.36, 1.5, 1.8, 2.5, 4.0]:
        x = z / np.sqrt(n)
        ksf.append({"n": n, "x": float(x), "sf": float(st.kstwo.sf(x, n))})
out["kolmogorov_sf"] = ksf

# --- multiple-testing corrections --------------------------------------------------------------
p = rng.uniform(size=20) ** 3
p[3] = p[7]          # a tie
p[5] = 0.0
p[11] = 1.0
p[13] = 0.04
out["corrections"] = {
    "p": p.tolist(),
    "bh": st.false_discovery_control(p).tolist(),
    "bonferroni": np.minimum(1.0, p * len(p)).tolist(),
}

# --- PSI on reference-quantile bins ------------------------------------------------------------
def psi_quantile(ref, cur, bins):
    cuts = np.unique(np.quantile(ref, [k / bins for k in range(1, bins)]))
    def frac(x):
        idx = np.searchsorted(cuts, x, side="right")
        c = np.bincount(idx, minlength=len(cuts) + 1)
        return np.maximum(c / len(x), 1e-4)
    e, a = frac(ref), frac(cur)
    return float(np.sum((a - e) * np.log(a / e))), cuts.tolist()

psi_cases = []
ref = rng.normal(size=500)
cur = rng.normal(loc=0.3, scale=1.2, size=400)
tied = np.round(rng.exponential(size=300), 1)
tied_cur = np.round(rng.exponential(scale=1.5, size=200), 1)
for r_, c_, bins in [(ref, cur, 10), (ref, cur, 4), (ref, ref[:250], 10), (tied, tied_cur, 10)]:
    v, cuts = psi_quantile(r_, c_, bins)
    psi_cases.append({"reference": r_.tolist(), "current": c_.tolist(), "bins": bins,
                      "psi": v, "cuts": cuts})
out["psi_quantile"] = psi_cases

# --- MMD ---------------------------------------------------------------------------------------
def mmd_reference(x, y):
    z = np.vstack([x, y])
    sigma = float(np.median(pdist(z)))
    g = 1.0 / (2 * sigma**2)
    kxx = np.exp(-g * cdist(x, x, "sqeuclidean"))
    kyy = np.exp(-g * cdist(y, y, "sqeuclidean"))
    kxy = np.exp(-g * cdist(x, y, "sqeuclidean"))
    n, m = len(x), len(y)
    mmd2 = ((kxx.sum() - np.trace(kxx)) / (n * (n - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean())
    return sigma, float(mmd2)

mmd_cases = []
for n, m, d, shift in [(30, 25, 4, 0.3), (12, 12, 1, 0.0), (40, 33, 6, 1.0)]:
    x = rng.normal(size=(n, d))
    y = rng.normal(loc=shift, size=(m, d))
    sigma, mmd2 = mmd_reference(x, y)
    mmd_cases.append({"x": x.ravel().tolist(), "y": y.ravel().tolist(), "d": d,
                      "bandwidth": sigma, "mmd2": mmd2})
out["mmd"] = mmd_cases

golden = {
    "seed": SEED,
    "versions": {p_: version(p_) for p_ in ["numpy", "scipy"]},
    "outputs": out,
}
path = pathlib.Path(__file__).with_name("drift_golden.json")
path.write_text(json.dumps(golden) + "\n")
print(f"wrote {path} ({path.stat().st_size} bytes)")
