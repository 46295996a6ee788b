"""Metrics from a hot loop, written to MLflow by a background thread (BufferedMetrics)."""

from __future__ import annotations

import logging
import random
import threading
import time

from raysweep.tracking.client import Tracker, is_transient, outage_seconds

logger = logging.getLogger(__name__)


class BufferedMetrics:
    """Metrics from a hot loop (pretraining), written by a background thread: the loop never waits
    on MLflow, and keeps training while the tracking server is down. Each point keeps the time it
    was logged. The points not written yet (`unwritten()`) go into each recovery checkpoint, and a
    restart from it hands them back (`write_unless_present`), so a worker that dies during an
    outage loses none; they, and a batch whose request failed midway, are written only where
    MLflow has no point with the same name, step and value. A write that still fails after
    outage_seconds() is raised by the next log() or flush()."""

    def __init__(self, tracker: Tracker, run_id: str):
        self.tracker, self.run_id = tracker, run_id
        self.changed = threading.Condition()
        self.queued: list = []  # mlflow.entities.Metric points waiting to be written
        self.to_check: list = []  # points of an earlier attempt: written unless MLflow has them
        self.writing: list = []  # the batch being written now
        self.error: BaseException | None = None
        threading.Thread(target=self._write_forever, name="mlflow-metrics", daemon=True).start()

    def log(self, metrics: dict[str, float], step: int, unless_present: bool = False) -> None:
        """Queue the points; with unless_present, they are written only if MLflow has no point
        of the same name, step and value (an event a replay after a restart logs again)."""
        from mlflow.entities import Metric

        self._raise_failed_write()
        now = int(time.time() * 1000)
        points = [Metric(name, float(value), now, step) for name, value in metrics.items()]
        with self.changed:
            if unless_present:
                self.to_check += points
            else:
                self.queued += points
            self.changed.notify_all()

    def unwritten(self) -> list[dict]:
        with self.changed:
            return [{"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}
                    for m in self.writing + self.to_check + self.queued]

    def write_unless_present(self, points: list[dict]) -> None:
        from mlflow.entities import Metric

        with self.changed:
            self.to_check += [Metric(p["key"], p["value"], p["timestamp"], p["step"])
                              for p in points]
            self.changed.notify_all()

    def flush(self) -> None:
        with self.changed:
            self.changed.wait_for(lambda: not (self.queued or self.to_check or self.writing))
        self._raise_failed_write()

    def _raise_failed_write(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"metrics could not be written to MLflow at "
                               f"{self.tracker.tracking_uri}: {self.error}") from self.error

    def _write_forever(self) -> None:
        failures, failing_since = 0, None
        while True:
            with self.changed:  # whatever queued up meanwhile (an outage) goes in one batch
                self.changed.wait_for(lambda: self.queued or self.to_check)
                checking, fresh = self.to_check, self.queued
                self.writing, self.to_check, self.queued = checking + fresh, [], []
            try:
                self._write(checking, fresh)
                failures, failing_since = 0, None
            except Exception as err:  # noqa: BLE001 (handed to the train loop, or retried)
                failures, failing_since = failures + 1, failing_since or time.monotonic()
                if not is_transient(err) or time.monotonic() - failing_since > outage_seconds():
                    self.error = err
                else:  # the server may have stored part of the batch before it died: check first
                    if failures == 1:
                        logger.warning("MLflow unavailable (metrics); buffering them and retrying "
                                       "for up to %.0fs: %s", outage_seconds(),
                                       " ".join(str(err).split())[:200])
                    with self.changed:
                        self.to_check = self.writing + self.to_check
                    time.sleep(min(0.2 * 2 ** min(failures, 8), 30.0) * (0.5 + random.random()))
            finally:
                with self.changed:
                    self.writing = []
                    self.changed.notify_all()

    def _write(self, checking: list, fresh: list) -> None:
        """Write the points; those of `checking` only if MLflow has no point with the same name,
        step and value (written by an earlier attempt, or by a request whose answer was lost)."""
        if checking:
            present = {(m.key, m.step, m.value) for key in {m.key for m in checking}
                       for m in self.tracker.client.get_metric_history(self.run_id, key)}
            unique = {}
            for m in checking:
                unique.setdefault((m.key, m.step, m.value), m)
            checking = [m for identity, m in unique.items() if identity not in present]
        points = checking + fresh
        for start in range(0, len(points), 1000):  # MLflow's limit per call
            self.tracker.client.log_batch(self.run_id, metrics=points[start:start + 1000])
