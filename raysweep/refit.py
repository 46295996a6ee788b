"""The laws of a sweep from its finished trial runs: what the online fitter (raysweep.fitter)
and the offline commands (`raysweep fit SPEC`, `raysweep report`, the notebook) share, so that a
refit from MLflow gives the same laws as the fitter did. No Ray.

    finished_results(spec)   every finished trial run in MLflow, as TrialResults
    sweep_laws(spec)         (unit, task, D_f, metric, points, noise) of every law (a unit: the
                             sweep, or a study candidate, whose laws also use the shared baseline)
    analyse_group(...)       one law fitted, bootstrapped, backtested and judged
    analyse_sweep(spec)      every law, as LawGroups
"""

from __future__ import annotations

import numpy as np

from raysweep.evaluation.comet_model import TINY_MODEL as STAND_IN_COMET
from raysweep.figures.law import band_points
from raysweep.laws import DEFAULT_HUBER_DELTA, DEFAULT_MIN_EFFECT, law_for_metric
from raysweep.laws.analysis import Analysis, Noise, analyse
from raysweep.laws.forms import Law
from raysweep.laws.group import LawGroup
from raysweep.laws.holdout import Holdout, holdout
from raysweep.laws.points import law_points
from raysweep.plan import REPLICATES_FILE, TrialResult, units
from raysweep.spec import SweepSpec
from raysweep.tracking import KIND, Tracker, trial_key_from_tags

PROVISIONAL_RESAMPLES = 50
"""Bootstrap resamples of a law while checkpoints are still missing (its verdict is provisional):
the fitter refits after every result, and on a laptop the full count cost a core for the whole
sweep. The law is refitted with fit.bootstrap_resamples once every scheduled checkpoint is in."""


def resamples_for(spec: SweepSpec, points: dict, resamples: int) -> int:
    """The bootstrap size of a law with these points (the same online and offline, so a refit
    from MLflow gives the same laws)."""
    complete = sum(d > 0 for d in points) >= len(spec.published_tokens())
    return resamples if complete else min(resamples, PROVISIONAL_RESAMPLES)


def finished_results(spec: SweepSpec, known=()) -> dict[str, TrialResult]:
    """Trial key -> result of every finished trial run in MLflow whose key is not in `known`
    (replicates None for a run that logged none)."""
    tracker = Tracker.for_spec(spec)
    results = {}
    for run in tracker.find_runs({KIND: "trial"}, "FINISHED"):
        key = trial_key_from_tags(run.data.tags)
        if str(key) in known:
            continue
        results[str(key)] = TrialResult(key, run.data.metrics, run.info.run_id, compact(
            tracker.load_dict(run.info.run_id, REPLICATES_FILE)))
    return results


def compact(replicates: dict | None) -> dict | None:
    """A trial's replicates as float32 arrays: ~20 KB a trial, not the ~120 KB of Python floats
    (the fitter holds every trial's)."""
    return None if replicates is None else {name: np.asarray(values, dtype=np.float32)
                                            for name, values in replicates.items()}


def not_fitted(spec: SweepSpec, metric: str) -> str | None:
    """Why no law is fitted to this metric of the sweep, or None (it is fitted)."""
    if metric == "comet" and spec.evaluation.comet_model == STAND_IN_COMET:
        # Its scores are the same for every translation: a law fitted to them would be noise
        # dressed up as a result.
        return (f"COMET model '{STAND_IN_COMET}' is a code-path stand-in (an untrained tiny "
                f"model): no law fitted; name a real COMET model in evaluation.comet_model for a "
                f"COMET law")
    return None


def analysis_inputs(spec: SweepSpec, points: dict[int, dict], metric: str, resamples: int,
                    noise=None) -> tuple[Law, list[int], list[float], dict]:
    """The law, D_p, values and analyse's keyword arguments of one law, with the spec's fit
    settings: what analyse_group fits, and what a holdout check refits on fewer points."""
    fit, baseline = spec.fit, points.get(0, {})
    pretrained = sorted(d for d in points if d > 0)
    return law_for_metric(metric), pretrained, [points[d]["y"] for d in pretrained], dict(
        huber_delta=fit.huber_delta.get(metric, DEFAULT_HUBER_DELTA[metric]),
        se=[points[d]["se"] for d in pretrained], baseline=baseline.get("y"),
        baseline_se=baseline.get("se"), noise=noise, increasing=metric != "cross_entropy",
        predict_at=[fit.target_tokens] if fit.target_tokens else (),
        band_at=band_points(points, fit.target_tokens), target_y=fit.target_score.get(metric),
        k=fit.backtest_points, resamples=resamples_for(spec, points, resamples),
        level=fit.interval_level, min_effect=fit.min_effect.get(metric, DEFAULT_MIN_EFFECT[metric]),
        expected_points=len(spec.published_tokens()), min_points=fit.min_points, seed=spec.seed)


def analyse_group(spec: SweepSpec, points: dict[int, dict], metric: str, resamples: int,
                  noise=None) -> Analysis:
    """Fit, bootstrap, backtest and judge one law on law_points' {D_p: {"y", "se", ...}}
    (D_p = 0 is the no-pretraining baseline: the gain is measured against it, it is not fitted)."""
    why = not_fitted(spec, metric)
    if why:
        return Analysis(law=law_for_metric(metric).name, dropped=0, verdict="not fitted",
                        num_points=sum(d > 0 for d in points), reason=why)
    law, x, y, kwargs = analysis_inputs(spec, points, metric, resamples, noise)
    return analyse(law, x, y, **kwargs)


def unit_results(results: list[TrialResult], candidate: str) -> list[TrialResult]:
    """The results one unit's laws are fitted on: its own checkpoints' and the baseline's (in a
    study, shared by every candidate)."""
    return [r for r in results if r.key.candidate in ("", candidate)]


def sweep_laws(spec: SweepSpec) -> list[tuple[SweepSpec, str, int, str, dict, Noise]]:
    """(unit, task, D_f, metric, points, noise) of every law of a sweep (the unit: the sweep's
    spec, or a study candidate's), in the spec's order, from the finished trial runs in MLflow
    (law_points; no Ray needed, nothing fitted)."""
    results = list(finished_results(spec).values())
    laws = []
    for unit in units(spec):
        mine = unit_results(results, unit.candidate)
        laws += [(unit, task.name, d_f, metric,
                  *law_points(mine, task.name, d_f, metric, spec.fit.lr_choice))
                 for task in spec.tasks for d_f in task.finetune_tokens
                 for metric in spec.fit.metrics]
    return laws


def analyse_sweep(spec: SweepSpec, resamples: int | None = None) -> list[LawGroup]:
    """Refit every law of a sweep from the finished trial runs in MLflow (no Ray needed)."""
    resamples = spec.fit.bootstrap_resamples if resamples is None else resamples
    return [LawGroup(task, d_f, metric, points,
                     analyse_group(unit, points, metric, resamples, noise),
                     candidate=unit.candidate)
            for unit, task, d_f, metric, points, noise in sweep_laws(spec)]


def holdout_group(spec: SweepSpec, points: dict[int, dict], metric: str, last: int,
                  resamples: int | None = None, noise=None) -> Holdout:
    """raysweep.laws.holdout of one law: fit on all but its `last` largest D_p with the settings
    analyse_group uses (the spec's resamples by default), predict those. ValueError where too few
    checkpoints would be left."""
    resamples = spec.fit.bootstrap_resamples if resamples is None else resamples
    law, x, y, kwargs = analysis_inputs(spec, points, metric, resamples, noise)
    return holdout(law, x, y, last, **kwargs)
