"""Fitting a scaling law: Huber loss on log values, L-BFGS-B from the best point of a start grid
(every start stepped together first where the law allows: batch_fit.py).

Follows the paper (Huber on log values, L-BFGS, grid of initialisations, keep the best) and the
lessons of public fitting code it cites: the SUM of Huber terms (not the mean), a full start grid,
bounded parameters. Pure numpy/scipy and deterministic: the same points, in any order, give the
same parameters bit for bit.
"""

from __future__ import annotations

import functools
import itertools
import threading
from dataclasses import dataclass, field

import numpy as np
import scipy.special
from scipy.optimize import minimize

from raysweep.laws.batch_fit import refit_many
from raysweep.laws.forms import LOG_LAW, POWER_LAW, Law
from raysweep.laws.registry import REGISTERED_LAWS

# Paper defaults: 0.1 for the task metrics (stated for BLEU/COMET; used for chrF and ROUGE-L too),
# 1e-3 for cross-entropy (the paper's text; a table caption says 1e-5, so it is configurable).
DEFAULT_HUBER_DELTA: dict[str, float] = {
    "bleu": 0.1, "chrf": 0.1, "rougeL": 0.1, "comet": 0.1, "cross_entropy": 1e-3,
}


# The smallest change worth telling from none, per metric, in its units (fit.min_effect): half a
# BLEU or chrF point (about what separates systems in a WMT ranking), half a point of ROUGE-L or
# COMET on their 0..1 scales, and 0.02 nats of cross-entropy (~1% of a typical value).
DEFAULT_MIN_EFFECT: dict[str, float] = {
    "bleu": 0.5, "chrf": 0.5, "rougeL": 0.005, "comet": 0.005, "cross_entropy": 0.02,
}


# Stand-in value for a non-finite objective: huge but finite, so L-BFGS-B backs off instead of
# crashing, and never chosen as the best start.
_NON_FINITE = 1e300


_BLAS = threading.local()


def one_blas_thread(fn):
    """Run fn with BLAS on one thread (nested calls inside it pay nothing more). WHY: every
    L-BFGS-B step makes tiny BLAS calls, which wake OpenBLAS's thread pool; its spinning threads
    then fight the fit for the cores. Measured on 2 busy cores: one analysis 12.7 s with the
    default pool, 1.5 s on one thread."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if getattr(_BLAS, "limited", False):
            return fn(*args, **kwargs)
        from threadpoolctl import threadpool_limits

        _BLAS.limited = True
        try:
            with threadpool_limits(1):
                return fn(*args, **kwargs)
        finally:
            _BLAS.limited = False
    return wrapper


def law_for_metric(metric: str) -> Law:
    """The paper's law for a metric: the power law for cross-entropy, the log-law otherwise."""
    return POWER_LAW if metric == "cross_entropy" else LOG_LAW


def huber(r, delta: float) -> np.ndarray:
    """Elementwise Huber: r^2 / 2 for |r| <= delta, delta * (|r| - delta / 2) beyond (scipy's,
    which takes delta first)."""
    return scipy.special.huber(delta, np.asarray(r, dtype=float))


def objective(law: Law, theta, x, y, delta: float, weights=None) -> float:
    """The fitted loss: SUM over points of huber(w * (log y - log_predict(theta, x)), delta).

    weights w: per point (default 1), see fit_law. theta is read at `law`'s anchor: for a
    FitResult use result.law_form (or REGISTERED_LAWS[result.law].anchored(result.log_x_ref))."""
    residual = np.log(np.asarray(y, dtype=float)) - law.log_predict(theta, x)
    if weights is not None:
        residual = residual * np.asarray(weights, dtype=float)
    return float(np.sum(huber(residual, delta)))


@dataclass
class FitResult:
    law: str
    params: dict[str, float]
    """The paper's named parameters (law.to_public(theta))."""
    theta: np.ndarray
    """The optimiser's parameters (law.param_names), anchored at log D = log_x_ref."""
    loss: float
    """Sum of Huber terms on log values at theta (the objective as defined, unscaled)."""
    converged: bool
    """Whether L-BFGS-B converged for the best start (see _converged) AND the law is defined at
    every fitted point. False is a signal in itself (paper: a failed log-law fit, or
    non-monotonic points, flag misaligned pretraining data)."""
    num_points: int
    """Points actually used (after dropping non-positive / non-finite ones)."""
    message: str
    log_x_ref: float = 0.0
    """The anchor of theta: the mean log D of the fitted points (see raysweep.laws.forms); 0 for
    laws that are not anchored (Law.uses_anchor False)."""
    law_form: Law | None = field(default=None, repr=False, compare=False)
    """The anchored Law object (needed for laws not registered); predict() falls back to
    REGISTERED_LAWS[law].anchored(log_x_ref), so (law, theta, log_x_ref) alone are enough to
    predict."""

    def predict(self, x) -> np.ndarray:
        form = (self.law_form if self.law_form is not None
                else REGISTERED_LAWS[self.law].anchored(self.log_x_ref))
        return form.predict(self.theta, x)


def _converged(result, bounds) -> bool:
    """L-BFGS-B's success, also accepting a line-search stop at a stationary point.

    WHY: with tolerances this tight, L-BFGS-B often ends with "ABNORMAL" (the line search cannot
    decrease f any more) at what is already the minimum (measured: projected gradients of 1e-9 to
    7e-4 on O(0.1..60) objectives, with parameters recovered to <1%). Reporting those as failed
    fits would make `converged` useless as a signal, so such a stop counts when the projected
    gradient is below 1e-3 * max(1, f) (the objective is scaled to O(1) per point, so this is a
    negligible slope). Running out of iterations never counts: that is a fit still creeping.
    """
    if result.success:
        return True
    if result.status != 2 or getattr(result, "jac", None) is None:
        return False
    grad = np.asarray(result.jac, dtype=float)
    x = np.asarray(result.x, dtype=float)
    lower = np.array([b[0] for b in bounds], dtype=float)
    upper = np.array([b[1] for b in bounds], dtype=float)
    # At a bound, a gradient pushing outward is not a failure to converge.
    grad = np.where((x <= lower) & (grad > 0), 0.0, grad)
    grad = np.where((x >= upper) & (grad < 0), 0.0, grad)
    return bool(np.all(np.isfinite(grad))
                and np.max(np.abs(grad)) <= 1e-3 * max(1.0, abs(float(result.fun))))


def _as_rows(law: Law, x, y) -> tuple[np.ndarray, np.ndarray]:
    """x as an (n, k) array with k == law.num_inputs, and y as (n,); ValueError otherwise.

    A 1-D law accepts x of any shape (raveled, as before) so lists and scalars keep working; a
    law of k variables needs x of shape (n, k): one row per point."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float).ravel()
    if law.num_inputs == 1:
        x = x.reshape(-1, 1)
    elif x.ndim != 2 or x.shape[1] != law.num_inputs:
        raise ValueError(f"{law.name} takes {law.num_inputs} variables: x must have shape "
                         f"(n, {law.num_inputs}), got {x.shape}")
    if x.shape[0] != y.size:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.size}")
    return x, y


@one_blas_thread
def fit_law(law: Law, x, y, huber_delta: float, start_points=None,
            log_x_ref: float | None = None, weights=None) -> FitResult:
    """Fit `law` to points (x, y) = (D, metric). Raises ValueError with < 2 usable points.

    x: shape (n,) for 1-D laws, (n, k) for laws of k variables (law.num_inputs), e.g. (N, D) rows
    for CHINCHILLA_LAW. Rows with a non-positive or non-finite value in any column (or in y) are
    dropped and counted in the message.

    start_points / log_x_ref: start from these thetas (anchored at log_x_ref; ignored by laws that
    are not anchored) instead of the full grid.
    The bootstrap uses them to refit each resample from the full data's optimum (a warm start):
    a resample's optimum lies near it, and one start instead of the grid is what makes 1,000
    refits affordable.

    weights: per point, multiplying its log residual (default 1 each). Measured points pass
    mean(s) / s_i, s_i the point's relative standard error: a noisier point counts less, and the
    weights average 1, so huber_delta keeps the paper's meaning (a residual in log units)."""
    if not huber_delta > 0:
        raise ValueError(f"huber_delta must be positive, got {huber_delta!r}")
    x, y, weights, dropped = _usable_points(law, x, y, weights)
    if law.uses_anchor:
        # Anchor the parameterisation at the centre of the data (see forms.py for why). Computed
        # on the sorted points, so it too is independent of the input order.
        law = law.anchored(float(np.mean(np.log(x))) if log_x_ref is None else log_x_ref)
    fun, jac = _scaled_objective(law, x, np.log(y), weights, huber_delta)
    starts = list(itertools.product(*law.init_grid) if start_points is None else start_points)
    screened = len(starts)
    if law.batched and len(starts) > 1:
        # Every start takes its steps together (batch_fit), and L-BFGS-B polishes the lowest:
        # the grid's L-BFGS-B runs were most of a power law's analysis (~20 ms a start).
        thetas, losses, _ = refit_many(law, x, np.log(y), huber_delta, np.array(starts), weights)
        starts = [thetas[int(np.argmin(losses))]]  # argmin: the first of tied starts
    best = None
    for start in starts:
        # Tight ftol/gtol: near-flat directions (e.g. the curvature w of a nearly straight
        # log-law) are otherwise left part-way; the cost is a few more iterations per start.
        result = minimize(fun, np.array(start, dtype=float), jac=jac, method="L-BFGS-B",
                          bounds=law.bounds,
                          options={"ftol": 1e-12, "gtol": 1e-8, "maxiter": 1000})
        if not np.isfinite(result.fun) or result.fun >= _NON_FINITE:
            continue
        # Lowest loss; strict < keeps the first of tied starts, deterministic for a fixed grid.
        # No preference for solutions inside the law's domain: the floor's penalty already makes
        # them lose unless the law's infimum is itself at the domain edge (e.g. a non-monotonic
        # metric whose first checkpoint is "fitted" by putting D0 right at it), and preferring
        # any in-domain start there picked fits 6x worse. Such fits are flagged below instead.
        if best is None or result.fun < best.fun:
            best = result
    if best is None:  # only possible for a custom Law that is non-finite everywhere
        raise ValueError(f"cannot fit {law.name}: no start gave a finite loss")

    theta = np.asarray(best.x, dtype=float)
    outside = int(np.sum(~law.in_domain(theta, x)))
    notes = []
    if dropped:
        notes.append(f"dropped {dropped} point(s) with x <= 0, y <= 0 or non-finite values")
    if outside:
        why = (" (the best fit puts them beyond its zero point D0, on the optimiser's floor)"
               if law.uses_anchor else "")  # the floor is the built-in log-law's; see forms.py
        notes.append(f"law undefined at {outside} of {y.size} points{why}: not a valid fit")
    optimiser_message = best.message if isinstance(best.message, str) else best.message.decode()
    how = (f"best of {screened} starts, polished by L-BFGS-B" if screened > len(starts)
           else f"best of {len(starts)} L-BFGS-B starts")
    notes.append(f"{how} on {y.size} points: {optimiser_message}")
    return FitResult(
        law=law.name,
        params=law.to_public(theta),
        theta=theta,
        loss=objective(law, theta, x, y, huber_delta, weights),
        log_x_ref=law.log_x_ref,
        converged=_converged(best, law.bounds) and not outside,
        num_points=int(y.size),
        message="; ".join(notes),
        law_form=law,
    )


def _usable_points(law: Law, x, y, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The points a fit uses, in a canonical order, with their weights and how many were dropped."""
    x, y = _as_rows(law, x, y)
    weights = np.ones(y.size) if weights is None else np.asarray(weights, dtype=float).ravel()
    if weights.shape != y.shape or not np.all(np.isfinite(weights) & (weights > 0)):
        raise ValueError(f"weights must be {y.size} positive finite numbers, got {weights!r}")

    # Every law is fitted on log y, and the built-in ones evaluate log x, so only rows whose
    # values are all positive and finite count (a row with one bad column is dropped whole).
    usable = np.isfinite(y) & (y > 0) & np.all(np.isfinite(x) & (x > 0), axis=1)
    dropped = int(y.size - usable.sum())
    x, y, weights = x[usable], y[usable], weights[usable]
    if y.size < 2:
        raise ValueError(
            f"cannot fit {law.name}: {y.size} usable point(s) after dropping {dropped} with "
            f"x <= 0, y <= 0 or non-finite values; at least 2 are needed")

    # Canonical order so the result does not depend on the order the points arrived in (float
    # sums are order-sensitive, and a last-bit difference could change which start wins a tie):
    # by the first column, then the next ones, then y (lexsort's LAST key is the primary one).
    order = np.lexsort((y,) + tuple(x[:, j] for j in reversed(range(x.shape[1]))))
    x, y, weights = x[order], y[order], weights[order]
    if law.num_inputs == 1:
        x = x[:, 0]  # 1-D laws (and user formulas declared with one input) see shape (n,)
    return x, y, weights, dropped


def _scaled_objective(law: Law, x, log_y, weights, huber_delta: float):
    """(fun, jac) for scipy's minimize: the Huber loss scaled to O(1) per point, with its analytic
    gradient where the law has one (jac=True), else numeric (jac=None).

    The optimiser minimises sum huber(r, delta) / delta^2 = sum huber(r / delta, 1): the same
    minimiser, but O(1) per point. WHY: L-BFGS-B's stopping tests are absolute for objectives
    below 1 (ftol is relative to max(|f|, 1)) and its gradient test is absolute, so an objective
    of ~1e-7 (cross-entropy residuals ~1e-3 with delta 1e-3) would "converge" at the first step.
    That is the same failure as taking a mean instead of a sum; scaling fixes both for any delta."""
    scale = 1.0 / (huber_delta * huber_delta)

    def scaled(theta: np.ndarray) -> float:
        value = scale * np.sum(huber(weights * (log_y - law.log_predict(theta, x)), huber_delta))
        # Inside the bounds box the laws are finite by construction; this guards against a
        # user-defined Law that is not, so one bad start cannot poison the search.
        return float(value) if np.isfinite(value) else _NON_FINITE

    def scaled_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        log_pred, jac = law.log_predict_grad(theta, x)
        residual = weights * (log_y - log_pred)
        value = scale * np.sum(huber(residual, huber_delta))
        # d huber(r) / d r = clip(r, -delta, delta); r = w (log y - log_predict), hence -w.
        grad = -scale * ((weights * np.clip(residual, -huber_delta, huber_delta)) @ jac)
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            return _NON_FINITE, np.zeros_like(theta)
        return float(value), grad

    return (scaled_and_grad, True) if law.has_analytic_grad else (scaled, None)
