"""The figures the law fitter logs to MLflow as its laws change (a mixin of
raysweep.fitter.LawFitter, which holds the laws and the runs): each law's curve and its history,
each task metric against cross-entropy, a task's overview on the sweep run's page, and a study's
candidates side by side with the paper's gain-against-alignment figure. A figure that cannot be
drawn is logged as a warning: it is worth less than keeping the fitter alive."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from raysweep.data.mixture import alignment_score
from raysweep.figures.law import (
    law_figure,
    metric_vs_cross_entropy_figure,
    save_figure,
    task_figure,
)
from raysweep.laws.group import LawGroup
from raysweep.study.compare import study_comparisons
from raysweep.study.figures import alignment_figure, study_figure

logger = logging.getLogger(__name__)


class FigureLog:
    """Needs from the class it is mixed into: spec, tracker, run_id (the laws run),
    sweep_run_id, units, groups, target_tokens and answer_groups()."""

    def _log_figures(self, candidate: str, task: str, d_f: int, metrics: set[str]) -> None:
        """The figures of the laws of (candidate, task, D_f) that changed, as they stand now."""
        for metric in sorted(metrics):
            group = self.groups[(candidate, task, d_f, metric)]
            if group.analysis.points:  # a law that cannot follow them: the points alone
                self._log_plot(group)
        self._log_metric_vs_cross_entropy(candidate, task, d_f)
        if candidate:  # a study: the candidates side by side
            self._log_study_figure(task, d_f)
        else:
            self._log_overview(task)

    def _log_overview(self, task: str) -> None:
        """The task at a glance (every metric, every D_f, the baselines, the verdicts) on the
        sweep run's page, beside the answer: overview/<task>.png."""
        groups = [g for g in self.answer_groups() if g.task == task]
        self._log_png(lambda: task_figure(task, groups, target_tokens=self.target_tokens),
                      [(self.sweep_run_id, "overview", f"{task}.png")], f"the overview of {task}")

    def _log_study_figure(self, task: str, d_f: int) -> None:
        """Every candidate's laws of (task, D_f) overlaid, each metric's decision in its panel's
        title: plots/study/<task>/df_<D_f>.png, and on the study run's page, beside the
        answer, overview/<task>_df_<D_f>.png."""
        groups = [g for g in self.answer_groups() if (g.task, g.d_f) == (task, d_f)]
        decisions = {c.metric: c for t, d, c in study_comparisons(self.spec, groups)
                     if (t, d) == (task, d_f)}
        self._log_png(lambda: study_figure(task, d_f, groups, list(self.units), decisions,
                                           target_tokens=self.target_tokens),
                      [(self.run_id, f"plots/study/{task}", f"df_{d_f}.png"),
                       (self.sweep_run_id, "overview", f"{task}_df_{d_f}.png")],
                      f"the study figure of {task} D_f={d_f}")
        # The paper's figure: each candidate's gain against its alignment score with the task.
        spec = next(t for t in self.spec.tasks if t.name == task)
        scores = {name: alignment_score(unit.pretrain.mixture, spec)
                  for name, unit in self.units.items() if name}
        everyone = [g for g in self.answer_groups() if g.task == task and g.candidate]
        self._log_png(lambda: alignment_figure(task, everyone, scores),
                      [(self.sweep_run_id, "overview", f"{task}_gain_vs_alignment.png")],
                      f"the gain-vs-alignment figure of {task}")

    def _log_png(self, draw, places: list[tuple[str, str, str]], what: str) -> None:
        """Draw a figure once and upload it to each (run, folder, file name)."""
        try:
            with tempfile.TemporaryDirectory() as tmp:
                fig = draw()
                for run_id, folder, name in places:
                    path = Path(tmp) / name
                    if not path.exists():
                        save_figure(path, fig)
                    self.tracker.log_artifact(run_id, str(path), folder)
        except Exception as err:  # a figure is worth less than keeping the fitter alive
            logger.warning("could not draw %s: %s: %s", what, type(err).__name__, err)

    def _log_plot(self, group: LawGroup) -> None:
        """The law's figure, with the earlier fits faint under the latest, as artifact
        plots/<task>/df_<D_f>/<metric>.png (plots/<candidate>/<task>/... in a study); each drawn
        update's figure is also kept, as .../history/<metric>_<N>_checkpoints.png (drawn once the
        fitter has caught up with the results: a burst of results gives one figure). Rendered
        once to a file and uploaded under both names, not logged twice with log_figure:
        rendering is most of a refit's plotting time."""
        d_f, metric, analysis = group.d_f, group.metric, group.analysis
        folder, title = f"plots/{law_place(group)}", _title(group)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{metric}.png"
                save_figure(path, law_figure(title, d_f, metric, group.points, analysis,
                                             group.history, target_tokens=self.target_tokens))
                self.tracker.log_artifact(self.run_id, str(path), folder)
                kept = path.with_name(f"{metric}_{analysis.num_points}_checkpoints.png")
                path.rename(kept)
                self.tracker.log_artifact(self.run_id, str(kept), f"{folder}/history")
        except Exception as err:  # a figure is worth less than keeping the fitter alive
            logger.warning("could not plot %s D_f=%s %s: %s: %s", title, d_f, metric,
                           type(err).__name__, err)

    def _log_metric_vs_cross_entropy(self, candidate: str, task: str, d_f: int) -> None:
        """plots/<task>/df_<D_f>/<metric>_vs_cross_entropy.png for each task metric."""
        ce = self._points(candidate, task, d_f, "cross_entropy")
        for metric in self.spec.fit.metrics:
            values = self._points(candidate, task, d_f, metric)
            if metric == "cross_entropy" or len(set(ce) & set(values)) < 2:
                continue
            group = self.groups[(candidate, task, d_f, metric)]
            try:
                self.tracker.log_figure(
                    self.run_id, metric_vs_cross_entropy_figure(_title(group), d_f, metric, ce,
                                                                values),
                    f"plots/{law_place(group)}/{metric}_vs_cross_entropy.png")
            except Exception as err:  # as above
                logger.warning("could not plot %s D_f=%s %s vs cross-entropy: %s: %s", task, d_f,
                               metric, type(err).__name__, err)

    def _points(self, candidate: str, task: str, d_f: int, metric: str) -> dict:
        group = self.groups.get((candidate, task, d_f, metric))
        return group.points if group else {}


def law_place(group: LawGroup) -> str:
    """The law's place in metric names and artifact folders: <task>/df_<D_f>, under its
    candidate's name in a study."""
    head = f"{group.candidate}/" if group.candidate else ""
    return f"{head}{group.task}/df_{group.d_f}"


def _title(group: LawGroup) -> str:
    """What a figure calls the law's task: with its candidate in a study."""
    return f"{group.task} after {group.candidate}" if group.candidate else group.task
