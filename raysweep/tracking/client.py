"""The MLflow client: every write retried through an outage, runs found by tag before created.

Layout: one experiment per sweep; a parent run (kind `sweep`); children (tag mlflow.parentRunId)
for pretraining, each trial key and the laws. Tags are namespaced `raysweep.*`, and every tag
name is one of raysweep.tracking.schema's constants.

Runs are looked up by tag before being created, so a restarted driver or a re-dispatched trial
finds its run instead of making a duplicate. Calls retry with backoff on transient errors: SQLite
(the embedded default) serialises writers with a file lock, so concurrent trials can hit "database
is locked"; a tracking server can be down for a while (a restart, a network blip), and work waits
for it (RAYSWEEP_MLFLOW_OUTAGE_SECONDS, default an hour) instead of failing.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import posixpath
import random
import socket
import tempfile
import time
from pathlib import Path

from raysweep.spec import SweepSpec
from raysweep.text import tokens
from raysweep.tracking.schema import (
    ATTEMPTS,
    EXPERIMENT_KIND,
    FAILURE,
    PREVIOUS_FAILURE,
    WORKER,
)

logger = logging.getLogger(__name__)


MAX_DESCRIPTION = 8000


# Errors worth waiting out: SQLite's writer lock (concurrent trials), and a tracking server that
# is down, restarting or overloaded (MLflow's HTTP client has already retried each request for
# about 4 minutes with backoff before it raises these).
# (An exhausted retry of HTTP 429/5xx answers also reads "Max retries exceeded".)
TRANSIENT = ("database is locked", "Max retries exceeded", "Connection refused",
             "Connection aborted", "Connection reset", "Connection broken", "Read timed out",
             "RemoteDisconnected")


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
        # mlflow is imported here, not at the top: importing it takes 2.5 s, and `raysweep
        # validate` reads this package's tag names without writing to MLflow.
        from mlflow.tracking import MlflowClient

        # MLflow draws a progress bar for every artifact it downloads or uploads:
        # `raysweep fit SPEC` printed one per trial (28 on the demo) above the laws. Set the
        # variable to true to see them.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.client = MlflowClient(tracking_uri)
        self.tracking_uri, self.experiment, self.artifact_root = (tracking_uri, experiment,
                                                                  artifact_root)
        self._experiment_id: str | None = None

    @classmethod
    def for_spec(cls, spec: SweepSpec) -> Tracker:
        # A tracking server keeps its own artifact store; a local store (the default SQLite file,
        # or a sqlite:/file: tracking_uri) gets the sweep's folder, not MLflow's ./mlruns in the
        # cwd.
        server = (spec.tracking_uri or "").split(":", 1)[0] in ("http", "https", "databricks")
        # A study's candidates share the study's store.
        artifacts = None if server else str((spec.study_folder.root / "mlartifacts").resolve())
        return cls(spec.resolved_tracking_uri(), spec.name, artifacts)

    @classmethod
    def of_existing_sweep(cls, spec: SweepSpec) -> Tracker | None:
        """The sweep's tracker if it has been run (its experiment exists), else None. Reads only:
        the embedded SQLite store is not created just to find out that it is empty."""
        if not spec.tracking_uri and not (spec.study_folder.root / "mlflow.db").exists():
            return None
        tracker = cls.for_spec(spec)
        return tracker if tracker.client.get_experiment_by_name(spec.name) else None

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:
                raise RuntimeError(f"MLflow experiment {self.experiment!r} does not exist at "
                                   f"{self.tracking_uri}; the driver creates it "
                                   f"(ensure_experiment).")
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
                          reuse_finished: bool = True, found: list | None = None) -> str:
        """The run with these tags (most recent first), created if there is none. `found`: the
        runs with these tags, when the caller has just searched for them (one search fewer).

        With reuse_finished=False a FINISHED run is not reused (its result stands) and a new
        attempt is created only when no finished run exists - callers check that first."""
        for run in self.find_runs(tags) if found is None else found:
            if reuse_finished or run.info.status != "FINISHED":
                return run.info.run_id
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        all_tags = dict(tags)
        if parent_id:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent_id
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
        """Mark a (re)started trial run RUNNING, count the attempt and name the process running
        it (host:pid); a retry moves the failure of the attempt before it to
        raysweep.previous_failure. Returns the attempt number."""
        tags = self.client.get_run(run_id).data.tags
        attempt = int(tags.get(ATTEMPTS, "0")) + 1
        new = {ATTEMPTS: str(attempt), WORKER: f"{socket.gethostname()}:{os.getpid()}"}
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
    def parent_run_id(self, run_id: str) -> str | None:
        """The run's parent (get_or_create_run's parent_id), None for a top-level run."""
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        return self.client.get_run(run_id).data.tags.get(MLFLOW_PARENT_RUN_ID)

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
        from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS

        names = list(columns)
        rows = [list(row) for row in zip(*(columns[name] for name in names))]
        self.client.log_dict(run_id, {"columns": names, "data": rows}, artifact_file)
        tags = self.client.get_run(run_id).data.tags
        logged = json.loads(tags.get(MLFLOW_LOGGED_ARTIFACTS, "[]"))
        if {"path": artifact_file, "type": "table"} not in logged:
            logged.append({"path": artifact_file, "type": "table"})
            self.client.set_tag(run_id, MLFLOW_LOGGED_ARTIFACTS, json.dumps(logged))

    def set_description(self, run_id: str, markdown: str) -> None:
        """The run's description (MLflow's note, rendered as Markdown on the run's Overview)."""
        # MLflow keeps tag values up to 8,000 characters; cut at a line so the Markdown stays whole.
        if len(markdown) > MAX_DESCRIPTION:
            markdown = markdown[:markdown.rfind("\n", 0, MAX_DESCRIPTION - 40)] + "\n\n(cut here)"
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

        self.set_tags(run_id, {MLFLOW_RUN_NOTE: markdown})

    @_retry
    def set_experiment_description(self, markdown: str) -> None:
        """The experiment's description (MLflow's note on the experiment, shown above its runs
        list): where a person arriving from MLflow's start page reads the answer first."""
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE  # the experiment's note: same key

        self.client.set_experiment_tag(self.experiment_id, MLFLOW_RUN_NOTE,
                                       markdown[:MAX_DESCRIPTION])

    @_retry
    def log_finetune_data(self, run_id: str, task: str, d_f: int, source: str) -> None:
        """The trial's finetune data as the run's dataset input, "en-de (D_f 16k)": MLflow's
        runs list shows it in its Dataset column, where the run's name is cut short."""
        import hashlib

        from mlflow.entities import Dataset, DatasetInput, InputTag

        name = f"{task} (D_f {tokens(d_f)})"
        digest = hashlib.sha1(f"{source}|{d_f}".encode()).hexdigest()[:8]
        self.client.log_inputs(run_id, datasets=[DatasetInput(
            Dataset(name, digest, "raysweep", source),
            [InputTag("mlflow.data.context", "finetune")])])

    def run_link(self, run_id: str) -> str:
        """A link to the run that works inside MLflow's UI (a Markdown description's link): its
        page's route, relative to wherever the UI is served."""
        return f"#/experiments/{self.experiment_id}/runs/{run_id}"
