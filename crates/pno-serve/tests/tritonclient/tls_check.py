#!/usr/bin/env python3
"""The unmodified `tritonclient[http]` over HTTPS against a `pno serve` with `[tls]`.

  python tls_check.py HOST:PORT CA_PEM [MODEL]

Checks: the sync client (`ssl=True`, the test CA in `ssl_options`) and the asyncio client (an
`ssl.SSLContext` with the test CA) infer and get the same numbers for the same seed; a client
without the test CA is refused at the handshake; a plain-HTTP request to the TLS port gets a
400 that says so within 2 s (no hang). Exit status = number of failed checks.
"""
import asyncio
import socket
import ssl
import sys
import time

import numpy as np
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient

FAILS = []


def check(name, cond, info=""):
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else f"  -- {info}"), flush=True)
    if not cond:
        FAILS.append(name)


def main():
    url, ca = sys.argv[1], sys.argv[2]
    model = sys.argv[3] if len(sys.argv) > 3 else "pno"
    host, port = url.rsplit(":", 1)

    c = httpclient.InferenceServerClient(url=url, ssl=True, ssl_options={"ca_certs": ca})
    check("https: is_server_ready", c.is_server_ready())
    mm = c.get_model_metadata(model)
    shape = [1] + [int(d) for d in mm["inputs"][0]["shape"][1:]]
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    params = {"n_samples": 4, "seed": 9}

    def infer_sync(binary):
        i = httpclient.InferInput("x", shape, "FP32")
        i.set_data_from_numpy(x, binary_data=binary)
        out = [httpclient.InferRequestedOutput("mean", binary_data=binary)]
        return c.infer(model, [i], outputs=out, parameters=params).as_numpy("mean")

    json_mean = infer_sync(False)
    bin_mean = infer_sync(True)
    check("https: infer (JSON and binary tensors agree)",
          json_mean is not None and np.array_equal(json_mean, bin_mean))

    async def run_aio():
        ctx = ssl.create_default_context(cafile=ca)
        ac = aioclient.InferenceServerClient(url=url, ssl=True, ssl_context=ctx)
        try:
            i = aioclient.InferInput("x", shape, "FP32")
            i.set_data_from_numpy(x, binary_data=True)
            out = [aioclient.InferRequestedOutput("mean", binary_data=True)]
            r = await ac.infer(model, [i], outputs=out, parameters=params)
            return await ac.is_server_ready(), r.as_numpy("mean")
        finally:
            await ac.close()

    ready, aio_mean = asyncio.run(run_aio())
    check("https asyncio: ready and the same numbers", ready and np.array_equal(aio_mean, json_mean))

    # Without the test CA the client must refuse the server (no silent trust).
    try:
        untrusted = httpclient.InferenceServerClient(url=url, ssl=True)
        untrusted.is_server_ready()
        check("a client without the test CA is refused", False, "it connected")
    except Exception as e:  # noqa: BLE001 - any TLS failure is the expected outcome
        check("a client without the test CA is refused", "CERTIFICATE" in str(e).upper() or "SSL" in str(e).upper(), e)

    # Plain HTTP to the TLS port: a clean 400, not a hang.
    t = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    took = time.monotonic() - t
    check("plain HTTP to the TLS port -> 400 saying so, within 2 s",
          answer.startswith(b"HTTP/1.1 400") and b"speaks TLS" in answer and took < 2.0,
          (answer[:120], took))

    print(f"{len(FAILS)} failed")
    return len(FAILS)


if __name__ == "__main__":
    sys.exit(main())
