"""The LawFitter actor: keeps the scaling laws up to date as trial results arrive.

Its state is derived: the finished trial runs in MLflow. It rebuilds from them when it starts,
so a restarted fitter (or `raysweep run` on a finished sweep) gets the same points back.

Per (task, D_f, metric), the point at each D_p is the trial with the best learning rate, chosen
by *dev* cross-entropy (never the test set). Task metrics get the log-law, cross-entropy the
power law; the no-pretraining baseline (D_p = 0) is kept for comparison, not fitted.

Logged to the laws run as metrics named `<task>/df_<D_f>/<metric>/<param>`, with MLflow step =
the number of points fitted, so the UI shows how each parameter moved as checkpoints arrived.
"""

from __future__ import annotations

import ray

from raysweep.spec import SweepSpec

LR_CHOICE = "dev_cross_entropy"


def best_points(results: list[dict], task: str, d_f: int, metric: str) -> dict[int, float]:
    """D_p -> metric of the trial with the lowest dev cross-entropy among the lrs tried."""
    best: dict[int, dict] = {}
    for r in results:
        key = r["key"]
        if key["task"] != task or key["d_f"] != d_f or metric not in r["metrics"]:
            continue
        current = best.get(key["d_p"])
        if current is None or r["metrics"][LR_CHOICE] < current["metrics"][LR_CHOICE]:
            best[key["d_p"]] = r
    return {d_p: r["metrics"][metric] for d_p, r in sorted(best.items())}


def fit_group(spec: SweepSpec, points: dict[int, float], metric: str) -> dict:
    """Fit one law to {D_p: value}; returns a JSON-able summary (never raises for bad data)."""
    from raysweep.laws import DEFAULT_HUBER_DELTA, fit_law, law_for_metric

    law = law_for_metric(metric)
    x = [d for d in points if d > 0]
    y = [points[d] for d in x]
    summary = {"law": law.name, "num_points": len(x), "baseline": points.get(0)}
    if len(x) < spec.fit.min_points:
        return {**summary, "status": "too few points"}
    delta = spec.fit.huber_delta.get(metric, DEFAULT_HUBER_DELTA[metric])
    try:
        result = fit_law(law, x, y, delta)
    except ValueError as err:  # e.g. too few positive values for a fit in log space
        return {**summary, "status": "not fitted", "note": str(err)}
    summary.update(status="fitted" if result.converged else "not converged",
                   params=result.params, loss=result.loss)
    if spec.fit.target_tokens:
        summary["prediction_at_target"] = float(result.predict([spec.fit.target_tokens])[0])
    return summary


@ray.remote(num_cpus=0)
class LawFitter:
    def __init__(self, spec: SweepSpec, laws_run_id: str):
        from raysweep.finetune import TrialKey
        from raysweep.tracking import Tracker

        self.spec, self.run_id = spec, laws_run_id
        self.tracker = Tracker.for_spec(spec)
        self.results: dict[str, dict] = {}
        self.fits: dict[tuple, dict] = {}
        self.latest_line = ""  # a one-line view of the most recent refit, for progress output
        for run in self.tracker.find_runs({"raysweep.kind": "trial"}, "FINISHED"):
            key = TrialKey.from_tags(run.data.tags)
            self.results[str(key)] = {"key": key.__dict__, "metrics": run.data.metrics,
                                      "run_id": run.info.run_id}
        for task in spec.tasks:
            for d_f in task.finetune_tokens:
                self._refit(task.name, d_f)

    def add_result(self, result: dict) -> None:
        from raysweep.finetune import TrialKey

        key = TrialKey(**result["key"])
        self.results[str(key)] = result
        self._refit(key.task, key.d_f)

    def _refit(self, task: str, d_f: int) -> None:
        results = list(self.results.values())
        for metric in self.spec.fit.metrics:
            points = best_points(results, task, d_f, metric)
            summary = fit_group(self.spec, points, metric)
            self.fits[(task, d_f, metric)] = summary
            if summary["status"] in ("fitted", "not converged"):
                prefix = f"{task}/df_{d_f}/{metric}"
                values = {f"{prefix}/{name}": value for name, value in summary["params"].items()}
                values[f"{prefix}/loss"] = summary["loss"]
                if "prediction_at_target" in summary:
                    values[f"{prefix}/prediction_at_target"] = summary["prediction_at_target"]
                self.tracker.log_metrics(self.run_id, values, step=summary["num_points"])
                params = ", ".join(f"{k}={v:.3g}" for k, v in summary["params"].items())
                self.latest_line = (f"{task} D_f={d_f:,} {metric} ({summary['num_points']} points): "
                                    f"{params}")

    def latest(self) -> str:
        return self.latest_line

    def summary(self) -> list[dict]:
        return [{"task": t, "d_f": d_f, "metric": m, **fit}
                for (t, d_f, m), fit in sorted(self.fits.items())]
