"""neuraloperator 0.3.0's TFNO on its own Darcy files, over several seeds (issue 17).

The shared peer `fno_darcy_peer.py` trains every model with seed 0 only, so its TFNO row is one
draw from the seed distribution; this script reuses its recipe functions unchanged (the model
`build`, `train_one`: Adam 8e-3, weight decay 1e-4, cosine T_max 30, 20 epochs, batch 32, H1 loss
on normalised targets; `predict` and `point_metrics` in physical space) and runs them for each
seed, so our 3-seed mean can be set beside the peer's.

    OMP_WAIT_POLICY=PASSIVE python bench/peers/tfno_seeds.py PEER_DIR --seeds 0 1 2 > out.jsonl

PEER_DIR is the folder holding fno_darcy_peer.py and metric_oracle.py (../shared/peers/neuralop).
Needs torch, neuraloperator==0.3.0, wandb and torch_harmonics (0.3.0 imports both). Prints one
JSON line per seed, then a summary line.
"""
import argparse
import json
import os
import statistics
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("peer_dir")
ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
ap.add_argument("--kind", default="tfno")
ap.add_argument("--epochs", type=int, default=20)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
sys.path.insert(0, os.path.abspath(a.peer_dir))

import torch  # noqa: E402
import fno_darcy_peer as peer  # noqa: E402
from neuralop.datasets import load_darcy_flow_small  # noqa: E402

torch.set_num_threads(a.threads)
train_loader, test_loaders, dp = load_darcy_flow_small(
    n_train=1000, batch_size=32, test_resolutions=[16, 32], n_tests=[100, 50],
    test_batch_sizes=[32, 32], positional_encoding=True)
rows = []
for seed in a.seeds:
    t0 = time.perf_counter()
    model, ept, losses = peer.train_one(a.kind, seed, a.epochs, train_loader, dp, lambda s: None)
    train_s = time.perf_counter() - t0
    p16, y16 = peer.predict(model, test_loaders[16], dp)
    p32, y32 = peer.predict(model, test_loaders[32], dp)
    row = {"kind": a.kind, "seed": seed, "n_params": peer.nparams(model), "epochs": a.epochs,
           "train_s": train_s, "final_train_h1": losses[-1],
           "rel_l2_16": peer.point_metrics(p16, y16, dp)["rel_l2"],
           "rel_l2_32": peer.point_metrics(p32, y32, dp)["rel_l2"],
           "torch": torch.__version__, "threads": a.threads, "loadavg": os.getloadavg()}
    rows.append(row)
    print(json.dumps(row), flush=True)
summary = {"kind": a.kind, "seeds": a.seeds}
for k in ("rel_l2_16", "rel_l2_32", "train_s"):
    v = [r[k] for r in rows]
    summary[k] = {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0}
print(json.dumps({"summary": summary}), flush=True)
