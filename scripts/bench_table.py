#!/usr/bin/python3
"""The table of `make bench` (scripts/bench.sh) from the files it left in OUT.

usage: bench_table.py OUT [--command CMD] [--append DOC]
       bench_table.py OUT --peers-only      (the PyTorch rows alone)

Reads OUT/gemm.json (and OUT/gemm-2.json, the same measured at the end: per
shape the higher rate counts), OUT/train-b1, OUT/train-b4, OUT/ranks-1, OUT/ranks-2
(mlpf_summary.json each), OUT/infer.json and every PyTorch run, OUT/torch-*.json
(torch_bench.py --json), and where present OUT/train-b1-2 (batch 1 again,
run alternately with the PyTorch runs: the faster run of each implementation
is the one shown), prints a Markdown section and, with --append, adds it to DOC.

PyTorch runs are grouped by peer (torch version and installation) and mode
(eager or compiled, precision); a group counts only if every run of it
passed its check (torch_bench.py: the first step's losses against
torch_twin) and none failed (OUT/torch-*.failed); otherwise the table says
why it was left out and shows none of its figures. The headline ratio, the
ceiling and the goals use the fastest group that counts, named; inference
likewise. OUT/peers.tsv (bench.sh) lists the peers and modes not found.

Row 1 judges the BLAS as gemm-bench does: its dense product under 50% of
the cores' FMA peak is a misconfigured BLAS, and then neither the "70% of
the limit" goal nor an "out of reach" verdict is drawn from that limit (the
FMA-peak ceiling still can). two_x_verdict, limit_goal and blas_health are
tested by tests/blas.sh.

Training figures are steady-state rates over the timed steps of rank 0
(events / step time; the warm-up steps that train --warmup-steps left out are
not in them, as torch_bench.py --warmup leaves its own out); GFLOP/s use the
spec's cost model (3x forward FLOPs).
"""
import argparse
import datetime
import glob
import json
import os
import platform
import re
import sys

KINDS = ["matrix_products", "distance_products_fp64", "binning", "kernel_matrix", "elementwise", "loss", "optimizer",
         "data_wait", "allreduce_exposed"]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"bench_table: cannot read {path}: {e}")


def train_figures(out, name):
    s = load(os.path.join(out, name, "mlpf_summary.json"))
    st = s["report"]["wl-stats"]
    ranks = st["per_rank"]
    r0 = ranks[0]
    # training FLOPs per element (cost model); flops_per_event averages over
    # every step, warm-up included, so it is not used with the measured steps
    per_el = st.get("flops_per_element") or st["flops_per_event"] * r0["events"] / r0["elements"]
    b = st["batch_size_per_device"]
    other = r0["step_time"] - sum(r0["time_by_kind"][k] for k in KINDS)
    return {
        "batch": b,
        "steps": r0["steps"],
        "events_s": r0["events"] / r0["step_time"],
        "s_step": r0["step_time"] / r0["steps"],
        "flops": per_el * r0["elements"] / r0["step_time"],
        "flops_event": per_el * r0["elements"] / r0["events"],  # of the measured events
        "mem_event": r0["peak_memory_mib"] / b,
        "act_event": r0["activation_mib"] / b,
        "kinds": {k: r0["time_by_kind"][k] / r0["step_time"] for k in KINDS},
        "other": other / r0["step_time"],
        "ranks": ranks,
        "stats": st,
    }


RUN_FILE = re.compile(r"torch-(?:(?P<id>.+)-(?P<mode>eager|compiled)-)?(?P<name>b1|b1-2|b4|infer)\.(?P<ext>json|failed)$")


def load_peers(out):
    """Every PyTorch run in OUT (bench.sh's torch-<peer>-<mode>-<run>.json,
    or the older torch-<run>.json of one peer), grouped by peer and mode:
    {(peer, mode): {"name", "runs": [(kind, json)], "failed": [(kind, text)]}},
    kind one of b1 (batch-1 training, each run), b4, infer."""
    groups = {}
    for path in sorted(glob.glob(os.path.join(out, "torch-*"))):
        m = RUN_FILE.match(os.path.basename(path))
        if not m:
            continue
        pid, mode = m.group("id") or "torch", m.group("mode") or "eager"
        kind = "b1" if m.group("name").startswith("b1") else m.group("name")
        g = groups.setdefault((pid, mode), {"name": None, "runs": [], "failed": []})
        if m.group("ext") == "json":
            d = load(path)
            g["runs"].append((kind, d))
            g["name"] = g["name"] or (f"{d.get('peer', 'PyTorch ' + d.get('torch_version', '?'))}, "
                                      f"{d.get('execution', 'eager')}"
                                      + ("" if d.get("precision", "fp32") == "fp32" else f", {d['precision']}"))
        else:
            with open(path) as f:
                lines = [ln.strip() for ln in f if ln.strip()]
            g["failed"].append((kind, lines[-1] if lines else "no output"))
    for (pid, mode), g in groups.items():
        if g["name"] is None:     # every run of it failed: the name from bench.sh's peer-<id>.json
            desc = os.path.join(out, f"peer-{pid}.json")
            g["name"] = f"{load(desc).get('peer', pid) if os.path.exists(desc) else pid}, {mode}"
    names = [g["name"] for g in groups.values()]
    for (pid, mode), g in groups.items():
        if names.count(g["name"]) > 1:    # the same torch through two pythons
            g["name"] += f" [{pid}]"
    return dict(sorted(groups.items()))


def judge(g):
    """None if every run of the group passed its check and none failed,
    else the reason it is left out."""
    for kind, text in g["failed"]:
        return f"the {kind} run failed: {text}"
    for kind, d in g["runs"]:
        c = d.get("check")
        if c is None:
            return f"the {kind} run was not checked (torch_bench.py --no-verify, or an old torch_bench.py)"
        if not c.get("passed"):
            return (f"check FAILED on the {kind} run: the first step's {c.get('worst', '?')} loss is "
                    f"{c.get('max_rel', float('nan')):.2e} (relative) off torch_twin's, tolerance {c.get('tolerance', 0):.2g}")
    return None


def peer_section(out):
    """The PyTorch peers: their rows (training and inference) and the best
    of those that count. Returns a dict with 'train_rows', 'infer_rows',
    'notes', 'best_train' and 'best_infer' (None, or (name, json))."""
    groups = load_peers(out)
    res = {"train_rows": [], "infer_rows": [], "notes": [], "best_train": None, "best_infer": None,
           "b1_runs": 1, "labels": []}
    for key, g in groups.items():
        name = g["name"]
        any_d = g["runs"][0][1] if g["runs"] else {}
        label = any_d.get("peer", name.rsplit(",", 1)[0])
        if label not in res["labels"]:
            res["labels"].append(label)
        what = (f"{any_d.get('blas', '?')}, CPU capability {any_d.get('cpu_capability', '?')}"
                if any_d else "")
        why = judge(g)
        if why is not None:
            res["train_rows"].append(f"| 3. {name}{': ' + what if what else ''} | **left out**: {why} |")
            res["notes"].append(f"left out: {name}: {why}")
            continue
        b1 = [d for k, d in g["runs"] if k == "b1"]
        b4 = [d for k, d in g["runs"] if k == "b4"]
        inf = [d for k, d in g["runs"] if k == "infer"]
        train = []
        if b1:
            best1 = max(b1, key=lambda d: d["events_per_s"])
            res["b1_runs"] = max(res["b1_runs"], len(b1))
            runs = f", best of {len(b1)}" if len(b1) > 1 else ""
            train.append((best1, f"batch 1 **{best1['events_per_s']:.3f} events/s** ({best1['s_per_step']:.2f} s/step{runs})"))
        for d in b4:
            train.append((d, f"batch 4 {d['events_per_s']:.3f} events/s ({d['s_per_step']:.2f} s/step)"))
        worst = max(abs(d["check"]["max_rel"]) for _, d in g["runs"])
        tol = g["runs"][0][1]["check"]["tolerance"]
        extra = []
        if any_d.get("execution") == "compiled":
            comp = [d.get("compile_seconds", 0.0) for _, d in g["runs"]]
            rec = [d.get("compiles_in_timed_steps") for _, d in g["runs"]]
            span = f"{min(comp):.0f}" if round(min(comp)) == round(max(comp)) else f"{min(comp):.0f}-{max(comp):.0f}"
            extra.append(f"compiling {span} s per run, in the warm-up steps (not timed)")
            if any(r is None for r in rec):
                extra.append("recompiles in the timed steps: not countable with this torch")
            elif sum(rec):
                extra.append(f"**{sum(rec)} graphs compiled during the timed steps** (in the figures)")
            else:
                extra.append("no recompile in the timed steps")
        if train:
            mem = " / ".join(f"{d['peak_rss_mib_per_event']:.0f}" for d, _ in train)
            res["train_rows"].append(
                f"| 3. {name}: {what} | " + ", ".join(t for _, t in train)
                + f"; peak RSS {mem} MiB/event above the model; " + "".join(e + "; " for e in extra)
                + f"check passed (first step within {worst:.1e} of torch_twin, tolerance {tol:.2g}) |")
            top = max((d for d, _ in train), key=lambda d: d["events_per_s"])
            if res["best_train"] is None or top["events_per_s"] > res["best_train"][1]["events_per_s"]:
                res["best_train"] = (name, top)
        for d in inf:
            res["infer_rows"].append(f"| 4. inference, batch 1: {name} | {d['events_per_s']:.3f} events/s, peak RSS "
                                     f"{d['peak_rss_mib_per_event']:.0f} MiB/event above the model; check passed |")
            if res["best_infer"] is None or d["events_per_s"] > res["best_infer"][1]["events_per_s"]:
                res["best_infer"] = (name, d)
    peers_tsv = os.path.join(out, "peers.tsv")
    if os.path.exists(peers_tsv):
        with open(peers_tsv) as f:
            for line in f:
                c = line.rstrip("\n").split("\t")
                if c[0] == "missing":
                    res["notes"].append(f"not found: {c[1]}" + (f" ({c[2]})" if len(c) > 2 and c[2] else ""))
                elif c[0] == "unavailable":
                    res["notes"].append(f"not available: {c[1]}, {c[2]}: {c[3] if len(c) > 3 else ''}")
    if res["best_train"] is not None:
        n, d = res["best_train"]
        res["notes"].insert(0, f"best PyTorch training: {n}, batch {d['batch_size']}, {d['events_per_s']:.3f} events/s")
    else:
        res["notes"].insert(0, "best PyTorch training: none (no PyTorch run passed its check)")
    if res["best_infer"] is not None:
        n, d = res["best_infer"]
        res["notes"].insert(1, f"best PyTorch inference: {n}, {d['events_per_s']:.3f} events/s")
    return res


# gemm-bench's rule (src/commands/gemm_bench.c): a BLAS whose dense product
# runs under this share of the cores' FMA peak is misconfigured
HEALTHY_SHARE = 0.5


def blas_health(g):
    """(share of the FMA peak that the dense product reaches, misconfigured):
    misconfigured is None when the peak was not measured."""
    peak = g.get("fma_peak_flops", 0.0) or 0.0
    if peak <= 0 or g.get("width", 512) < 256:   # gemm-bench's rule: tiny shapes are not judged
        return None, None
    share = g["dense_flops"] / peak
    return share, share < g.get("blas_healthy_share", HEALTHY_SHARE)


def blas_name(b):
    """'OpenBLAS 0.3.21, core Zen (OpenBLAS's own choice)' from gemm-bench's or a summary's "blas"."""
    if not b:
        return "BLAS core not recorded"
    who = (f"corrected by mlpfbench from {b.get('corrected_from', '?')}" if b.get("corrected")
           else "OpenBLAS's own choice" if b.get("chosen_by") == "OpenBLAS" else f"set by {b.get('chosen_by', '?')}")
    return (f"{b.get('library', '?')} {b.get('version', '?')}, core {b.get('core', '?')} ({who})"
            + (" [test hook]" if b.get("test_hook") else ""))


def limit_goal(train_flops, limit, misconfigured, share):
    """The ">= 70% of the limit" goal: never judged against a misconfigured BLAS."""
    pct = 100 * train_flops / limit
    if misconfigured:
        return (f"not judged ({pct:.0f}% of a limit that is a misconfigured BLAS's: its dense product runs at "
                f"{100 * share:.0f}% of the cores' FMA peak)")
    return f"{'met' if train_flops >= 0.7 * limit else 'NOT met'} ({pct:.0f}%)"


def two_x_verdict(best_events, torch_best, torch_name, ceil_limit, ceil_peak, misconfigured):
    """The ">= 2x PyTorch" goal. "Out of reach" needs the ceiling at the cores'
    FMA peak below 2x, or a healthy BLAS whose limit puts it below 2x; the
    limit of a misconfigured BLAS alone never makes that verdict."""
    two_x = best_events >= 2 * torch_best
    why = ""
    if not two_x:
        at_peak = ceil_peak / torch_best if ceil_peak > 0 else None
        at_limit = ceil_limit / torch_best
        if at_peak is not None and at_peak < 2:
            why = (f"; out of reach on these cores: even with no work but its matrix products, each at the "
                   f"cores' FMA peak, mlpfbench would be {at_peak:.2f}x PyTorch")
        elif misconfigured:
            why = (f"; not judged out of reach: the BLAS is misconfigured (its limit would put the ceiling at "
                   f"{at_limit:.2f}x), at the cores' FMA peak the ceiling is {at_peak:.2f}x PyTorch")
        elif at_limit < 2:
            why = (f"; out of reach with this BLAS: even with no work but its matrix products, each at the "
                   f"limit, mlpfbench would be {at_limit:.2f}x PyTorch"
                   + (f" ({at_peak:.2f}x at the cores' FMA peak: a faster BLAS could reach it)" if at_peak is not None
                      else " (the FMA peak was not measured)"))
    return (f"{'met' if two_x else 'NOT met'} ({best_events / torch_best:.2f}x the best PyTorch, {torch_name}, "
            f"best batch of each{why})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--command", default="make bench")
    ap.add_argument("--append")
    ap.add_argument("--peers-only", action="store_true",
                    help="print the PyTorch rows and the best peer alone (from OUT/torch-*.json)")
    a = ap.parse_args()
    peers = peer_section(a.out)
    if a.peers_only:
        print("\n".join(peers["train_rows"] + peers["infer_rows"]))
        print("")
        print("\n".join("PyTorch peers: " + n for n in peers["notes"]))
        return
    g = load(os.path.join(a.out, "gemm.json"))
    if os.path.exists(os.path.join(a.out, "gemm-2.json")):  # measured again at the end: the higher rates
        g2 = load(os.path.join(a.out, "gemm-2.json"))
        for k in ("dense_flops", "gram_flops", "message_flops", "fma_peak_flops"):
            g[k] = max(g.get(k, 0.0), g2.get(k, 0.0))
        g["mix_flops"] = 1 / (g["dense_share"] / g["dense_flops"] + g["gram_share"] / g["gram_flops"]
                              + g["message_share"] / g["message_flops"])
    t1, t4 = train_figures(a.out, "train-b1"), train_figures(a.out, "train-b4")
    # batch 1 ran twice for each, alternating: the faster run of each counts
    b1_runs = 1
    if os.path.exists(os.path.join(a.out, "train-b1-2", "mlpf_summary.json")):
        b1_runs = 2
        t1 = max(t1, train_figures(a.out, "train-b1-2"), key=lambda t: t["events_s"])
    inf = load(os.path.join(a.out, "infer.json"))
    r1, r2 = train_figures(a.out, "ranks-1"), train_figures(a.out, "ranks-2")
    thr1 = r1["events_s"]
    if os.path.exists(os.path.join(a.out, "ranks-1b", "mlpf_summary.json")):
        thr1 = (thr1 + train_figures(a.out, "ranks-1b")["events_s"]) / 2  # before and after
    thr2 = sum(r["events"] / r["step_time"] for r in r2["ranks"])
    eff = thr2 / (2 * thr1)
    ar = sum(r["allreduce_time"] for r in r2["ranks"])
    ex = sum(r["allreduce_exposed_time"] for r in r2["ranks"])
    hidden = 1 - ex / ar if ar > 0 else 0.0
    limit = g["mix_flops"]
    st = t1["stats"]
    best_train = max(t1, t4, key=lambda t: t["events_s"])
    best_torch = peers["best_train"]      # (name, json) or None: the fastest checked PyTorch
    mem_event = min(t1["mem_event"], t4["mem_event"])
    L = []
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    L.append(f"### make bench, {now}")
    L.append("")
    L.append(f"Machine: {st['CPU']}, {os.cpu_count()} cores, {platform.node()}; "
             f"{st['software']['openblas']}, {blas_name(st.get('blas'))}; binary ARCH="
             f"{st.get('build', {}).get('arch', '?')}; PyTorch peers: {'; '.join(peers['labels']) or 'none'}; "
             f"mlpfbench {st['software']['mlpfbench']} ({st['software']['git_commit']}). "
             f"Command: `{a.command}` (out: `{a.out}`). Events: {st['data']}, "
             f"~{t1['ranks'][0]['elements'] / t1['ranks'][0]['events']:.0f} elements/event.")
    L.append("")
    L.append("| | figure |")
    L.append("|---|---|")
    twice = " (higher of 2 runs, start and end)" if os.path.exists(os.path.join(a.out, "gemm-2.json")) else ""
    w, sb, dd = g.get("width", 512), g.get("bin", 640), g.get("dist_dim", 128)
    share, misconfigured = blas_health(g)
    health = ("" if share is None else
              f"; dense at {100 * share:.0f}% of the cores' FMA peak: "
              + (f"**BLAS MISCONFIGURED** (under {100 * HEALTHY_SHARE:.0f}%: wrong kernels for this CPU; the limit "
                 f"is that BLAS's, not the machine's)" if misconfigured else "BLAS ok"))
    L.append(f"| 1. BLAS sgemm ({blas_name(g.get('blas'))}), {g['threads']} threads{twice}: dense {g['rows']}x{w}x{w} / "
             f"gram {sb}x{sb}x{dd} / message {sb}x{w}x{sb} | {g['dense_flops']/1e9:.1f} / {g['gram_flops']/1e9:.1f} / "
             f"{g['message_flops']/1e9:.1f} GFLOP/s; model mix (the limit) **{limit/1e9:.1f} GFLOP/s**{health} |")
    for t in (t1, t4):
        k = t["kinds"]
        runs = f", best of {b1_runs} alternating with the PyTorch runs" if t is t1 and b1_runs > 1 else ""
        L.append(f"| 2. mlpfbench training, batch {t['batch']} ({t['steps']} steps{runs}) | "
                 f"**{t['events_s']:.3f} events/s**, {t['s_step']:.2f} s/step, {t['flops']/1e9:.1f} GFLOP/s = "
                 f"**{100*t['flops']/limit:.0f}% of the limit**; peak RSS {t['mem_event']:.0f} MiB/event "
                 f"(activations {t['act_event']:.0f} MiB/event) |")
        L.append(f"| &nbsp;&nbsp;time by kind, batch {t['batch']} | "
                 + ", ".join(f"{n.replace('_', ' ')} {100*k[n]:.1f}%" for n in KINDS)
                 + f", other {100*t['other']:.1f}% |")
    L.extend(peers["train_rows"] or ["| 3. PyTorch (padded batches, autograd, torch.optim.Adam) | no PyTorch "
                                     "peer found (see below) |"])
    L.extend(peers["infer_rows"])
    if peers["best_infer"] is not None:
        n, pinf = peers["best_infer"]
        L.append(f"| 4. inference, batch 1: mlpfbench / best PyTorch ({n}) | {inf['events_per_s']:.3f} / "
                 f"{pinf['events_per_s']:.3f} events/s ({inf['events_per_s']/pinf['events_per_s']:.1f}x) |")
    else:
        L.append(f"| 4. inference, batch 1: mlpfbench (no checked PyTorch to compare) | {inf['events_per_s']:.3f} events/s |")
    L.append(f"| 5. 1 vs 2 ranks, one core each, batch 1/rank (1 rank: mean of runs before and after) | {thr1:.3f} vs {thr2:.3f} events/s: "
             f"efficiency **{100*eff:.0f}%**, all-reduce {100*hidden:.0f}% hidden "
             f"({ar/len(r2['ranks'])/r2['steps']:.3f} s/step, {ex/len(r2['ranks'])/r2['steps']:.3f} s exposed) |")
    # the ceiling: the model's training FLOPs (cost model) at the BLAS limit,
    # and at the cores' FMA peak, with no other work at all
    per_event = t1["flops_event"]
    peak = g.get("fma_peak_flops", 0.0)
    ceil_limit = limit / per_event
    ceil_peak = peak / per_event if peak > 0 else 0.0
    torch_best = best_torch[1]["events_per_s"] if best_torch else 0.0
    L.append(f"| 6. ceiling: {per_event/1e9:.3g} GFLOP/event (cost model) with no other work, at the limit"
             + (f" / at the cores' FMA peak ({peak/1e9:.1f} GFLOP/s, {g.get('fma_isa', '?')})" if peak > 0 else "")
             + f" | {ceil_limit:.3f}" + (f" / {ceil_peak:.3f}" if peak > 0 else "") + " events/s"
             + (f" = {ceil_limit/torch_best:.2f}x" + (f" / {ceil_peak/torch_best:.2f}x" if peak > 0 else "")
                + f" the best PyTorch's ({best_torch[0]})" if best_torch else "") + " |")
    L.append("")
    L.extend("PyTorch peers: " + n for n in peers["notes"])
    L.append("")
    ok = lambda c: "met" if c else "NOT met"
    vs = (two_x_verdict(best_train["events_s"], torch_best, best_torch[0], ceil_limit, ceil_peak, misconfigured)
          if best_torch else "not measured (no PyTorch run passed its check)")
    L.append("Goals: training at >= 70% of the limit: "
             f"{limit_goal(max(t1['flops'], t4['flops']), limit, misconfigured, share)}; "
             f">= 2x PyTorch training: {vs}; "
             f"<= 600 MB peak memory per event: {ok(mem_event*1.048576 <= 600)} ({mem_event*1.048576:.0f} MB); "
             f"2 ranks >= 90% efficiency with >= 80% hidden: {ok(eff >= 0.9 and hidden >= 0.8)}.")
    L.append("")
    text = "\n".join(L)
    print(text)
    if a.append:
        with open(a.append, "a") as f:
            f.write("\n" + text)
        print(f"bench_table: appended to {a.append}", file=sys.stderr)


if __name__ == "__main__":
    main()
