"""MLflow, through MlflowClient with run identities raysweep derives itself.

Layout: one experiment per sweep; a parent run (kind `sweep`); children (tag mlflow.parentRunId)
for pretraining, each trial key and the laws. Tags are namespaced:

    raysweep.kind        sweep | pretrain | trial | laws
    raysweep.trial_key   the trial key string (trial runs only), e.g. en-de/dp=...
    raysweep.task, raysweep.d_p, raysweep.d_f, raysweep.lr, raysweep.seed   (trial runs)
    raysweep.failure     why a trial failed (failed trial runs)
    raysweep.attempts    how many times the trial has started (retries reuse the run)
    raysweep.previous_failure   why the attempt before a retry failed

Runs are looked up by tag before being created, so a restarted driver or a re-dispatched trial
finds its run instead of making a duplicate. SQLite (the embedded default) serialises writers with
a file lock; concurrent trials can hit "database is locked", so writes retry with backoff.
"""

from __future__ import annotations

import functools
import random
import time
from pathlib import Path

from raysweep.spec import SweepSpec

KIND = "raysweep.kind"
TRIAL_KEY = "raysweep.trial_key"
FAILURE = "raysweep.failure"
ATTEMPTS = "raysweep.attempts"
PREVIOUS_FAILURE = "raysweep.previous_failure"
PARENT = "mlflow.parentRunId"
# MLflow 3's UI opens an experiment without this tag on its GenAI (traces) pages; a sweep is
# model training: its runs table is what users look for.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def _retry(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for attempt in range(8):
            try:
                return fn(*args, **kwargs)
            except Exception as err:  # MlflowException wraps sqlalchemy's OperationalError
                if "locked" not in str(err) or attempt == 7:
                    raise
                time.sleep(0.2 * 2 ** attempt * (0.5 + random.random()))

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
        return self.client.create_run(self.experiment_id, tags=all_tags, run_name=name).info.run_id

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
    def log_artifact(self, run_id: str, path: str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, path, artifact_path)
