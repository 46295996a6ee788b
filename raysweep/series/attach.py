"""Following a folder another trainer is still writing (series.attach): when each checkpoint is
complete, and `raysweep stop`'s request to take no more."""

from __future__ import annotations

import logging
import time

from raysweep.series.checks import has_model, location
from raysweep.spec import SeriesCheckpoint, SweepSpec

logger = logging.getLogger(__name__)

STOP = "series/stop.json"
"""`raysweep stop`'s request to an attached sweep, in the sweep's folder."""
POLL_SECONDS = 2.0


class Arrivals:
    """When the checkpoints of an attached series are complete: once the trainer's marker file
    (`series.complete_marker`) is in the folder, or, without one, once the folder holds a config
    and safetensors weights and no file in it has changed for `series.settle_seconds` (a writer
    that is still saving changes a size or a modification time)."""

    def __init__(self, spec: SweepSpec):
        self.spec = spec
        self.since: dict[str, tuple[dict, float]] = {}  # folder -> (its files, unchanged since)

    def complete(self, point: SeriesCheckpoint) -> bool:
        series, files = self.spec.series, location(self.spec).snapshot(point.folder)
        if files is None:
            return False
        if series.complete_marker:
            return series.complete_marker in files
        now = time.monotonic()
        before, since = self.since.get(point.folder, (None, now))
        if files != before:
            self.since[point.folder] = (files, now)
            return False
        return has_model(files) and now - since >= series.settle_seconds

    def wait(self, point: SeriesCheckpoint) -> bool:
        """Wait for a checkpoint to be complete: True; False if a stop was requested first."""
        logger.info("waiting for checkpoint %s (D_p = %s)", self.spec.series.label(point),
                    f"{point.tokens:,}")
        while not self.complete(point):
            if stop_requested(self.spec):
                return False
            time.sleep(min(POLL_SECONDS, self.spec.series.settle_seconds / 4))
        return True


def request_stop(spec: SweepSpec) -> None:
    spec.folder.write_json(STOP, {"requested": True})


def clear_stop(spec: SweepSpec) -> None:
    """A new run of the sweep follows the series again (a stop asked of an earlier run is done)."""
    spec.folder.write_json(STOP, {"requested": False})


def stop_requested(spec: SweepSpec) -> bool:
    return bool((spec.folder.read_json(STOP) or {}).get("requested"))
