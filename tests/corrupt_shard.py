#!/usr/bin/python3
"""Damage one shard of a dataset in a chosen way, for the bad-input tests.

    corrupt_shard.py DIR FILE WHAT

FILE is relative to DIR (e.g. train/shard-0001.h5). WHAT is one of:
format, version, shape, offsets-order, offsets-range, nan, inf, type, class,
huge (a finite target charge of 3e30 in one row: valid data whose squared
error overflows float32 in the loss)
(these rewrite the shard with h5py and then update the manifest's bytes and
CRC-32, so that the reader's own checks, not the checksum, must catch them),
or flip, truncate (raw damage, manifest left alone).
"""
import json
import os
import sys
import zlib

import h5py
import numpy as np


def rehash(d, f):
    path = os.path.join(d, f)
    data = open(path, "rb").read()
    mpath = os.path.join(d, "manifest.json")
    m = json.load(open(mpath))
    for split in ("train", "valid"):
        for sh in m[split]["shards"]:
            if sh["file"] == f:
                sh["bytes"] = len(data)
                sh["crc32"] = "%08x" % (zlib.crc32(data) & 0xFFFFFFFF)
    json.dump(m, open(mpath, "w"), indent=2)


def main():
    d, f, what = sys.argv[1:4]
    path = os.path.join(d, f)
    if what == "flip":
        data = bytearray(open(path, "rb").read())
        data[len(data) * 2 // 3] ^= 0x10
        open(path, "wb").write(data)
        return
    if what == "truncate":
        os.truncate(path, os.path.getsize(path) // 2)
        return
    with h5py.File(path, "r+") as h:
        if what == "format":
            h.attrs["format"] = np.bytes_("some-other-format")
        elif what == "version":
            h.attrs["version"] = np.int64(99)
        elif what == "shape":
            x = h["X"][()]
            del h["X"]
            h.create_dataset("X", data=x[:, :11], track_times=False)
        elif what == "offsets-order":
            o = h["offsets"][()]
            o[1], o[2] = o[2], o[1]
            h["offsets"][...] = o
        elif what == "offsets-range":
            o = h["offsets"][()]
            o[-1] += 5
            h["offsets"][...] = o
        elif what == "huge":
            y = h["ygen"][()]
            y[int(h["offsets"][1]) + 2, 1] = 3e30
            h["ygen"][...] = y
        elif what in ("nan", "inf", "type", "class"):
            o = h["offsets"][()]
            row = int(o[1]) + 2                   # third row of event 1
            if what in ("nan", "inf"):
                x = h["X"][()]
                x[row, 5] = np.nan if what == "nan" else np.inf
                h["X"][...] = x
            elif what == "type":
                x = h["X"][()]
                x[row, 0] = 7
                h["X"][...] = x
            else:
                y = h["ygen"][()]
                y[row, 0] = 2.5
                h["ygen"][...] = y
        else:
            sys.exit("unknown damage " + what)
    rehash(d, f)


if __name__ == "__main__":
    main()
