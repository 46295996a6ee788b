"""What the law fitter writes to MLflow for each law, apart from the fitting: the answer and the
parameters as metrics, the points and laws tables, and the earlier fits a law's figure keeps."""

from __future__ import annotations

import math

from raysweep.laws.group import LawGroup


def law_metrics(prefix: str, analysis) -> dict[str, float]:
    """The numbers of one analysis as MLflow metrics: the answer under `<prefix>/` (gain over no
    pretraining, prediction, trend, fit p-value, each with its interval), the law's parameters
    under `params/<prefix>/` (supporting material, kept out of the answer's charts)."""
    values = {}
    for name, entry in (("gain", analysis.gain), ("trend", analysis.trend),
                        *(("prediction", p) for p in analysis.predictions)):
        if entry:
            values[f"{prefix}/{name}"] = entry["value"]
            (values[f"{prefix}/{name}_low"],
             values[f"{prefix}/{name}_high"]) = entry["low"], entry["high"]
    if analysis.p_fit is not None:
        values[f"{prefix}/fit_p_value"] = analysis.p_fit
    if analysis.backtest:
        values[f"{prefix}/backtest_max_relative_error"] = analysis.backtest["max_relative_error"]
    for name, value in analysis.params.items():
        values[f"params/{prefix}/{name}"] = value
        low, high = analysis.intervals.get(name, (math.nan, math.nan))
        values[f"params/{prefix}/{name}_low"], values[f"params/{prefix}/{name}_high"] = low, high
    # Non-finite values too (a degenerate fit: MLflow keeps nan, and +-inf as +-1.8e308): dropping
    # them would leave the previous update's value showing as the latest.
    return values


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
