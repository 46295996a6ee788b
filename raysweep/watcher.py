"""The CheckpointWatcher: turns published checkpoints into finetune trials, in ONE Tune experiment.

The watcher actor hosts a single long-running Tune experiment whose custom Searcher is fed by the
watcher: a scan thread looks for published manifests on storage (the source of truth; a periodic
rescan, so nothing depends on a notification arriving) and queues every planned trial key of each
new checkpoint that has no finished MLflow run yet. `suggest()` returns None while the queue is
empty, and FINISHED once pretraining has ended, a last scan is done and the queue is drained;
Tune then waits for the running trials and returns. Running many Tuner.fit() calls side by side
is not supported by Tune, which is why there is exactly one experiment per sweep.

If the watcher's process dies, Ray restarts it (the driver starts it with max_restarts) and
retries `run`: the new watcher starts from the spec, finds the published checkpoints on storage,
the finished keys in MLflow and the keys that were running in `watcher_state.json`, and runs a
new Tune experiment (the trials of the old one died with it; their keys are resumed first, in
their own MLflow runs).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path

import ray
from ray import tune
from ray.tune.search import Searcher

from raysweep import checkpoints
from raysweep.checkpoint_source import checkpoint_source
from raysweep.finetune import finetune_trial
from raysweep.plan import TrialKey, plan_keys, stopped, units
from raysweep.spec import SweepSpec
from raysweep.storage import write_json_atomic
from raysweep.tracking import KIND, REJECTED_CHECKPOINT, TRIAL_KEY, Tracker

logger = logging.getLogger(__name__)

SCAN_SECONDS = 1.0
"""The rescan period: storage is the source of truth, and a publication's wake-up call
(checkpoint_published) only makes the next scan come sooner."""
IDLE_WAIT_SECONDS = 0.9
"""How long a suggestion waits for a key while no trial runs: Tune would otherwise sleep a whole
second before asking again, after a scan had queued the key."""
WATCHER_STATE = "watcher_state.json"


class WatcherSearcher(Searcher):
    """Hands out trial keys queued by the watcher."""

    def __init__(self, watcher: CheckpointWatcher):
        super().__init__(metric="done", mode="max")
        self.watcher = watcher

    def suggest(self, trial_id: str):
        return self.watcher.next_config(trial_id)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        self.watcher.trial_ended(trial_id, error)

    def __getstate__(self) -> dict:
        # Tune pickles its searcher with the experiment state; the watcher (threads, locks) stays
        # in this process and is not part of that state.
        return {k: v for k, v in self.__dict__.items() if k != "watcher"}

    # What a restarted driver or watcher needs beyond MLflow (finished keys) and storage
    # (published checkpoints): the keys that were running when it died, so they are resumed
    # first. Tune saves the searcher with its experiment; the watcher also saves it whenever a
    # trial starts or ends.
    def save(self, checkpoint_path: str) -> None:
        write_json_atomic(Path(checkpoint_path), self.watcher.state())

    def restore(self, checkpoint_path: str) -> None:
        self.watcher.restore_state(json.loads(Path(checkpoint_path).read_text()))


@ray.remote(num_cpus=0, max_concurrency=4)
class CheckpointWatcher:
    def __init__(self, spec: SweepSpec, parent_run_id: str, measure=None):
        """`measure`: what a trial does (raysweep.finetune.run_trial; None: finetune and score)."""
        self.spec, self.parent_run_id, self.measure = spec, parent_run_id, measure
        self.source = checkpoint_source(spec)
        self.units = units(spec)  # what publishes checkpoints: the sweep, or each candidate
        self.tracker = Tracker.for_spec(spec)
        self.lock = threading.Lock()
        self.keys_queued = threading.Condition(self.lock)  # a scan queued keys, or was the last
        self.scan_soon = threading.Event()  # a checkpoint was published: scan now
        self.queue: deque[TrialKey] = deque()
        self.seen_checkpoints: set[tuple[str, int]] = set()  # (candidate, D_p)
        # Per unit (candidate, "" for a plain sweep): checkpoint folders already checked
        self.inspected: dict[str, set[str]] = {}
        self.rejected: dict[str, str] = {}  # checkpoint folder -> why it was skipped
        self.running: dict[str, TrialKey] = {}
        self.counts = {"done": 0, "failed": 0, "skipped": 0, "cancelled": 0}
        self.stopped = set(stopped(spec))  # a study's stopped candidates: nothing new is queued
        self.pretraining_over = threading.Event()
        self.final_scan_done = False
        self.resume_first: set[TrialKey] = set()  # running when the previous driver died
        self.searcher = WatcherSearcher(self)

    # ---- fed by the driver ----------------------------------------------------------------------
    def pretraining_finished(self) -> None:
        self.pretraining_over.set()
        self.scan_soon.set()

    def checkpoint_published(self) -> None:
        self.scan_soon.set()

    def stop_candidate(self, name: str) -> None:
        """A study's candidate was stopped (raysweep.study.stopping): its queued trials are
        dropped and its checkpoints from now on are not finetuned (scans count their trials as
        cancelled); what runs finishes."""
        with self.lock:
            self.stopped.add(name)
            dropped = [k for k in self.queue if k.candidate == name]
            self.queue = deque(k for k in self.queue if k.candidate != name)
            self.counts["cancelled"] += len(dropped)
        logger.info("candidate %s stopped: %d queued trial(s) cancelled", name, len(dropped))

    def progress(self) -> dict:
        with self.lock:
            # the baseline is not published
            return {"checkpoints": len(self.seen_checkpoints - {("", 0)}),
                    "resumed": len(self.resume_first),
                    "queued": len(self.queue), "running": len(self.running),
                    "rejected": dict(self.rejected), **self.counts}

    # ---- scanning -------------------------------------------------------------------------------
    def scan(self, final: bool = False) -> None:
        """Queue the trials of every starting point not seen before: the baseline, and each
        checkpoint of each unit (the sweep, or each candidate of a study). A checkpoint folder
        that cannot be used (corrupt weights, a bad manifest) is skipped and recorded with its
        reason; one without a manifest only once pretraining is over (until then it may be
        mid-publication)."""
        found = {unit.candidate: (unit, *checkpoints.scan(
                     unit, known=self.inspected.setdefault(unit.candidate, set())))
                 for unit in self.units}
        # ("", 0): the baseline, shared by a study's candidates, once it can be built (a series'
        # architecture comes with its first checkpoint)
        baseline = [("", 0)] if (("", 0) in self.seen_checkpoints
                                 or self.source.baseline_ready()) else []
        new = [p for p in baseline + sorted((name, d_p) for name, (_, sound, _) in found.items()
                                            for d_p in sound)
               if p not in self.seen_checkpoints]
        # MLflow is read before any state changes, so a scan that fails (MLflow down past its
        # retries) leaves nothing half-done and the next scan does it all again.
        finished = set()
        if new:
            finished = {run.data.tags[TRIAL_KEY]
                        for run in self.tracker.find_runs({KIND: "trial"}, "FINISHED")}
        for unit, _, unusable in found.values():
            for name, reason in unusable.items():
                if reason == checkpoints.NO_MANIFEST and not final:
                    continue
                where = f"{unit.candidate}/{name}" if unit.candidate else name
                self.tracker.set_tags(self.parent_run_id,
                                      {REJECTED_CHECKPOINT.format(where): reason})
                with self.lock:
                    self.rejected[where] = reason
                self.inspected[unit.candidate].add(name)
        with self.lock:
            for point in new:
                self.seen_checkpoints.add(point)
                for key in plan_keys(found[point[0]][0] if point[0] else self.spec, point[1]):
                    if str(key) in finished:
                        self.counts["skipped"] += 1
                    elif key.candidate in self.stopped:  # a loser's: its finished work stays
                        self.counts["cancelled"] += 1
                    elif key in self.resume_first:
                        self.queue.appendleft(key)
                    else:
                        self.queue.append(key)
            self.keys_queued.notify_all()
        for unit, sound, _ in found.values():
            self.inspected[unit.candidate].update(checkpoints.checkpoint_dir(unit, d_p).name
                                                  for d_p in sound)

    def _scan_loop(self) -> None:
        while True:
            over = self.pretraining_over.is_set()  # read before scanning: no checkpoint is missed
            self.scan_soon.clear()  # a publication from here on brings the next scan at once
            try:
                self.scan(final=over)
            except Exception as err:  # storage or MLflow down past their retries: scan again later
                logger.warning("watcher scan failed, retrying in %ss: %s: %s", SCAN_SECONDS,
                               type(err).__name__, err)
                time.sleep(SCAN_SECONDS)
                continue  # a dead scan thread would leave the experiment waiting forever
            if over:
                with self.lock:
                    self.final_scan_done = True
                    self.keys_queued.notify_all()
                return
            self.scan_soon.wait(SCAN_SECONDS)

    # ---- called by the searcher (inside Tune's loop, in this actor's process) --------------------
    def next_config(self, trial_id: str):
        with self.lock:
            if not (self.queue or self.running or self.final_scan_done):
                self.keys_queued.wait(IDLE_WAIT_SECONDS)  # releases the lock while it waits
            if self.queue:
                key = self.queue.popleft()
                self.running[trial_id] = key
                config = {"key": asdict(key), "parent_run_id": self.parent_run_id}
            elif self.final_scan_done:
                return Searcher.FINISHED
            else:
                return None
        self._save_state()
        return config

    def trial_ended(self, trial_id: str, error: bool) -> None:
        with self.lock:
            self.running.pop(trial_id, None)
            self.counts["failed" if error else "done"] += 1
        self._save_state()

    def state(self) -> dict:
        with self.lock:
            return {"running": [asdict(k) for k in self.running.values()]}

    def restore_state(self, state: dict) -> None:
        self.resume_first = {TrialKey(**k) for k in state.get("running", [])}

    def _save_state(self) -> None:
        """On the sweep's storage (its bucket on a cluster): a watcher restarted on another node,
        or a new head after the old one was lost, finds it there."""
        self.spec.folder.write_json(WATCHER_STATE, self.state())

    # ---- the experiment -------------------------------------------------------------------------
    def run(self) -> dict:
        """Run the sweep's finetune experiment until pretraining is over and every key is done."""
        saved = self.spec.folder.read_json(WATCHER_STATE)
        if saved is not None:  # a restarted driver or watcher: resume what was running first
            self.restore_state(saved)
        scanner = threading.Thread(target=self._scan_loop, daemon=True)
        scanner.start()
        # Tune saves its experiment state (every trial's) as often as 5% of its time allows, and
        # nothing restores it: a restarted watcher starts a new experiment from storage, MLflow
        # and WATCHER_STATE. Profiled in a paper-sized sweep (bench/bench_control_plane.py), the
        # saves were a quarter of Tune's loop; every 10 minutes, and at the end, is enough.
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "600")
        res = self.spec.resources
        trainable = tune.with_resources(tune.with_parameters(finetune_trial, spec=self.spec,
                                                              measure=self.measure),
                                        {"CPU": res.trial_cpus, "GPU": 1 if res.use_gpu else 0,
                                         **res.trial_resources})
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=self.searcher, num_samples=-1,
                                        max_concurrent_trials=res.max_concurrent_trials,
                                        reuse_actors=True),  # imports and caches stay warm
            run_config=tune.RunConfig(name="finetune", storage_path=self.spec.folder.ray_path,
                                      verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=res.trial_retries)),
        )
        results = tuner.fit()
        scanner.join()
        errors = [_trial_error(r) for r in results if r.error]
        errors += [f"checkpoint {name} skipped: {reason}" for name, reason in self.rejected.items()]
        return {**self.progress(), "errors": errors}


def _trial_error(result) -> str:
    """One line: the failed trial's key and its exception (the last line of Ray's traceback)."""
    lines = [line.strip() for line in str(result.error).splitlines() if line.strip()]
    key = TrialKey(**result.config["key"]) if result.config else "?"
    return (f"trial {key} failed after its retries: "
            f"{lines[-1] if lines else type(result.error).__name__}")
