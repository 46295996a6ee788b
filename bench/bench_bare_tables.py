"""Tables brought from elsewhere: bare values, one per checkpoint, no standard errors (what a
researcher copies from a paper or an older study), judged by `raysweep fit --csv`'s analysis.

    .venv/bin/python bench/bench_bare_tables.py [--repeats 40]

Seven checkpoints, doubling from 1e8 to 6.4e9 tokens, of four shapes with relative Gaussian
noise of 0.5% and 2% per point (the noise is not given to the analysis: it estimates it from the
points): a rising log-law (aligned), BLEU falling 30% across the checkpoints (misaligned), a
rise then a fall of 6 points (misaligned, the paper's fluctuating BLEU), and flat (no effect).
Prints, per noise and shape, how many tables got each verdict. Every change in the falling and
the rise-then-fall tables is 15-60 times the noise; a right answer there is the bar.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from raysweep.laws import LOG_LAW  # noqa: E402
from raysweep.laws.analysis import analyse  # noqa: E402

D = np.array([1e8, 2e8, 4e8, 8e8, 1.6e9, 3.2e9, 6.4e9])
NOISES = (0.005, 0.02)


def shapes() -> dict[str, np.ndarray]:
    """Each shape's true values at D, named with the verdict it should get."""
    u = np.log(D / D[0]) / np.log(D[-1] / D[0])  # 0 .. 1 across the checkpoints
    return {"rising log-law (aligned)": np.log(2.0 * D ** 0.5) ** 1.5 / 3,
            "falling 30% (misaligned)": 30 * (1 - 0.3 * u),
            "rise then fall (misaligned)": 25 + 6 * np.sin(np.pi * u),
            "flat (no effect)": np.full(D.size, 25.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40, help="tables per noise and shape")
    args = parser.parse_args()
    started = time.time()
    for noise in NOISES:
        rng = np.random.default_rng(0)
        for name, truth in shapes().items():
            verdicts = Counter(
                analyse(LOG_LAW, D, truth * (1 + noise * rng.standard_normal(D.size)), 0.1,
                        resamples=30).verdict for _ in range(args.repeats))
            print(f"noise {noise:.1%}  {name:28} "
                  + ", ".join(f"{v} {n}" for v, n in sorted(verdicts.items())))
    print(f"{len(NOISES) * len(shapes()) * args.repeats} tables in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
