"""The LawFitter actor: keeps the scaling laws up to date as trial results arrive.

Its state is derived: the finished trial runs in MLflow. It rebuilds from them when it starts,
so a restarted fitter (or `raysweep run` on a finished sweep) gets the same points back, and
`raysweep fit SPEC` refits the same way without Ray.

Per (task, D_f, metric), the point at each D_p is the trial with the best learning rate, chosen
on the *dev* set (never the test set) by fit.lr_choice; that trial's run is tagged
`raysweep.best_lr = true` (the other lrs' runs `false`). Task metrics get the log-law,
cross-entropy the power law; the no-pretraining baseline (D_p = 0) is kept for comparison, not
fitted.

Logged to the laws run (law_tables.LAWS_RUN_NOTE says it on the run's page): metrics
`<task>/df_<D_f>/<metric>/<name>` (the gain, the prediction at fit.target_tokens, what pretraining
on to it gives, the trend, each with `_low`/`_high`; the parameters under `params/` where the
points pin them down) once per MLflow step = the number of points fitted, so the UI shows how
each law moved as checkpoints arrived; a tag `verdict.<metric>.<task>.df_<D_f>`; `laws.json`;
the figures (fitter_figures.FigureLog). On the sweep run: the answer (its description), its
numbers as metrics; on the experiment: the answer in a line per task.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import statistics
import threading
from collections import Counter

import ray

from raysweep.answer import answer_headlines, answer_lines, answer_markdown, short_verdict
from raysweep.fitter_figures import FigureLog, law_place
from raysweep.law_tables import (
    LAWS_RUN_NOTE,
    earlier_fits,
    law_metrics,
    laws_table,
    points_table,
    to_interval_precision,
)
from raysweep.laws.group import LawGroup
from raysweep.laws.points import best_lr_runs, law_points, point_replicates
from raysweep.plan import TrialResult, record_stop, tell_watcher, units
from raysweep.refit import analyse_group, compact, finished_results, unit_results
from raysweep.spec import SweepSpec
from raysweep.study.answer import rankings_table, study_lines, study_markdown
from raysweep.study.stopping import decide_stops
from raysweep.tracking import BEST_LR, VERDICT, Tracker

logger = logging.getLogger(__name__)

@ray.remote(num_cpus=0, max_retries=3)  # 0: see analyse_laws
def _analyse_group_task(spec: SweepSpec, points: dict, metric: str, noise):
    return analyse_group(spec, points, metric, spec.fit.bootstrap_resamples, noise)


def analyse_laws(laws: list[tuple[SweepSpec, dict, str, object]]) -> list:
    """analyse_group of each (spec, points, metric, noise) (the spec: the sweep's, or a study
    candidate's) with its resamples, side by side as Ray tasks where Ray runs and there are
    several (else in turn): where the coordinators run (the head node on a cluster), as many at
    once as that machine has cores. A law's bootstrap is seconds of CPU, and a paper-sized
    sweep's last results change every law at once (45 laws: minutes in the fitter's one
    process). The tasks reserve no CPU: on one machine the trials hold every CPU Ray has, and
    Ray would queue the analyses until the trials ended."""
    if len(laws) < 2 or not ray.is_initialized():
        return [analyse_group(spec, points, metric, spec.fit.bootstrap_resamples, noise)
                for spec, points, metric, noise in laws]
    width, refs = os.cpu_count() or 1, []
    for i, (spec, points, metric, noise) in enumerate(laws):
        if i >= width:  # at most `width` running: wait until enough of them are done
            ray.wait(refs, num_returns=i - width + 1)
        task = _analyse_group_task.options(resources=spec.resources.coordinator_resources)
        refs.append(task.remote(spec, points, metric, noise))
    return ray.get(refs)


@ray.remote(num_cpus=0, max_concurrency=8)
class LawFitter(FigureLog):
    """Threaded (max_concurrency): `add_result` only records a result and returns, and a
    background thread refits. A refit is seconds of CPU (bootstraps, figures, uploads); a trial
    that waited for it held its Tune slot idle, which on the 2-core demo was a third of the sweep.
    Results that arrive during a refit are taken in together by the next one (one refit per
    burst), and `latest` and `summary` answer while a refit runs. `sync` waits for the refits.

    Numbers lead, pictures follow: every stale law is refitted (its metrics and verdict logged)
    before the answer page is rewritten and before anything is drawn, and the figures of one
    (task, D_f) at a time, so that a result arriving meanwhile is fitted first. Drawing after
    every result (eleven figures per (task, D_f)) was 60% of the fitter's time and kept its laws
    minutes behind a paper-sized sweep (bench/bench_control_plane.py)."""

    def __init__(self, spec: SweepSpec, laws_run_id: str):
        self.spec, self.run_id = spec, laws_run_id
        self.target_tokens = spec.fit.target_tokens  # where the figures' curves end
        self.tracker = Tracker.for_spec(spec)
        # The answer goes on the sweep run's page: the laws run's parent.
        self.sweep_run_id = self.tracker.parent_run_id(laws_run_id)
        self.results = finished_results(spec)
        self.units = {unit.candidate: unit for unit in units(spec)}  # "": a plain sweep's own
        self.groups: dict[tuple, LawGroup] = {}  # (candidate, task, d_f, metric) -> its law
        self.best_runs: dict[tuple, str] = {}  # (candidate, task, d_f, d_p) -> best_lr run ids
        self.logged_steps: dict[tuple, int] = {}  # law -> the step its metrics were logged at
        self.answer_step = 0  # the results fitted when the sweep run's metrics were logged
        self.latest_line = ""  # a one-line view of the most recent refit, for progress output
        self.lock = threading.Lock()  # one refit at a time
        # (task, D_f) with results not refitted yet, refitted together: refitting the smallest
        # one at a time starved the others while results of the first kept coming (a
        # paper-sized sweep's other laws were never refitted until it ended).
        self.stale: set[tuple[str, str, int]] = set()  # (candidate, task, D_f)
        self.answer_due = False  # laws refitted since the answer page was last written
        # (candidate, task, D_f) -> metrics to draw
        self.figures_due: dict[tuple[str, str, int], set[str]] = {}
        self._refit([(c, task.name, d_f) for c in self.units for task in spec.tasks
                     for d_f in task.finetune_tokens])
        self.tracker.set_description(laws_run_id, LAWS_RUN_NOTE)
        self.wake = threading.Event()  # set when a result makes a law stale
        threading.Thread(target=self._refit_when_woken, name="refit", daemon=True).start()
        self.wake.set()  # the answer and the figures of the laws just fitted

    def add_result(self, result: TrialResult) -> None:
        """Record a trial's result; the refit follows in the background."""
        result.replicates = compact(result.replicates)
        self.results[str(result.key)] = result
        self.stale.update(self._stale_by(result))
        self.wake.set()

    def _stale_by(self, result: TrialResult) -> list[tuple[str, str, int]]:
        """The laws a result changes: its candidate's, or every candidate's for the baseline."""
        key = result.key
        return [(c, key.task, key.d_f) for c in self.units if key.candidate in ("", c)]

    def _refit_when_woken(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            try:
                self._refit_stale()
            except Exception:  # the results are kept: the next result of that D_f refits again
                logger.exception("a refit failed")

    def sync(self) -> int:
        """Take in the finished trial runs in MLflow that never reached this fitter (a trial whose
        process died after finishing its run), and return once every result is fitted; returns
        how many results came from MLflow."""
        missing = finished_results(self.spec, known=set(self.results))
        self.results.update(missing)
        self.stale.update(law for r in missing.values() for law in self._stale_by(r))
        self._refit_stale()
        with self.lock:  # the laws as they end, whether or not every trial of them came in
            for group in list(self.groups.values()):
                self._log_law_metrics(group)
        return len(missing)

    def _refit_stale(self) -> None:
        """Refit every stale law, then write the answer, then draw (see the class)."""
        with self.lock:
            while self.stale or self.answer_due or self.figures_due:
                if self.stale:
                    self._refit(sorted(self.stale))
                elif self.answer_due:
                    self.answer_due = False
                    self._log_answer()
                else:
                    unit = min(self.figures_due)
                    self._log_figures(*unit, self.figures_due.pop(unit))

    def _mark_best_lrs(self, candidate: str, task: str, d_f: int,
                       results: list[TrialResult]) -> None:
        """Tag the trial runs of the best lr of each (task, D_f, D_p) (every seed of it): true on
        the new best, false on the ones it replaces and on the other lrs."""
        for d_p, best in best_lr_runs(results, task, d_f, self.spec.fit.lr_choice).items():
            chosen = tuple(sorted(r.run_id for r in best if r.run_id))
            if not chosen or self.best_runs.get((candidate, task, d_f, d_p)) == chosen:
                continue
            self.best_runs[(candidate, task, d_f, d_p)] = chosen
            for r in results:
                if (r.key.task, r.key.d_f, r.key.d_p) == (task, d_f, d_p) and r.run_id:
                    self.tracker.set_tags(r.run_id, {BEST_LR: str(r.run_id in chosen).lower()})

    def _refit(self, stale: list[tuple[str, str, int]]) -> None:
        """Refit the laws of these (candidate, task, D_f) whose points changed, their analyses
        side by side (analyse_laws), and log each law's numbers."""
        self.stale.difference_update(stale)  # results arriving from now on mark them stale again
        results = list(self.results.values())
        jobs = []  # (unit, task, D_f, metric, points, noise) of every law whose points changed
        for candidate, task, d_f in stale:
            mine = unit_results(results, candidate)
            self._mark_best_lrs(candidate, task, d_f, mine)
            for metric in self.spec.fit.metrics:
                points, noise = law_points(mine, task, d_f, metric, self.spec.fit.lr_choice)
                group = self.groups.get((candidate, task, d_f, metric))
                if group is None or group.points != points:  # else: this law is unchanged
                    jobs.append((self.units[candidate], task, d_f, metric, points, noise, mine))
        analyses = analyse_laws([(unit, points, metric, noise)
                                 for unit, _, _, metric, points, noise, _ in jobs])
        for (unit, task, d_f, metric, points, _, mine), analysis in zip(jobs, analyses):
            law = (unit.candidate, task, d_f, metric)
            group = self.groups.get(law)
            history = (earlier_fits(group.history, group.analysis, analysis.num_points)
                       if group else [])
            # A study compares its candidates on the paired replicates of their points.
            replicates = (point_replicates(mine, task, d_f, metric, self.spec.fit.lr_choice)
                          if unit.candidate else None)
            self.groups[law] = LawGroup(task, d_f, metric, points, analysis, history,
                                        unit.candidate, replicates)
            self._log_law(self.groups[law], complete=self._complete(mine, task, d_f, points))
            self.answer_due = True
            self.figures_due.setdefault(law[:3], set()).add(metric)

    def _complete(self, results: list[TrialResult], task: str, d_f: int, points: dict) -> bool:
        """Whether every trial of each point of this law is in (every lr and seed)."""
        spec = next(t for t in self.spec.tasks if t.name == task)
        counts: dict[int, int] = {}
        for r in results:
            if (r.key.task, r.key.d_f) == (task, d_f):
                counts[r.key.d_p] = counts.get(r.key.d_p, 0) + 1
        return all(counts.get(d_p, 0) >= len(spec.lrs) * spec.seeds for d_p in points)

    def _log_law(self, group: LawGroup, complete: bool) -> None:
        analysis, where = group.analysis, law_place(group)
        if complete:
            self._log_law_metrics(group)
        # The tag holds the verdict only, short enough for the UI's tag view; the reason is on
        # the sweep run's page and in laws.json.
        task = f"{group.candidate}.{group.task}" if group.candidate else group.task
        self.tracker.set_tags(self.run_id, {
            VERDICT.format(task=task, d_f=group.d_f, metric=group.metric):
                short_verdict(analysis)})
        if analysis.num_points:
            self.latest_line = (f"{where.replace('/df_', ' D_f=')} {group.metric} "
                                f"({analysis.num_points} points): {short_verdict(analysis)}")

    def _log_answer(self) -> None:
        """The answer on one page (the sweep run's description), and the laws as tables."""
        groups = self.answer_groups()
        self.tracker.log_dict(self.run_id, self.summary(), "laws.json")
        self.tracker.log_table(self.run_id, points_table(groups), "tables/law_points.json")
        self.tracker.log_table(self.run_id, laws_table(groups), "tables/laws.json")
        if self.spec.candidates:
            self.tracker.log_table(self.run_id, rankings_table(self.spec, groups),
                                   "tables/rankings.json")
        checkpoints_in = len({(g.candidate, d_p) for g in groups for d_p in g.points if d_p})
        link = self.tracker.run_link(self.run_id)
        if self.spec.candidates:
            page = study_markdown(self.spec, groups, checkpoints_in, link, self._trial_counts())
        else:
            page = answer_markdown(self.spec, groups, checkpoints_in, link)
        self.tracker.set_description(self.sweep_run_id, page)
        self._log_answer_elsewhere(groups)
        for name, (why, at_tokens) in decide_stops(self.spec, groups).items():
            # Stopping losers (a study's `stop` policy): recorded in the study's folder, where
            # the candidate's pretraining and a resumed study read it; the watcher drops its
            # queued trials.
            logger.info("stopping candidate %s at %s tokens: %s", name, at_tokens, why)
            record_stop(self.spec, name, why, at_tokens)
            tell_watcher(self.spec, "stop_candidate", name)

    def _trial_counts(self) -> tuple[dict[str, int], float]:
        """(finished trials per candidate, a trial's median seconds): what a stop saved."""
        results = list(self.results.values())
        finished = Counter(r.key.candidate for r in results)
        seconds = [r.metrics["trial_seconds"] for r in results if "trial_seconds" in r.metrics]
        return dict(finished), (statistics.median(seconds) if seconds else 0.0)

    def _log_answer_elsewhere(self, groups: list[LawGroup]) -> None:
        """The answer where a person arriving from MLflow's start page looks first: the
        experiment's description (folded to its first line: every task's verdict, and the link
        to the sweep run); and the answer's numbers as the sweep run's metrics, so its page does
        not say "No metrics recorded" under the answer (step: trial results fitted)."""
        if self.spec.candidates:
            lines = study_lines(self.spec, groups)
            heads = [line[2:] for line in lines]
        else:
            lines, heads = answer_lines(self.spec, groups), answer_headlines(self.spec, groups)
        link = self.tracker.run_link(self.sweep_run_id)
        # The first line plain: MLflow's experiment lists show it raw, Markdown and all.
        first = " · ".join(head.replace("**", "") for head in heads)
        self.tracker.set_experiment_description("\n".join([
            first + f" · [the answer, its tables and figures]({link})", "", *lines]))
        numbers = {f"{law_place(g)}/{g.metric}/{name}": to_interval_precision(
                       entry["value"], entry["low"], entry["high"]) for g in groups
                   for name, entry in (("gain", g.analysis.gain),
                                       *(("more", p.get("more")) for p in g.analysis.predictions))
                   if entry}
        if numbers and len(self.results) > self.answer_step:
            self.answer_step = len(self.results)
            self.tracker.log_metrics(self.sweep_run_id, numbers, step=self.answer_step)

    def _log_law_metrics(self, group: LawGroup) -> None:
        """The law's numbers as metrics, once per step (step = checkpoints fitted): when every
        trial of its checkpoints is in, or at the end of the sweep (sync). Logging every refit
        gave several values per step, one per seed or lr arriving: charts that zigzag."""
        law = (group.candidate, group.task, group.d_f, group.metric)
        step = group.analysis.num_points
        if self.logged_steps.get(law) == step:
            return
        numbers = law_metrics(f"{law_place(group)}/{group.metric}", group.analysis)
        self.tracker.log_metrics(self.run_id, numbers, step=step)
        self.logged_steps[law] = step

    def latest(self) -> str:
        return self.latest_line

    def summary(self) -> list[dict]:
        """laws.json: every law, sorted by (task, D_f, metric)."""
        return [group.summary() for _, group in sorted(list(self.groups.items()))]  # a snapshot

    def answer_groups(self) -> list[LawGroup]:
        """The laws as analyse_sweep returns them (the answer's input), without the history."""
        # In the spec's order (tasks, D_f, fit.metrics), as analyse_sweep gives them, so the page
        # and `raysweep report` list the same rows in the same order.
        groups = dict(self.groups)  # a snapshot: see class
        return [dataclasses.replace(groups[(c, t.name, d_f, m)], history=[])
                for c in self.units for t in self.spec.tasks for d_f in t.finetune_tokens
                for m in self.spec.fit.metrics if (c, t.name, d_f, m) in groups]
