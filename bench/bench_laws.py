"""Speed and calibration of the scaling-law engine, on one core.

    .venv/bin/python bench/bench_laws.py [--seeds 200]

Prints: the time of one full-grid fit of 30 points (log-law and power law), of a 1,000-resample
bootstrap, and the coverage of 90% bootstrap intervals of the prediction at 10x the largest D over
many noisy data sets with known truth (target: about 0.9).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the issue asks

import numpy as np

from raysweep.laws import LOG_LAW, POWER_LAW, fit_law
from raysweep.laws.intervals import bootstrap


def log_law(d):
    return np.log(2.0 * d ** 0.5) ** 1.5


def power_law(d):
    return 2.0 + 50.0 / d ** 0.3


def timed(fn, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    d30 = np.logspace(5, 10, 30)
    for law, fn, delta in ((LOG_LAW, log_law, 0.1), (POWER_LAW, power_law, 1e-3)):
        y = fn(d30) * (1 + 0.01 * rng.standard_normal(30))
        fit_seconds = timed(lambda law=law, y=y, delta=delta: fit_law(law, d30, y, delta), repeat=5)
        boot_seconds = timed(lambda law=law, y=y, delta=delta: bootstrap(
            law, d30, y, delta, resamples=1000, at=[1e11]))
        print(f"{law.name:10} one fit, 30 points, {law.num_starts} starts: {fit_seconds * 1000:7.1f} ms"
              f" | bootstrap, 1000 resamples: {boot_seconds:6.2f} s")

    d8 = np.logspace(5, 9, 8)
    for law, fn, delta, noise in ((LOG_LAW, log_law, 0.1, 0.02), (POWER_LAW, power_law, 1e-3, 0.005)):
        truth, covered = fn(d8[-1] * 10), 0
        for seed in range(args.seeds):
            y = fn(d8) * (1 + noise * np.random.default_rng(seed).standard_normal(8))
            low, high = bootstrap(law, d8, y, delta, resamples=200, at=[d8[-1] * 10],
                                  seed=seed).predictions[d8[-1] * 10]
            covered += low <= truth <= high
        print(f"{law.name:10} coverage of 90% prediction intervals at 10x the largest D "
              f"(8 points, {noise:.1%} noise, {args.seeds} data sets): {covered / args.seeds:.2f}")


if __name__ == "__main__":
    main()
