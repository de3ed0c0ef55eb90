#!/usr/bin/env python3
"""Generate a backups root for the benchmarks: ROOT/backups.json with N index
entries over 20 instances (inst-00..inst-19), and as many archive files, each
with its .sha256 sidecar, in ROOT/<instance>/. 1% of the entries lost their
archive, and 1% more archives (real uncompressed tars, so reconcile --adopt
can take them) are not in the index. The archives of indexed entries hold
any bytes: a plain reconcile never reads them.

Usage: gen-backups.py ROOT N
"""
import hashlib, io, json, os, sys, tarfile
root, n = sys.argv[1], int(sys.argv[2])
instances = [f"inst-{i:02d}" for i in range(20)]
drift = max(1, n // 100)
entries = []
for i in range(n + drift):
    inst = instances[i % len(instances)]
    ident = f"2025{1 + i // 100000 % 12:02d}{1 + i // 3600 % 28:02d}-{i // 60 % 24:02d}{i % 60:02d}00-{inst}-{i:06x}"
    d = os.path.join(root, inst)
    os.makedirs(d, exist_ok=True)
    indexed = i < n
    on_disk = i >= drift  # the first `drift` entries lost their archive
    if indexed:
        # Never read by a plain reconcile: any bytes do.
        path = os.path.join(d, ident + ".tar.zst")
        body = (ident * 8).encode()
    else:
        # Orphans are real (uncompressed) backups, so --adopt can take them.
        path = os.path.join(d, ident + ".tar")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
            for name, data in ((f"{ident}/data/db.sqlite", os.urandom(2048)),
                               (f"{ident}/metadata/instance.json", json.dumps({"name": inst}).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        body = buf.getvalue()
    digest = hashlib.sha256(body).hexdigest()
    if on_disk:
        with open(path, "wb") as f:
            f.write(body)
        with open(path + ".sha256", "w") as f:
            f.write(f"{digest}  {os.path.basename(path)}\n")
    if indexed:
        entries.append({
            "id": ident, "instance": inst,
            "created_at": f"{ident[0:4]}-{ident[4:6]}-{ident[6:8]}T{ident[9:11]}:{ident[11:13]}:{ident[13:15]}Z",
            "path": path, "algorithm": "zstd", "compression_level": None,
            "size_bytes": len(body), "checksum": {"algorithm": "sha256", "value": digest},
            "status": "available", "message": "nightly", "created_by": "root",
            "metadata": {"data_only": False, "labels": ["nightly"]},
        })
with open(os.path.join(root, "backups.json"), "w") as f:
    json.dump({"backups": entries}, f, indent=2)
