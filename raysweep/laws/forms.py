"""The two scaling-law forms of the paper, written for a bounded optimiser.

Each `Law` works in log space: the fitter compares `log y` with `log_predict(theta, x)`, which keeps
metrics of very different scales (COMET ~0.8, BLEU ~30, cross-entropy ~2) on the same footing and
avoids overflow when a law is evaluated far from its data. `theta` is the *optimiser's*
parameterisation (chosen so that every point of the bounds box gives a finite value and the
problem is well conditioned); `to_public` turns it into the paper's named parameters.

Pure numpy: no Ray, no MLflow, so this can be imported anywhere (drivers, tests, notebooks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

# The laws take D (tokens) as x and work with log D throughout.


@dataclass(frozen=True)
class Law:
    """A scaling-law family: its parameterisation, bounds, start grid and value (in log space)."""

    name: str
    param_names: tuple[str, ...]
    """Names of the optimiser parameters, in `theta` order."""
    bounds: tuple[tuple[float, float], ...]
    """Box bounds per optimiser parameter (L-BFGS-B); the law is finite everywhere inside."""
    init_grid: tuple[tuple[float, ...], ...]
    """Start values per optimiser parameter; the fitter starts from their Cartesian product."""
    _log_predict: Callable[[np.ndarray, np.ndarray], np.ndarray]
    _to_public: Callable[[np.ndarray], dict[str, float]]
    public_names: tuple[str, ...] = ()
    """The paper's parameter names, i.e. the keys of `to_public`."""
    _log_predict_grad: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
    """Optional (log_predict, d log_predict / d theta of shape (len(x), len(theta))). The fitter
    uses it when present: analytic gradients make each L-BFGS-B step one evaluation instead of
    len(theta) + 1, which is what keeps a full start grid well under a second."""

    def log_predict(self, theta, x) -> np.ndarray:
        """log of the law's value at x (x > 0), for optimiser parameters theta."""
        return self._log_predict(np.asarray(theta, dtype=float), np.asarray(x, dtype=float))

    def log_predict_grad(self, theta, x) -> tuple[np.ndarray, np.ndarray] | None:
        """(log_predict, its Jacobian in theta), or None when the law has no analytic gradient."""
        if self._log_predict_grad is None:
            return None
        return self._log_predict_grad(np.asarray(theta, dtype=float), np.asarray(x, dtype=float))

    def predict(self, theta, x) -> np.ndarray:
        # May over/underflow to inf/0 only far outside the law's domain (see LOG_LAW's floor);
        # fitting never calls this, it uses log_predict.
        with np.errstate(over="ignore", under="ignore"):
            return np.exp(self.log_predict(theta, x))

    def to_public(self, theta) -> dict[str, float]:
        """The paper's named parameters for optimiser parameters theta."""
        return self._to_public(np.asarray(theta, dtype=float))

    @property
    def num_starts(self) -> int:
        return math.prod(len(values) for values in self.init_grid)


# --------------------------------------------------------------------------------------------------
# Log-law (task metrics):  f(D) = (log(A * D^alpha))^beta = (log A + alpha * log D)^beta
#
# WHY this parameterisation. Written with alpha > 0 as
#     log A + alpha * log D = alpha * (log D - l0),   l0 = -log(A) / alpha = log of the D where the
#                                                      law's inner log reaches zero,
# the law becomes
#     log f = k + beta * log(log D - l0),             k = beta * log(alpha),
# and theta = (k, l0, beta) is an exact reparameterisation of (A, alpha > 0, beta != 0).
# The paper's (log A, alpha, beta) is a poor space to search: to fit the same curve, a and alpha
# must scale like f^(1/beta) (BLEU 30 with beta = 0.5 needs log A + alpha log D ~ 900; with
# beta = 0.25 ~ 800,000), so no fixed box or grid covers realistic curves. In (k, l0, beta):
#   * for a fixed l0 the model is LINEAR in (k, beta), so the Huber objective is convex in them and
#     l0 is the only genuinely non-convex direction: a modest grid over l0 (plus a few betas)
#     finds the global minimum;
#   * the domain of the law is simply log D > l0, independent of k and beta;
#   * the bounds are in natural units (log tokens, log metric) that do not depend on the metric.
# alpha > 0 is kept: A * D^alpha is the "effective data" inside the log, which should grow with D.
# beta may be negative, so a metric that FALLS with more pretraining (misaligned data) is fitted by
# a decreasing curve instead of a failed optimisation; the downstream judgement reads the sign and
# size of the predicted gain and the residuals.
#
# WHY this floor. Where log D <= l0 the law is undefined (a real power of a non-positive number).
# The optimiser must still see a finite value with a gradient that leads back into the domain, so
# below u = log D - l0 = EPS we replace log(u) by its first-order Taylor extension at EPS,
#     log(EPS) + (u - EPS) / EPS,
# which is C1 (value and slope match at EPS, so L-BFGS's curvature model is not broken), finite for
# every theta, and strictly increasing, so a point outside the domain gives a large residual whose
# gradient pushes l0 below that point's log D. Everywhere u >= EPS the value is the paper's law
# exactly (unlike a softplus floor, which would bias every point with small u). EPS = 0.01 nats of
# log D, i.e. D within 1% of D0, a region no real fit lives in.
# --------------------------------------------------------------------------------------------------

_LOG_LAW_EPS = 1e-2


def _log_law_log_u(l0: float, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log(u) with the C1 floor below EPS, and its derivative in u."""
    u = np.log(x) - l0
    inside = u > _LOG_LAW_EPS
    safe_u = np.where(inside, u, 1.0)  # keeps log() off non-positive u in the unused branch
    log_u = np.where(inside, np.log(safe_u),
                     math.log(_LOG_LAW_EPS) + (u - _LOG_LAW_EPS) / _LOG_LAW_EPS)
    dlog_u = np.where(inside, 1.0 / safe_u, 1.0 / _LOG_LAW_EPS)
    return log_u, dlog_u


def _log_law_log_predict(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    k, l0, beta = theta
    return k + beta * _log_law_log_u(l0, x)[0]


def _log_law_log_predict_grad(theta: np.ndarray, x: np.ndarray):
    k, l0, beta = theta
    log_u, dlog_u = _log_law_log_u(l0, x)
    jac = np.stack([np.ones_like(log_u), -beta * dlog_u, log_u], axis=-1)
    return k + beta * log_u, jac


def _log_law_to_public(theta: np.ndarray) -> dict[str, float]:
    k, l0, beta = (float(v) for v in theta)
    # alpha = exp(k / beta), log A = -alpha * l0. When beta -> 0 (a flat metric) the paper's
    # parameters are genuinely unbounded (f = g^beta constant needs g = f^(1/beta)), so report
    # inf / 0 honestly rather than an arbitrary clipped number; predictions use theta and are fine.
    if beta == 0.0:
        log_alpha = 0.0 if k == 0.0 else math.copysign(math.inf, k)
    else:
        log_alpha = k / beta
    alpha = math.exp(log_alpha) if log_alpha < 709.0 else math.inf
    log_a = -alpha * l0 if l0 != 0.0 else 0.0
    a = math.exp(log_a) if log_a < 709.0 else math.inf
    return {"A": a, "alpha": alpha, "beta": beta}


LOG_LAW = Law(
    name="log_law",
    param_names=("k", "l0", "beta"),
    # k: log f ranges over about [-5, 5] for real metrics; beta * log(u) adds at most
    #    50 * log(1050) ~ 350, so |k| <= 300 reaches every curve in the box while keeping
    #    predict() finite for D in normal ranges.
    # l0: the law's zero point log D0; -1000 approximates the pure power-law limit (l0 -> -inf),
    #    50 is far above any token count (e^50 ~ 5e21).
    # beta: |beta| <= 50; together with l0 >= -1000 it bounds the curvature the fit can drop.
    bounds=((-300.0, 300.0), (-1000.0, 50.0), (-50.0, 50.0)),
    init_grid=(
        # k enters linearly (the objective is convex in it): one start is enough.
        (0.0,),
        # l0 carries the non-convexity: from near the power-law end (-30) to a zero point just
        # below checkpoint sizes (e^5 ~ 150 tokens ... e^20 ~ 5e8 tokens). Starts with l0 above
        # some points are fine: the floor's gradient moves l0 below them.
        (-30.0, -10.0, 0.0, 5.0, 10.0, 15.0, 20.0),
        # Rising (beta > 0) and falling (beta < 0) metrics.
        (-1.0, 0.5, 2.0),
    ),
    _log_predict=_log_law_log_predict,
    _to_public=_log_law_to_public,
    _log_predict_grad=_log_law_log_predict_grad,
    public_names=("A", "alpha", "beta"),
)


# --------------------------------------------------------------------------------------------------
# Power law (downstream cross-entropy):  L(D) = E + A / D^alpha
#
# theta = (E, log A, alpha). log A instead of A because A spans many orders of magnitude
# (A / D^alpha must be O(1) at D ~ 1e9 with alpha up to 3). The value is computed as
# logaddexp(log E, log A - alpha log D), exact and overflow-free; E = 0 (the lower bound) gives
# log E = -inf, which logaddexp handles exactly (the law is then a pure power law).
# --------------------------------------------------------------------------------------------------


def _power_law_log_predict(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    e, log_a, alpha = theta
    with np.errstate(divide="ignore"):  # log(0) = -inf is intended when E = 0
        log_e = np.log(e) if e > 0 else -np.inf
    return np.logaddexp(log_e, log_a - alpha * np.log(x))


def _power_law_log_predict_grad(theta: np.ndarray, x: np.ndarray):
    e, log_a, alpha = theta
    log_x = np.log(x)
    term = log_a - alpha * log_x
    value = _power_law_log_predict(theta, x)
    share = np.exp(term - value)  # (A / D^alpha) / L(D), in [0, 1]
    # d/dE log(E + B) = 1 / L(D) = exp(-log L(D)); finite also at E = 0.
    jac = np.stack([np.exp(-value), share, -log_x * share], axis=-1)
    return value, jac


def _power_law_to_public(theta: np.ndarray) -> dict[str, float]:
    e, log_a, alpha = (float(v) for v in theta)
    return {"E": e, "A": math.exp(log_a) if log_a < 709.0 else math.inf, "alpha": alpha}


POWER_LAW = Law(
    name="power_law",
    param_names=("E", "log_A", "alpha"),
    # E: the irreducible loss, >= 0; 100 nats is beyond any real per-token cross-entropy.
    # log A: A / D^alpha ~ O(1..10) needs log A up to ~3 * log(1e13) ~ 90.
    # alpha: (0, 3]; the lower bound is kept off 0 so E and A stay separately meaningful.
    bounds=((0.0, 100.0), (-30.0, 100.0), (1e-4, 3.0)),
    init_grid=(
        (0.0, 1.0, 3.0),
        (2.0, 10.0),
        # alpha carries most of the non-convexity (for fixed alpha the law is linear in E, A).
        (0.1, 0.25, 0.5, 1.0, 2.0),
    ),
    _log_predict=_power_law_log_predict,
    _to_public=_power_law_to_public,
    _log_predict_grad=_power_law_log_predict_grad,
    public_names=("E", "A", "alpha"),
)


LAWS: dict[str, Law] = {"log_law": LOG_LAW, "power_law": POWER_LAW}
