#!/usr/bin/python3
"""Turn a fuzz_shard input into a dataset directory mlpfbench can be pointed at.

The input is what tests/fuzz/fuzz_shard.c takes: 16 bytes (events, elements:
little-endian int64, what the manifest claims), then the shard's bytes. The
manifest written here carries the file's true size and CRC-32, so the bytes
get past the integrity check and reach HDF5, as a forged dataset would.

usage: make_case.py INPUT DIR
"""
import json
import os
import struct
import sys
import zlib


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    data = open(sys.argv[1], "rb").read()
    if len(data) < 16:
        sys.exit(f"{sys.argv[1]}: shorter than the 16-byte header")
    events, elements = struct.unpack("<qq", data[:16])
    shard = data[16:]
    out = sys.argv[2]
    for split in ("train", "valid"):
        os.makedirs(os.path.join(out, split), exist_ok=True)
        with open(os.path.join(out, split, "shard-0000.h5"), "wb") as f:
            f.write(shard)
    entry = {"events": events, "elements": elements,
             "shards": [{"file": "", "events": events, "elements": elements,
                         "bytes": len(shard), "crc32": "%08x" % (zlib.crc32(shard) & 0xffffffff)}]}
    manifest = {"format": "mlpfbench-dataset", "version": 1}
    for split in ("train", "valid"):
        e = json.loads(json.dumps(entry))
        e["shards"][0]["file"] = f"{split}/shard-0000.h5"
        manifest[split] = e
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
