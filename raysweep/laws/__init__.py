"""Scaling laws of the paper and their fitter (pure numpy/scipy).

    from raysweep.laws import fit_law, law_for_metric, DEFAULT_HUBER_DELTA
    result = fit_law(law_for_metric("bleu"), d_p, bleu, DEFAULT_HUBER_DELTA["bleu"])
    result.params          # {"A": ..., "alpha": ..., "beta": ...}
    result.predict(1e10)   # extrapolated BLEU

Laws of several variables take x of shape (n, k), e.g. fit_law(CHINCHILLA_LAW, np.c_[N, D], loss,
1e-3). Declare your own with declare_law(...) and make it usable by name
(REGISTERED_LAWS, `raysweep fit --law NAME`) with register_law(law).
"""

from raysweep.laws.fit import (
    DEFAULT_HUBER_DELTA,
    DEFAULT_MIN_EFFECT,
    FitResult,
    fit_law,
    huber,
    law_for_metric,
    objective,
)
from raysweep.laws.forms import LAWS, LOG_LAW, POWER_LAW, Law
from raysweep.laws.registry import (
    CHINCHILLA_LAW,
    GORDON_LAW,
    REGISTERED_LAWS,
    declare_law,
    register_law,
)

__all__ = [
    "CHINCHILLA_LAW",
    "DEFAULT_HUBER_DELTA",
    "DEFAULT_MIN_EFFECT",
    "GORDON_LAW",
    "LAWS",
    "LOG_LAW",
    "POWER_LAW",
    "REGISTERED_LAWS",
    "FitResult",
    "Law",
    "declare_law",
    "fit_law",
    "huber",
    "law_for_metric",
    "objective",
    "register_law",
]
