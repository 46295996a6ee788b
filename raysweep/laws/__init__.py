"""Scaling laws of the paper and their fitter (pure numpy/scipy).

    from raysweep.laws import fit_law, law_for_metric, DEFAULT_HUBER_DELTA
    result = fit_law(law_for_metric("bleu"), d_p, bleu, DEFAULT_HUBER_DELTA["bleu"])
    result.params          # {"A": ..., "alpha": ..., "beta": ...}
    result.predict(1e10)   # extrapolated BLEU
"""

from raysweep.laws.fit import (
    DEFAULT_HUBER_DELTA,
    FitResult,
    fit_law,
    huber,
    law_for_metric,
    objective,
)
from raysweep.laws.forms import LAWS, LOG_LAW, POWER_LAW, Law

__all__ = [
    "DEFAULT_HUBER_DELTA",
    "FitResult",
    "LAWS",
    "LOG_LAW",
    "POWER_LAW",
    "Law",
    "fit_law",
    "huber",
    "law_for_metric",
    "objective",
]
