"""Speed and calibration of the scaling-law engine, on one core.

    .venv/bin/python bench/bench_laws.py [--seeds 200]

Prints: the time of one full-grid fit of 30 points (log-law and power law) and of a 1,000-resample
bootstrap, batched against one L-BFGS-B run at a time, side by side; the coverage of 90%
bootstrap intervals of the prediction at 10x the largest D over many noisy data sets with known
truth (target: about 0.9); and, at the 1-30% noise sweeps measure, the coverage and width of the 90%
intervals of the prediction at the largest D and of
the log-law's parameters (coverage_study; tests/test_law_analysis.py asserts it).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

if __name__ == "__main__":  # not when a test imports coverage_study
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the issue asks

import numpy as np

from raysweep.laws import LOG_LAW, POWER_LAW, fit_law
from raysweep.laws.intervals import bootstrap


def log_law(d):
    return np.log(2.0 * d ** 0.5) ** 1.5


def power_law(d):
    return 2.0 + 50.0 / d ** 0.3


def coverage_study(noise: float, studies: int, level: float = 0.9, resamples: int = 100):
    """(share of studies whose interval holds the truth, median width relative to the truth) of
    the prediction at the largest D and of each log-law parameter, over noisy 8-point studies."""
    d = np.logspace(5, 9, 8)
    truths = {"prediction": float(log_law(d[-1])), "A": 2.0, "alpha": 0.5, "beta": 1.5}
    covered, widths = dict.fromkeys(truths, 0), {name: [] for name in truths}
    for seed in range(studies):
        y = log_law(d) * np.exp(noise * np.random.default_rng(seed).standard_normal(d.size))
        boot = bootstrap(LOG_LAW, d, y, max(0.1, 1.345 * noise), resamples=resamples, level=level,
                         at=[d[-1]], seed=seed, log_sigma=np.full(d.size, noise))
        intervals = {"prediction": boot.predictions[d[-1]], **boot.params}
        for name, truth in truths.items():
            low, high = intervals[name]
            covered[name] += low <= truth <= high
            widths[name].append((high - low) / truth)
    return ({name: n / studies for name, n in covered.items()},
            {name: float(np.median(w)) for name, w in widths.items()})


def timed(fn, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--resamples", type=int, default=200,
                        help="bootstrap resamples of each calibration study (a sweep uses 200)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    d30 = np.logspace(5, 10, 30)
    print("one fit of 30 points from the start grid, and a 1,000-resample bootstrap: batched "
          "(raysweep.laws.batch_fit) against one L-BFGS-B run per start and per resample")
    for law, fn, delta in ((LOG_LAW, log_law, 0.1), (POWER_LAW, power_law, 1e-3)):
        y = fn(d30) * (1 + 0.01 * rng.standard_normal(30))
        seconds = {}
        for arm, form in (("batched", law),
                          ("one by one", dataclasses.replace(law, batched=False))):
            seconds[arm] = (
                timed(lambda form=form, y=y, delta=delta: fit_law(form, d30, y, delta), repeat=5),
                timed(lambda form=form, y=y, delta=delta: bootstrap(form, d30, y, delta,
                                                                    resamples=1000, at=[1e11])))
        (fit_b, boot_b), (fit_1, boot_1) = seconds["batched"], seconds["one by one"]
        print(f"  {law.name:10} {law.num_starts} starts: fit {fit_b * 1000:6.1f} ms vs "
              f"{fit_1 * 1000:6.1f} ms ({fit_1 / fit_b:4.1f}x) | bootstrap {boot_b:5.2f} s vs "
              f"{boot_1:5.2f} s ({boot_1 / boot_b:4.1f}x)")

    d8 = np.logspace(5, 9, 8)
    for law, fn, delta, noise in ((LOG_LAW, log_law, 0.1, 0.02),
                                  (POWER_LAW, power_law, 1e-3, 0.005)):
        truth, covered = fn(d8[-1] * 10), 0
        for seed in range(args.seeds):
            y = fn(d8) * (1 + noise * np.random.default_rng(seed).standard_normal(8))
            low, high = bootstrap(law, d8, y, delta, resamples=200, at=[d8[-1] * 10],
                                  seed=seed).predictions[d8[-1] * 10]
            covered += low <= truth <= high
        print(f"{law.name:10} coverage of 90% prediction intervals at 10x the largest D "
              f"(8 points, {noise:.1%} noise, {args.seeds} data sets): {covered / args.seeds:.2f}")

    # At the noise sweeps measure (5-30%), with the errors known as a sweep measures them.
    studies = max(args.seeds // 5, 2)
    print(f"log_law at realistic noise, 8 points, errors measured, {args.resamples} resamples, "
          f"{studies} data sets: coverage of 90% intervals (width / truth)")
    for noise in (0.01, 0.05, 0.15, 0.30):
        coverage, width = coverage_study(noise, studies, resamples=args.resamples)
        print(f"  {noise:4.0%} noise: " + ", ".join(
            f"{name} {coverage[name]:.2f} ({width[name]:.2f})" for name in coverage))


if __name__ == "__main__":
    main()
