"""From a notebook: generate Darcy data, train with the CLI, predict from Python, plot reliability.

Run it as a script (the Python tests execute it): ``python walkthrough.py OUT_DIR [PNO_BIN]``.
Each block is a notebook cell.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np

import pno

out = Path(sys.argv[1] if len(sys.argv) > 1 else "walkthrough")
pno_bin = sys.argv[2] if len(sys.argv) > 2 else "pno"
out.mkdir(parents=True, exist_ok=True)

# 1. Data: 128 Darcy problems on 16×16 from the built-in solver (the same numbers as
#    `pno generate darcy --resolution 16 --n 128 --seed 0`), written as a dataset the CLI trains on.
data = pno.generate("darcy", n=128, seed=0, resolution=16)
print({k: v.shape for k, v in data.items()})
np.savez(out / "darcy16.npz", x=data["x"], y=data["y"])

# 2. Train a small MC-dropout FNO with the CLI (the same run folder the server serves).
root = Path(__file__).resolve().parents[2]
run_dir = out / "run"
subprocess.run([pno_bin, "train", "--config", str(root / "configs/darcy16_mc_dropout.toml"),
                "--data", str(out / "darcy16.npz"), "--out", str(run_dir), "--quiet",
                "--set", "train.epochs=20", "--set", "data.n_test=16",
                "--set", "model.hidden_channels=8", "--set", "model.n_modes=[6, 6]"],
               check=True)

# 3. Predict the held-out samples from Python and score them.
run = pno.Run(run_dir)
x, y = data["x"][-16:], data["y"][-16:]
pred = run.predict(x, n_samples=64, seed=0)
print(run)
print("rel-L2", pno.rel_l2(pred["mean"], y), "CRPS", pno.crps_ensemble(pred["samples"], y),
      "coverage@90", pno.coverage(pred["samples"], y, 0.9))

# 4. Reliability diagram: observed coverage of central intervals against their level.
levels = np.linspace(0.05, 0.95, 10)
observed = [pno.coverage(pred["samples"], y, float(level)) for level in levels]
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, ax = plt.subplots(figsize=(4, 4))
ax.plot([0, 1], [0, 1], "k--", lw=1, label="ideal")
ax.plot(levels, observed, "o-", label=run.metadata["model"]["kind"])
ax.set_xlabel("nominal level")
ax.set_ylabel("observed coverage")
ax.legend()
fig.tight_layout()
fig.savefig(out / "reliability.png", dpi=100)
print("wrote", out / "reliability.png")
