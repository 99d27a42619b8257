"""Golden values for pno-audit from independent implementations.

- Merkle tree (RFC 9162 §2.1): pymerkle 7 (`InmemoryTree`, sha256, security prefixes on):
  roots of every prefix size, and its inclusion/consistency proof paths.
- Ed25519 signed notes: the `cryptography` package signs the checkpoint body with a fixed seed.

Run: python3 gen_golden.py > golden.json   (versions recorded in the output)
"""
import base64
import hashlib
import json
import warnings

import cryptography
import pymerkle
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pymerkle import InmemoryTree

warnings.simplefilter("ignore", DeprecationWarning)

N = 13
entries = [f"record {i}".encode() for i in range(N)]
tree = InmemoryTree(algorithm="sha256")
for e in entries:
    tree.append_entry(e)

roots = {size: tree.get_state(size).hex() for size in range(1, N + 1)}
inclusion = []
for size in (1, 2, 5, 8, 13):
    for index in range(1, size + 1):  # pymerkle indexes leaves from 1
        p = tree.prove_inclusion(index, size).serialize()
        inclusion.append({"index": index - 1, "size": size, "path": p["path"]})
consistency = []
for old, new in ((1, 2), (2, 5), (3, 5), (4, 8), (5, 13), (8, 13), (12, 13)):
    p = tree.prove_consistency(old, new).serialize()
    consistency.append({"old": old, "new": new, "path": p["path"]})

seed = bytes(range(32))
sk = Ed25519PrivateKey.from_private_bytes(seed)
public = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
name = "pno-serve/audit"
key_id = hashlib.sha256(name.encode() + b"\n" + b"\x01" + public).digest()[:4]
body = f"{name}\n{N}\n{base64.b64encode(bytes.fromhex(roots[N])).decode()}\n"
sig = sk.sign(body.encode())
note = body + "\n" + f"\u2014 {name} {base64.b64encode(key_id + sig).decode()}\n"

print(json.dumps({
    "versions": {"pymerkle": pymerkle.__version__ if hasattr(pymerkle, "__version__") else "7.0.0",
                 "cryptography": cryptography.__version__},
    "entries": [e.decode() for e in entries],
    "leaf_hashes": [hashlib.sha256(b"\x00" + e).hexdigest() for e in entries],
    "roots": roots,
    "inclusion": inclusion,
    "consistency": consistency,
    "ed25519": {"seed_hex": seed.hex(), "public_hex": public.hex(), "name": name,
                "key_id_hex": key_id.hex(), "note": note},
}, indent=1))
