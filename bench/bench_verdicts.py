"""How often the verdict is right: simulated studies with known truth, replayed through analyse.

    .venv/bin/python bench/bench_verdicts.py [--repeats 3] [--resamples 100] [--quick]

Each study is a set of checkpoints (4, 6, 8 or 10, log-spaced over 1.5 decades of D_p, as in the
demo) plus a no-pretraining baseline, drawn from a known shape with relative Gaussian noise of
0.5% .. 30% per point; the analysis is given each point's true standard error, as a sweep gives
it the measured one. Shapes (for a task metric that should rise, and for cross-entropy, which
should fall, fitted with the power law):
  aligned     the log-law (or power law) rising (falling) by `effect` across the checkpoints,
              above (below) the baseline;
  falling     the metric moves the wrong way by `effect` (misaligned);
  peaked      rises, then falls back by `effect` (misaligned, the paper's fluctuating BLEU);
  harmful     flat, `effect` worse than no pretraining (misaligned);
  flat        flat at the baseline (no effect).
Prints the confusion matrix of verdicts per truth, split by how far the effect stands above the
noise of its own estimate (see snr), the share right / inconclusive / wrong, and the reasons of
the wrong verdicts. Target: >= 95% right where the noise is below the effect, and inconclusive
rather than wrong where it is not.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import time
from collections import Counter

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from raysweep.laws import LOG_LAW, POWER_LAW
from raysweep.laws.analysis import ALIGNED, INCONCLUSIVE, MISALIGNED, NO_EFFECT, analyse

EXPECTED = {"aligned": ALIGNED, "falling": MISALIGNED, "peaked": MISALIGNED,
            "harmful": MISALIGNED, "flat": NO_EFFECT}
NOISES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
EFFECTS = (0.1, 0.3)
COUNTS = (4, 6, 8, 10)
# Bands of the signal-to-noise ratio of the effect (see snr): "noise below the effect" is read as
# the effect standing 4 or more standard errors of its own estimate clear of zero.
SNR_BANDS = (("noise below the effect (effect >= 4 standard errors of its estimate)", 4.0),
             ("noise comparable to the effect (2 to 4 standard errors)", 2.0),
             ("noise above the effect (under 2 standard errors)", 0.0))


def truth(shape: str, u: np.ndarray, effect: float, rising: bool) -> tuple[np.ndarray, float]:
    """(values at the checkpoints, baseline) for a shape; u = position in [0, 1] along log D_p.
    Level 10 (a BLEU-like task metric) or 3 (a cross-entropy-like one)."""
    level, better = (10.0, 1.0) if rising else (3.0, -1.0)
    if shape == "aligned":
        # A concave rise in log D (the log-law's regime), reaching `effect` over the range.
        curve = level * (1 + better * effect * (1 - np.exp(-2.5 * u)) / (1 - np.exp(-2.5)))
        return curve, level * (1 - better * effect)
    if shape == "falling":
        return level * (1 - better * effect * u), level
    if shape == "peaked":
        return level * (1 + better * effect * (1 - ((u - 0.5) / 0.5) ** 2)
                        - better * effect * u), level
    if shape == "harmful":
        return np.full(u.size, level * (1 - better * effect)), level
    return np.full(u.size, level), level


def one_study(shape, n, noise, effect, rising, seed, resamples) -> tuple[str, str, float]:
    """(verdict, the start of its reason, signal-to-noise ratio of the effect)."""
    rng = np.random.default_rng(seed)
    d_p = np.logspace(np.log10(2e4), np.log10(6.4e5), n)
    u = (np.log(d_p) - np.log(d_p[0])) / (np.log(d_p[-1]) - np.log(d_p[0]))
    values, baseline = truth(shape, u, effect, rising)
    y = values * (1 + noise * rng.standard_normal(n))
    b = baseline * (1 + noise * rng.standard_normal())
    law, delta = (LOG_LAW, 0.1) if rising else (POWER_LAW, 1e-3)
    a = analyse(law, d_p, y, delta, se=noise * np.abs(y), baseline=b, baseline_se=noise * abs(b),
                increasing=rising, resamples=resamples, min_effect=0.02 * baseline, seed=seed)
    return a.verdict, a.reason.split(":")[0], snr(shape, values, baseline, u, noise)


def snr(shape: str, values, baseline: float, u, noise: float) -> float:
    """How many standard errors of its own estimate the true effect is: the trend across the
    checkpoints (aligned, falling, peaked: the fall back from the peak), the gain over no
    pretraining (harmful), and for the flat truth the smallest effect worth telling (2%)."""
    sigma = noise * np.abs(values)
    w = 1 / sigma ** 2
    trend_se = 1 / np.sqrt(np.sum(w * (u - np.sum(w * u) / np.sum(w)) ** 2))
    gain_se = np.hypot(sigma[-1], noise * baseline)
    if shape == "harmful":
        return abs(values[-1] - baseline) / gain_se
    if shape == "flat":
        return 0.02 * baseline / max(trend_se, gain_se)
    if shape == "peaked":
        return (values.max() - values[-1]) / trend_se
    return abs(values[-1] - values[0]) / trend_se


def _run(job) -> str:
    (shape, n, noise, effect, rising, rep), resamples = job
    seed = sum(map(ord, f"{shape}{n}{noise}{effect}{rising}{rep}"))  # stable across processes
    return one_study(shape, n, noise, effect, rising, seed, resamples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resamples", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few cases")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    noises, counts = (NOISES[::3], COUNTS[1:2]) if args.quick else (NOISES, COUNTS)
    results: dict[tuple[str, bool], Counter] = {}
    started = time.time()
    cases = list(itertools.product(EXPECTED, counts, noises, EFFECTS, (True, False),
                                   range(args.repeats)))
    wrong_reasons: Counter = Counter()
    with multiprocessing.Pool(args.jobs) as pool:
        outcomes = pool.imap(_run, [(case, args.resamples) for case in cases], chunksize=4)
        for i, (case, (verdict, reason, ratio)) in enumerate(zip(cases, outcomes)):
            shape = case[0]
            band = next(name for name, low in SNR_BANDS if ratio >= low)
            results.setdefault((shape, band), Counter())[verdict] += 1
            if verdict not in (EXPECTED[shape], INCONCLUSIVE):
                wrong_reasons[(shape, verdict, reason)] += 1
            if (i + 1) % 100 == 0:
                print(f"  {i + 1}/{len(cases)} studies, {time.time() - started:.0f} s", flush=True)
    print_matrix(results)
    print("\nwrong verdicts by reason:")
    for (shape, verdict, reason), count in wrong_reasons.most_common():
        print(f"  {count:4}  {shape} called {verdict}: {reason}")
    print(f"{len(cases)} simulated studies in {time.time() - started:.0f} s "
          f"({args.resamples} bootstrap resamples each)")


def print_matrix(results: dict[tuple[str, str], Counter]) -> None:
    columns = (ALIGNED, MISALIGNED, NO_EFFECT, INCONCLUSIVE)
    for band, _ in SNR_BANDS:
        print(f"\n{band}\n{'truth':10} {'expected':11}" + "".join(f"{c:>13}" for c in columns)
              + f"{'right':>8}{'inconcl.':>9}{'wrong':>7}")
        totals = Counter()
        for shape, expected in EXPECTED.items():
            row = results.get((shape, band), Counter())
            total = sum(row.values())
            if not total:
                continue
            right, unsure = row[expected], row[INCONCLUSIVE]
            wrong = total - right - unsure
            totals.update(right=right, unsure=unsure, wrong=wrong, total=total)
            print(f"{shape:10} {expected:11}" + "".join(f"{row[c]:>13}" for c in columns)
                  + f"{right / total:>8.0%}{unsure / total:>9.0%}{wrong / total:>7.0%}")
        if totals["total"]:
            t = totals["total"]
            print(f"{'all (' + str(t) + ')':22}" + " " * 13 * len(columns)
                  + f"{totals['right'] / t:>8.1%}{totals['unsure'] / t:>9.1%}"
                    f"{totals['wrong'] / t:>7.1%}")


if __name__ == "__main__":
    main()
