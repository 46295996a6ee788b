"""What the law fitter writes to MLflow for each law, apart from the fitting: the answer and the
parameters as metrics, the points and laws tables, and the earlier fits a law's figure keeps."""

from __future__ import annotations

import math

from raysweep.laws.analysis import identifiable
from raysweep.laws.group import LawGroup
from raysweep.text import decimals_for

LAWS_RUN_NOTE = """The laws behind the answer (the answer itself is on the parent run's page).

- **Metrics** `<task>/df_<D_f>/<metric>/...`: the gain over no pretraining, the prediction at
  fit.target_tokens, `more` (what pretraining on to it gives, from the largest checkpoint), the
  trend, each with `_low`/`_high` (the interval). **MLflow step = checkpoints fitted**: one value
  per step, logged once every trial of those checkpoints is in (and at the end of the sweep).
- `params/...`: the law's parameters, only where the points pin them down.
- Tags `verdict.<metric>.<task>.df_<D_f>`: each law's verdict.
- Artifacts: `plots/<task>/df_<D_f>/<metric>.png` (each law's curve), `tables/` (the laws and
  their points), `laws.json` (everything)."""


def law_metrics(prefix: str, analysis) -> dict[str, float]:
    """The numbers of one analysis as MLflow metrics: the answer under `<prefix>/` (gain over no
    pretraining, prediction, what more data gives, trend, fit p-value, each with its interval),
    the law's parameters under `params/<prefix>/` only where the points pin them down
    (identifiable: an alpha of 813 with an interval up to 1e11 is not a result). The answer's
    values are rounded to their interval's precision and one digit more: MLflow shows all 16
    otherwise."""
    values = {}
    entries = [("gain", analysis.gain), ("trend", analysis.trend)]
    for p in analysis.predictions:
        entries += [("prediction", p), ("more", p.get("more"))]
    for name, entry in entries:
        if entry:
            _with_interval(values, f"{prefix}/{name}", entry["value"], entry["low"],
                           entry["high"])
    if analysis.p_fit is not None:
        values[f"{prefix}/fit_p_value"] = round(analysis.p_fit, 3)
    if analysis.backtest:
        values[f"{prefix}/backtest_max_relative_error"] = round(
            analysis.backtest["max_relative_error"], 4)
    if identifiable(analysis):  # as fitted: a refit from MLflow reads the same values
        for name, value in analysis.params.items():
            values[f"params/{prefix}/{name}"] = value
            (values[f"params/{prefix}/{name}_low"],
             values[f"params/{prefix}/{name}_high"]) = analysis.intervals[name]
    # Non-finite values too (a degenerate fit: MLflow keeps nan, and +-inf as +-1.8e308): dropping
    # them would leave the previous update's value showing as the latest.
    return values


def _with_interval(values: dict, key: str, value: float, low: float, high: float) -> None:
    values[key], values[f"{key}_low"], values[f"{key}_high"] = (
        to_interval_precision(x, low, high) for x in (value, low, high))


def to_interval_precision(x: float, low: float, high: float) -> float:
    """x rounded to the precision of the interval [low, high] and one digit more (a quarter of
    its width stands for the error, as raysweep.text.interval writes it)."""
    places = decimals_for((high - low) / 4 if math.isfinite(high - low) else None)
    return x if places is None or not math.isfinite(x) else round(x, places + 1)


def earlier_fits(history: list[tuple[int, list, list]], replaced, num_points: int) -> list:
    """A law figure's earlier fits, (checkpoints fitted, band xs, band values), once the law is
    refitted on `num_points` checkpoints, replacing the analysis `replaced`: the last fit made
    with each smaller number of checkpoints. Keeping every refit's (hundreds on a paper-sized
    sweep) took minutes to draw, and repeated labels told nothing."""
    kept = [h for h in history if h[0] < num_points]
    if replaced.band and replaced.num_points < num_points:
        kept = [h for h in kept if h[0] != replaced.num_points] + [
            (replaced.num_points, [b["x"] for b in replaced.band],
             [b["value"] for b in replaced.band])]
    return kept


def points_table(groups: list[LawGroup]) -> dict[str, list]:
    """Every law point as table columns (a JSON table artifact: columns, data)."""
    rows = [{**_candidate(g, groups), "task": g.task, "d_f": g.d_f, "metric": g.metric,
             "d_p": d_p, "value": p["y"], "se": p["se"], "seeds": p["seeds"], "lr": p["lr"]}
            for g in groups for d_p, p in sorted(g.points.items())]
    return {name: [r[name] for r in rows] for name in (rows[0] if rows else [])}


def laws_table(groups: list[LawGroup]) -> dict[str, list]:
    """One row per law: verdict, reason, gain, prediction and parameters, as table columns."""
    rows = []
    for g in groups:
        a = g.analysis
        prediction = a.predictions[0] if a.predictions else {}
        rows.append({**_candidate(g, groups), "task": g.task, "d_f": g.d_f,
                     "metric": g.metric, "law": a.law,
                     "points": a.num_points, "verdict": a.verdict, "provisional": a.provisional,
                     "reason": a.reason,
                     **{f"gain_{k}": (a.gain or {}).get(k, math.nan)
                        for k in ("value", "low", "high")},
                     **{f"prediction_{k}": prediction.get(k, math.nan)
                        for k in ("x", "value", "low", "high")},
                     "fit_p_value": math.nan if a.p_fit is None else a.p_fit,
                     "params": ", ".join(f"{k}={v:.4g}" for k, v in a.params.items())})
    return {name: [r[name] for r in rows] for name in (rows[0] if rows else [])}


def _candidate(group: LawGroup, groups: list[LawGroup]) -> dict:
    """A study's tables lead with the candidate; a sweep's have no such column."""
    return {"candidate": group.candidate} if any(g.candidate for g in groups) else {}
