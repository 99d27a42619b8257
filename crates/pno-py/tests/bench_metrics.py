"""Metric speed: pno (Rust, GIL released) against scoringrules and properscoring on the same
arrays, same machine, same run. Not a test; run by hand:

    PNO_BENCH_N=1000 python crates/pno-py/tests/bench_metrics.py      # 1000 × 100 × 64²

Prints one JSON line per (metric, library) with the median of `repeats` runs in seconds, after
one warm-up call (numba compiles on first use). scoringrules runs its numba backend (its fastest);
properscoring uses numba when installed.
"""

import json
import os
import platform
import time

import numpy as np
import properscoring as ps
import scoringrules as sr

import pno

n = int(os.environ.get("PNO_BENCH_N", "100"))
m = int(os.environ.get("PNO_BENCH_M", "100"))
res = int(os.environ.get("PNO_BENCH_RES", "64"))
repeats = int(os.environ.get("PNO_BENCH_REPEATS", "3"))
rng = np.random.default_rng(0)
y = rng.normal(size=(n, 1, res, res)).astype(np.float32)
s = (y[None] + rng.normal(scale=0.5, size=(m, n, 1, res, res))).astype(np.float32)
mu, sd = s.mean(0), s.std(0) + 1e-3
# The competitors' layouts, prepared outside the timed region.
s_last = np.ascontiguousarray(np.moveaxis(s, 0, -1))          # [n, 1, r, r, m]
y_flat, s_es = y.reshape(n, -1), np.ascontiguousarray(np.moveaxis(s.reshape(m, n, -1), 0, 1))


def median(f):
    f()  # warm-up: numba compiles on the first call; caches are filled
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        v = f()
        t.append(time.perf_counter() - t0)
    return float(np.median(t)), float(np.mean(v))


cases = [
    ("crps_ensemble", "pno", lambda: pno.crps_ensemble(s, y)),
    ("crps_ensemble", "properscoring", lambda: ps.crps_ensemble(y, s_last)),
    ("crps_ensemble", "scoringrules", lambda: sr.crps_ensemble(y, s_last, estimator="nrg", backend="numba")),
    ("crps_fair", "pno", lambda: pno.crps_ensemble(s, y, fair=True)),
    ("crps_fair", "scoringrules", lambda: sr.crps_ensemble(y, s_last, estimator="fair", backend="numba")),
    ("crps_gaussian", "pno", lambda: pno.crps_gaussian(mu, sd, y)),
    ("crps_gaussian", "properscoring", lambda: ps.crps_gaussian(y, mu, sd)),
    ("crps_gaussian", "scoringrules", lambda: sr.crps_normal(y, mu, sd, backend="numba")),
    ("energy_score", "pno", lambda: pno.energy_score(s, y)),
    ("energy_score", "scoringrules", lambda: sr.es_ensemble(y_flat, s_es, m_axis=-2, v_axis=-1, estimator="fair", backend="numba")),
]
meta = {"n": n, "m": m, "res": res, "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count()}
for metric, lib, f in cases:
    secs, value = median(f)
    print(json.dumps({"metric": metric, "library": lib, "seconds": secs, "value": value, **meta}),
          flush=True)
