"""Shared fixtures: the `pno` binary (PNO_BIN, set by run.sh) and a tiny trained run."""

import os
import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def pno_bin() -> str:
    b = os.environ.get("PNO_BIN")
    if not b or not Path(b).exists():
        pytest.fail("PNO_BIN must point at a built `pno` binary (crates/pno-py/tests/run.sh sets it)")
    return b


def run(pno_bin: str, *args: str) -> str:
    r = subprocess.run([pno_bin, *args], capture_output=True, text=True)
    assert r.returncode == 0, f"pno {args} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="session")
def darcy(tmp_path_factory, pno_bin) -> Path:
    out = tmp_path_factory.mktemp("data") / "darcy16"
    run(pno_bin, "generate", "darcy", "--resolution", "16", "--n", "40", "--seed", "3",
        "--out", str(out), "--quiet")
    return out


@pytest.fixture(scope="session")
def trained(tmp_path_factory, pno_bin, darcy) -> Path:
    out = tmp_path_factory.mktemp("runs") / "mc"
    root = Path(__file__).resolve().parents[3]
    run(pno_bin, "train", "--config", str(root / "configs" / "darcy16_mc_dropout.toml"),
        "--data", str(darcy), "--out", str(out), "--quiet",
        "--set", "train.epochs=2", "--set", "data.n_test=8",
        "--set", "model.hidden_channels=8", "--set", "model.n_modes=[4, 4]",
        "--set", "model.lifting_channels=16", "--set", "model.projection_channels=16")
    return out
