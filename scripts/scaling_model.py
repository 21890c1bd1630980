#!/usr/bin/python3
"""Weak-scaling model of mlpfbench data-parallel training on GPU nodes.

    scaling_model.py [--summary FILE] [--intra-bench FILE] [--inter-bench FILE
                     --inter-bench-nodes N] [flags ...] [--json FILE] [--csv FILE]

Predicts the step time, the exposed all-reduce and the weak-scaling efficiency
for G GPUs per node x N nodes (default 8 x 1, 2, 4, ..., 64) from

  per-step compute   forward, backward, optimizer and other time of one step on
                     one GPU: from a summary's per_rank figures (sum over the
                     ranks / sum of their steps; other = step - forward -
                     backward - optimizer - exposed all-reduce), or flags;
                     --achieved-tflops X rescales them so that forward+backward
                     run batch x flops_per_event at X TFLOP/s
  gradient           trainable_parameters x 4 bytes, cut into buckets of
                     allreduce_bucket_mib from the end of the buffer (as
                     src/dist/allreduce.c does): the last bucket launched holds
                     the remainder
  all-reduce         bus bandwidths (nccl-tests sense) within a node and across
                     nodes, a base latency per all-reduce and a latency per
                     ring step inside a node and across the network; from
                     allreduce-bench (or nccl-tests all_reduce_perf) tables or
                     flags

Model (docs/scaling-model.md has the derivation and the assumptions):

  P = G x N GPUs; B = B_intra for N = 1, min(B_intra, B_inter) for N > 1
  ring:  t(s) = L + 2(P-N) a_intra + 2(N-1) a_inter + 2(P-1)/P x s / B
  tree:  t(s) = L + 2[(G-1) a_intra + ceil(log2 N) a_inter] + 2 s / B
  best:  the faster of the two for each bucket (default)

  Backward produces the gradient from the end of the buffer to its start at a
  uniform rate, so bucket j is ready at T_bwd x (bytes of buckets 0..j) / bytes;
  buckets are all-reduced one at a time in launch order, without slowing the
  compute: c_j = max(ready_j, c_j-1) + t(s_j); exposed = max(0, c_last - T_bwd).
  --overlap none launches every bucket at the end of backward instead.
  Each step also waits for --step-reductions tiny MPI all-reduces (8 bytes,
  recursive doubling): ceil(log2 G) m_intra + ceil(log2 N) m_inter each.

  Ranks wait for the slowest at every step: each rank's forward and backward
  vary from step to step with its events (coefficient of variation
  cv = --event-cv / sqrt(batch)), and the step takes the expected maximum over
  P ranks, (1 + cv x z_P) times the mean, z_P the expected largest of P
  standard normal draws (z_1 = 0, z_2 = 0.564, z_8 = 1.424, z_128 = 2.595).

  t_step(P) = (forward + backward)(1 + cv z_P) + optimizer + other + exposed
              + reductions
  efficiency = t_step(1 GPU) / t_step(P)      events/s = P x batch / t_step(P)

Exit status: 0 when the table is printed (whether or not the goal holds);
1 for unreadable input files; 2 for wrong or missing inputs.
"""
import argparse
import csv
import json
import math
import os
import re
import sys

PROG = "scaling_model.py"
MIB = 1 << 20

# Defaults of the inputs that have no measurement: (value, why). Each is an
# assumption; docs/scaling-model.md gives the sources.
ASSUMED = {
    "gpus_per_node": (8, "assumed: 8 GPUs per node (HGX/DGX H200 board)"),
    "intra_busbw": (450.0, "assumed: 8 x H200 NVLink 4 all-reduce busbw, ~450 GB/s at large sizes"),
    "inter_busbw": (400.0, "assumed: 8 x 400 Gb/s InfiniBand NDR per node (one per GPU), 400 GB/s line rate"),
    "base_latency_us": (8.4, "assumed: NCCL cost model, ring/Simple base latency"),
    "intra_step_us": (3.4, "assumed: NCCL cost model, ring/Simple NVLink latency per step"),
    "inter_step_us": (9.6, "assumed: NCCL cost model, ring/Simple network latency per step"),
    "step_reductions": (2, "mlpfbench train: the batch-size and event-count reductions of every step"),
    "mpi_intra_us": (0.5, "assumed: MPI small-message latency through shared memory"),
    "mpi_inter_us": (2.0, "assumed: MPI small-message latency over InfiniBand"),
    "event_cv": (0.08, "assumed: compute per event proportional to its elements, whose spread in "
                       "mlpfbench generate's data is 400 of 5000 (sd/mean 0.08)"),
}


class ModelError(Exception):
    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------
# Inputs


def positive(name, value, allow_zero=False):
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value) \
            or math.isinf(value) or value < 0 or (value == 0 and not allow_zero):
        raise ModelError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, not {value!r}")
    return value


def node_list(text):
    if not re.fullmatch(r"[0-9]+(,[0-9]+)*", text or ""):
        raise ModelError(f"--nodes needs a list like 1,2,4,8, not {text!r}")
    nodes = sorted(set(int(n) for n in text.split(",")))
    if nodes[0] < 1:
        raise ModelError("--nodes: node counts start at 1")
    return nodes


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise ModelError(f"{path}: {e.strerror}", 1)
    except (UnicodeDecodeError, ValueError) as e:
        raise ModelError(f"{path}: not readable JSON: {e}", 1)


def from_summary(path):
    """Per-step compute (s), parameters, bucket, batch, FLOP per event, GPUs
    per node of an mlpfbench summary, as {name: (value, origin)}."""
    doc = read_json(path)
    try:
        st = doc["report"]["wl-stats"]
        ranks = [r for r in st["per_rank"] if isinstance(r, dict)]
    except (KeyError, TypeError):
        raise ModelError(f"{path}: not an mlpfbench summary (needs report.wl-stats.per_rank)", 1)
    if doc["report"].get("log") not in (None, "ok"):
        raise ModelError(f"{path}: the run failed ({doc['report']['log']}): no step figures to model")
    steps = sum(int(r.get("steps") or 0) for r in ranks)
    if steps <= 0:
        raise ModelError(f"{path}: per_rank has no steps: nothing to model")
    out = {}
    origin = f"measured: {path} (sum over {len(ranks)} rank(s) / {steps} steps)"

    def per_step(key):
        vals = [r.get(key) for r in ranks]
        if any(not isinstance(v, (int, float)) or v < 0 for v in vals):
            raise ModelError(f"{path}: per_rank.{key} missing or negative")
        return sum(vals) / steps

    fwd, bwd, opt = per_step("forward_time"), per_step("backward_time"), per_step("optimizer_time")
    step, exposed = per_step("step_time"), per_step("allreduce_exposed_time")
    out["forward"] = (fwd, origin)
    out["backward"] = (bwd, origin)
    out["optimizer"] = (opt, origin)
    out["other"] = (max(0.0, step - fwd - bwd - opt - exposed),
                    origin + "; step - forward - backward - optimizer - exposed all-reduce")
    for key, name in (("trainable_parameters", "params"), ("allreduce_bucket_mib", "bucket_mib"),
                      ("batch_size_per_device", "batch"), ("flops_per_event", "flops_per_event")):
        v = st.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            out[name] = (v, f"measured: {path} wl-stats.{key}")
    gpus, rpn = st.get("gpus"), st.get("ranks_per_node")
    if isinstance(gpus, int) and gpus > 0 and isinstance(rpn, int) and rpn > 0:
        out["gpus_per_node"] = (rpn, f"measured: {path} wl-stats.ranks_per_node (a GPU run)")
    return out


def parse_bench(path):
    """Rows (size bytes, time us) and the rank count of an allreduce-bench or
    nccl-tests all_reduce_perf table; the out-of-place time where there are two."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ModelError(f"{path}: {e.strerror}", 1)
    except UnicodeDecodeError:
        raise ModelError(f"{path}: not a text file", 1)
    rows, ranks, nccl_ranks = [], None, 0
    for line in lines:
        m = re.match(r"#\s*mlpfbench allreduce-bench:\s*(\d+) rank", line)
        if m:
            ranks = int(m.group(1))
        if re.match(r"#\s+Rank\s+\d+\s+Group", line):   # nccl-tests: one line per rank
            nccl_ranks += 1
        tok = line.split()
        if not tok or tok[0].startswith("#") or not tok[0].isdigit() or len(tok) < 6:
            continue
        i = 4
        if re.fullmatch(r"-?\d+", tok[i]):           # nccl-tests' root column
            i += 1
        try:
            size, t = int(tok[0]), float(tok[i])
        except (ValueError, IndexError):
            raise ModelError(f"{path}: cannot read the line {line.strip()!r} "
                             "(expected: size count type redop [root] time algbw busbw ...)", 1)
        if size > 0 and t > 0:
            rows.append((size, t))
    if ranks is None and nccl_ranks:
        ranks = nccl_ranks
    if len(rows) < 2:
        raise ModelError(f"{path}: fewer than two size lines: not an allreduce-bench or all_reduce_perf table", 1)
    rows.sort()
    return rows, ranks


def fit_bench(path, ranks_flag, what):
    """(bandwidth GB/s, small-message time us, ranks) of a bench table: the
    shortest time of the three smallest sizes (the first line is often a
    warm-up outlier), and the bus bandwidth of the largest size with that time
    taken off."""
    rows, ranks = parse_bench(path)
    if ranks_flag:
        ranks = ranks_flag
    if not ranks:
        raise ModelError(f"{path}: the table does not say how many ranks ran it: give --{what}-bench-ranks")
    if ranks < 2:
        raise ModelError(f"{path}: {ranks} rank: an all-reduce over one rank says nothing about the links")
    s0, t0 = min(rows[:3], key=lambda r: r[1])
    s1, t1 = rows[-1]
    if t1 <= t0:
        raise ModelError(f"{path}: the largest size ({s1} bytes, {t1} us) is not slower than the smallest "
                         f"({s0} bytes, {t0} us): no bandwidth to read")
    bw = s1 * 2.0 * (ranks - 1) / ranks / ((t1 - t0) * 1e-6) / 1e9
    return bw, t0, ranks


class Inputs:
    """Every model input with where it came from."""

    def __init__(self):
        self.v, self.origin = {}, {}

    def set(self, name, value, origin):
        self.v[name] = value
        self.origin[name] = origin

    def __getitem__(self, name):
        return self.v[name]


def resolve(a):
    inp = Inputs()
    summ = from_summary(a.summary) if a.summary else {}
    for name, (value, origin) in summ.items():
        inp.set(name, value, origin)
    # GPUs per node: flag, else a GPU summary's, else assumed
    if a.gpus_per_node is not None:
        if a.gpus_per_node < 1:
            raise ModelError("--gpus-per-node must be at least 1")
        inp.set("gpus_per_node", a.gpus_per_node, "flag --gpus-per-node")
    elif "gpus_per_node" not in inp.v:
        inp.set("gpus_per_node", *ASSUMED["gpus_per_node"])
    for name, flag in (("params", "params"), ("bucket_mib", "bucket_mib"), ("batch", "batch_size"),
                       ("flops_per_event", "flops_per_event")):
        val = getattr(a, flag)
        if val is not None:
            positive("--" + flag.replace("_", "-"), val)
            inp.set(name, val, f"flag --{flag.replace('_', '-')}")
    if "bucket_mib" not in inp.v:
        inp.set("bucket_mib", 4.0, "mlpfbench train default --bucket-mb 4")
    if "batch" not in inp.v:
        inp.set("batch", 4, "mlpfbench train default --batch-size 4")
    if "params" not in inp.v:
        raise ModelError("no gradient size: give --summary FILE (wl-stats.trainable_parameters) or --params N")
    if int(inp["params"]) != inp["params"]:
        raise ModelError(f"--params must be a whole number of parameters, not {inp['params']}")

    # per-step compute: the summary's, flags override, then optionally all four
    # rescaled to a FLOP rate (keeping their proportions)
    for name in ("forward", "backward", "optimizer", "other"):
        val = getattr(a, name + "_ms")
        if val is not None:
            positive(f"--{name}-ms", val, allow_zero=True)
            inp.set(name, val / 1e3, f"flag --{name}-ms")
    for name in ("optimizer", "other"):
        if name not in inp.v:
            inp.set(name, 0.0, "not given: 0")
    missing = [n for n in ("forward", "backward") if n not in inp.v]
    if missing:
        raise ModelError("no per-step compute: give --summary FILE, or --forward-ms and --backward-ms "
                         f"(missing: {', '.join(missing)})")
    if inp["forward"] + inp["backward"] <= 0:
        raise ModelError("forward + backward per step is 0 s: nothing to scale")
    if a.achieved_tflops is not None:
        positive("--achieved-tflops", a.achieved_tflops)
        if "flops_per_event" not in inp.v:
            raise ModelError("--achieved-tflops needs the FLOP per event: --summary FILE or --flops-per-event X")
        target = inp["batch"] * inp["flops_per_event"] / (a.achieved_tflops * 1e12)
        scale = target / (inp["forward"] + inp["backward"])
        for name in ("forward", "backward", "optimizer", "other"):
            inp.set(name, inp[name] * scale,
                    f"{inp.origin[name]}, scaled x{scale:.4g}: forward+backward = batch {inp['batch']:g} x "
                    f"{inp['flops_per_event']:.4g} FLOP/event at {a.achieved_tflops:g} TFLOP/s (assumed rate)")

    # all-reduce: bench tables, then flags, then assumptions
    if a.intra_bench:
        bw, t0, ranks = fit_bench(a.intra_bench, a.intra_bench_ranks, "intra")
        src = f"measured: {a.intra_bench} ({ranks} ranks on one node)"
        inp.set("intra_busbw", bw, src + ", largest size less the small-size time")
        base = a.base_latency_us if a.base_latency_us is not None else ASSUMED["base_latency_us"][0]
        step = max(0.0, (t0 - base) / (2 * (ranks - 1)))
        inp.set("intra_step_us", step, src + f": ({t0:g} us, the fastest small size, - base) / 2(P-1)")
        if t0 < base:
            print(f"{PROG}: warning: {a.intra_bench}: the smallest all-reduce ({t0:g} us) is faster than the base "
                  f"latency {base:g} us: intra-node step latency set to 0", file=sys.stderr)
    if a.inter_bench:
        if not a.inter_bench_nodes or a.inter_bench_nodes < 2:
            raise ModelError("--inter-bench needs --inter-bench-nodes N (N >= 2): the nodes it ran on")
        bw, t0, ranks = fit_bench(a.inter_bench, a.inter_bench_ranks, "inter")
        n = a.inter_bench_nodes
        if ranks % n:
            raise ModelError(f"{a.inter_bench}: {ranks} ranks do not spread evenly over {n} nodes")
        src = f"measured: {a.inter_bench} ({ranks} ranks on {n} nodes)"
        inp.set("inter_busbw", bw, src + ", largest size less the small-size time")
        base = a.base_latency_us if a.base_latency_us is not None else ASSUMED["base_latency_us"][0]
        intra = a.intra_step_us if a.intra_step_us is not None else \
            inp.v.get("intra_step_us", ASSUMED["intra_step_us"][0])
        step = (t0 - base - 2 * (ranks - n) * intra) / (2 * (n - 1))
        if step < 0:
            print(f"{PROG}: warning: {a.inter_bench}: the smallest all-reduce ({t0:g} us) is faster than the "
                  "ring latency of its intra-node steps: network step latency set to 0", file=sys.stderr)
        inp.set("inter_step_us", max(0.0, step),
                src + f": ({t0:g} us - base - 2(P-N) x intra step) / 2(N-1)")
    for name in ("intra_busbw", "inter_busbw", "base_latency_us", "intra_step_us", "inter_step_us",
                 "step_reductions", "mpi_intra_us", "mpi_inter_us", "event_cv"):
        val = getattr(a, name)
        if val is not None:
            positive("--" + name.replace("_", "-"), val, allow_zero=name != "intra_busbw" and name != "inter_busbw")
            inp.set(name, val, "flag --" + name.replace("_", "-"))
        elif name not in inp.v:
            inp.set(name, *ASSUMED[name])
    if int(inp["step_reductions"]) != inp["step_reductions"]:
        raise ModelError("--step-reductions must be a whole number")
    return inp


# ---------------------------------------------------------------------------
# The model


def buckets(params, bucket_mib):
    """Bucket sizes in bytes in launch order (from the end of the buffer)."""
    per = max(1, int(bucket_mib * MIB) // 4)
    n = int(params)
    k = (n + per - 1) // per
    return [4 * (min(n, (j + 1) * per) - j * per) for j in range(k)]


def allreduce_time(s, nodes, inp, algo):
    """(seconds, algorithm, latency part, bandwidth part) of one all-reduce of s bytes."""
    g = int(inp["gpus_per_node"])
    p = g * nodes
    if p == 1:
        return 0.0, "-", 0.0, 0.0
    bw = inp["intra_busbw"] if nodes == 1 else min(inp["intra_busbw"], inp["inter_busbw"])
    bw *= 1e9
    base, ai, ae = inp["base_latency_us"] * 1e-6, inp["intra_step_us"] * 1e-6, inp["inter_step_us"] * 1e-6
    ring_lat = base + 2 * (p - nodes) * ai + 2 * (nodes - 1) * ae
    ring_bw = 2.0 * (p - 1) / p * s / bw
    tree_lat = base + 2 * ((g - 1) * ai + math.ceil(math.log2(nodes)) * ae)
    tree_bw = 2.0 * s / bw
    ring = (ring_lat + ring_bw, "ring", ring_lat, ring_bw)
    tree = (tree_lat + tree_bw, "tree", tree_lat, tree_bw)
    if algo == "ring":
        return ring
    if algo == "tree":
        return tree
    return ring if ring[0] <= tree[0] else tree


_Z = {}


def expected_max_normal(p):
    """E[max of p independent standard normal draws], by integrating
    x p phi(x) Phi(x)^(p-1) over [-12, 12] (Simpson, 24001 points)."""
    if p <= 1:
        return 0.0
    if p not in _Z:
        n, lo, hi = 24000, -12.0, 12.0
        h = (hi - lo) / n
        acc = 0.0
        for i in range(n + 1):
            x = lo + i * h
            phi = math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
            cdf = 0.5 * (1 + math.erf(x / math.sqrt(2)))
            w = 1 if i in (0, n) else 4 if i % 2 else 2
            acc += w * x * p * phi * cdf ** (p - 1)
        _Z[p] = acc * h / 3
    return _Z[p]


def small_reduction_time(nodes, inp):
    """One 8-byte MPI all-reduce by recursive doubling: the steps inside a node,
    then those between nodes (ranks are numbered node by node)."""
    g = int(inp["gpus_per_node"])
    if g * nodes == 1:
        return 0.0
    return 1e-6 * (math.ceil(math.log2(g)) * inp["mpi_intra_us"] +
                   math.ceil(math.log2(nodes)) * inp["mpi_inter_us"])


def predict(nodes, inp, algo="best", overlap="linear"):
    """The row of the table for `nodes` nodes."""
    g = int(inp["gpus_per_node"])
    p = g * nodes
    mean_compute = inp["forward"] + inp["backward"] + inp["optimizer"] + inp["other"]
    # the slowest of p ranks: forward and backward stretched by 1 + cv z_p
    stretch = 1.0 + inp["event_cv"] / math.sqrt(inp["batch"]) * expected_max_normal(p)
    t_b = inp["backward"] * stretch
    compute = (inp["forward"] + inp["backward"]) * stretch + inp["optimizer"] + inp["other"]
    sizes = buckets(inp["params"], inp["bucket_mib"])
    total = sum(sizes)
    done, c, busy, per_bucket, algos = 0, 0.0, 0.0, [], set()
    for s in sizes:
        done += s
        ready = t_b * done / total if overlap == "linear" else t_b
        t, name, lat, bw = allreduce_time(s, nodes, inp, algo)
        c = max(ready, c) + t
        busy += t
        algos.add(name)
        per_bucket.append({"bytes": s, "ready_s": ready, "time_s": t, "latency_s": lat,
                           "bandwidth_s": bw, "done_s": c, "algorithm": name})
    exposed = max(0.0, c - t_b) if p > 1 else 0.0
    reductions = inp["step_reductions"] * small_reduction_time(nodes, inp)
    step = compute + exposed + reductions
    return {"nodes": nodes, "gpus": p, "allreduce_per_step_s": busy, "exposed_s": exposed,
            "reductions_s": reductions, "step_s": step, "compute_s": mean_compute,
            "slowest_compute_s": compute, "imbalance": stretch - 1.0,
            "efficiency": mean_compute / step, "events_per_s": p * inp["batch"] / step,
            "algorithm": "/".join(sorted(algos - {"-"})) or "-", "buckets": per_bucket}


def scaled(inp, **factors):
    """A copy of the inputs with some multiplied."""
    c = Inputs()
    c.v, c.origin = dict(inp.v), dict(inp.origin)
    for k, f in factors.items():
        if k == "compute":
            for n in ("forward", "backward", "optimizer", "other"):
                c.v[n] *= f
        else:
            c.v[k] *= f
    return c


def break_even_compute(nodes, inp, goal, algo, overlap):
    """Per-step compute (s, on one GPU) at which the efficiency at `nodes` is the goal."""
    lo, hi = 1e-6, 1e6
    if predict(nodes, scaled(inp, compute=hi), algo, overlap)["efficiency"] < goal:
        return None
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if predict(nodes, scaled(inp, compute=mid), algo, overlap)["efficiency"] >= goal:
            hi = mid
        else:
            lo = mid
    return hi * predict(nodes, inp, algo, overlap)["compute_s"]


SENSITIVITY = [("per-step compute / 2", {"compute": 0.5}),
               ("inter-node busbw / 2", {"inter_busbw": 0.5}),
               ("intra-node busbw / 2", {"intra_busbw": 0.5}),
               ("network step latency x 2", {"inter_step_us": 2.0}),
               ("NVLink step latency x 2", {"intra_step_us": 2.0}),
               ("base latency x 2", {"base_latency_us": 2.0}),
               ("MPI latencies x 2", {"mpi_intra_us": 2.0, "mpi_inter_us": 2.0}),
               ("event-size spread x 2", {"event_cv": 2.0}),
               ("gradient bytes x 2", {"params": 2.0}),
               ("bucket size x 4", {"bucket_mib": 4.0}),
               ("bucket size / 4", {"bucket_mib": 0.25})]


# ---------------------------------------------------------------------------
# Output


def ms(x):
    return f"{1e3 * x:.3f}"


def report(inp, rows, a, goal_nodes):
    out = []
    g = int(inp["gpus_per_node"])
    sizes = buckets(inp["params"], inp["bucket_mib"])
    out.append(f"# mlpfbench scaling model: {g} GPU(s) per node, algorithm {a.algo}, overlap {a.overlap}")
    out.append("")
    out.append("| input | value | source |")
    out.append("|---|---|---|")
    show = [("forward", "forward per step", lambda v: f"{ms(v)} ms"),
            ("backward", "backward per step", lambda v: f"{ms(v)} ms"),
            ("optimizer", "optimizer per step", lambda v: f"{ms(v)} ms"),
            ("other", "other per step", lambda v: f"{ms(v)} ms"),
            ("batch", "events per GPU per step", lambda v: f"{v:g}"),
            ("params", "trainable parameters", lambda v: f"{int(v)} ({4 * int(v) / 1e6:.2f} MB of fp32 gradient)"),
            ("bucket_mib", "all-reduce bucket", lambda v: f"{v:g} MiB: {len(sizes)} bucket(s), "
                                                          f"the last {sizes[-1] / 1e6:.3f} MB"),
            ("gpus_per_node", "GPUs per node", lambda v: f"{int(v)}"),
            ("intra_busbw", "all-reduce busbw in a node", lambda v: f"{v:.4g} GB/s"),
            ("inter_busbw", "all-reduce busbw across nodes", lambda v: f"{v:.4g} GB/s"),
            ("base_latency_us", "latency per all-reduce", lambda v: f"{v:.4g} us"),
            ("intra_step_us", "latency per step in a node", lambda v: f"{v:.4g} us"),
            ("inter_step_us", "latency per network step", lambda v: f"{v:.4g} us"),
            ("step_reductions", "small all-reduces per step", lambda v: f"{int(v)}"),
            ("mpi_intra_us", "MPI latency per step in a node", lambda v: f"{v:.4g} us"),
            ("mpi_inter_us", "MPI latency per network step", lambda v: f"{v:.4g} us"),
            ("event_cv", "spread of one event's compute (sd/mean)", lambda v: f"{v:.4g} "
             f"(per step {v / math.sqrt(inp['batch']):.4g})")]
    for key, label, f in show:
        out.append(f"| {label} | {f(inp[key])} | {inp.origin[key]} |")
    out.append("")
    out.append("| nodes | GPUs | slowest rank | all-reduce per step (ms) | exposed (ms) | step (ms) "
               "| efficiency | events/s | algorithm |")
    out.append("|------:|-----:|------:|------:|------:|------:|------:|------:|:---|")
    base = predict(1, scaled(inp), a.algo, a.overlap)
    one = {"nodes": "-", "gpus": 1}
    out.append(f"| {one['nodes']} | 1 | +0.0% | 0.000 | 0.000 | {ms(base['compute_s'])} | 100.0% "
               f"| {inp['batch'] / base['compute_s']:.1f} | - |")
    for r in rows:
        out.append(f"| {r['nodes']} | {r['gpus']} | +{100 * r['imbalance']:.1f}% "
                   f"| {ms(r['allreduce_per_step_s'])} | {ms(r['exposed_s'])} "
                   f"| {ms(r['step_s'])} | {100 * r['efficiency']:.1f}% | {r['events_per_s']:.1f} "
                   f"| {r['algorithm']} |")
    out.append("")
    goal = a.goal_efficiency
    upto = [r for r in rows if r["nodes"] <= a.goal_nodes]
    failing = [r for r in upto if r["efficiency"] < goal]
    if not upto:
        out.append(f"Goal ({100 * goal:g}% up to {a.goal_nodes} nodes): no node count of the table is "
                   f"{a.goal_nodes} or below.")
    elif failing:
        r = failing[0]
        out.append(f"Goal ({100 * goal:g}% weak-scaling efficiency up to {a.goal_nodes} nodes): FAILS from "
                   f"{r['nodes']} node(s) ({100 * r['efficiency']:.1f}%).")
    else:
        low = min(upto, key=lambda r: r["efficiency"])
        out.append(f"Goal ({100 * goal:g}% weak-scaling efficiency up to {a.goal_nodes} nodes): holds "
                   f"(lowest {100 * low['efficiency']:.1f}% at {low['nodes']} node(s)).")
    beyond = [r for r in rows if r["efficiency"] < goal]
    if beyond:
        out.append(f"Below {100 * goal:g}% from {beyond[0]['nodes']} node(s) on.")
    elif rows:
        out.append(f"At or above {100 * goal:g}% for every node count of the table (up to {rows[-1]['nodes']}).")
    if goal_nodes is not None:
        ref = predict(goal_nodes, inp, a.algo, a.overlap)
        be = break_even_compute(goal_nodes, inp, goal, a.algo, a.overlap)
        out.append("")
        out.append(f"At {goal_nodes} node(s): the slowest of {ref['gpus']} ranks computes "
                   f"{100 * ref['imbalance']:.1f}% longer than the mean; "
                   f"{ms(ref['exposed_s'])} ms exposed of "
                   f"{ms(ref['allreduce_per_step_s'])} ms all-reduce per step, "
                   f"{ms(ref['reductions_s'])} ms in the small reductions; the last bucket alone takes "
                   f"{ms(ref['buckets'][-1]['time_s'])} ms "
                   f"({ms(ref['buckets'][-1]['latency_s'])} ms of it latency).")
        if be is not None:
            out.append(f"Break-even: {100 * goal:g}% at {goal_nodes} node(s) needs a per-step compute of at "
                       f"least {ms(be)} ms on one GPU (now {ms(ref['compute_s'])} ms).")
        out.append("")
        out.append(f"Sensitivity at {goal_nodes} node(s) (efficiency now {100 * ref['efficiency']:.1f}%):")
        out.append("")
        out.append("| change | efficiency | change (points) |")
        out.append("|---|---:|---:|")
        sens = []
        for label, fac in SENSITIVITY:
            e = predict(goal_nodes, scaled(inp, **fac), a.algo, a.overlap)["efficiency"]
            sens.append((e - ref["efficiency"], label, e))
        for d, label, e in sorted(sens):
            out.append(f"| {label} | {100 * e:.1f}% | {100 * d:+.1f} |")
        worst = min(sens)
        out.append("")
        out.append(f"Dominant input at {goal_nodes} node(s): {worst[1].split(' x ')[0].split(' / ')[0]} "
                   f"({100 * worst[0]:+.1f} points for '{worst[1]}').")
    out.append("")
    return "\n".join(out)


def main(argv):
    ap = argparse.ArgumentParser(prog=PROG, description="Weak-scaling model of mlpfbench on GPU nodes: "
                                 "all-reduce per bucket (ring/tree, bandwidth + latency), overlap with "
                                 "backward, efficiency for G GPUs x N nodes. See docs/scaling-model.md.")
    ap.add_argument("--summary", metavar="FILE", help="mlpf_summary.json: per-step compute (per_rank), "
                    "trainable_parameters, allreduce_bucket_mib, batch_size_per_device, flops_per_event")
    ap.add_argument("--nodes", default="1,2,4,8,16,32,64", help="node counts (default 1,2,4,8,16,32,64)")
    ap.add_argument("--gpus-per-node", type=int, help="GPUs (ranks) per node (default 8)")
    ap.add_argument("--forward-ms", type=float, help="forward time per step on one GPU")
    ap.add_argument("--backward-ms", type=float, help="backward time per step on one GPU")
    ap.add_argument("--optimizer-ms", type=float, help="optimizer time per step (default 0 without --summary)")
    ap.add_argument("--other-ms", type=float, help="rest of the step: data wait, loss, launches (default 0 "
                    "without --summary)")
    ap.add_argument("--achieved-tflops", type=float, help="rescale the compute: forward+backward = batch x "
                    "flops_per_event at this rate (keeps the proportions of all four times)")
    ap.add_argument("--flops-per-event", type=float, help="training FLOP per event (default: the summary's)")
    ap.add_argument("--params", type=float, help="trainable parameters (default: the summary's)")
    ap.add_argument("--bucket-mib", type=float, help="all-reduce bucket, MiB (default: the summary's, else 4)")
    ap.add_argument("--batch-size", type=float, help="events per GPU per step (default: the summary's, else 4)")
    ap.add_argument("--intra-bench", metavar="FILE", help="allreduce-bench / all_reduce_perf table on one node")
    ap.add_argument("--intra-bench-ranks", type=int, help="ranks of --intra-bench when the table does not say")
    ap.add_argument("--inter-bench", metavar="FILE", help="the same over several nodes (run with NCCL_ALGO=Ring)")
    ap.add_argument("--inter-bench-nodes", type=int, help="nodes --inter-bench ran on")
    ap.add_argument("--inter-bench-ranks", type=int, help="ranks of --inter-bench when the table does not say")
    ap.add_argument("--intra-busbw", type=float, help="all-reduce bus bandwidth in a node, GB/s (default 450)")
    ap.add_argument("--inter-busbw", type=float, help="all-reduce bus bandwidth across nodes, GB/s (default 400)")
    ap.add_argument("--base-latency-us", type=float, help="latency of every all-reduce, us (default 8.4)")
    ap.add_argument("--intra-step-us", type=float, help="latency per ring step inside a node, us (default 3.4)")
    ap.add_argument("--inter-step-us", type=float, help="latency per step over the network, us (default 9.6)")
    ap.add_argument("--step-reductions", type=float, help="tiny MPI all-reduces every step waits for (default 2)")
    ap.add_argument("--mpi-intra-us", type=float, help="MPI small-message latency in a node, us (default 0.5)")
    ap.add_argument("--mpi-inter-us", type=float, help="MPI small-message latency between nodes, us (default 2)")
    ap.add_argument("--event-cv", type=float, help="sd/mean of one event's compute time (default 0.08: the "
                    "element-count spread of generated data); 0: every rank equally fast")
    ap.add_argument("--algo", choices=("best", "ring", "tree"), default="best",
                    help="all-reduce algorithm per bucket (default best: the faster of ring and tree)")
    ap.add_argument("--overlap", choices=("linear", "none"), default="linear",
                    help="linear: buckets ready as backward proceeds (default); none: all at its end")
    ap.add_argument("--goal-nodes", type=int, default=16, help="the goal's node count (default 16)")
    ap.add_argument("--goal-efficiency", type=float, default=0.9, help="the goal (default 0.9)")
    ap.add_argument("--json", metavar="FILE", help="write the inputs and every row (with its buckets) as JSON")
    ap.add_argument("--csv", metavar="FILE", help="write the table as CSV")
    a = ap.parse_args(argv)

    nodes = node_list(a.nodes)
    if not 0 < a.goal_efficiency <= 1:
        raise ModelError(f"--goal-efficiency must be in (0, 1], not {a.goal_efficiency}")
    if a.goal_nodes < 1:
        raise ModelError("--goal-nodes must be at least 1")
    inp = resolve(a)
    rows = [predict(n, inp, a.algo, a.overlap) for n in nodes]
    goal_nodes = max((n for n in nodes if n <= a.goal_nodes), default=None)
    if goal_nodes is not None and int(inp["gpus_per_node"]) * goal_nodes == 1:
        goal_nodes = None                   # one GPU: nothing to be sensitive to
    sys.stdout.write(report(inp, rows, a, goal_nodes))
    if a.json:
        doc = {"inputs": {k: {"value": inp.v[k], "source": inp.origin[k]} for k in inp.v},
               "algorithm": a.algo, "overlap": a.overlap,
               "one_gpu_step_s": rows[0]["compute_s"] if rows else None, "rows": rows}
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
    if a.csv:
        with open(a.csv, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["nodes", "gpus", "allreduce_per_step_s", "exposed_s", "reductions_s", "step_s",
                        "efficiency", "events_per_s", "algorithm"])
            for r in rows:
                w.writerow([r["nodes"], r["gpus"], f"{r['allreduce_per_step_s']:.9g}", f"{r['exposed_s']:.9g}",
                            f"{r['reductions_s']:.9g}", f"{r['step_s']:.9g}", f"{r['efficiency']:.9g}",
                            f"{r['events_per_s']:.9g}", r["algorithm"]])
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except ModelError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        sys.exit(e.code)
    except OSError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        sys.exit(1)
