"""The LawFitter actor: keeps the scaling laws up to date as trial results arrive.

Its state is derived: the finished trial runs in MLflow. It rebuilds from them when it starts,
so a restarted fitter (or `raysweep run` on a finished sweep) gets the same points back, and
`raysweep fit SPEC` refits the same way without Ray.

Per (task, D_f, metric), the point at each D_p is the trial with the best learning rate, chosen
on the *dev* set (never the test set) by fit.lr_choice; that trial's run is tagged
`raysweep.best_lr = true` (the other lrs' runs `false`). Task metrics get the log-law, cross-entropy the
power law; the no-pretraining baseline (D_p = 0) is kept for comparison, not fitted.

Logged to the laws run: metrics `<task>/df_<D_f>/<metric>/<name>` (parameters, their interval
bounds `<name>_low`/`<name>_high`, the prediction at fit.target_tokens with its interval, backtest
error, R^2) with MLflow step = the number of points fitted, so the UI shows how each law moved as
checkpoints arrived; a tag `raysweep.verdict.<task>.df_<D_f>.<metric>`; and `laws.json`.
"""

from __future__ import annotations

import math

import ray

from raysweep.spec import SweepSpec


def best_trials(results: list[dict], task: str, d_f: int, lr_choice: str) -> dict[int, dict]:
    """D_p -> the result of the trial with the best learning rate, judged on the dev set by
    `lr_choice` (fit.lr_choice: lowest dev cross-entropy, or highest dev BLEU/chrF)."""
    sign = 1 if lr_choice == "dev_cross_entropy" else -1
    best: dict[int, dict] = {}
    for r in results:
        key = r["key"]
        if key["task"] != task or key["d_f"] != d_f or lr_choice not in r["metrics"]:
            continue
        current = best.get(key["d_p"])
        if current is None or sign * r["metrics"][lr_choice] < sign * current["metrics"][lr_choice]:
            best[key["d_p"]] = r
    return dict(sorted(best.items()))


def best_points(results: list[dict], task: str, d_f: int, metric: str,
                lr_choice: str = "dev_cross_entropy") -> dict[int, float]:
    """D_p -> metric of the trial with the best learning rate (best_trials)."""
    return {d_p: r["metrics"][metric]
            for d_p, r in best_trials(results, task, d_f, lr_choice).items() if metric in r["metrics"]}


def finished_results(spec: SweepSpec) -> dict[str, dict]:
    """Trial key -> {"key", "metrics"} of every finished trial run in MLflow."""
    from raysweep.finetune import TrialKey
    from raysweep.tracking import Tracker

    results = {}
    for run in Tracker.for_spec(spec).find_runs({"raysweep.kind": "trial"}, "FINISHED"):
        key = TrialKey.from_tags(run.data.tags)
        results[str(key)] = {"key": key.__dict__, "metrics": run.data.metrics,
                             "run_id": run.info.run_id}
    return results


def analyse_group(spec: SweepSpec, points: dict[int, float], metric: str, resamples: int):
    """Fit, bootstrap, backtest and judge one law on {D_p: value} (D_p = 0 is the baseline)."""
    from raysweep.laws import DEFAULT_HUBER_DELTA, law_for_metric
    from raysweep.laws.analysis import analyse
    from raysweep.plots import band_points

    x = [d for d in points if d > 0]
    return analyse(law_for_metric(metric), x, [points[d] for d in x],
                   spec.fit.huber_delta.get(metric, DEFAULT_HUBER_DELTA[metric]),
                   increasing=metric != "cross_entropy",
                   predict_at=[spec.fit.target_tokens] if spec.fit.target_tokens else (),
                   band_at=band_points(points, spec.fit.target_tokens),
                   k=spec.fit.backtest_points, max_backtest_error=spec.fit.max_backtest_error,
                   resamples=resamples, level=spec.fit.interval_level,
                   seed=spec.seed)


def analyse_sweep(spec: SweepSpec, resamples: int | None = None) -> list[dict]:
    """Refit every law of a sweep from the finished trial runs in MLflow (no Ray needed)."""
    results = list(finished_results(spec).values())
    resamples = spec.fit.bootstrap_resamples if resamples is None else resamples
    groups = []
    for task in spec.tasks:
        for d_f in task.finetune_tokens:
            for metric in spec.fit.metrics:
                points = best_points(results, task.name, d_f, metric, spec.fit.lr_choice)
                groups.append({"task": task.name, "d_f": d_f, "metric": metric, "points": points,
                               "analysis": analyse_group(spec, points, metric, resamples)})
    return groups


def law_metrics(prefix: str, analysis) -> dict[str, float]:
    """The numbers of one analysis as MLflow metrics named `<prefix>/<name>`."""
    values = {}
    for name, value in analysis.params.items():
        values[f"{prefix}/{name}"] = value
        low, high = analysis.intervals.get(name, (math.nan, math.nan))
        values[f"{prefix}/{name}_low"], values[f"{prefix}/{name}_high"] = low, high
    for p in analysis.predictions:
        values[f"{prefix}/prediction"] = p["value"]
        values[f"{prefix}/prediction_low"], values[f"{prefix}/prediction_high"] = p["low"], p["high"]
    if analysis.backtest:
        values[f"{prefix}/backtest_max_relative_error"] = analysis.backtest["max_relative_error"]
    if analysis.r2_log is not None:
        values[f"{prefix}/r2_log"] = analysis.r2_log
    # Non-finite values too (a degenerate fit: MLflow keeps nan, and +-inf as +-1.8e308): dropping
    # them would leave the previous update's value showing as the latest.
    return values


@ray.remote(num_cpus=0)
class LawFitter:
    def __init__(self, spec: SweepSpec, laws_run_id: str):
        from raysweep.tracking import Tracker

        self.spec, self.run_id = spec, laws_run_id
        self.tracker = Tracker.for_spec(spec)
        self.results = finished_results(spec)
        self.groups: dict[tuple, dict] = {}  # (task, d_f, metric) -> {"points", "analysis"}
        self.best_runs: dict[tuple, str] = {}  # (task, d_f, d_p) -> run id tagged best_lr
        self.latest_line = ""  # a one-line view of the most recent refit, for progress output
        for task in spec.tasks:
            for d_f in task.finetune_tokens:
                self._refit(task.name, d_f)

    def add_result(self, result: dict) -> None:
        from raysweep.finetune import TrialKey

        key = TrialKey(**result["key"])
        self.results[str(key)] = result
        self._refit(key.task, key.d_f)

    def sync(self) -> int:
        """Take in the finished trial runs in MLflow that never reached this fitter (a trial whose
        process died after finishing its run); returns how many there were."""
        missing = {k: r for k, r in finished_results(self.spec).items() if k not in self.results}
        self.results.update(missing)
        for task, d_f in sorted({(r["key"]["task"], r["key"]["d_f"]) for r in missing.values()}):
            self._refit(task, d_f)
        return len(missing)

    def _mark_best_lrs(self, task: str, d_f: int, results: list[dict]) -> None:
        """Tag the trial run with the best lr of each (task, D_f, D_p): true on the new best,
        false on the one it replaces and on the other lrs."""
        for d_p, best in best_trials(results, task, d_f, self.spec.fit.lr_choice).items():
            if self.best_runs.get((task, d_f, d_p)) == best.get("run_id") or "run_id" not in best:
                continue
            self.best_runs[(task, d_f, d_p)] = best["run_id"]
            for r in results:
                if (r["key"]["task"], r["key"]["d_f"], r["key"]["d_p"]) == (task, d_f, d_p) and "run_id" in r:
                    self.tracker.set_tags(r["run_id"], {"raysweep.best_lr": str(r is best).lower()})

    def _refit(self, task: str, d_f: int) -> None:
        results = list(self.results.values())
        self._mark_best_lrs(task, d_f, results)
        changed = False
        for metric in self.spec.fit.metrics:
            points = best_points(results, task, d_f, metric, self.spec.fit.lr_choice)
            group = self.groups.get((task, d_f, metric))
            if group is not None and group["points"] == points:
                continue  # the new result did not change this law's points
            changed = True
            analysis = analyse_group(self.spec, points, metric, self.spec.fit.bootstrap_resamples)
            history = group["history"] if group else []
            if group and group["analysis"].band:  # the fit this one replaces, for the figure
                old = group["analysis"]
                history = history + [(old.num_points, [b["x"] for b in old.band],
                                      [b["value"] for b in old.band])]
            self.groups[(task, d_f, metric)] = {"points": points, "analysis": analysis,
                                                "history": history}
            prefix = f"{task}/df_{d_f}/{metric}"
            self.tracker.log_metrics(self.run_id, law_metrics(prefix, analysis),
                                     step=analysis.num_points)
            self.tracker.set_tags(self.run_id, {
                f"raysweep.verdict.{task}.df_{d_f}.{metric}": f"{analysis.verdict}: {analysis.reason}"})
            if analysis.params:
                self._log_plot(task, d_f, metric, points, analysis, history)
                params = ", ".join(f"{k}={v:.3g}" for k, v in analysis.params.items())
                self.latest_line = (f"{task} D_f={d_f:,} {metric} ({analysis.num_points} points): "
                                    f"{params}; {analysis.verdict}")
        if changed:
            self.tracker.client.log_dict(self.run_id, self.summary(), "laws.json")
            self._log_metric_vs_cross_entropy(task, d_f)

    def _log_figure(self, fig, folder: str, name: str) -> None:
        import tempfile
        from pathlib import Path

        from raysweep.plots import save_figure

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            save_figure(path, fig)
            self.tracker.log_artifact(self.run_id, str(path), folder)

    def _log_plot(self, task: str, d_f: int, metric: str, points: dict, analysis, history) -> None:
        """The law's figure, with the earlier fits faint under the latest, as artifact
        plots/<task>/df_<D_f>/<metric>.png; each update's figure is also kept, as
        plots/<task>/df_<D_f>/history/<metric>_<N>_checkpoints.png."""
        from raysweep.plots import law_figure

        folder = f"plots/{task}/df_{d_f}"
        try:
            for where, name in ((folder, f"{metric}.png"),
                                (f"{folder}/history", f"{metric}_{analysis.num_points}_checkpoints.png")):
                self._log_figure(law_figure(task, d_f, metric, points, analysis, history), where, name)
        except Exception as err:  # a figure is worth less than keeping the fitter alive
            print(f"[raysweep] could not plot {task} D_f={d_f} {metric}: {type(err).__name__}: {err}")

    def _log_metric_vs_cross_entropy(self, task: str, d_f: int) -> None:
        """plots/<task>/df_<D_f>/<metric>_vs_cross_entropy.png for each task metric."""
        from raysweep.plots import metric_vs_cross_entropy_figure

        ce = self.groups.get((task, d_f, "cross_entropy"), {}).get("points", {})
        for metric in self.spec.fit.metrics:
            values = self.groups.get((task, d_f, metric), {}).get("points", {})
            if metric == "cross_entropy" or len(set(ce) & set(values)) < 2:
                continue
            try:
                self._log_figure(metric_vs_cross_entropy_figure(task, d_f, metric, ce, values),
                                 f"plots/{task}/df_{d_f}", f"{metric}_vs_cross_entropy.png")
            except Exception as err:  # as above
                print(f"[raysweep] could not plot {task} D_f={d_f} {metric} vs cross-entropy: "
                      f"{type(err).__name__}: {err}")

    def latest(self) -> str:
        return self.latest_line

    def summary(self) -> list[dict]:
        return [{"task": t, "d_f": d_f, "metric": m, "baseline": g["points"].get(0),
                 "points": {str(d_p): v for d_p, v in g["points"].items()},  # D_p -> value
                 **g["analysis"].to_dict()}
                for (t, d_f, m), g in sorted(self.groups.items())]
