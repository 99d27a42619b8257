#!/usr/bin/env python3
"""Make a "broken" copy of a pno run folder, for the robustness tour (scripts/tour.sh).

    python3 scripts/break_run.py SRC DST

Copies the run folder SRC to DST, then scales every F32 tensor in DST/weights.safetensors by
1e30 (clamped to +-3e38, so every weight stays finite), and records the new file's SHA-256 as
`weights_sha256` in DST/model.json. The copy loads (loading refuses NaN/inf weights and a
checksum mismatch, and this copy has neither), but its forward pass overflows: every answer is
non-finite, which the server classes as a persistent model failure.

Standard library only. safetensors layout: an 8-byte little-endian header length N, N bytes of
JSON header ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}), then
the raw little-endian tensor data, offsets relative to the end of the header.
"""

import array
import hashlib
import json
import math
import shutil
import struct
import sys
from pathlib import Path

SCALE = 1e30
CAP = 3e38


def blow_up(data: bytearray) -> int:
    """Scale the F32 tensors of a safetensors file in place; the number of tensors scaled."""
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    scaled = 0
    for name, t in header.items():
        if name == "__metadata__" or t.get("dtype") != "F32":
            continue
        begin, end = t["data_offsets"]
        values = array.array("f")
        values.frombytes(bytes(data[base + begin : base + end]))
        if sys.byteorder != "little":
            values.byteswap()
        for i, v in enumerate(values):
            if not math.isfinite(v):
                raise SystemExit(f"error: tensor {name} already holds a non-finite value")
            values[i] = math.copysign(min(abs(v) * SCALE, CAP), v)
        if sys.byteorder != "little":
            values.byteswap()
        data[base + begin : base + end] = values.tobytes()
        scaled += 1
    return scaled


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    src, dst = Path(argv[1]), Path(argv[2])
    if not (src / "weights.safetensors").is_file() or not (src / "model.json").is_file():
        print(f"error: {src} is not a run folder (no weights.safetensors/model.json)", file=sys.stderr)
        return 1
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    weights = dst / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    scaled = blow_up(data)
    if scaled == 0:
        print(f"error: no F32 tensor in {weights}", file=sys.stderr)
        return 1
    weights.write_bytes(bytes(data))
    model = json.loads((dst / "model.json").read_text())
    model["weights_sha256"] = hashlib.sha256(data).hexdigest()
    (dst / "model.json").write_text(json.dumps(model, indent=2) + "\n")
    print(f"{dst}: {scaled} F32 tensors scaled by {SCALE:g} (finite), weights_sha256 updated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
