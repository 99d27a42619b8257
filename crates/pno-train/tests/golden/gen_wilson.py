"""Golden Wilson score intervals for pno-train's coverage gate (crates/pno-train/src/gate.rs).

Independent reference: scipy.stats.binomtest(k, n).proportion_ci(confidence_level, method="wilson").
Run: python3 gen_wilson.py > wilson.json   (versions recorded in the output)
"""
import json

import scipy
from scipy.stats import binomtest

cases = []
for k, n, conf in [(72, 80, 0.99), (90, 100, 0.95), (0, 10, 0.95), (10, 10, 0.9),
                   (1, 3, 0.99), (4500, 5000, 0.999), (37, 50, 0.8)]:
    ci = binomtest(k, n).proportion_ci(confidence_level=conf, method="wilson")
    cases.append({"k": k, "n": n, "confidence": conf, "low": ci.low, "high": ci.high})
print(json.dumps({"scipy": scipy.__version__, "cases": cases}, indent=1))
