"""Extrapolation accuracy of the finished demo sweeps, the paper's headline: refit every law on all
but the largest checkpoint (and on all but the two largest), predict the held-out ones, and read
the relative error and whether the interval held them.

    .venv/bin/python bench/bench_extrapolation.py [--resamples 200] [--specs jobs/demo.yaml ...]

Reads each sweep's MLflow store (runs/<name>/mlflow.db; no Ray is started, nothing is written)
through raysweep.refit.sweep_laws, the points every law is fitted on, and refits with the
spec's fit settings (raysweep.refit.holdout_group -> raysweep.laws.holdout). A sweep whose store
is missing is named, with the command that makes it.

Per sweep, per law (metric, D_f) and held-out count: the held-out D_p, measured value (± its
standard error), prediction with its interval, relative error (predicted - measured) / measured,
whether the law's interval held the measured value, and whether it did once widened by the
point's own error (the check for a new noisy measurement). The verdict column is the law's
verdict on all its checkpoints (raysweep.refit.analyse_group). Then a summary per metric over
the laws judged aligned: median |relative error| and the share held, for each held-out count,
with the paper's figures beside them for reference.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from raysweep.laws.analysis import ALIGNED  # noqa: E402
from raysweep.laws.holdout import NO_PREDICTION, Holdout, summarise  # noqa: E402
from raysweep.refit import analyse_group, holdout_group, not_fitted, sweep_laws  # noqa: E402
from raysweep.spec_loader import load_spec  # noqa: E402
from raysweep.tracking import Tracker  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPECS = ("jobs/demo.yaml", "jobs/demo-misaligned.yaml", "jobs/demo-causal.yaml")
HELD_OUT = (1, 2)
PAPER = ("the paper (/work/shared/notes/paper.md), for reference: a different protocol, \"fit on "
         "the 4 points with the least pretraining data, predict the rest\"; \"reported prediction "
         "errors (exact error definition not given): at most 0.061 for BLEU with aligned "
         "mixtures; at most 0.025 for BLEU with English-only pretraining on en-de and en-ro\". "
         "It gives no interval coverage.")
PAPER_BLEU = ("at most 0.061 (aligned mixtures), 0.025 (English-only on en-de, en-ro); fit on "
              "the 4 smallest D_p, error definition not given")
HEAD = (f"  {'metric':<14} {'D_f':>7}  {'verdict (all)':<13} {'held out':<8} {'D_p':>10}  "
        f"{'measured':>17}  {'predicted [interval]':<30} {'rel. error':>10}  {'held':>4}  "
        f"{'held (+ se)':>11}")


def _yes(flag: bool | None) -> str:
    return "-" if flag is None else ("yes" if flag else "NO")


def _why_no_prediction(h: Holdout) -> str:
    """The note of a holdout without prediction, short: the fitted points' verdict and the first
    clause of its reason."""
    head = NO_PREDICTION if h.law_holds is False else "no prediction"
    return f"{head} ({h.verdict} on the {h.fitted_on} fitted: {h.reason.split(':')[0]})"


def law_rows(metric: str, d_f: int, verdict: str, h: Holdout) -> list[str]:
    """One line per held-out point of one holdout (or one saying why there is no prediction)."""
    start = f"  {metric:<14} {d_f:>7,}  {verdict:<13} {'last ' + str(h.last):<8} "
    lines = []
    for r in h.held_out:
        measured = f"{r.y:.4g}" + (f" ± {r.se:.2g}" if r.se is not None else "")
        head = start + f"{r.x:>10.4g}  {measured:>17}  "
        if r.predicted is None:
            lines.append(head + (_why_no_prediction(h) if not lines else "no prediction"))
        else:
            interval = f"{r.predicted:.4g} [{r.low:.4g}, {r.high:.4g}]"
            error = "-" if r.relative_error is None else f"{r.relative_error:+.2%}"
            lines.append(head + f"{interval:<30} {error:>10}  {_yes(r.held):>4}  "
                         f"{_yes(r.predictive_held):>11}")
        start = " " * len(start)
    return lines


def bench_sweep(path: str, resamples: int | None) -> list[dict] | None:
    """Print every law's held-out predictions of one sweep; its records (None: no store)."""
    spec = load_spec(ROOT / path)
    if Tracker.of_existing_sweep(spec) is None:
        print(f"== {spec.name} ({path}): MISSING: no MLflow store at {spec.root / 'mlflow.db'}; "
              f"make it with `raysweep run {path}` (then rerun this benchmark)\n")
        return None
    started, laws = time.perf_counter(), sweep_laws(spec)
    checkpoints = spec.published_tokens()
    print(f"== {spec.name} ({path}): {len(checkpoints)} checkpoints, D_p {checkpoints[0]:,} .. "
          f"{checkpoints[-1]:,}; {spec.fit.interval_level:.0%} intervals; resamples "
          f"{resamples or spec.fit.bootstrap_resamples}")
    print(HEAD)
    records = []
    for unit, task, d_f, metric, points, noise in laws:
        if not_fitted(spec, metric):
            continue
        verdict = analyse_group(unit, points, metric, resamples or spec.fit.bootstrap_resamples,
                                noise).verdict
        for last in HELD_OUT:
            try:
                h = holdout_group(unit, points, metric, last, resamples, noise)
            except ValueError as err:
                print(f"  {metric:<14} {d_f:>7,}  {verdict:<13} last {last}: skipped: {err}")
                continue
            for line in law_rows(metric, d_f, verdict, h):
                print(line)
            records.append({"task": task, "d_f": d_f, "metric": metric, "verdict": verdict,
                            "holdout": h})
    skipped = sorted({m for m in spec.fit.metrics if not_fitted(spec, m)})
    if skipped:
        print(f"  (not fitted: {', '.join(skipped)}: {not_fitted(spec, skipped[0])})")
    print(f"  ({time.perf_counter() - started:.0f} s)\n")
    return records


def _cell(records: list[dict]) -> str:
    """Median |relative error| and the shares held of these records' holdouts."""
    s = summarise(r["holdout"] for r in records)
    if not s["points"]:
        return f"{'no prediction':<36}" if records else f"{'-':<36}"
    share = (f"held {s['held']}/{s['held_of']}, +se {s['predictive_held']}/"
             f"{s['predictive_held_of']}")
    return f"{s['median_abs_relative_error']:>7.2%} {share:<28}"


def summary(name: str, records: list[dict], metrics) -> None:
    """Per metric, over the laws judged aligned on all their checkpoints: each held-out count's
    median |relative error| and shares held; then all aligned laws, and all laws."""
    print(f"-- {name}: median |rel. error| and share held, laws judged aligned on all checkpoints")
    print(f"  {'metric':<24}" + "".join(f"{'last ' + str(k):<37}" for k in HELD_OUT))
    aligned = [r for r in records if r["verdict"] == ALIGNED]
    rows = [(m, [r for r in aligned if r["metric"] == m]) for m in metrics]
    rows += [("all aligned laws", aligned), ("all laws (any verdict)", records)]
    for label, chosen in rows:
        if not any(r["metric"] == label for r in records) and label in metrics:
            continue
        print(f"  {label:<24}" + "".join(_cell([r for r in chosen if r["holdout"].last == k]) + " "
                                         for k in HELD_OUT))
    print(f"  {'paper: bleu':<24}{PAPER_BLEU}")
    without = sum(not r["holdout"].predicted for r in records)
    if without:
        print(f"  no prediction in {without} of {len(records)} holdouts (the law does not hold on "
              f"the fitted checkpoints: see the table)")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", nargs="+", default=list(SPECS),
                        help="sweep specs, relative to the repository (default: the demos)")
    parser.add_argument("--resamples", type=int,
                        help="bootstrap resamples per fit (default: each spec's)")
    args = parser.parse_args()
    for path in args.specs:
        records = bench_sweep(path, args.resamples)
        if records is not None:
            summary(Path(path).stem, records, load_spec(ROOT / path).fit.metrics)
    print(PAPER)


if __name__ == "__main__":
    main()
