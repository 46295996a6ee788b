"""The noise each point of a law is judged with: measured (the test-set bootstrap and the
finetune seeds, combined by raysweep.laws.points, with the test-set noise checkpoints share), or,
for a table brought without errors, estimated from the points themselves.

Pure numpy: no Ray, no MLflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from raysweep.laws.fit import FitResult
from raysweep.laws.intervals import RELATIVE_ERROR_FLOOR

LAW_MISFIT = 3.0
"""Bare points (no errors given) scattering this many times more about the law than about
their neighbours are a shape the law cannot follow, not noise (point_errors). Chosen on simulated
bare tables of the paper's shapes (a rising log-law, a 30% fall, a rise then a fall, flat, at
0.5% and 2% noise): a provisional setting until the verdicts are calibrated on the whole
measurement path."""


@dataclass
class Noise:
    """Where the points' errors come from, so an inconclusive verdict can say what would resolve
    it. Variances are per point, in the metric's units squared."""

    test_sentences: int | None = None
    seeds: int | None = None
    test_var: float | None = None
    """Mean test-set variance of a point (its bootstrap standard error squared)."""
    seed_var: float | None = None
    """Variance between finetune seeds of one trial (pooled over checkpoints); None: unmeasured
    (one seed), so the points' errors hold the test-set part only."""
    test_cov: dict[tuple[float, float], float] | None = None
    """(D, D') -> covariance of the test-set noise of the points at D and D' (D = 0: the
    baseline), measured on paired bootstrap replicates (raysweep.laws.points). None: unmeasured,
    the points' errors are taken as independent."""


def noise_level(x, y) -> float:
    """Noise standard deviation of bare points, estimated without any law: each interior point
    against the straight line (in log D) through its two neighbours. A smooth curve follows that
    line closely whatever its shape (a rise, a fall, a dip: only its curvature between three
    neighbours counts), so a metric the law cannot follow is not mistaken for noise. Robust (the
    median over points); for evenly spaced D these are the classic second differences. 0 with
    fewer than 3 points."""
    u, y = np.log(np.asarray(x, dtype=float)), np.asarray(y, dtype=float)
    if y.size < 3:
        return 0.0
    w = (u[1:-1] - u[:-2]) / (u[2:] - u[:-2])  # where each point sits between its neighbours
    residual = y[1:-1] - ((1 - w) * y[:-2] + w * y[2:])
    spread = np.sqrt(1 + w ** 2 + (1 - w) ** 2)  # a residual's sd in units of one point's
    return float(np.median(np.abs(residual) / spread) / 0.6745)


def scatter_about_fit(fit: FitResult, xs, ys) -> float | None:
    """Relative noise of the points estimated from their scatter around the (Huber) fit: the
    median absolute log residual, scaled to a standard deviation and for the parameters fitted.
    Robust: a single point far off the law (a real drop) does not inflate it. None with fewer
    than 2 degrees of freedom left (a 3-parameter law through 4 points says nothing of noise)."""
    dof = ys.size - len(fit.theta)
    if dof < 2:
        return None
    residuals = np.abs(np.log(ys) - np.log(fit.predict(xs)))
    return float(np.median(residuals) / 0.6745 * math.sqrt(ys.size / dof))


def point_errors(xs, ys, se, noise: Noise | None,
            scatter: float | None) -> tuple[np.ndarray, str, bool]:
    """The error each point is judged with, where it comes from in words, and whether it was
    measured independently of the law (only then can it test the law's goodness of fit: an
    error estimated from the scatter around the law would judge the law by itself).
    Bare points (no errors given): their noise is estimated without the law (noise_level): the
    scatter around a law that cannot follow the points (a log-law held to rise, on a falling
    metric) would count the misfit as noise and hide the fall. scatter: relative noise of the
    points around the fit (scatter_about_fit), used where the measured errors miss a source (one
    finetune seed) and it is larger."""
    floor = RELATIVE_ERROR_FLOOR * np.abs(ys)
    if not np.all(np.isfinite(se) & (se >= 0)):
        # The scatter about the fit, robust to a single point far off (a real dip spreads into
        # three neighbour residuals, but into one of the fit's); unless it is LAW_MISFIT times
        # the points' scatter about their neighbours (noise_level, blind to any law) or more:
        # then the law cannot follow the points (a log-law held to rise, on a falling metric)
        # and its misfit must not be taken for noise.
        free = noise_level(xs, ys)
        if scatter is not None and scatter * np.mean(np.abs(ys)) < LAW_MISFIT * free:
            return (np.maximum(scatter * ys, floor), "estimated from the scatter of the points",
                    False)
        why = " (the law cannot follow them)" if scatter is not None else ""
        return (np.maximum(np.full(ys.size, free), floor),
                f"estimated from the points' scatter about their neighbours{why}", True)
    if noise is not None and noise.seed_var is None and scatter is not None:
        source = (f"test-set bootstrap over {noise.test_sentences} sentences, 1 seed "
                  f"(finetuning noise unmeasured: the points' scatter is used where larger)")
        return np.maximum(np.maximum(se, scatter * ys), floor), source, False
    if noise is None:
        source = "measured"
    else:
        source = (f"test-set bootstrap over {noise.test_sentences} sentences and "
                  f"{noise.seeds} seed(s)")
    return np.maximum(se, floor), source, True


def shared(noise: Noise | None, a: float, b: float) -> float:
    """The measured test-set covariance of the points at D = a and D = b, or 0."""
    if noise is None or noise.test_cov is None:
        return 0.0
    return noise.test_cov.get((float(a), float(b)), 0.0)


def covariance(xs, sigma, noise: Noise | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The points' covariance, and its test-set part where measured (else None): each point's
    own error `sigma` on the diagonal, and off it the test-set noise two points share
    (Noise.test_cov). Positive definite: it is the shared covariance plus a non-negative
    diagonal (sigma^2 holds the test-set variance and more: seeds, floors, scatter)."""
    cov = np.diag(np.square(sigma))
    if noise is None or noise.test_cov is None:
        return cov, None
    keys = [float(v) for v in xs]
    if any((a, b) not in noise.test_cov for a in keys for b in keys):
        return cov, None
    test_cov = np.array([[noise.test_cov[(a, b)] for b in keys] for a in keys])
    # Off the diagonal shrunk a hair: two points with identical noise stay invertible.
    off = 0.999 * (test_cov - np.diag(np.diag(test_cov)))
    return cov + off, test_cov
