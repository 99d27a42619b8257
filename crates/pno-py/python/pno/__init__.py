"""pno — probabilistic neural operators from Python.

The pno-physics-bench engine (Rust) behind a NumPy interface:

- data: :func:`generate` (the built-in PDE solvers, same values as ``pno generate``),
  :func:`load` (pno datasets, neuraloperator ``.pt``, PDEBench HDF5, ``.npy``/``.npz``) and
  :func:`check` (the data-quality gate);
- metrics on arrays: :func:`crps_ensemble`, :func:`crps_gaussian`, :func:`energy_score`,
  :func:`nll`, :func:`coverage`, :func:`interval_score`, :func:`calibration_error`,
  :func:`pit`, :func:`rel_l2` and :func:`report` (every metric of ``pno eval``);
- prediction: :class:`Run` loads a run folder written by ``pno train`` and predicts with the
  same numbers as ``pno predict`` for the same seed;
- serving: :mod:`pno.client` talks to ``pno serve`` (or use ``tritonclient``).

Arrays are float32 or float64; contiguous arrays are read without a copy and the work runs
with the GIL released. Shapes: draws ``samples[m, n, ...]`` against ``target[n, ...]``.
Bad input raises ``ValueError`` naming the argument.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Sequence

import numpy as np

from . import _engine

__version__ = _engine.__version__

__all__ = [
    "generate", "load", "check", "crps_ensemble", "crps_gaussian", "energy_score", "nll",
    "coverage", "interval_score", "calibration_error", "pit", "rel_l2", "report", "Run",
]


def _arr(name: str, a: Any) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(a).__name__}")
    if a.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name}: expected float32 or float64, got {a.dtype}")
    return a


def generate(pde: str, n: int = 16, seed: int = 0, resolution: Optional[int] = None,
             **params: Any) -> Dict[str, np.ndarray]:
    """Generate ``n`` samples of ``pde`` with the built-in solver.

    ``pde`` is one of darcy, burgers, navier_stokes, ks, heat, wave; ``params`` are the
    generator's config keys (as in ``configs/*.toml``, e.g. ``recipe="fno"``). Returns
    ``{name: float32 array [n, ...]}`` (``x``/``y`` pairs or a trajectory ``u``), byte for byte
    what ``pno generate PDE --n N --seed S`` writes.

    >>> d = generate("heat", n=2, seed=0, resolution=16)
    >>> sorted(d), d["u"].shape[0]
    (['u'], 2)
    """
    cfg = dict(params)
    if resolution is not None:
        cfg["resolution"] = int(resolution)
    return _engine.generate(pde, int(n), int(seed), json.dumps(cfg))


def load(path: "str | os.PathLike[str]") -> Dict[str, np.ndarray]:
    """Every tensor of a dataset the ``pno`` CLI reads, as float32 arrays."""
    return _engine.load(os.fspath(path))


def check(path: "str | os.PathLike[str]") -> Dict[str, Any]:
    """The data-quality gate (``pno data check``) as a dict with ``passed`` and every check."""
    return json.loads(_engine.check(os.fspath(path)))


def crps_ensemble(samples: np.ndarray, target: np.ndarray, fair: bool = False) -> float:
    """Mean ensemble CRPS over every point.

    ``fair=False`` equals properscoring's ``crps_ensemble`` / scoringrules' ``estimator="nrg"``;
    ``fair=True`` is the unbiased (fair) estimator. ``samples[m, n, ...]``, ``target[n, ...]``.
    """
    return _engine.crps_ensemble(_arr("samples", samples), _arr("target", target), fair)


def crps_gaussian(mean: np.ndarray, std: np.ndarray, target: np.ndarray) -> float:
    """Mean closed-form CRPS of ``N(mean, std²)`` (properscoring's ``crps_gaussian``)."""
    return _engine.crps_gaussian(_arr("mean", mean), _arr("std", std), _arr("target", target))


def energy_score(samples: np.ndarray, target: np.ndarray, fair: bool = True,
                 lengths: Optional[Sequence[float]] = None) -> float:
    """Mean energy score over functions.

    Each function (all trailing axes) is one vector; the norm is Euclidean (scoringrules'
    ``es_ensemble``) unless ``lengths`` gives a domain for the discretised L² norm.
    """
    return _engine.energy_score(_arr("samples", samples), _arr("target", target), fair,
                                None if lengths is None else [float(v) for v in lengths])


def nll(samples: np.ndarray, target: np.ndarray) -> float:
    """Mean Gaussian negative log-likelihood under the draws' mean and std."""
    return _engine.nll(_arr("samples", samples), _arr("target", target))


def coverage(samples: np.ndarray, target: np.ndarray, level: float = 0.9) -> float:
    """Fraction of points inside the central ``level`` interval of the draws."""
    return _engine.coverage(_arr("samples", samples), _arr("target", target), float(level))


def interval_score(samples: np.ndarray, target: np.ndarray, level: float = 0.9) -> float:
    """Mean interval (Winkler) score of the central ``level`` interval."""
    return _engine.interval_score(_arr("samples", samples), _arr("target", target), float(level))


def calibration_error(samples: np.ndarray, target: np.ndarray) -> float:
    """Mean absolute gap between nominal and observed central-interval coverage."""
    return _engine.calibration_error(_arr("samples", samples), _arr("target", target))


def pit(samples: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Probability integral transform of every target point under the draws."""
    return _engine.pit(_arr("samples", samples), _arr("target", target))


def rel_l2(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean relative L² error, per function then averaged."""
    return _engine.rel_l2(_arr("pred", pred), _arr("target", target))


def report(samples: np.ndarray, target: np.ndarray, lengths: Optional[Sequence[float]] = None,
           periodic: bool = False) -> Dict[str, float]:
    """Every metric of ``pno eval`` for ``target[n, channels, *grid]``, as a dict."""
    return json.loads(_engine.report(_arr("samples", samples), _arr("target", target),
                                     None if lengths is None else [float(v) for v in lengths],
                                     periodic))


class Run:
    """A run folder written by ``pno train`` (or a repository version), loaded once.

    >>> run = Run("runs/pno_d")                                  # doctest: +SKIP
    >>> p = run.predict(x, n_samples=100, seed=0)                # doctest: +SKIP
    >>> p["mean"].shape == (x.shape[0], 1) + x.shape[2:]         # doctest: +SKIP
    """

    def __init__(self, path: "str | os.PathLike[str]") -> None:
        self.path = os.fspath(path)
        self._run = _engine.Run(self.path)

    @property
    def metadata(self) -> Dict[str, Any]:
        """``model.json``: model spec, channels, grid, spread scale, calibration record."""
        return json.loads(self._run.metadata())

    def predict(self, x: np.ndarray, n_samples: int = 100, seed: int = 0, batch: int = 16,
                quantiles: Sequence[float] = (0.025, 0.05, 0.25, 0.5, 0.75, 0.95, 0.975),
                ) -> Dict[str, np.ndarray]:
        """Predict for inputs ``x[n, in_channels, *grid]`` (physical units, any resolution the
        model accepts): ``mean``/``std`` ``[n, out, *grid]``, ``samples`` ``[n_samples, n, out,
        *grid]``, ``quantiles`` ``[levels, n, out, *grid]`` (and ``aleatoric_var`` where the
        model separates it). The same seed gives ``pno predict``'s numbers, whatever ``batch``.
        """
        return self._run.predict(_arr("x", x), int(n_samples), int(seed), int(batch),
                                 [float(q) for q in quantiles])

    def __repr__(self) -> str:
        m = self.metadata
        return f"Run({self.path!r}, kind={m['model']['kind']!r}, grid={m['grid']})"
