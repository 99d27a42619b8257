"""Data and prediction from Python equal the CLI's, number for number."""

import json
import subprocess

import numpy as np
import pytest

import pno
from conftest import run


def test_generate_equals_pno_generate(darcy):
    got = pno.generate("darcy", n=40, seed=3, resolution=16)
    want = pno.load(darcy)
    assert sorted(got) == sorted(want) == ["x", "y"]
    for k in got:
        assert got[k].dtype == np.float32
        assert np.array_equal(got[k], want[k]), k


def test_generate_refuses_bad_keys():
    with pytest.raises(ValueError, match="alpah"):
        pno.generate("darcy", n=2, resolution=16, alpah=2.0)
    with pytest.raises(ValueError, match="n"):
        pno.generate("heat", n=0)


def test_load_reads_numpy_files_and_check_reports(tmp_path, darcy):
    a = np.arange(2 * 1 * 8 * 8, dtype=np.float32).reshape(2, 1, 8, 8)
    np.save(tmp_path / "a.npy", a)
    assert np.array_equal(pno.load(tmp_path / "a.npy")["x"], a)
    r = pno.check(darcy)
    assert r["passed"] is True
    assert {c["name"] for c in r["checks"]} >= {"checksums", "finite", "leakage"}
    with pytest.raises(OSError):
        pno.load(tmp_path / "missing.npz")


def test_run_predict_equals_pno_predict(tmp_path, pno_bin, trained, darcy):
    out = tmp_path / "pred.npz"
    run(pno_bin, "predict", "--run", str(trained), "--input", str(darcy), "--samples", "6",
        "--seed", "11", "--out", str(out))
    cli = np.load(out)
    x = pno.load(darcy)["x"]
    r = pno.Run(trained)
    assert r.metadata["format"] == "pno-run-1"
    for batch in (16, 5):
        p = r.predict(x, n_samples=6, seed=11, batch=batch)
        for k in ("mean", "std", "samples", "quantiles"):
            assert np.array_equal(p[k], cli[k]), (k, batch)
    with pytest.raises(ValueError, match="x: expected"):
        r.predict(x[:, 0])
    with pytest.raises(ValueError, match="finite"):
        bad = x.copy()
        bad[0, 0, 0, 0] = np.nan
        r.predict(bad)
    with pytest.raises(OSError, match="model.json"):
        pno.Run(tmp_path)
