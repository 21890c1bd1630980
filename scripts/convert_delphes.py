#!/usr/bin/python3
"""Convert the public Delphes particle-flow pickles into mlpfbench shards.

Input: the files of Zenodo record 4559324, tev14_pythia8_*.pkl.bz2. Each is a
bz2-compressed pickle of {"X": [...], "ygen": [...], "ycand": [...]}: per-event
float64 arrays of shape (n, 12), (n, 7), (n, 7) (shared/spec/data.md).

Output: a dataset directory as described in docs/data-format.md:
    DIR/manifest.json
    DIR/train/shard-0000.h5 ...
    DIR/valid/shard-0000.h5 ...

Only the standard library, numpy and h5py are used; run it with the system
interpreter (/usr/bin/python3). Input files are read one at a time, so memory
holds one decompressed input file plus the shard being filled.
"""

import argparse
import bz2
import json
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time
import zlib

import numpy as np
import h5py

PROG = "convert_delphes"

SHARD_FORMAT = "mlpfbench-shard"
DATASET_FORMAT = "mlpfbench-dataset"
FORMAT_VERSION = 1

# Column names written to the "feature_names" attribute. Columns 1 and 5-8
# mean different things for towers and tracks (spec table), so their names
# give both meanings, track first.
FEATURE_NAMES = (
    "type", "pt_et", "eta", "sin_phi", "cos_phi", "p_e",
    "eta_outer_e_em", "sin_phi_outer_e_had", "cos_phi_outer",
    "charge", "is_gen_muon", "is_gen_electron",
)
TARGET_NAMES = ("class", "charge", "pt", "eta", "sin_phi", "cos_phi", "energy")
N_FEATURES = len(FEATURE_NAMES)   # 12
N_TARGETS = len(TARGET_NAMES)     # 7
ELEMENT_TYPES = (1.0, 2.0)        # 1 = tower, 2 = track; 0 (padding) never valid
N_CLASSES = 6                     # target classes 0..5
SPLITS = ("train", "valid")

DEFAULT_EVENTS_PER_SHARD = 100    # one public file holds 100 events

FLOAT32_MAX = float(np.finfo(np.float32).max)


class InputError(Exception):
    """A problem with the input files or arguments; the message says where."""


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------------------
# Reading and validating one public file

def open_pickle(path):
    """Open a pickle, bz2-compressed (detected by its "BZh" magic) or plain."""
    with open(path, "rb") as f:
        magic = f.read(3)
    if magic == b"BZh":
        return bz2.open(path, "rb")
    return open(path, "rb")


def load_public_file(path):
    """Unpickle one public file; return the three per-event lists."""
    try:
        with open_pickle(path) as f:
            data = pickle.load(f)
    except (OSError, EOFError, ValueError, pickle.UnpicklingError,
            AttributeError, ImportError, IndexError, TypeError) as e:
        raise InputError(f"{path}: cannot read pickle: {type(e).__name__}: {e}")
    if not isinstance(data, dict):
        raise InputError(f"{path}: top-level object is a {type(data).__name__}, "
                         "expected a dict with keys X, ygen, ycand")
    lists = []
    for key in ("X", "ygen", "ycand"):
        if key not in data:
            raise InputError(f"{path}: no key {key!r} (keys: {sorted(map(str, data))})")
        v = data[key]
        if not isinstance(v, (list, tuple)):
            raise InputError(f"{path}: {key} is a {type(v).__name__}, "
                             "expected a list of per-event arrays")
        lists.append(list(v))
    n = [len(v) for v in lists]
    if n[0] != n[1] or n[0] != n[2]:
        raise InputError(f"{path}: event counts differ: X has {n[0]}, "
                         f"ygen {n[1]}, ycand {n[2]}")
    return lists


def check_array(a, name, ncols, where):
    """Check one per-event array; return it as float32 (nearest rounding)."""
    if not isinstance(a, np.ndarray):
        raise InputError(f"{where}: {name} is a {type(a).__name__}, expected a numpy array")
    if a.dtype.kind not in "fiub":
        raise InputError(f"{where}: {name} has dtype {a.dtype}, expected float64")
    if a.ndim != 2 or a.shape[1] != ncols:
        raise InputError(f"{where}: {name} has shape {a.shape}, expected (n, {ncols})")
    bad = ~np.isfinite(a) if a.dtype.kind == "f" else None
    if bad is not None and bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputError(f"{where}: {name}[{r}, {c}] = {a[r, c]} is not finite")
    too_big = np.abs(a) > FLOAT32_MAX
    if too_big.any():
        r, c = np.argwhere(too_big)[0]
        raise InputError(f"{where}: {name}[{r}, {c}] = {a[r, c]} does not fit in float32")
    return np.ascontiguousarray(a, dtype=np.float32)


def check_event(path, i, x, ygen, ycand):
    """Validate event i of file path; return (X, ygen, ycand) as float32."""
    where = f"{path}: event {i}"
    x = check_array(x, "X", N_FEATURES, where)
    ygen = check_array(ygen, "ygen", N_TARGETS, where)
    ycand = check_array(ycand, "ycand", N_TARGETS, where)
    n = x.shape[0]
    for name, y in (("ygen", ygen), ("ycand", ycand)):
        if y.shape[0] != n:
            raise InputError(f"{where}: X has {n} rows but {name} has {y.shape[0]}")
    # Element type: exactly 1 (tower) or 2 (track). float32 holds both exactly.
    t = x[:, 0]
    bad = np.flatnonzero((t != ELEMENT_TYPES[0]) & (t != ELEMENT_TYPES[1]))
    if bad.size:
        r = bad[0]
        raise InputError(f"{where}: X[{r}, 0] = {t[r]}: element type must be "
                         "1 (tower) or 2 (track)")
    # Target class: an integer 0..N_CLASSES-1.
    for name, y in (("ygen", ygen), ("ycand", ycand)):
        c = y[:, 0]
        bad = np.flatnonzero((c != np.round(c)) | (c < 0) | (c > N_CLASSES - 1))
        if bad.size:
            r = bad[0]
            raise InputError(f"{where}: {name}[{r}, 0] = {c[r]}: class must be "
                             f"an integer 0..{N_CLASSES - 1}")
    return x, ygen, ycand


def read_events(path):
    """Yield (X, ygen, ycand) float32 arrays for each event of one file.

    The decompressed lists are released event by event, so peak memory is one
    input file, not one file plus its float32 copy.
    """
    xs, ygens, ycands = load_public_file(path)
    for i in range(len(xs)):
        event = check_event(path, i, xs[i], ygens[i], ycands[i])
        xs[i] = ygens[i] = ycands[i] = None
        yield event


# ---------------------------------------------------------------------------
# Writing shards

def set_string_attr(obj, name, value):
    """Store a fixed-length (not variable-length) string attribute."""
    b = value.encode("utf-8")
    obj.attrs.create(name, np.array(b, dtype=f"S{max(len(b), 1)}"))


def file_crc32(path):
    """zlib CRC-32 of the whole file, as 8 lower-case hex digits."""
    crc = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            crc = zlib.crc32(block, crc)
    return f"{crc & 0xFFFFFFFF:08x}"


def write_shard(path, x, ygen, ycand, offsets, source):
    """Write one shard file (docs/data-format.md)."""
    with h5py.File(path, "w", libver="earliest") as f:
        for name, data in (("X", x), ("ygen", ygen), ("ycand", ycand),
                           ("offsets", offsets)):
            # No chunks, filters or maxshape: h5py makes the dataset contiguous.
            # track_times=False keeps time stamps out, so output is reproducible.
            f.create_dataset(name, data=data, track_times=False)
        set_string_attr(f, "format", SHARD_FORMAT)
        f.attrs.create("version", np.int64(FORMAT_VERSION))
        set_string_attr(f, "source", source)
        set_string_attr(f, "feature_names", ",".join(FEATURE_NAMES))
        set_string_attr(f, "target_names", ",".join(TARGET_NAMES))
    with open(path, "rb") as f:
        os.fsync(f.fileno())


class SplitWriter:
    """Collects the events of one split and writes them in shards of N events."""

    def __init__(self, root, split, events_per_shard):
        self.root = root
        self.split = split
        self.events_per_shard = events_per_shard
        self.pending = []          # (X, ygen, ycand) float32 per event
        self.pending_sources = []  # basenames of the files behind pending, in order
        self.shards = []           # manifest entries
        self.events = 0
        self.elements = 0
        os.mkdir(os.path.join(root, split))

    def add(self, event, source):
        self.pending.append(event)
        if source not in self.pending_sources:
            self.pending_sources.append(source)
        if len(self.pending) == self.events_per_shard:
            self.flush()

    def flush(self):
        if not self.pending:
            return
        counts = np.array([e[0].shape[0] for e in self.pending], dtype=np.int64)
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        x, ygen, ycand = (np.concatenate([e[k] for e in self.pending]) for k in range(3))
        rel = f"{self.split}/shard-{len(self.shards):04d}.h5"
        path = os.path.join(self.root, rel)
        write_shard(path, x, ygen, ycand, offsets, ",".join(self.pending_sources))
        entry = {"file": rel, "events": len(counts), "elements": int(offsets[-1]),
                 "bytes": os.path.getsize(path), "crc32": file_crc32(path)}
        self.shards.append(entry)
        self.events += entry["events"]
        self.elements += entry["elements"]
        log(f"  wrote {rel}: {entry['events']} events, {entry['elements']} elements, "
            f"{entry['bytes'] / 1e6:.1f} MB, crc32 {entry['crc32']}")
        self.pending = []
        self.pending_sources = []

    def finish(self):
        self.flush()
        return {"events": self.events, "elements": self.elements, "shards": self.shards}


def convert_split(root, split, files, events_per_shard):
    """Convert the input files of one split; return its manifest entry."""
    writer = SplitWriter(root, split, events_per_shard)
    t0 = time.monotonic()
    for k, path in enumerate(files, 1):
        log(f"[{split} {k}/{len(files)}] reading {path}")
        t1 = time.monotonic()
        n_ev = n_el = 0
        for event in read_events(path):
            n_ev += 1
            n_el += event[0].shape[0]
            writer.add(event, os.path.basename(path))
        dt = time.monotonic() - t1
        log(f"[{split} {k}/{len(files)}] {os.path.basename(path)}: {n_ev} events, "
            f"{n_el} elements, {dt:.1f} s ({n_ev / max(dt, 1e-9):.1f} events/s)")
    entry = writer.finish()
    if entry["events"] == 0:
        raise InputError(f"{split}: the input files hold no events")
    dt = time.monotonic() - t0
    log(f"[{split}] {len(files)} files, {entry['events']} events, "
        f"{entry['elements']} elements, {len(entry['shards'])} shards, {dt:.1f} s "
        f"({entry['events'] / max(dt, 1e-9):.1f} events/s)")
    return entry


# ---------------------------------------------------------------------------
# Output directory: build in a temporary sibling, rename at the end

def check_inputs(train, valid):
    """Fail early on missing, unreadable, duplicated or badly named inputs."""
    seen = {}
    for split, files in (("train", train), ("valid", valid)):
        for path in files:
            if not os.path.isfile(path):
                raise InputError(f"{path}: no such file")
            if not os.access(path, os.R_OK):
                raise InputError(f"{path}: not readable")
            if "," in os.path.basename(path):
                raise InputError(f"{path}: file names go into a comma-separated "
                                 "attribute and must not contain ','")
            real = os.path.realpath(path)
            if real in seen:
                raise InputError(f"{path}: given twice ({seen[real]} and {split}); "
                                 "a file must be in one split only")
            seen[real] = split


def check_output(out, force):
    """Refuse to replace anything but an existing dataset (or empty dir)."""
    if not os.path.lexists(out):
        return
    if not force:
        raise InputError(f"{out}: already exists (use --force to replace it)")
    if os.path.islink(out) or not os.path.isdir(out):
        raise InputError(f"{out}: exists and is not a directory; not replacing it")
    if os.listdir(out) and not os.path.isfile(os.path.join(out, "manifest.json")):
        raise InputError(f"{out}: exists, is not empty and has no manifest.json; "
                         "not replacing it even with --force")


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def convert(args):
    out = os.path.abspath(args.out)
    check_inputs(args.train, args.valid)
    check_output(out, args.force)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    name = os.path.basename(out)

    # Same filesystem as DIR, so the final rename is atomic.
    tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it 0700
        log(f"{PROG}: {len(args.train)} train + {len(args.valid)} valid files -> {out} "
            f"({args.events_per_shard} events per shard)")
        t0 = time.monotonic()
        manifest = {
            "format": DATASET_FORMAT,
            "version": FORMAT_VERSION,
            "source": "delphes train=" + ",".join(os.path.basename(p) for p in args.train)
                      + " valid=" + ",".join(os.path.basename(p) for p in args.valid),
        }
        manifest["train"] = convert_split(tmp, "train", args.train, args.events_per_shard)
        manifest["valid"] = convert_split(tmp, "valid", args.valid, args.events_per_shard)
        mpath = os.path.join(tmp, "manifest.json")
        with open(mpath, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())

        # Swap in the new directory; an old dataset (--force) goes only after.
        old = None
        if os.path.lexists(out):
            old = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
            os.rename(out, os.path.join(old, name))
        os.rename(tmp, out)
        tmp = None
        if old is not None:
            shutil.rmtree(old)
        dirfd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
        total = manifest["train"]["events"] + manifest["valid"]["events"]
        dt = time.monotonic() - t0
        log(f"{PROG}: done: {out}: {manifest['train']['events']} train + "
            f"{manifest['valid']['events']} valid events in "
            f"{len(manifest['train']['shards'])} + {len(manifest['valid']['shards'])} "
            f"shards, {dt:.1f} s ({total / max(dt, 1e-9):.1f} events/s)")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------

def positive_int(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}")
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {s!r}")
    return v


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="convert_delphes.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Convert the public Delphes particle-flow files (Zenodo record "
                    "4559324,\ntev14_pythia8_*.pkl.bz2) into an mlpfbench dataset "
                    "directory:\n"
                    "  DIR/train/shard-NNNN.h5, DIR/valid/shard-NNNN.h5, "
                    "DIR/manifest.json\n"
                    "(format: docs/data-format.md).",
        epilog="Events keep their order: files in the order given, events in file "
               "order;\na shard may span two input files. Every event is checked "
               "(12 X columns,\n7 ygen/ycand columns, equal row counts, finite values, "
               "element type 1 or 2,\ntarget class an integer 0..5); on any problem "
               "the file and event are\nnamed, the exit status is 1 and DIR is left "
               "as it was. The output is built\nin a hidden temporary directory next "
               "to DIR and renamed into place at the\nend. The same inputs give "
               "byte-identical files.\n\n"
               "Inputs are Python pickles: only convert files you trust.\n\n"
               "example (the HEPscore selection):\n"
               "  /usr/bin/python3 scripts/convert_delphes.py --out data/delphes-hepscore \\\n"
               "      --train data/zenodo/tev14_pythia8_ttbar_0_{0..19}.pkl.bz2 \\\n"
               "      --valid data/zenodo/tev14_pythia8_qcd_10_{0,1}.pkl.bz2")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="dataset directory to create (must not exist unless --force)")
    p.add_argument("--train", required=True, nargs="+", action="extend", metavar="FILE",
                   help="input files for the training split, in order")
    p.add_argument("--valid", required=True, nargs="+", action="extend", metavar="FILE",
                   help="input files for the validation split, in order")
    p.add_argument("--events-per-shard", type=positive_int,
                   default=DEFAULT_EVENTS_PER_SHARD, metavar="N",
                   help=f"events per shard file; the last shard of a split may hold "
                        f"fewer (default {DEFAULT_EVENTS_PER_SHARD})")
    p.add_argument("--force", action="store_true",
                   help="replace DIR if it exists; only an empty directory or one with "
                        "a manifest.json is replaced")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # Let SIGTERM unwind like Ctrl-C so the temporary directory is removed.
    signal.signal(signal.SIGTERM, lambda sig, frame: sys.exit(128 + sig))
    try:
        convert(args)
    except InputError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; {args.out} left as it was", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
