"""A study's checkpoints: every candidate's pretraining, side by side, as one checkpoint source
(raysweep.checkpoint_source), so the driver, the watcher and the trials run a study as they run a
sweep.

Each candidate is pretrained by its own PretrainingSource on its own spec
(SweepSpec.candidate_spec: its mixture and budget, its folder under the study's), each in a
driver thread of its own, so that Ray Train runs them side by side as the cluster allows (and
queues what does not fit; on a cluster the autoscaler adds nodes). All of them share the study's
tokenizer, trained on every candidate's mixture. A candidate that fails leaves the others
training; `produce` raises once they are all done, naming each failure.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from raysweep import checkpoints
from raysweep.data.mixture import mixture_params, mixture_text
from raysweep.plan import plan_keys, stopped
from raysweep.pretrain.source import PretrainingSource
from raysweep.spec import SpecError, SweepSpec
from raysweep.tracking import CANDIDATE, COORDINATOR_RUN, KIND, Tracker

logger = logging.getLogger(__name__)


class StudySource:
    stage = "pretraining"

    def __init__(self, spec: SweepSpec, source_of=PretrainingSource):
        """`source_of`: what makes a candidate's checkpoints, given its spec (candidate_spec).
        The default pretrains it; a benchmark of the coordinators passes a stand-in that
        publishes on a schedule (bench/bench_control_plane.py), so that the study's own part
        (the threads, the candidates' runs, the final count) is still what runs."""
        self.spec = spec
        self.sources = {c.name: source_of(spec.candidate_spec(c.name))
                        for c in spec.candidates}
        # The study's own source: its tokenizer is trained on every candidate's mixture, its
        # baseline is the one model every candidate starts from.
        self.shared = PretrainingSource(spec)

    def plan_lines(self) -> list[str]:
        """The checkpoint lines every candidate has alike (the model, the pretraining settings,
        the schedule where it is shared): printed once; each candidate's own are its source's
        (raysweep.preflight lays the study's plan out)."""
        own = [source.plan_lines() for source in self.sources.values()]
        return [line for line in own[0] if all(line in lines for lines in own)]

    def settings(self) -> dict[str, str]:
        return {**self.shared.settings(),
                **{f"candidate.{name}": mixture_text(s.spec.pretrain.mixture)
                   for name, s in self.sources.items()}}

    def check(self, offline: bool):
        """The study's tokenizer, then each candidate's mixture and memory with it."""
        for c in self.spec.candidates:
            if c.series is not None:
                raise SpecError(f"{self.spec.source_file or '<spec>'}: candidates: {c.name!r} "
                                f"gives a series; a study's candidates are pretrained by "
                                f"raysweep for now. Compare finished series with `raysweep "
                                f"compare --csv` on their law points; nothing was written.")
        tokenizer = self.shared.tokenizer(offline)
        for i, (name, source) in enumerate(self.sources.items()):
            try:
                source.check_with(tokenizer)
            except SpecError as err:  # name the field in the study's own spec
                raise SpecError(str(err).replace(
                    "pretrain.mixture[", f"candidates[{i}] ({name!r}).mixture[")) from None
        return tokenizer

    def prepare(self) -> None:
        pass

    def produce(self, run_id: str, echo) -> None:
        """Every candidate not done yet, each in its own thread and pretraining run (a child of
        the study's pretraining run `run_id`, tagged with the candidate); raises, once all have
        ended, if any failed."""
        tracker, failures = Tracker.for_spec(self.spec), {}

        def pretrain(name: str, source: PretrainingSource) -> None:
            cspec = source.spec
            child = tracker.get_or_create_run({KIND: "candidate", CANDIDATE: name},
                                              COORDINATOR_RUN.format(f"pretrain {name}"), run_id)
            tracker.set_running(child)
            tracker.log_params(child, mixture_params(cspec))
            try:
                why = stopped(self.spec).get(name)
                if why:  # a loser stays stopped on resume
                    echo(f"[raysweep] {name}: stopped earlier ({why['reason']})")
                elif set(cspec.published_tokens()) <= set(
                        checkpoints.published(cspec, verify_weights=False)):
                    echo(f"[raysweep] {name}: every scheduled checkpoint is already published")
                else:
                    source.produce(child, lambda line: echo(line.replace(
                        "[raysweep] ", f"[raysweep] {name}: ", 1)))
                tracker.end_run(child, "FINISHED")
            except Exception as err:  # the others go on; reported when all have ended
                logger.exception("candidate %s: pretraining failed", name)
                failures[name] = f"{type(err).__name__}: {err}"
                tracker.end_run(child, "FAILED")

        threads = [threading.Thread(target=pretrain, args=item, name=f"pretrain-{item[0]}",
                                    daemon=True) for item in self.sources.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise RuntimeError("; ".join(f"candidate {name}: {why}"
                                         for name, why in failures.items()))

    def baseline_ready(self) -> bool:
        return True

    def baseline_model(self, tokenizer):
        return self.shared.baseline_model(tokenizer)

    def final_checkpoints(self) -> list[int]:
        return sorted({d for s in self.sources.values() for d in s.final_checkpoints()})

    def final_trials(self) -> int:
        """The baseline's trials once, every candidate's checkpoints', and for a candidate that
        was stopped the trials it finished (its other trials were cancelled)."""
        done = stopped(self.spec)
        finished = Counter()
        if done:
            for run in Tracker.for_spec(self.spec).find_runs({KIND: "trial"}, "FINISHED"):
                finished[run.data.tags.get(CANDIDATE, "")] += 1
        return len(plan_keys(self.spec, 0)) + sum(
            finished[name] if name in done else
            sum(len(plan_keys(s.spec, d_p)) for d_p in s.final_checkpoints())
            for name, s in self.sources.items())

    def request_stop(self) -> bool:
        return False  # pretraining stops with its driver (`ray job stop`, Ctrl-C)
