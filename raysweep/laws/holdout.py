"""Extrapolation accuracy, the paper's headline: fit a law on all but the `last` largest-D points,
predict the held-out ones, and read how far off each prediction is and whether its interval held
the measured value.

    holdout(law, x, y, last, huber_delta, se=..., **analyse_kwargs) -> Holdout   (.to_dict())

The fit is raysweep.laws.analysis.analyse on the remaining points, with the same settings a full
fit gets (errors, baseline, direction, level, ...), predicting at the held-out D. Per held-out
point, two checks:
- held: the prediction's interval holds the measured value. That interval is the bootstrap
  interval of the law's value at that D, not of a new noisy measurement: a point measured with
  an error as wide as the interval can miss it by noise alone.
- predictively held: the interval widened by the point's own error, each side to
  sqrt(half_width^2 + (z * se)^2) (z: the level's two-sided normal quantile): the check for a new
  measurement. Only where the point's se is known.
A law that does not hold on the fitted points gives no prediction (analyse gives none): that is
reported as "no prediction: the law does not hold", with the analysis' reason, not as a number.

Pure numpy: no Ray, no MLflow.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist

import numpy as np

from raysweep.laws.analysis import Analysis, analyse
from raysweep.laws.forms import Law

MIN_FITTED = 3
"""Fewest points left to fit after holding out: a law of three parameters needs three."""
NO_PREDICTION = "no prediction: the law does not hold"

__all__ = ["MIN_FITTED", "NO_PREDICTION", "HeldOut", "Holdout", "describe_holdout", "holdout",
           "holdout_problem", "summarise", "summary_line"]


@dataclass
class HeldOut:
    """One held-out point and its prediction (None throughout where there is no prediction)."""

    x: float
    y: float
    se: float | None = None
    predicted: float | None = None
    low: float | None = None
    high: float | None = None
    extrapolation: float | None = None
    """x / the largest D fitted."""
    relative_error: float | None = None
    """(predicted - y) / |y|; None for y = 0."""
    held: bool | None = None
    """low <= y <= high: the law's interval holds the measured value."""
    predictive_low: float | None = None
    predictive_high: float | None = None
    predictive_held: bool | None = None
    """The interval widened by the point's own error holds it; None where se is unknown."""


@dataclass
class Holdout:
    law: str
    last: int
    """Points held out: the `last` largest D."""
    fitted_on: int
    """Points the law was fitted on (after analyse dropped unusable ones)."""
    level: float
    verdict: str
    """The held-out fit's verdict (raysweep.laws.analysis), and its reason."""
    reason: str
    law_holds: bool | None
    held_out: list[HeldOut] = field(default_factory=list)
    note: str = ""
    """Why there is no prediction, in words; "" where there is one."""

    @property
    def predicted(self) -> bool:
        return any(row.predicted is not None for row in self.held_out)

    def to_dict(self) -> dict:
        return {**asdict(self), "predicted": self.predicted}


def _candidates(x, y) -> np.ndarray:
    """Indices of the points that can be held out (finite D > 0, finite value), by D."""
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    usable = np.flatnonzero(np.isfinite(x) & (x > 0) & np.isfinite(y))
    return usable[np.argsort(x[usable], kind="stable")]


def holdout_problem(count: int, last: int) -> str | None:
    """What is wrong with holding out `last` of `count` usable points, in words, or None."""
    if last < 1:
        return f"holding out {last} points holds out nothing"
    if count - last < MIN_FITTED:
        return (f"holding out {last} of {count} points leaves {max(count - last, 0)} to fit, "
                f"fewer than the {MIN_FITTED} a law needs")
    return None


def holdout(law: Law, x, y, last: int, huber_delta: float, *, se=None,
            **analyse_kwargs) -> Holdout:
    """Fit `law` on all but the `last` largest-x points (analyse, with analyse_kwargs: baseline,
    noise, increasing, level, resamples, ...) and predict the held-out ones. The held-out points'
    se is dropped from the fit and kept for the predictive check. predict_at, band_at and
    expected_points are the holdout's own (the held-out x; none; none: the points are missing on
    purpose, not yet to come). ValueError where too few points would be left (holdout_problem)."""
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    ses = np.full(x.shape, np.nan) if se is None else np.asarray(se, dtype=float).ravel()
    order = _candidates(x, y)
    problem = holdout_problem(order.size, last)
    if problem:
        raise ValueError(problem)
    held = order[-last:]
    fitted = np.setdiff1d(np.arange(x.size), held)
    kwargs = {**analyse_kwargs, "predict_at": [float(v) for v in x[held]], "band_at": (),
              "expected_points": None}
    a = analyse(law, x[fitted], y[fitted], huber_delta,
                se=None if se is None else ses[fitted], **kwargs)
    z = NormalDist().inv_cdf(0.5 + a.level / 2)
    by_x = {p["x"]: p for p in a.predictions}
    rows = [_row(x[i], y[i], ses[i], by_x.get(float(x[i])), z) for i in held]
    return Holdout(law=a.law, last=last, fitted_on=a.num_points, level=a.level,
                   verdict=a.verdict, reason=a.reason, law_holds=a.law_holds, held_out=rows,
                   note="" if a.predictions else _no_prediction(a))


def _no_prediction(a: Analysis) -> str:
    if a.law_holds is False:
        return f"{NO_PREDICTION} ({a.verdict}: {a.reason})"
    return f"no prediction: {a.verdict}: {a.reason}"


def _finite(*values) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _row(x: float, y: float, se: float, prediction: dict | None, z: float) -> HeldOut:
    """A held-out point against its prediction; the predictive interval widens each side of
    the law's interval by the point's own error (and never narrows it)."""
    se = float(se) if _finite(se) and se >= 0 else None
    row = HeldOut(x=float(x), y=float(y), se=se)
    if prediction is None:
        return row
    value, low, high = prediction["value"], prediction["low"], prediction["high"]
    row.predicted, row.low, row.high = value, low, high
    row.extrapolation = prediction.get("extrapolation")
    row.relative_error = (value - y) / abs(y) if y != 0 else None
    if not _finite(low, high):
        return row
    row.held = bool(low <= y <= high)
    if se is not None:
        row.predictive_low = min(low, value - math.hypot(max(value - low, 0.0), z * se))
        row.predictive_high = max(high, value + math.hypot(max(high - value, 0.0), z * se))
        row.predictive_held = bool(row.predictive_low <= y <= row.predictive_high)
    return row


def summarise(holdouts) -> dict:
    """Over every held-out point with a prediction: the median and largest |relative error|,
    and how many the interval (and the predictive interval) held; laws without prediction."""
    holdouts = list(holdouts)
    rows = [r for h in holdouts for r in h.held_out if r.predicted is not None]
    errors = [abs(r.relative_error) for r in rows if r.relative_error is not None]
    held = [r.held for r in rows if r.held is not None]
    predictive = [r.predictive_held for r in rows if r.predictive_held is not None]
    return {"laws": len(holdouts), "laws_without_prediction": sum(not h.predicted
                                                                  for h in holdouts),
            "points": len(rows),
            "median_abs_relative_error": float(np.median(errors)) if errors else None,
            "max_abs_relative_error": max(errors) if errors else None,
            "held": sum(held), "held_of": len(held),
            "predictive_held": sum(predictive), "predictive_held_of": len(predictive)}


def _share(count: int, total: int) -> str:
    return f"{count} of {total} ({count / total:.0%})" if total else "none to check"


def summary_line(summary: dict) -> str:
    """summarise's figures in one line."""
    s = summary
    if not s["points"]:
        return (f"summary: no prediction in {s['laws_without_prediction']} of {s['laws']} "
                f"law(s): nothing to compare")
    line = (f"summary: median |relative error| {s['median_abs_relative_error']:.2%} "
            f"(max {s['max_abs_relative_error']:.2%}) over {s['points']} held-out point(s); "
            f"interval held {_share(s['held'], s['held_of'])}; with the point's error "
            f"{_share(s['predictive_held'], s['predictive_held_of'])}")
    if s["laws_without_prediction"]:
        line += f"; {s['laws_without_prediction']} of {s['laws']} law(s) gave no prediction"
    return line


def _yes(flag: bool | None) -> str:
    return "-" if flag is None else ("yes" if flag else "NO")


def describe_holdout(h: Holdout, x_name: str = "D", y_name: str = "y") -> str:
    """The held-out points as a table: measured, predicted with its interval, relative error,
    held (by the law's interval; by the interval widened by the point's error)."""
    lines = [f"{h.law} fitted on the {h.fitted_on} smallest {x_name}, the {h.last} largest held "
             f"out: verdict {h.verdict}"]
    if h.note:
        lines.append(f"  {h.note}")
    head = f"predicted [{h.level:.0%} interval]"
    lines.append(f"  {'held-out ' + x_name:>14}  {'measured ' + y_name:>20}  {head:<34} "
                 f"{'rel. error':>10}  {'held':>4}  {'held (+ se)':>11}")
    for r in h.held_out:
        measured = f"{r.y:.4g}" + (f" ± {r.se:.2g}" if r.se is not None else "")
        start = f"  {r.x:>14.4g}  {measured:>20}  "
        if r.predicted is None:
            lines.append(start + (NO_PREDICTION if h.law_holds is False else "no prediction"))
            continue
        predicted = f"{r.predicted:.4g} [{r.low:.4g}, {r.high:.4g}]"
        error = "-" if r.relative_error is None else f"{r.relative_error:+.2%}"
        lines.append(start + f"{predicted:<34} {error:>10}  {_yes(r.held):>4}  "
                     f"{_yes(r.predictive_held):>11}")
    return "\n".join(lines)
