"""A three-record audit log in the format written before replica ids existed (no `replica`
field), built with the Python standard library alone: each line is the record's compact JSON
(fields in the order `AuditRecord` serialises them), `prev` the SHA-256 hex of the previous
record's body (genesis: 64 zeros), `hash` the SHA-256 hex of this body, appended as the last
field. The Rust tests check that such a log still verifies byte for byte, and that appending
replica-named records to it keeps the chain.

Run: python3 gen_pre_replica_log.py > pre-replica.log
"""
import hashlib
import json

prev = "0" * 64
for seq in range(3):
    rec = {
        "seq": seq,
        "ts_ms": 1767225600000 + seq,
        "actor": "k1",
        "role": "reader",
        "client": "10.0.0.1",
        "action": "infer",
        "model": "pno",
        "version": "1",
        "outcome": "error" if seq == 2 else "ok",
        "status": 429 if seq == 2 else 200,
        "request_id": f"r{seq}",
        "input_sha256": None,
    }
    if seq == 2:
        rec["class"] = "security"
    rec["prev"] = prev
    body = json.dumps(rec, separators=(",", ":"))
    h = hashlib.sha256(body.encode()).hexdigest()
    print(body[:-1] + f',"hash":"{h}"}}')
    prev = h
