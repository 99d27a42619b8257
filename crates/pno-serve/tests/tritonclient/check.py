#!/usr/bin/env python3
"""Every OIP v2 call of the unmodified `tritonclient[http]` against a running `pno serve`, with
JSON and with binary tensor data.

  python check.py HOST:PORT OPERATOR_KEY [MODEL]

The server must serve MODEL (default `pno`) version 1, with anonymous access as reader and the
key as operator. Exit status = number of failed checks.
"""
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

FAILS = []


def check(name, cond, info=""):
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else f"  -- {info}"), flush=True)
    if not cond:
        FAILS.append(name)


def raises(name, fn, status):
    try:
        fn()
    except InferenceServerException as e:
        ok = str(e.status()) == str(status) and bool(e.message())
        check(f"{name} -> {status} with an error message", ok, (e.status(), e.message()))
        return
    check(f"{name} -> {status}", False, "no exception")


def main():
    url, key = sys.argv[1], sys.argv[2]
    model = sys.argv[3] if len(sys.argv) > 3 else "pno"
    auth = {"Authorization": f"Bearer {key}"}
    c = httpclient.InferenceServerClient(url=url)

    check("is_server_live", c.is_server_live())
    check("is_server_ready", c.is_server_ready())
    check("is_model_ready", c.is_model_ready(model))
    check("is_model_ready version 1", c.is_model_ready(model, "1"))
    check("is_model_ready unknown model is False", not c.is_model_ready("nope"))
    check("is_model_ready unknown version is False", not c.is_model_ready(model, "999"))
    md = c.get_server_metadata()
    check("server metadata", "binary_tensor_data" in md.get("extensions", []), md)
    mm = c.get_model_metadata(model)
    mm1 = c.get_model_metadata(model, "1")
    check("model metadata", mm["name"] == model and mm["inputs"][0]["name"] == "x", mm)
    check("model metadata version 1", mm1 == mm, (mm1, mm))
    raises("metadata of an unknown model", lambda: c.get_model_metadata("nope"), 404)
    raises("metadata of an unknown version", lambda: c.get_model_metadata(model, "999"), 404)

    shape = [2] + [int(d) for d in mm["inputs"][0]["shape"][1:]]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    params = {"n_samples": 8, "seed": 7, "quantile_levels": "0.05,0.5,0.95"}
    names = ["mean", "std", "quantiles", "samples"]
    results = {}
    for bin_in in (False, True):
        for bin_out in (False, True):
            inp = httpclient.InferInput("x", shape, "FP32")
            inp.set_data_from_numpy(x, binary_data=bin_in)
            outs = [httpclient.InferRequestedOutput(n, binary_data=bin_out) for n in names]
            tag = f"in={'binary' if bin_in else 'json'} out={'binary' if bin_out else 'json'}"
            try:
                r = c.infer(model, [inp], outputs=outs, parameters=params, request_id="req-1")
            except InferenceServerException as e:
                check(f"infer {tag}", False, e)
                continue
            got = {n: r.as_numpy(n) for n in names}
            ok = (got["mean"].shape == tuple(shape[:1] + [mm["outputs"][0]["shape"][1]] + shape[2:])
                  and got["quantiles"].shape[0] == 3 and got["samples"].shape[0] == 8
                  and all(np.isfinite(v).all() for v in got.values())
                  and r.get_response()["id"] == "req-1")
            check(f"infer {tag}: shapes, finiteness, id echo", ok,
                  {n: v.shape for n, v in got.items()})
            results[tag] = got
    base = results.get("in=json out=json")
    for tag, got in results.items():
        if base is not None:
            same = all(np.array_equal(got[n], base[n]) for n in names)
            check(f"same seed, same numbers ({tag})", same)
    # Client defaults: binary input, binary outputs requested for all (binary_data_output).
    inp = httpclient.InferInput("x", shape, "FP32")
    inp.set_data_from_numpy(x)
    r = c.infer(model, [inp], parameters={"n_samples": 8, "seed": 7})
    if base is not None:
        check("client defaults (binary both ways): mean and std",
              np.array_equal(r.as_numpy("mean"), base["mean"])
              and np.array_equal(r.as_numpy("std"), base["std"]))
    r = c.infer(model, [inp], model_version="1", parameters={"n_samples": 8, "seed": 8})
    check("infer on version 1, other seed differs",
          r.get_response()["model_version"] == "1"
          and (base is None or not np.array_equal(r.as_numpy("mean"), base["mean"])))
    # Async client (aiohttp) too.
    try:
        import asyncio

        import tritonclient.http.aio as aioclient

        async def run_aio():
            ac = aioclient.InferenceServerClient(url=url)
            try:
                i = aioclient.InferInput("x", shape, "FP32")
                i.set_data_from_numpy(x)
                rr = await ac.infer(model, [i], parameters={"n_samples": 8, "seed": 7})
                return await ac.is_server_ready(), rr.as_numpy("mean")
            finally:
                await ac.close()

        ready, mean = asyncio.run(run_aio())
        check("asyncio client", ready and (base is None or np.array_equal(mean, base["mean"])))
    except ImportError as e:
        check("asyncio client importable", False, e)

    # Errors: JSON {"error"} with the right status, raised as InferenceServerException.
    def infer_with(dtype, data, shp):
        i = httpclient.InferInput("x", shp, dtype)
        i.set_data_from_numpy(data)
        return c.infer(model, [i])

    raises("infer FP64", lambda: infer_with("FP64", x.astype(np.float64), shape), 400)
    raises("infer wrong shape", lambda: infer_with("FP32", np.ascontiguousarray(x[:, :, :, :-1]), shape[:3] + [shape[3] - 1]), 400)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    raises("infer NaN", lambda: infer_with("FP32", bad, shape), 400)
    raises("infer n_samples 0", lambda: c.infer(model, [inp], parameters={"n_samples": 0}), 400)
    raises("infer unknown model", lambda: c.infer("nope", [inp]), 404)
    raises("infer unknown output", lambda: c.infer(model, [inp], outputs=[httpclient.InferRequestedOutput("var")]), 400)

    # Repository API: anonymous readers may not; the operator key may.
    raises("repository index without a key", lambda: c.get_model_repository_index(), 401)
    idx = c.get_model_repository_index(headers=auth)
    check("repository index", any(e["name"] == model and e["state"] == "READY" for e in idx), idx)
    c.unload_model(model, headers=auth)
    check("unload: model not ready", not c.is_model_ready(model))
    check("unload: server not ready", not c.is_server_ready())
    raises("infer after unload", lambda: c.infer(model, [inp]), 404)
    c.load_model(model, headers=auth)
    check("load: model ready again", c.is_model_ready(model) and c.is_server_ready())
    raises("unload with a wrong key", lambda: c.unload_model(model, headers={"Authorization": "Bearer nope"}), 401)
    c.close()
    print(f"{len(FAILS)} failure(s)")
    sys.exit(len(FAILS))


if __name__ == "__main__":
    main()
