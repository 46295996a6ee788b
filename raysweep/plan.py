"""The plan of a sweep: which trials it runs, what a trial hands on, and the names its parts find
each other by. Low in the house on purpose: checkpoint sources, the watcher, the trials and the
fitter all read it, and it reads nothing of raysweep's but the spec.

- A trial is identified by its key (task, D_p, D_f, lr, seed); every starting point (each
  published checkpoint, and the no-pretraining baseline D_p = 0) gets the same grid of keys.
- A finished trial hands its `TrialResult` to the fitter (and MLflow keeps it: the fitter can
  always rebuild its results from there).
- The coordinators are named Ray actors (by sweep name): trials find the fitter, checkpoint
  sources wake the watcher.
- A study's stopped candidates (raysweep.study.stopping decides) are kept in its folder, where
  the watcher, the candidates' pretraining and a resumed study read them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from raysweep.spec import SweepSpec

logger = logging.getLogger(__name__)

FITTER_NAME = "raysweep-fitter-{}"
WATCHER_NAME = "raysweep-watcher-{}"
"""The coordinators' Ray names (by sweep name): trials hand results to the fitter, checkpoint
sources tell the watcher a checkpoint is out."""
STOPPED_FILE = "stopped.json"
"""In the study's folder: candidate -> {"reason", "at_tokens", "time"}, every candidate stopped;
what the watcher, the candidates' pretraining and a resumed study read (a stopped candidate
stays stopped)."""


def stopped(spec: SweepSpec) -> dict[str, dict]:
    """The study's stopped candidates (STOPPED_FILE), {} for none or for a plain sweep."""
    if not spec.candidates and not spec.candidate:
        return {}
    return spec.study_folder.read_json(STOPPED_FILE) or {}


def record_stop(spec: SweepSpec, name: str, reason: str, at_tokens: int) -> None:
    """Mark a candidate stopped, with why and at which D_p (its last checkpoint then)."""
    everyone = stopped(spec)
    everyone[name] = {"reason": reason, "at_tokens": int(at_tokens),
                      "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    spec.study_folder.write_json(STOPPED_FILE, everyone)


REPLICATES_FILE = "test_bootstrap.json"
"""Each trial's paired bootstrap replicates of its test metrics (raysweep.evaluation.metrics): the
law analysis reads the test-set noise that checkpoints share from them."""


@dataclass(frozen=True, order=True)
class TrialKey:
    """What identifies a trial: at most one finished MLflow run per key."""

    task: str
    d_p: int
    """Pretraining tokens of the starting point (0: the no-pretraining baseline)."""
    d_f: int
    """Finetune tokens."""
    lr: float
    seed: int
    """Finetune seed (the batch order)."""
    candidate: str = ""
    """The study candidate whose checkpoint it starts from; "" in a plain sweep, and for the
    no-pretraining baseline, which every candidate of a study shares."""

    def __str__(self) -> str:
        # A plain sweep's keys read as they always have: MLflow finds finished runs by them.
        head = f"{self.candidate}:" if self.candidate else ""
        return f"{head}{self.task}/dp={self.d_p}/df={self.d_f}/lr={self.lr:g}/seed={self.seed}"


@dataclass
class TrialResult:
    """What a finished trial hands the fitter (and what the fitter rebuilds from MLflow)."""

    key: TrialKey
    metrics: dict[str, float]
    """Test metrics with their standard errors, dev metrics, train_loss, steps_run,
    trial_seconds."""
    run_id: str | None = None
    """The trial's MLflow run."""
    replicates: dict | None = None
    """Metric -> paired bootstrap replicates of the test metric (REPLICATES_FILE), or None for a
    run that logged none."""


def plan_keys(spec: SweepSpec, d_p: int) -> list[TrialKey]:
    """Every trial a starting point with D_p tokens of pretraining gets: of the candidate the
    spec is (raysweep.spec.SweepSpec.candidate_spec), except the baseline, which is shared."""
    candidate = spec.candidate if d_p else ""
    return [TrialKey(task.name, d_p, d_f, lr, spec.seed + replicate, candidate)
            for task in spec.tasks for d_f in task.finetune_tokens for lr in task.lrs
            for replicate in range(task.seeds)]


def count_trials(spec: SweepSpec, checkpoints: list[int]) -> int:
    """The trials of the baseline and these published checkpoints (D_p)."""
    return sum(len(plan_keys(spec, d_p)) for d_p in [0, *checkpoints])


def units(spec: SweepSpec) -> list[SweepSpec]:
    """What publishes checkpoints: each candidate's spec in a study, else the sweep's own."""
    return spec.candidate_specs() if spec.candidates else [spec]


def tell_watcher(spec: SweepSpec, call: str = "checkpoint_published", *args) -> None:
    """Call the sweep's watcher: by default, wake it to scan now for the checkpoint just
    published, so its trials start at once (only a shortcut: the watcher's periodic rescan finds
    it anyway); a study's fitter tells it a candidate stopped ("stop_candidate", name)."""
    import ray  # lazy: `raysweep validate` plans trials without loading Ray

    if not ray.is_initialized():  # no Ray, no watcher (a series imported outside a sweep)
        return
    try:
        getattr(ray.get_actor(WATCHER_NAME.format(spec.name)), call).remote(*args)
    except ValueError:  # no watcher: pretraining alone (the benchmarks, the recovery test)
        pass
    except Exception as err:  # noqa: BLE001 (a shortcut must never fail a publication)
        logger.warning("could not tell the watcher %s (it reads storage anyway): %s: %s", call,
                       type(err).__name__, err)
