"""Every law usable by name (the CLI's --law, FitResult.predict): the paper's two (forms.py), two
more of the literature (Chinchilla's of two variables, Gordon et al.'s BLEU from cross-entropy),
and the ones a user declares (declare_law) and registers (register_law).

Pure numpy, like forms.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from raysweep.laws.forms import LOG_LAW, POWER_LAW, Law, exp_saturating

# --------------------------------------------------------------------------------------------------
# Chinchilla (two variables):  L(N, D) = E + A / N^alpha + B / D^beta   (Hoffmann et al. 2022)
#
# x has shape (n, 2): columns N (parameters) and D (training tokens). theta = (E, log A, log B,
# alpha, beta), as in Hoffmann et al. and the Besiroglu et al. (2024) replication: the value is
# logsumexp(log E, log A - alpha log N, log B - beta log D), exact and overflow-free for any theta
# in the box (A / N^alpha itself underflows or overflows for large |log A|), with E = 0 handled
# like POWER_LAW's (log E = -inf). Not anchored: there is no single centre for two variables, and
# the analytic gradient keeps the ~160-start grid fast despite the log A / alpha valley.
# --------------------------------------------------------------------------------------------------


def _chinchilla_terms(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    e, log_a, log_b, alpha, beta = theta
    x = np.atleast_2d(x)
    log_e = math.log(e) if e > 0 else -math.inf
    return np.stack([np.full(x.shape[0], log_e),
                     log_a - alpha * np.log(x[:, 0]),
                     log_b - beta * np.log(x[:, 1])], axis=-1)


def _chinchilla_log_predict(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    terms = _chinchilla_terms(theta, x)
    return np.logaddexp(np.logaddexp(terms[:, 0], terms[:, 1]), terms[:, 2])


def _chinchilla_log_predict_grad(theta: np.ndarray, x: np.ndarray):
    terms = _chinchilla_terms(theta, x)
    value = np.logaddexp(np.logaddexp(terms[:, 0], terms[:, 1]), terms[:, 2])
    share_a = np.exp(terms[:, 1] - value)  # (A / N^alpha) / L, in [0, 1]
    share_b = np.exp(terms[:, 2] - value)
    x = np.atleast_2d(x)
    # d/dE log L = 1 / L = exp(-log L): finite also at E = 0 (the optimiser works in E, not log E,
    # so the bound E >= 0 includes the pure two-term law).
    jac = np.stack([np.exp(-value), share_a, share_b,
                    -np.log(x[:, 0]) * share_a, -np.log(x[:, 1]) * share_b], axis=-1)
    return value, jac


def _chinchilla_to_public(theta: np.ndarray, log_x_ref: float) -> dict[str, float]:
    e, log_a, log_b, alpha, beta = (float(v) for v in theta)
    return {"E": e, "A": exp_saturating(log_a), "B": exp_saturating(log_b), "alpha": alpha,
            "beta": beta}


CHINCHILLA_LAW = Law(
    name="chinchilla",
    param_names=("E", "log_A", "log_B", "alpha", "beta"),
    # E: irreducible loss in nats, as POWER_LAW. log A, log B: alpha * log N reaches ~50 for
    # alpha = 2 at N = 1e11, so the reducible terms at the data need log A up to ~60; -10 admits
    # terms that are negligible at any size. alpha, beta: kept off 0 (as POWER_LAW) and below 2.5,
    # the top of Besiroglu et al.'s grid.
    bounds=((0.0, 100.0), (-10.0, 60.0), (-10.0, 60.0), (1e-4, 2.5), (1e-4, 2.5)),
    # 2 * 3 * 3 * 2 * 2 = 72 starts (Besiroglu et al. used 4,500). WHY this few: measured on
    # 4 N x 5 D grids with 0.5% noise, about a third of a 162-start grid (3 values per exponent)
    # reached the best loss, from every value of every coordinate, so 72 starts still give ~20
    # hits, at under half the cost (each start is ~100 L-BFGS-B iterations along the log A / alpha
    # valley). log A / log B and the exponents carry the non-convexity; E enters almost linearly.
    init_grid=(
        (0.5, 2.0),
        (2.0, 8.0, 20.0),
        (2.0, 8.0, 20.0),
        (0.3, 1.0),
        (0.3, 1.0),
    ),
    _log_predict=_chinchilla_log_predict,
    _to_public=_chinchilla_to_public,
    public_names=("E", "A", "B", "alpha", "beta"),
    _log_predict_grad=_chinchilla_log_predict_grad,
    uses_anchor=False,
    num_inputs=2,
)


# --------------------------------------------------------------------------------------------------
# Gordon et al. (2021): BLEU = C * exp(-k * L), L = downstream cross-entropy (nats, x > 0).
#
# In log space log BLEU = log C - k L is linear in theta = (log C, k), so the Huber objective is
# convex and one start finds the optimum. Used for the "is cross-entropy a good proxy?" analysis:
# a good fit says BLEU is a monotone function of cross-entropy; misaligned pretraining (paper:
# cross-entropy keeps improving while BLEU falls) breaks it. k is allowed to be negative so such
# data still get a fit, with the wrong sign, instead of a bound-stuck one.
# --------------------------------------------------------------------------------------------------


def _gordon_log_predict(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    log_c, k = theta
    return log_c - k * x


def _gordon_log_predict_grad(theta: np.ndarray, x: np.ndarray):
    return _gordon_log_predict(theta, x), np.stack([np.ones_like(x), -x], axis=-1)


GORDON_LAW = Law(
    name="gordon",
    param_names=("log_C", "k"),
    # log C: BLEU extrapolated to L = 0; e^20 is far beyond anything; k: per nat.
    bounds=((-20.0, 20.0), (-20.0, 20.0)),
    init_grid=((3.0,), (0.5,)),  # convex: one start
    _log_predict=_gordon_log_predict,
    _to_public=lambda theta, log_x_ref: {"C": exp_saturating(float(theta[0])),
                                         "k": float(theta[1])},
    public_names=("C", "k"),
    _log_predict_grad=_gordon_log_predict_grad,
    uses_anchor=False,
)


# --------------------------------------------------------------------------------------------------
# User-declared laws
# --------------------------------------------------------------------------------------------------

ParamSpec = tuple  # (lower, upper, [start values...])


def declare_law(name: str, params: dict[str, ParamSpec],
                log_formula: Callable[[dict[str, float], np.ndarray], np.ndarray], *,
                num_inputs: int = 1,
                to_public: Callable[[dict[str, float]], dict[str, float]] | None = None,
                in_domain: Callable[[dict[str, float], np.ndarray], np.ndarray] | None = None,
                ) -> Law:
    """Declare a law from its parameters and its formula in log space.

    params: {name: (lower, upper, [start values])}, in the order the optimiser sees them; the
        fitter starts from the Cartesian product of the start values (keep it small: every start
        is a full L-BFGS-B run with numeric gradients).
    log_formula(p, x) -> log of the law's value per point, where p is {name: value} and x the
        raw inputs as passed to fit_law (after dropping unusable rows): shape (n,) for
        num_inputs == 1, (n, num_inputs) otherwise. Only rows with every x > 0 and y > 0 reach it.
        It must be finite everywhere inside the bounds (a non-finite loss only makes that start
        lose). Writing it in log space (e.g. np.logaddexp for sums) keeps it finite far from the
        data.
    to_public(p) -> the parameters to report (default: p itself).
    in_domain(p, x) -> bool per point, where the law is defined (default: everywhere).

    The law is not anchored (see Law.uses_anchor): the formula sees exactly the parameters and x
    it was written for. Fitting uses numeric gradients. Register it with register_law to use it
    by name (e.g. `raysweep fit --law NAME --law-module MODULE`).
    """
    names = tuple(params)
    bounds, grid = _parameter_box(name, params)
    if num_inputs < 1:
        raise ValueError(f"law {name!r}: num_inputs must be >= 1")

    def as_dict(theta: np.ndarray) -> dict[str, float]:
        return dict(zip(names, (float(v) for v in theta)))

    def public(theta: np.ndarray, log_x_ref: float) -> dict[str, float]:
        p = as_dict(theta)
        return {k: float(v) for k, v in (to_public(p) if to_public else p).items()}

    # The reported names are to_public's keys: read them at the first start (inside the bounds).
    public_names = tuple(public(np.array([g[0] for g in grid]), 0.0)) if to_public else names
    return Law(
        name=name,
        param_names=names,
        bounds=tuple(bounds),
        init_grid=tuple(grid),
        _log_predict=lambda theta, x: np.asarray(log_formula(as_dict(theta), x), dtype=float),
        _to_public=public,
        public_names=public_names,
        _in_domain=(None if in_domain is None else
                    lambda theta, x: np.asarray(in_domain(as_dict(theta), x), dtype=bool)),
        uses_anchor=False,
        num_inputs=num_inputs,
    )


def _parameter_box(name: str, params: dict[str, ParamSpec]) -> tuple[list, list]:
    """declare_law's params, checked: the bounds and the start values of each parameter."""
    if not params:
        raise ValueError(f"law {name!r}: declare at least one parameter")
    bounds, grid = [], []
    for key, spec in params.items():
        try:
            lower, upper, starts = spec
            lower, upper = float(lower), float(upper)
            starts = tuple(float(v) for v in starts)
        except (TypeError, ValueError) as error:
            raise ValueError(f"law {name!r}: parameter {key!r} must be (lower, upper, [starts]), "
                             f"got {spec!r}") from error
        if not lower < upper:
            raise ValueError(f"law {name!r}: parameter {key!r} has lower >= upper")
        if not starts or not all(lower <= v <= upper for v in starts):
            raise ValueError(f"law {name!r}: parameter {key!r} needs start values within "
                             f"[{lower}, {upper}], got {starts!r}")
        bounds.append((lower, upper))
        grid.append(starts)
    return bounds, grid


REGISTERED_LAWS: dict[str, Law] = {
    law.name: law for law in (LOG_LAW, POWER_LAW, CHINCHILLA_LAW, GORDON_LAW)}
"""Every law usable by name (the CLI's --law, FitResult.predict): the built-in ones plus those
added with register_law. WHY separate from LAWS: LAWS is the paper's pair, and code and tests rely
on it being exactly that; registration must not change what the paper's protocol fits."""


def register_law(law: Law, *, replace: bool = False) -> Law:
    """Make `law` usable by name (REGISTERED_LAWS[law.name], `raysweep fit --law NAME`). Refuses
    to replace an existing law unless replace=True, so a typo cannot silently shadow a built-in."""
    if law.name in REGISTERED_LAWS and REGISTERED_LAWS[law.name] is not law and not replace:
        raise ValueError(f"a law named {law.name!r} is already registered; pass replace=True")
    REGISTERED_LAWS[law.name] = law
    return law
