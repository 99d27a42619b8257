"""pno.client against a real `pno serve` on 127.0.0.1: readiness, metadata, infer equal to
Run.predict for the same seed, the API key, and errors as ServerError with the server's message."""

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import pno
from pno.client import Client, ServerError, triton_parameters


@pytest.fixture(scope="module")
def server(tmp_path_factory, pno_bin, trained):
    work = tmp_path_factory.mktemp("serve")
    shutil.copytree(trained, work / "repo" / "pno" / "1")
    key = subprocess.run([pno_bin, "keys", "create", "--role", "reader", "--keys",
                          str(work / "keys.json")], capture_output=True, text=True,
                         check=True).stdout.strip()
    (work / "serve.toml").write_text(
        f'listen = "127.0.0.1:0"\nrepository = "{work / "repo"}"\nkeys = "{work / "keys.json"}"\n'
        'anonymous = "none"\n')
    out = open(work / "stdout", "w")
    proc = subprocess.Popen([pno_bin, "serve", "--config", str(work / "serve.toml")], stdout=out,
                            stderr=subprocess.DEVNULL)
    addr = None
    for _ in range(300):
        text = (work / "stdout").read_text()
        if "listening on http://" in text:
            addr = text.split("listening on http://")[1].split()[0]
            break
        assert proc.poll() is None, "pno serve exited"
        time.sleep(0.1)
    assert addr, "pno serve did not start"
    yield f"http://{addr}", key
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def test_infer_equals_run_predict(server, trained, darcy):
    url, key = server
    c = Client(url, api_key=key)
    assert c.ready()
    meta = c.metadata("pno")
    assert meta["name"] == "pno" and meta["versions"] == ["1"]
    x = pno.load(darcy)["x"][:3]
    out = c.infer("pno", x, n_samples=5, seed=9, outputs=("mean", "std", "samples"))
    local = pno.Run(trained).predict(x, n_samples=5, seed=9)
    for k in ("mean", "std", "samples"):
        assert np.array_equal(out[k], local[k]), k
    q = c.infer("pno", x, n_samples=5, seed=9, quantile_levels=[0.1, 0.9], outputs=("quantiles",))
    assert q["quantiles"].shape == (2,) + local["mean"].shape


def test_errors_carry_the_status_and_message(server, darcy):
    url, key = server
    x = pno.load(darcy)["x"][:1]
    with pytest.raises(ServerError) as e:
        Client(url).infer("pno", x)               # no key
    assert e.value.status == 401
    with pytest.raises(ServerError) as e:
        Client(url, api_key=key).infer("nope", x)
    assert e.value.status == 404 and "nope" in e.value.message
    with pytest.raises(ServerError) as e:
        Client(url, api_key=key).infer("pno", x[:, :, :3, :3])
    assert e.value.status == 400


def test_retry_after_is_honoured(monkeypatch):
    """A 503 with Retry-After is retried after the advertised delay, then succeeds."""
    import io
    import urllib.error

    import pno.client as client

    calls, sleeps = [], []

    class Ok(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    def fake_urlopen(req, timeout):
        calls.append(req.full_url)
        if len(calls) < 3:
            raise urllib.error.HTTPError(req.full_url, 503, "busy", {"Retry-After": "2"},
                                         io.BytesIO(b'{"error": "queue full"}'))
        return Ok(b'{"ready": true}')

    monkeypatch.setattr(client.urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setattr(client.time, "sleep", sleeps.append)
    assert Client("http://127.0.0.1:1").ready()
    assert len(calls) == 3 and len(sleeps) == 2
    assert all(2.0 <= s <= 2.2 for s in sleeps), sleeps
    # Retries are bounded: with none allowed the 503 surfaces.
    calls.clear()
    with pytest.raises(ServerError) as e:
        Client("http://127.0.0.1:1", max_retries=0)._request("GET", "/v2/health/ready")
    assert e.value.status == 503 and "queue full" in e.value.message


def test_triton_parameters():
    assert triton_parameters(8, seed=3, quantile_levels=[0.1, 0.9]) == {
        "n_samples": 8, "seed": 3, "quantile_levels": "0.1,0.9"}
