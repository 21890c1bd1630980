#!/usr/bin/python3
"""The score hep-score gives a results directory, recomputed by hep-score's
published rule from a hep-score configuration (hepscore/mlpf-cpu.yaml, ...),
without hep-score itself.

    scripts/hepscore_score.py CONFIG.yaml OUTDIR [--json]

For every benchmark B of the configuration, each OUTDIR/B/run*/RESULTS_FILE
(results_file, default B_summary.json) must be a JSON object with the keys
app, run_info and report, report["wl-scores"] a dict holding every key of
ref_scores; the run's score is the geometric mean over those keys of
round(wl-scores[k] / ref_scores[k], 4), rounded to 4 places. The benchmark's
score is the median over its runs (the mean of the middle two for an even
count), and there must be exactly `repetitions` good runs. The final score is
the geometric mean over benchmarks, weighted by `weight` (default 1), times
settings.scaling (default 1), rounded to 4 places.

Prints one line per run and per benchmark and the final score; exit status 1
(with the reason) when hep-score would fail the configuration.
"""
import glob
import json
import os
import sys

import yaml


def geometric_mean(values, weights=None):
    weights = weights or [1.0] * len(values)
    total = sum(weights)
    if not values or total == 0:
        return 0.0
    product = 1.0
    for v, w in zip(values, weights):
        product *= float(v) ** w
    return product ** (1.0 / total)


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def run_score(path, refs):
    """Score of one run's summary, or raise ValueError saying why it has none."""
    try:
        with open(path) as f:
            s = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError("cannot read %s: %s" % (path, exc))
    for key in ("app", "run_info", "report"):
        if key not in s:
            raise ValueError("%s lacks the key '%s'" % (path, key))
    scores = s["report"].get("wl-scores") if isinstance(s["report"], dict) else None
    if not isinstance(scores, dict):
        raise ValueError("%s: report has no dict 'wl-scores'" % path)
    ratios = []
    for key, ref in refs.items():
        if key not in scores:
            raise ValueError("%s: sub-score '%s' not reported (report.log: %s)"
                             % (path, key, s["report"].get("log")))
        ratios.append(round(float(scores[key]) / float(ref), 4))
    return round(geometric_mean(ratios), 4)


def main(argv):
    if len(argv) < 3 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) > 1 else 2
    conf_path, outdir, as_json = argv[1], argv[2], "--json" in argv[3:]
    with open(conf_path) as f:
        doc = yaml.safe_load(f)
    conf = doc.get("hepscore") or doc.get("hepscore_benchmark")  # the older hep-score's top key
    settings = conf["settings"]
    reps = int(settings["repetitions"])
    results, weights, report = [], [], {}
    for bmk, bc in conf["benchmarks"].items():
        if bmk.startswith("."):  # commented out
            continue
        name = bc.get("results_file", bmk + "_summary.json")
        paths = sorted(glob.glob(os.path.join(outdir, bmk, "run*", name)))
        runs = {}
        for p in paths:
            try:
                runs[p] = run_score(p, bc["ref_scores"])
                print("%s %s: %.4f" % (bmk, os.path.relpath(p, outdir), runs[p]))
            except ValueError as exc:
                print("%s: no score: %s" % (bmk, exc))
        if len(runs) != reps:
            print("%s: %d good run(s), the configuration asks for %d: hep-score fails it"
                  % (bmk, len(runs), reps))
            return 1
        score = median(list(runs.values()))
        print("%s: %.4f (median of %d run(s))" % (bmk, score, reps))
        results.append(score)
        weights.append(float(bc.get("weight", 1.0)))
        report[bmk] = score
    final = round(geometric_mean(results, weights) * float(settings.get("scaling", 1)), 4)
    print("%s score: %.4f" % (settings["name"], final))
    if as_json:
        print(json.dumps({"score": final, "benchmarks": report}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
