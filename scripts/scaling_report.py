#!/usr/bin/python3
"""Scaling table and plot for a sweep of mlpfbench runs.

    scaling_report.py SWEEP_DIR [--out PREFIX] [--baseline N]

SWEEP_DIR holds one run per node count, SWEEP_DIR/nodes-<n>/mlpf_summary.json
(as written by slurm/sweep.sh). A sweep over rank counts on one machine,
SWEEP_DIR/ranks-<r>/ (scripts/sweep_local.sh), is read the same way and scaled
by ranks instead of nodes. Writes PREFIX.md (Markdown table, also printed),
PREFIX.csv and PREFIX.png; PREFIX defaults to SWEEP_DIR/scaling.

Columns:
  nodes, ranks      node count (from the directory name) and world size
  throughput        training events/s: wl-scores.mean_throughput (mean over
                    epochs 2..n); without it the mean of throughput_per_epoch
                    over epochs 2..n, or epoch 1 alone (marked, warm-up included)
  speedup           throughput / throughput of the baseline (the smallest node
                    count that succeeded, or --baseline N)
  efficiency        speedup / (nodes / baseline nodes)
  epoch time        wl-scores.mean_epoch_time, with the same fallback
  exposed all-reduce  sum over ranks of allreduce_exposed_time /
                    sum over ranks of step_time, in %
  final val. acc.   last entry of validation_accuracy
  status            "ok" or the run's error (report.log)

GPU runs (wl-stats.gpus > 0; a summary without the field counts as 0 GPUs)
add, in the Markdown only when some run of the sweep has GPUs (the CSV has the
columns always, empty or 0 for CPU runs):
  gpus              wl-stats.gpus: ranks that trained on a GPU
  per GPU           throughput / gpus (events/s per GPU)
  per-GPU eff.      per-GPU throughput / the baseline's per-GPU throughput
                    (the same as efficiency when every node has as many GPUs)
  energy/event      wl-stats.gpu_energy.joules_per_event (J of GPU energy per
                    training event, NVML); empty where the run has no figure

Failed runs (report.log != "ok", or a nodes-<n>/ directory without a summary)
are rows with their status and no figures, and are left out of the plot.

Exit status: 0 when the report is written and at least one run succeeded;
1 when there is nothing to report (no summaries, unreadable JSON, no run that
succeeded); 2 for wrong arguments (including a --baseline without a good run).
"""
import argparse
import csv
import json
import os
import re
import sys

PROG = "scaling_report.py"
STATUS_WIDTH = 60           # characters of an error kept in the Markdown table
EPOCH1_MARK = "\u2020"      # dagger: figure from epoch 1 alone


class ReportError(Exception):
    """A problem with the input that ends the script with a message."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def mean(values):
    return sum(values) / len(values)


# ---------------------------------------------------------------------------
# Reading the sweep


def find_runs(sweep):
    """Return (unit, [(count, run_dir), ...]) for the nodes-<n>/ directories of
    the sweep, or for its ranks-<r>/ directories when it has no nodes-<n>/."""
    if not os.path.isdir(sweep):
        raise ReportError(f"{sweep} is not a directory")
    entries = sorted(os.listdir(sweep))
    for unit in ("nodes", "ranks"):
        runs = {}
        for name in entries:
            m = re.fullmatch(unit + r"-(\d+)", name)
            path = os.path.join(sweep, name)
            if not m or not os.path.isdir(path):
                continue
            count = int(m.group(1))
            if count < 1:
                continue
            if count in runs:       # nodes-4 and nodes-04
                raise ReportError(f"{runs[count]} and {path} are both runs on {count} {unit_n(count, unit)}")
            runs[count] = path
        # a unit counts only if at least one of its runs left a summary
        if any(os.path.isfile(os.path.join(p, "mlpf_summary.json")) for p in runs.values()):
            return unit, sorted(runs.items())
    raise ReportError(f"no nodes-*/mlpf_summary.json in {sweep}: not a sweep directory, "
                      "or no run has finished")


def epoch_figure(score, per_epoch):
    """(value, basis) of a per-epoch figure: the wl-scores mean when present,
    else the mean over epochs 2..n, else epoch 1 alone; (None, "") if none."""
    if isinstance(score, (int, float)):
        return float(score), "wl-scores"
    per_epoch = [float(v) for v in per_epoch or [] if isinstance(v, (int, float))]
    if len(per_epoch) >= 2:
        return mean(per_epoch[1:]), "epochs 2..n"
    if len(per_epoch) == 1:
        return per_epoch[0], "epoch 1 only"
    return None, ""


def read_run(count, run_dir, unit):
    """One row of the table from RUN_DIR/mlpf_summary.json."""
    path = os.path.join(run_dir, "mlpf_summary.json")
    row = {"key": count, "nodes": count if unit == "nodes" else None,
           "ranks": count if unit == "ranks" else None, "throughput": None, "basis": "",
           "speedup": None, "efficiency": None, "epoch_time": None, "epoch_basis": "",
           "allreduce_pct": None, "accuracy": None, "status": "", "ok": False,
           "gpus": 0, "per_gpu": None, "gpu_efficiency": None, "energy_per_event": None,
           "energy_note": ""}
    if not os.path.isfile(path):
        row["status"] = "no mlpf_summary.json (the run did not finish)"
        return row
    try:
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ReportError(f"{path}: not readable JSON: {e}")
    try:
        report = summary["report"]
        log = report["log"]
        stats = report["wl-stats"]
        scores = report.get("wl-scores") or {}
        if not isinstance(stats, dict) or not isinstance(scores, dict):
            raise TypeError
    except (KeyError, TypeError):
        raise ReportError(f"{path}: not an mlpfbench summary (needs report.log and report.wl-stats, "
                          "see docs/mlpf_summary.schema.json)")

    # The node count comes from the directory (what the sweep asked for): a run
    # that failed early reports nodes = 1 whatever it was given.
    if unit == "nodes":
        row["ranks"] = stats.get("world_size")
    else:
        row["nodes"] = stats.get("nodes")
    gpus = stats.get("gpus", 0)
    if gpus is None:
        gpus = 0
    if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0:
        raise ReportError(f"{path}: wl-stats.gpus is {gpus!r}, not a GPU count")
    row["gpus"] = gpus
    if log != "ok":
        row["status"] = " ".join(str(log).split()) or "failed"
        return row
    if unit == "nodes" and stats.get("nodes") not in (None, count):
        print(f"{PROG}: warning: {path} reports {stats['nodes']} node(s), the directory says {count}",
              file=sys.stderr)
    if unit == "ranks" and stats.get("world_size") not in (None, count):
        print(f"{PROG}: warning: {path} reports {stats['world_size']} rank(s), the directory says {count}",
              file=sys.stderr)

    row["status"] = "ok"
    row["throughput"], row["basis"] = epoch_figure(scores.get("mean_throughput"),
                                                   stats.get("throughput_per_epoch"))
    row["epoch_time"], row["epoch_basis"] = epoch_figure(scores.get("mean_epoch_time"),
                                                         stats.get("epoch_times"))
    ranks = [r for r in stats.get("per_rank") or [] if isinstance(r, dict)]
    step = sum(float(r.get("step_time") or 0) for r in ranks)
    exposed = sum(float(r.get("allreduce_exposed_time") or 0) for r in ranks)
    if step > 0:
        row["allreduce_pct"] = 100.0 * exposed / step
    acc = stats.get("validation_accuracy") or []
    if acc:
        row["accuracy"] = float(acc[-1])
    energy = stats.get("gpu_energy")
    if isinstance(energy, dict):
        jpe = energy.get("joules_per_event")
        if isinstance(jpe, (int, float)) and not isinstance(jpe, bool) and jpe >= 0:
            row["energy_per_event"] = float(jpe)
        elif isinstance(energy.get("note"), str):
            row["energy_note"] = " ".join(energy["note"].split())
    # a run that succeeded but trained no epoch has nothing to scale
    row["ok"] = row["throughput"] is not None and row["throughput"] > 0
    if row["ok"] and gpus > 0:
        row["per_gpu"] = row["throughput"] / gpus
    if not row["ok"]:
        row["status"] = "ok, but no throughput recorded"
    return row


def apply_baseline(rows, unit, wanted):
    """Fill in speedup and efficiency; return the baseline row."""
    good = [r for r in rows if r["ok"]]
    if wanted is not None:
        base = next((r for r in rows if r["key"] == wanted), None)
        if base is None:
            have = ", ".join(str(r["key"]) for r in rows)
            raise ReportError(f"--baseline {wanted}: the sweep has no run on {wanted} "
                              f"{unit_n(wanted, unit)} (it has {have})", 2)
        if not base["ok"]:
            raise ReportError(f"--baseline {wanted}: the run on {wanted} {unit_n(wanted, unit)} "
                              f"has no throughput ({base['status']})", 2)
    elif good:
        base = good[0]                     # rows are sorted: the smallest count that worked
    else:
        return None
    for r in good:
        r["speedup"] = r["throughput"] / base["throughput"]
        r["efficiency"] = r["speedup"] / (r["key"] / base["key"])
        if r["per_gpu"] is not None and base["per_gpu"] is not None:
            r["gpu_efficiency"] = r["per_gpu"] / base["per_gpu"]
    return base


def read_mode(sweep):
    """'weak' or 'strong' from SWEEP/mode.txt (written by slurm/sweep.sh), else None."""
    try:
        with open(os.path.join(sweep, "mode.txt"), encoding="utf-8") as f:
            mode = f.read().strip()
    except OSError:
        return None
    return mode if mode in ("weak", "strong") else None


# ---------------------------------------------------------------------------
# Writing the report


def fmt(x, kind):
    """A figure for the Markdown table; '' when missing."""
    if x is None:
        return ""
    if kind == "rate":          # throughput and times: 1 or 2 decimals, 3 significant digits below 1
        return f"{x:.1f}" if abs(x) >= 100 else f"{x:.2f}" if abs(x) >= 1 else f"{x:.3g}"
    if kind == "ratio":
        return f"{x:.2f}"
    if kind == "pct":
        return f"{x:.1f}%"
    if kind == "acc":
        return f"{x:.4f}"
    return str(x)


def md_status(status):
    """The status cut to STATUS_WIDTH characters, with '|' escaped for Markdown."""
    if len(status) > STATUS_WIDTH:
        status = status[:STATUS_WIDTH - 1].rstrip() + "\u2026"
    return status.replace("|", "\\|")


def unit_n(n, unit):
    """'1 node', '2 nodes', '1 rank', ..."""
    return unit if n != 1 else unit[:-1]


def has_gpus(rows):
    """Whether any run of the sweep trained on GPUs (the Markdown then has the GPU columns)."""
    return any(r["gpus"] > 0 for r in rows)


def markdown(rows, unit, base, sweep_name, mode, chosen):
    gpu = has_gpus(rows)
    lines = [f"# Scaling report: {sweep_name}", ""]
    what = f"{mode} scaling, " if mode else ""
    if base:
        lines.append(f"{what}{len(rows)} run(s); baseline {base['key']} {unit_n(base['key'], unit)} = "
                     f"{fmt(base['throughput'], 'rate')} events/s; "
                     f"efficiency = speedup / ({unit} / {base['key']}).")
        smallest = rows[0]
        if not chosen and not smallest["ok"]:
            lines.append(f"The smallest run ({smallest['key']} {unit_n(smallest['key'], unit)}) failed: "
                         "the baseline is the smallest one that succeeded.")
    else:
        lines.append(f"{what}{len(rows)} run(s); none succeeded.")
    if gpu and base and base["per_gpu"] is not None:
        lines.append(f"GPU runs: baseline {fmt(base['per_gpu'], 'rate')} events/s per GPU "
                     f"({base['gpus']} GPU(s)); per-GPU efficiency = per-GPU throughput / the baseline's.")
    lines.append("")
    if gpu:
        lines.append("| nodes | ranks | gpus | throughput (events/s) | per GPU (events/s) | speedup "
                     "| efficiency | per-GPU eff. | epoch time (s) | exposed all-reduce "
                     "| energy/event (J) | final val. acc. | status |")
        lines.append("|------:|------:|------:|------:|------:|------:|------:|------:|------:|------:"
                     "|------:|------:|:------|")
    else:
        lines.append("| nodes | ranks | throughput (events/s) | speedup | efficiency | epoch time (s) "
                     "| exposed all-reduce | final val. acc. | status |")
        lines.append("|------:|------:|------:|------:|------:|------:|------:|------:|:------|")
    marked = False
    notes = []
    for r in rows:
        thr, et = fmt(r["throughput"], "rate"), fmt(r["epoch_time"], "rate")
        if r["basis"] == "epoch 1 only":
            thr, marked = thr + " " + EPOCH1_MARK, True
        if r["epoch_basis"] == "epoch 1 only":
            et, marked = et + " " + EPOCH1_MARK, True
        eff = None if r["efficiency"] is None else 100.0 * r["efficiency"]
        if gpu:
            geff = None if r["gpu_efficiency"] is None else 100.0 * r["gpu_efficiency"]
            cells = [fmt(r["nodes"], ""), fmt(r["ranks"], ""), fmt(r["gpus"], ""), thr,
                     fmt(r["per_gpu"], "rate"), fmt(r["speedup"], "ratio"), fmt(eff, "pct"),
                     fmt(geff, "pct"), et, fmt(r["allreduce_pct"], "pct"),
                     fmt(r["energy_per_event"], "rate"), fmt(r["accuracy"], "acc"), md_status(r["status"])]
            if r["ok"] and r["gpus"] > 0 and r["energy_per_event"] is None:
                why = md_status(r["energy_note"]) if r["energy_note"] else "the summary has none"
                notes.append(f"{r['key']} {unit_n(r['key'], unit)}: no GPU energy figure ({why}).")
        else:
            cells = [fmt(r["nodes"], ""), fmt(r["ranks"], ""), thr, fmt(r["speedup"], "ratio"),
                     fmt(eff, "pct"), et, fmt(r["allreduce_pct"], "pct"),
                     fmt(r["accuracy"], "acc"), md_status(r["status"])]
        lines.append("| " + " | ".join(cells) + " |")
    if marked:
        lines += ["", f"{EPOCH1_MARK} epoch 1 only (the run had one epoch): includes the warm-up, "
                  "not comparable with means over epochs 2..n."]
    if notes:
        lines += [""] + notes
    lines.append("")
    return "\n".join(lines)


CSV_COLUMNS = ["nodes", "ranks", "throughput_events_per_s", "throughput_basis", "speedup",
               "parallel_efficiency", "epoch_time_s", "allreduce_exposed_pct",
               "final_validation_accuracy", "status",
               "gpus", "throughput_per_gpu", "gpu_efficiency", "gpu_energy_per_event_j"]


def write_csv(path, rows):
    """Full precision; efficiencies as fractions (1 = ideal); the status uncut; the GPU
    columns last (gpus 0 and the others empty for CPU runs)."""
    def num(x):
        return "" if x is None else f"{x:.10g}"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for r in rows:
            w.writerow(["" if r["nodes"] is None else r["nodes"], "" if r["ranks"] is None else r["ranks"],
                        num(r["throughput"]), r["basis"], num(r["speedup"]), num(r["efficiency"]),
                        num(r["epoch_time"]), num(r["allreduce_pct"]), num(r["accuracy"]), r["status"],
                        r["gpus"], num(r["per_gpu"]), num(r["gpu_efficiency"]), num(r["energy_per_event"])])


def write_png(path, rows, unit, base, sweep_name, mode):
    """Throughput against the ideal line (left) and parallel efficiency (right)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
    except ImportError:
        raise ReportError("matplotlib is missing, no plot written: apt-get install -y python3-matplotlib")

    good = [r for r in rows if r["ok"]]
    failed = [r for r in rows if not r["ok"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
    title = f"mlpfbench scaling: {sweep_name}" + (f" ({mode} scaling)" if mode else "")
    if failed:
        keys = [r["key"] for r in failed]
        title += f"\nnot plotted (failed): {', '.join(map(str, keys))} {unit_n(max(keys), unit)}"
    fig.suptitle(title)

    if good:
        x = [r["key"] for r in good]
        thr = [r["throughput"] for r in good]
        eff = [100.0 * r["efficiency"] for r in good]
        lo, hi = min(x), max(x)
        # Ideal: throughput proportional to the count, from the baseline. The
        # throughput panel is log-log, where that is a straight line of slope 1.
        ideal = [base["throughput"] * k / base["key"] for k in (lo, hi)]
        ax1.plot([lo, hi], ideal, "--", color="grey",
                 label=f"ideal (linear from {base['key']} {unit_n(base['key'], unit)})")
        ax1.plot(x, thr, "o-", color="tab:blue", label="measured")
        e1 = [r for r in good if r["basis"] == "epoch 1 only"]
        if e1:
            ax1.plot([r["key"] for r in e1], [r["throughput"] for r in e1], "o", mfc="white",
                     color="tab:red", label="epoch 1 only (warm-up included)")
        for r in good:                   # the speedup next to each point
            ax1.annotate(f"\u00d7{r['speedup']:.2f}", (r["key"], r["throughput"]),
                         textcoords="offset points", xytext=(7, -4), fontsize=8)
        ax1.set_yscale("log")
        ymin, ymax = min(thr + ideal), max(thr + ideal)
        ax1.set_ylim(ymin / 1.5, ymax * 1.5)
        # Plain numbers on the log axis, not powers of ten; when it spans less
        # than a factor 20 the 2x and 5x minor ticks are labelled too.
        def minor_label(v, _):
            return f"{v:g}" if ymax / ymin < 20 and f"{v:g}"[0] in "25" else ""
        ax1.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax1.yaxis.set_minor_formatter(FuncFormatter(minor_label))
        ax2.axhline(100, ls="--", color="grey", label="ideal")
        ax2.plot(x, eff, "s-", color="tab:green", label="measured")
        ax2.set_ylim(0, max(eff + [100.0]) * 1.12)
        for ax in (ax1, ax2):            # powers of two sit evenly on a log2 axis
            if hi > lo:
                ax.set_xscale("log", base=2)
                ax.set_xlim(lo / 1.3, hi * 1.3)
            ax.xaxis.set_major_locator(FixedLocator(x))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(loc="lower left" if ax is ax2 else "upper left", fontsize=8)
    else:
        for ax in (ax1, ax2):
            ax.text(0.5, 0.5, "no successful run", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
    ax1.set_title("throughput (log-log)", fontsize=10)
    ax1.set_xlabel(unit)
    ax1.set_ylabel("throughput (training events/s)")
    ax2.set_title(f"parallel efficiency = speedup / ({unit} / baseline {unit})", fontsize=10)
    ax2.set_xlabel(unit)
    ax2.set_ylabel("parallel efficiency (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------


def main(argv):
    ap = argparse.ArgumentParser(prog=PROG, description="Scaling table (Markdown, CSV) and plot (PNG) for "
                                 "a sweep of mlpfbench runs, SWEEP_DIR/nodes-<n>/mlpf_summary.json.")
    ap.add_argument("sweep", metavar="SWEEP_DIR")
    ap.add_argument("--out", metavar="PREFIX", help="write PREFIX.md, PREFIX.csv, PREFIX.png "
                    "(default SWEEP_DIR/scaling)")
    ap.add_argument("--baseline", metavar="N", type=int,
                    help="node count to compare with (default: the smallest that succeeded)")
    a = ap.parse_args(argv)

    unit, runs = find_runs(a.sweep)
    rows = sorted((read_run(n, d, unit) for n, d in runs), key=lambda r: r["key"])
    base = apply_baseline(rows, unit, a.baseline)
    sweep_name = os.path.basename(os.path.normpath(os.path.abspath(a.sweep)))
    mode = read_mode(a.sweep)

    prefix = a.out or os.path.join(a.sweep, "scaling")
    if os.path.dirname(prefix):
        os.makedirs(os.path.dirname(prefix), exist_ok=True)
    text = markdown(rows, unit, base, sweep_name, mode, a.baseline is not None)
    with open(prefix + ".md", "w", encoding="utf-8") as f:
        f.write(text)
    write_csv(prefix + ".csv", rows)
    sys.stdout.write(text)
    write_png(prefix + ".png", rows, unit, base, sweep_name, mode)
    print(f"{PROG}: wrote {prefix}.md, {prefix}.csv, {prefix}.png")
    if base is None:
        raise ReportError(f"no run in {a.sweep} succeeded: nothing to scale")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except ReportError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        sys.exit(e.code)
    except OSError as e:        # cannot write the report
        print(f"{PROG}: {e}", file=sys.stderr)
        sys.exit(1)
