"""Where a sweep's checkpoints come from: one small interface, two implementations.

A checkpoint source publishes checkpoints into the sweep's storage (raysweep.checkpoints.publish:
the weights, then the manifest, last). Everything after it (the watcher, the trials, exactly-once
keys, the laws) reads only what is published, so it is the same whichever source made them.

- PretrainingSource (raysweep/pretrain/source.py): Ray Train + DeepSpeed on the spec's mixture.
- SeriesSource (raysweep/series/source.py): checkpoints made elsewhere (hub revisions, folders,
  buckets, a trainer still writing), imported.
- StudySource (raysweep/study/source.py): a study's candidates, each pretrained side by side.

The driver, preflight, the watcher and the trials ask `checkpoint_source(spec)` and never ask
which one it is.
"""

from __future__ import annotations

from typing import Protocol

from raysweep.pretrain.source import PretrainingSource
from raysweep.series.source import SeriesSource
from raysweep.spec import SweepSpec
from raysweep.study.source import StudySource


class CheckpointSource(Protocol):
    stage: str
    """What the sweep's checkpoint stage is called in status lines ("pretraining", ...)."""

    def plan_lines(self) -> list[str]:
        """What `raysweep validate` prints about the checkpoints (indented lines)."""

    def settings(self) -> dict[str, str]:
        """The model, the tokenizer and how the checkpoints are made, as MLflow params."""

    def check(self, offline: bool):
        """Everything about the checkpoints and the tokenizer that can be checked before anything
        is written; raises SpecError naming the field. Returns the sweep's tokenizer (None
        offline, where getting it needs the network or a bucket)."""

    def prepare(self) -> None:
        """What the run needs in the sweep's folder before the watcher starts."""

    def produce(self, run_id: str, echo) -> None:
        """Publish every scheduled checkpoint not published yet, in D_p order, logging to the
        MLflow run `run_id`; blocks until done (or stopped). `echo` takes a progress line."""

    def baseline_ready(self) -> bool:
        """Whether the D_p = 0 baseline can be built yet."""

    def baseline_model(self, tokenizer):
        """The D_p = 0 starting point: the model freshly initialised (seeded by the caller)."""

    def final_checkpoints(self) -> list[int]:
        """The D_p of the checkpoints the sweep ends with (the schedule, unless it was stopped)."""

    def final_trials(self) -> int:
        """The trials the sweep ends with (every final checkpoint's and the baseline's)."""

    def request_stop(self) -> bool:
        """`raysweep stop`: take no more checkpoints (the trials of those in finish, then the
        sweep ends). False where the source does not stop that way."""


SOURCES = {"pretraining": PretrainingSource, "series": SeriesSource, "study": StudySource}


def checkpoint_source(spec: SweepSpec) -> CheckpointSource:
    """The spec's checkpoint source."""
    return SOURCES["study" if spec.candidates else spec.checkpoint_source](spec)
