"""A small client for ``pno serve`` (Open Inference Protocol v2, JSON tensors), stdlib only.

For production traffic with binary tensors, the unmodified ``tritonclient[http]`` works against
``pno serve`` (CI runs it); :func:`triton_parameters` builds the request parameters it needs.
This client is for notebooks and scripts: it sends the API key, honours ``Retry-After`` on 429
and 503 with bounded exponential backoff, and returns NumPy arrays.

>>> c = Client("http://127.0.0.1:8000", api_key="pno_...")     # doctest: +SKIP
>>> out = c.infer("pno", x, n_samples=32, seed=7)                # doctest: +SKIP
>>> out["mean"].shape                                            # doctest: +SKIP
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from typing import Any, Dict, Optional, Sequence

import numpy as np


class ServerError(RuntimeError):
    """A non-success answer of the server: ``status`` and its JSON ``error`` message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def triton_parameters(n_samples: int = 32, seed: Optional[int] = None,
                      quantile_levels: Optional[Sequence[float]] = None) -> Dict[str, Any]:
    """Request parameters for ``tritonclient`` (its parameters are scalars, so quantile levels
    travel as one comma-separated string)."""
    p: Dict[str, Any] = {"n_samples": int(n_samples)}
    if seed is not None:
        p["seed"] = int(seed)
    if quantile_levels:
        p["quantile_levels"] = ",".join(str(float(q)) for q in quantile_levels)
    return p


class Client:
    """``pno serve`` at ``url`` with an optional API key."""

    def __init__(self, url: str, api_key: Optional[str] = None, timeout: float = 60.0,
                 max_retries: int = 5, backoff: float = 0.2, max_backoff: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff

    def _request(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.max_retries + 1):
            req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    return json.loads(r.read() or b"null")
            except urllib.error.HTTPError as e:
                payload = e.read()
                try:
                    message = json.loads(payload).get("error", payload.decode(errors="replace"))
                except (ValueError, AttributeError):
                    message = payload.decode(errors="replace")
                if e.code in (429, 503) and attempt < self.max_retries:
                    retry_after = e.headers.get("Retry-After")
                    wait = float(retry_after) if retry_after else self.backoff * 2 ** attempt
                    time.sleep(min(self.max_backoff, wait) * (1 + 0.1 * random.random()))
                    continue
                raise ServerError(e.code, str(message)) from None
        raise ServerError(503, "retries exhausted")

    def ready(self) -> bool:
        """Whether the server is ready (``/v2/health/ready``)."""
        try:
            self._request("GET", "/v2/health/ready")
            return True
        except (ServerError, urllib.error.URLError):
            return False

    def metadata(self, model: str) -> Dict[str, Any]:
        """The model's OIP metadata (inputs, outputs, versions)."""
        return self._request("GET", f"/v2/models/{model}")

    def infer(self, model: str, x: np.ndarray, n_samples: int = 32, seed: Optional[int] = None,
              quantile_levels: Optional[Sequence[float]] = None,
              outputs: Sequence[str] = ("mean", "std"), version: Optional[str] = None,
              ) -> Dict[str, np.ndarray]:
        """Predict for ``x[n, in_channels, *grid]``; returns the requested outputs as arrays."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        params: Dict[str, Any] = {"n_samples": int(n_samples)}
        if seed is not None:
            params["seed"] = int(seed)
        if quantile_levels:
            params["quantile_levels"] = [float(q) for q in quantile_levels]
        body = {
            "parameters": params,
            "inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                        "data": x.ravel().tolist()}],
            "outputs": [{"name": o} for o in outputs],
        }
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        r = self._request("POST", path, body)
        return {o["name"]: np.asarray(o["data"], dtype=np.float32).reshape(o["shape"])
                for o in r["outputs"]}
