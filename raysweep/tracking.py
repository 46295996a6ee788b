"""MLflow, through MlflowClient with run identities raysweep derives itself.

Layout: one experiment per sweep; a parent run (kind `sweep`); children (tag mlflow.parentRunId)
for pretraining, each trial key and the laws. Tags are namespaced `raysweep.*`, and every tag
name is one of the constants below (the tag schema; the README's table lists what each run holds).

Runs are looked up by tag before being created, so a restarted driver or a re-dispatched trial
finds its run instead of making a duplicate. Calls retry with backoff on transient errors: SQLite
(the embedded default) serialises writers with a file lock, so concurrent trials can hit "database
is locked"; a tracking server can be down for a while (a restart, a network blip), and work waits
for it (RAYSWEEP_MLFLOW_OUTAGE_SECONDS, default an hour) instead of failing.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import posixpath
import random
import time
from pathlib import Path

from raysweep.spec import SweepSpec

logger = logging.getLogger(__name__)

MAX_DESCRIPTION = 8000

# ---- the tag schema ------------------------------------------------------------------------------
KIND = "raysweep.kind"
"""What a run is: sweep | pretrain | laws | trial (the runs are found by it)."""
KINDS = ("sweep", "pretrain", "laws", "trial")
TRIAL_KEY = "raysweep.trial_key"
"""The trial key string, e.g. en-de/dp=1024/df=4000/lr=0.001/seed=0 (trial runs)."""
KEY_FIELD = "raysweep.{}"
"""One field of the trial key: raysweep.task, .d_p, .d_f, .lr, .seed (trial runs)."""
FAILURE = "raysweep.failure"
"""Why a trial failed (failed trial runs)."""
ATTEMPTS = "raysweep.attempts"
"""How many times the trial has started (a retry reuses the run)."""
PREVIOUS_FAILURE = "raysweep.previous_failure"
"""Why the attempt before a retry failed."""
BEST_LR = "raysweep.best_lr"
"""true on the trial runs of the lr the laws use (chosen on the dev set), false on the others."""
COMET_SCORER = "raysweep.comet_scorer"
"""Which node's COMET scorer actor scored the trial."""
SIGNATURE = "raysweep.{}_signature"
"""sacrebleu's signature of a trial's BLEU or chrF."""
VERDICT = "raysweep.verdict.{task}.df_{d_f}.{metric}"
"""The verdict of one law, on the laws run."""
VERDICT_PREFIX = "raysweep.verdict."
REJECTED_CHECKPOINT = "raysweep.rejected_checkpoint.{}"
"""Why a checkpoint folder was skipped as unusable, on the sweep run."""
REJECTED_PREFIX = "raysweep.rejected_checkpoint."
PARENT = "mlflow.parentRunId"
# MLflow 3's UI opens an experiment without this tag on its GenAI (traces) pages; a sweep is
# model training: its runs table is what users look for.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


# Errors worth waiting out: SQLite's writer lock (concurrent trials), and a tracking server that
# is down, restarting or overloaded (MLflow's HTTP client has already retried each request for
# about 4 minutes with backoff before it raises these).
# (An exhausted retry of HTTP 429/5xx answers also reads "Max retries exceeded".)
TRANSIENT = ("database is locked", "Max retries exceeded", "Connection refused", "Connection aborted",
             "Connection reset", "Connection broken", "Read timed out", "RemoteDisconnected")


def is_transient(err: BaseException) -> bool:
    return any(marker in str(err) for marker in TRANSIENT)


def outage_seconds() -> float:
    """How long a write waits for MLflow before it fails (RAYSWEEP_MLFLOW_OUTAGE_SECONDS)."""
    return float(os.environ.get("RAYSWEEP_MLFLOW_OUTAGE_SECONDS", 3600))


def _retry(fn):
    """Retry an MLflow call on transient errors, with jittered backoff, for up to outage_seconds().
    Repeating a wrapped call is harmless: lookups come before creations (get_or_create_run),
    tags and statuses are set to values, a metric logged twice is the same point twice, and at
    worst an attempt is counted twice (start_attempt)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        deadline = time.monotonic() + outage_seconds()
        for attempt in itertools.count():
            try:
                return fn(*args, **kwargs)
            except Exception as err:  # MlflowException wraps sqlalchemy's and requests' errors
                if not is_transient(err) or time.monotonic() > deadline:
                    raise
                if attempt == 0 and "locked" not in str(err):
                    logger.warning("MLflow unavailable (%s); retrying for up to %.0fs: %s",
                                   fn.__name__, outage_seconds(), " ".join(str(err).split())[:200])
                time.sleep(min(0.2 * 2 ** attempt, 30.0) * (0.5 + random.random()))

    return wrapper


class Tracker:
    def __init__(self, tracking_uri: str, experiment: str, artifact_root: str | None = None):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.tracking_uri, self.experiment, self.artifact_root = tracking_uri, experiment, artifact_root
        self._experiment_id: str | None = None

    @classmethod
    def for_spec(cls, spec: SweepSpec) -> Tracker:
        # A tracking server keeps its own artifact store; a local store (the default SQLite file,
        # or a sqlite:/file: tracking_uri) gets the sweep's folder, not MLflow's ./mlruns in the cwd.
        server = (spec.tracking_uri or "").split(":", 1)[0] in ("http", "https", "databricks")
        artifacts = None if server else str((spec.root / "mlartifacts").resolve())
        return cls(spec.resolved_tracking_uri(), spec.name, artifacts)

    @classmethod
    def of_existing_sweep(cls, spec: SweepSpec) -> Tracker | None:
        """The sweep's tracker if it has been run (its experiment exists), else None. Reads only:
        the embedded SQLite store is not created just to find out that it is empty."""
        if not spec.tracking_uri and not (spec.root / "mlflow.db").exists():
            return None
        tracker = cls.for_spec(spec)
        return tracker if tracker.client.get_experiment_by_name(spec.name) else None

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:
                raise RuntimeError(f"MLflow experiment {self.experiment!r} does not exist at "
                                   f"{self.tracking_uri}; the driver creates it (ensure_experiment).")
            self._experiment_id = found.experiment_id
        return self._experiment_id

    @_retry
    def ensure_experiment(self) -> str:
        """Create the sweep's experiment once, in the driver, so parallel trials never race the
        schema migration of a new SQLite store."""
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        found = self.client.get_experiment_by_name(self.experiment)
        if found is None:
            location = Path(self.artifact_root).as_uri() if self.artifact_root else None
            self._experiment_id = self.client.create_experiment(self.experiment, location,
                                                                tags=EXPERIMENT_KIND)
        else:
            self._experiment_id = found.experiment_id
            for key, value in EXPERIMENT_KIND.items():  # sweeps started by an older raysweep
                if found.tags.get(key) != value:
                    self.client.set_experiment_tag(self._experiment_id, key, value)
        return self._experiment_id

    @_retry
    def find_runs(self, tags: dict[str, str], status: str | None = None) -> list:
        """The experiment's runs with these tag values (and status), every page of them."""
        for value in tags.values():
            if "'" in value:  # raysweep's tag values never hold one: task names are checked
                raise ValueError(f"a run search for the tag value {value!r}, which holds a quote")
        clauses = [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
        if status:
            clauses.append(f"attributes.status = '{status}'")
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], " and ".join(clauses),
                                           max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    @_retry
    def get_or_create_run(self, tags: dict[str, str], name: str, parent_id: str | None = None,
                          reuse_finished: bool = True) -> str:
        """The run with these tags (most recent first), created if there is none.

        With reuse_finished=False a FINISHED run is not reused (its result stands) and a new
        attempt is created only when no finished run exists - callers check that first."""
        for run in self.find_runs(tags):
            if reuse_finished or run.info.status != "FINISHED":
                return run.info.run_id
        all_tags = dict(tags)
        if parent_id:
            all_tags[PARENT] = parent_id
        self.client.create_run(self.experiment_id, tags=all_tags, run_name=name)
        # A create that the HTTP client retried after the server had made the run (its answer
        # lost in an outage) leaves a twin: keep the oldest unfinished run, delete the others.
        unfinished = sorted((r for r in self.find_runs(tags) if r.info.status != "FINISHED"),
                            key=lambda r: (r.info.start_time, r.info.run_id))
        for twin in unfinished[1:]:
            self.client.delete_run(twin.info.run_id)
        return unfinished[0].info.run_id

    @_retry
    def start_attempt(self, run_id: str) -> int:
        """Mark a (re)started trial run RUNNING and count the attempt; a retry moves the failure
        of the attempt before it to raysweep.previous_failure. Returns the attempt number."""
        tags = self.client.get_run(run_id).data.tags
        attempt = int(tags.get(ATTEMPTS, "0")) + 1
        new = {ATTEMPTS: str(attempt)}
        if FAILURE in tags:
            new[PREVIOUS_FAILURE] = tags[FAILURE]
            self.client.delete_tag(run_id, FAILURE)
        self.set_tags(run_id, new)
        self.client.update_run(run_id, status="RUNNING")
        return attempt

    @_retry
    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, step)
                                               for k, v in metrics.items()])

    @_retry
    def log_params(self, run_id: str, params: dict) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(run_id).data.params
        new = [Param(k, str(v)) for k, v in params.items() if k not in existing]
        if new:
            self.client.log_batch(run_id, params=new)

    @_retry
    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    @_retry
    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    @_retry
    def set_running(self, run_id: str) -> None:
        """Mark a run RUNNING again (a resumed sweep's runs), through an outage like every write."""
        self.client.update_run(run_id, status="RUNNING")

    @_retry
    def log_artifact(self, run_id: str, path: str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, path, artifact_path)

    @_retry
    def log_figure(self, run_id: str, figure, artifact_file: str) -> None:
        """A matplotlib figure as a PNG artifact (MLflow renders and uploads it)."""
        self.client.log_figure(run_id, figure, artifact_file)

    @_retry
    def log_dict(self, run_id: str, dictionary, artifact_file: str) -> None:
        self.client.log_dict(run_id, dictionary, artifact_file)

    @_retry
    def load_dict(self, run_id: str, artifact_file: str):
        """A JSON artifact of a run (log_dict's), or None where the run has none."""
        import json
        import tempfile

        if not any(f.path == artifact_file for f in self.client.list_artifacts(
                run_id, posixpath.dirname(artifact_file) or None)):
            return None
        with tempfile.TemporaryDirectory() as folder:
            path = self.client.download_artifacts(run_id, artifact_file, folder)
            with open(path, encoding="utf-8") as f:
                return json.load(f)

    @_retry
    def log_table(self, run_id: str, columns: dict[str, list], artifact_file: str) -> None:
        """A table artifact, replaced on each call, that mlflow.load_table and the UI's table
        views read: JSON in pandas' "split" layout plus the run's mlflow.loggedArtifacts entry,
        as MlflowClient.log_table writes them. Not that method itself: it appends to an existing
        file, so a table refreshed on every fitter update grew to hold every update's rows."""
        import json

        names = list(columns)
        rows = [list(row) for row in zip(*(columns[name] for name in names))]
        self.client.log_dict(run_id, {"columns": names, "data": rows}, artifact_file)
        tags = self.client.get_run(run_id).data.tags
        logged = json.loads(tags.get("mlflow.loggedArtifacts", "[]"))
        if {"path": artifact_file, "type": "table"} not in logged:
            logged.append({"path": artifact_file, "type": "table"})
            self.client.set_tag(run_id, "mlflow.loggedArtifacts", json.dumps(logged))

    def set_description(self, run_id: str, markdown: str) -> None:
        """The run's description (MLflow's note, rendered as Markdown on the run's Overview)."""
        # MLflow keeps tag values up to 8,000 characters; cut at a line so the Markdown stays whole.
        if len(markdown) > MAX_DESCRIPTION:
            markdown = markdown[:markdown.rfind("\n", 0, MAX_DESCRIPTION - 40)] + "\n\n(cut here)"
        self.set_tags(run_id, {"mlflow.note.content": markdown})


class BufferedMetrics:
    """Metrics from a hot loop (pretraining), written by a background thread: the loop never waits
    on MLflow, and keeps training while the tracking server is down. Each point keeps the time it
    was logged. The points not written yet (`unwritten()`) go into each recovery checkpoint, and a
    restart from it hands them back (`write_unless_present`), so a worker that dies during an
    outage loses none; they, and a batch whose request failed midway, are written only where
    MLflow has no point with the same name, step and value. A write that still fails after
    outage_seconds() is raised by the next log() or flush()."""

    def __init__(self, tracker: Tracker, run_id: str):
        import threading

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
            self.to_check += [Metric(p["key"], p["value"], p["timestamp"], p["step"]) for p in points]
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
