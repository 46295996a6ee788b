"""The uncertainty of a fitted law: a parametric bootstrap (intervals of parameters and
predictions), the paper's backtest (fit the smallest-D points, predict the rest within their
predictive intervals), and the D at which a law reaches a target. analysis.py reads them against
the noise and turns them into a verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from raysweep.laws import evidence
from raysweep.laws.batch_fit import refit_many
from raysweep.laws.fit import FitResult, fit_law, one_blas_thread
from raysweep.laws.forms import Law

RELATIVE_ERROR_FLOOR = 1e-4
"""A point is never taken as measured better than this, relative to its value: an error of 0
(a constant metric, a perfect score) would make every difference "significant"."""
BACKTEST_MISS_RATE = 0.02
"""Chance that an aligned law misses a held-out checkpoint by noise alone, over all held-out
points together: each gets a predictive interval at level 1 - 0.02 / (points held out)."""


def clean_points(x, y, se=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    se = np.full(x.shape, np.nan) if se is None else np.asarray(se, dtype=float).ravel()
    if not x.shape == y.shape == se.shape:
        raise ValueError(f"x, y and se must have the same length, got {x.size}, {y.size}, "
                         f"{se.size}")
    usable = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    order = np.lexsort((y[usable], x[usable]))
    return x[usable][order], y[usable][order], se[usable][order], int((~usable).sum())


def _residual_sigma(fit: FitResult, x, y, level: float = 0.9) -> np.ndarray:
    """Log-space noise estimated from a fit's residuals (for callers with no measured errors),
    widened by Student's t over the normal quantile at `level`: an error estimated from a handful
    of residuals is itself uncertain, and a bootstrap that took it as exact under-covered (72%
    for 90% intervals on 8 points)."""
    residuals = np.log(y) - np.log(fit.predict(x))
    dof = max(1, y.size - len(fit.theta))
    widen = stats.t.ppf(0.5 + level / 2, dof) / stats.norm.ppf(0.5 + level / 2)
    return np.full(y.size, max(math.sqrt(float(np.sum(residuals ** 2)) / dof) * widen,
                               RELATIVE_ERROR_FLOOR))


@dataclass
class Bootstrap:
    level: float
    resamples: int
    failed: int
    params: dict[str, tuple[float, float]]
    predictions: dict[float, tuple[float, float]]
    draws: np.ndarray | None = field(default=None, repr=False)
    """Predictions of every resample at `at` (resamples x len(at)), for predictive intervals."""


def _percentiles(values, level: float) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (math.nan, math.nan)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return (float(low), float(high))


@one_blas_thread
def bootstrap(law: Law, x, y, huber_delta: float, resamples: int = 1000, level: float = 0.9,
              at=(), seed: int = 0, full: FitResult | None = None, log_sigma=None,
              scale: float = 1.0, weights=None, log_cov=None) -> Bootstrap:
    """Percentile intervals of the parameters and of predictions at each D in `at`, from a
    parametric bootstrap: y* = law(x) * exp(scale * log_sigma * N(0, 1)), refitted.

    log_sigma: each point's relative error (default: estimated from the full fit's residuals).
    log_cov: the points' relative covariance, where their errors are correlated (shared test
    set): the draws are correlated alike (y* = law(x) * exp(scale * L N(0, 1)), L L' = log_cov).
    full: the fit of all points, when the caller has it already (the resamples start from it)."""
    x, y, _, _ = clean_points(x, y)
    full = full or fit_law(law, x, y, huber_delta, weights=weights)
    log_sigma = (_residual_sigma(full, x, y, level) if log_sigma is None
                 else np.asarray(log_sigma, float))
    rng = np.random.default_rng(seed)
    root = (np.diag(log_sigma) if log_cov is None
            else np.linalg.cholesky(np.asarray(log_cov, dtype=float)))
    # The same draws, in the same order, as one resample at a time would take them.
    y_stars = full.predict(x) * np.exp(scale * (rng.standard_normal((resamples, x.size)) @ root.T))
    at = np.asarray(list(at), dtype=float)
    form = full.law_form or law.anchored(full.log_x_ref)  # every resample's fit is read at it
    thetas, failed = _refit_resamples(form, full.theta, x, y_stars, huber_delta, weights)
    params = [form.to_public(theta) for theta in thetas]
    draws = [form.predict(theta, at) for theta in thetas] if at.size else []
    names = params[0].keys() if params else ()
    table = np.asarray(draws) if draws else np.full((0, at.size), np.nan)
    return Bootstrap(level, resamples, failed,
                     {n: _percentiles([p[n] for p in params], level) for n in names},
                     {float(d): _percentiles(table[:, i], level) for i, d in enumerate(at)},
                     table)


def _refit_resamples(form: Law, start: np.ndarray, x, y_stars, huber_delta: float, weights
                     ) -> tuple[list[np.ndarray], int]:
    """Each resample's theta, warm-started from the full data's optimum `start` (form is
    anchored as it is), and how many could not be fitted. All at once where the law allows
    (raysweep.laws.batch_fit: 5 to 20x faster); resamples the batch leaves unconverged, and laws
    that cannot be batched, one by one with L-BFGS-B from where the batch left them."""
    starts, done = np.tile(start, (len(y_stars), 1)), np.zeros(len(y_stars), dtype=bool)
    if form.batched and len(y_stars):
        starts, _, done = refit_many(form, x, np.log(y_stars), huber_delta, start, weights)
    thetas, failed = [], 0
    for y_star, theta, converged in zip(y_stars, starts, done):
        if not converged:
            try:
                theta = fit_law(form, x, y_star, huber_delta, start_points=[theta],
                                log_x_ref=form.log_x_ref, weights=weights).theta
            except ValueError:
                failed += 1
                continue
        thetas.append(theta)
    return thetas, failed


def backtest(law: Law, x, y, huber_delta: float, k: int = 4, log_sigma=None,
             resamples: int = 200, seed: int = 0) -> dict | None:
    """Fit on the k smallest-D points and predict the others, each with its predictive interval
    (the k-point fit's bootstrap plus the held-out point's own error; see BACKTEST_MISS_RATE).
    None if there is nothing to hold out."""
    x, y, _, _ = clean_points(x, y)
    if x.size <= k or k < 2:
        return None
    log_sigma = (np.full(x.size, math.nan) if log_sigma is None
                 else np.asarray(log_sigma, dtype=float))
    weights = None if np.isnan(log_sigma).any() else np.mean(log_sigma[:k]) / log_sigma[:k]
    fit = fit_law(law, x[:k], y[:k], huber_delta, weights=weights)
    fitted_sigma = None if weights is None else log_sigma[:k]
    own = fitted_sigma if fitted_sigma is not None else _residual_sigma(fit, x[:k], y[:k])
    chi2, dof, _, scale = evidence.log_chi2(np.log(y[:k]) - np.log(fit.predict(x[:k])), own,
                                            len(fit.theta))
    level = 1 - BACKTEST_MISS_RATE / (x.size - k)
    boot = bootstrap(law, x[:k], y[:k], huber_delta, resamples, level, x[k:], seed,
                     full=fit, log_sigma=own, scale=scale, weights=weights)
    held_sigma = log_sigma[k:] if weights is not None else np.full(x.size - k, own[0])
    noise = np.random.default_rng(seed + 1).standard_normal(boot.draws.shape)
    predictive = boot.draws * np.exp(scale * held_sigma * noise)
    rows = []
    for i, (d, v, p) in enumerate(zip(x[k:], y[k:], fit.predict(x[k:]))):
        low, high = _percentiles(predictive[:, i], level)
        rows.append({"x": float(d), "y": float(v), "predicted": float(p),
                     "relative_error": float(abs(p - v) / abs(v)), "low": low, "high": high,
                     "inside": bool(low <= v <= high)})
    return {"fitted_on": k, "held_out": rows, "level": level,
            "max_relative_error": max(r["relative_error"] for r in rows)}


def required_x(fit: FitResult, target: float, x_min: float, x_max: float = 1e16) -> float | None:
    """The smallest D in [x_min, x_max] where the fitted law reaches `target`, or None."""
    grid = np.logspace(math.log10(x_min), math.log10(x_max), 400)
    values = fit.predict(grid)
    increasing = values[-1] >= values[0]
    reached = values >= target if increasing else values <= target
    if not reached.any():
        return None
    i = int(np.argmax(reached))
    if i == 0:
        return float(grid[0])
    low, high = math.log(grid[i - 1]), math.log(grid[i])  # bisection in log D
    for _ in range(60):
        mid = (low + high) / 2
        value = float(fit.predict([math.exp(mid)])[0])
        if (value >= target) == increasing:
            high = mid
        else:
            low = mid
    return math.exp(high)


