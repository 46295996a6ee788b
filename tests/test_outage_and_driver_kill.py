"""Two faults in one sweep (one sweep's start-up instead of two, about two minutes of the suite):

1. The tracking server goes down mid-sweep, for 30 s at least and until every kind of writer has
   met the outage, and comes back. Pretraining keeps training while its metrics wait in a buffer;
   trials, the watcher and the fitter retry their writes until the server answers again. MLflow's
   own HTTP client would retry a refused connection for minutes by itself, outlasting the outage;
   the sweep runs with those retries off (MLFLOW_HTTP_REQUEST_MAX_RETRIES=0, as once they are
   spent), so the outage reaches raysweep's retry path, and the test reads in Ray's logs which
   actors took it. The outage starts once pretraining is under way and a trial has finished (so
   the fitter is writing that trial's law).
2. Once the server is back and what pretraining logged during the outage has arrived, the driver
   is killed (SIGKILL to `raysweep run` and the local Ray it started, as when the head's job dies)
   while a trial runs, and the same spec is run again: it resumes, no trial key runs to a second
   finished result, none is missing, and no checkpoint is published twice.

Real parts: `raysweep run` in a subprocess with its own local Ray, DeepSpeed and Tune; a real
`mlflow server` on 127.0.0.1 with a PostgreSQL backend store, as deployed (cluster.yaml; SQLite
where PostgreSQL is not installed, outside CI) and artifacts proxied, killed (SIGKILL, as when its
machine is lost) and started again on the same port and store; the database stays up."""

from __future__ import annotations

import contextlib
import copy
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import (
    TINY_SPEC,
    free_port,
    local_postgres,
    start_mlflow,
    stop_process_group,
    wait_for_driver,
)
from reliability import audit, record

pytestmark = [pytest.mark.slow, pytest.mark.fault]

OUTAGE_SECONDS = 30
MAX_OUTAGE_SECONDS = 180
WRITERS = {"pretraining": {"RayTrainWorker"}, "watcher": {"CheckpointWatcher"},
           "trial": {"ImplicitFunc", "finetune_trial"}, "fitter": {"LawFitter"}}
"""The kinds of MLflow writer, by the class names Ray gives their actors' logs (a Tune trial's
actor logs under both names)."""
MLFLOW_RETRIES_OFF = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def writers_missing(logs: Path) -> set[str]:
    """The kinds of writer (WRITERS) no log of which shows raysweep's MLflow retry path running
    (the warning its first retry writes). Ray heads each worker's log with `:actor_name:<class>`."""
    retried = set()
    for path in logs.glob("worker-*.err"):
        text = path.read_text(errors="replace")
        if "MLflow unavailable" in text:
            retried.update(re.findall(r"^:actor_name:(\w+)", text, re.M))
    return {kind for kind, classes in WRITERS.items() if not classes & retried}


def ray_processes_of(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


class Watch:
    """What the test reads from MLflow while the sweep runs (None/[] until the driver has
    created the store, the experiment and the runs)."""

    def __init__(self, spec):
        from raysweep.tracking import Tracker

        self.spec, self.tracker = spec, Tracker.for_spec(spec)

    def trials(self, status: str | None = None) -> list:
        try:
            return self.tracker.find_runs({"raysweep.kind": "trial"}, status)
        except Exception:  # the experiment is not created yet
            return []

    def pretraining_history(self, metric: str) -> list:
        try:
            (pretrain,) = self.tracker.find_runs({"raysweep.kind": "pretrain"})
            return self.tracker.client.get_metric_history(pretrain.info.run_id, metric)
        except Exception:  # not created yet (or the server is down)
            return []

    def finished_since(self, moment: float) -> bool:
        """A trial has finished after `moment` (time.time())."""
        return any(r.info.end_time / 1000 > moment
                   for r in self.trials("FINISHED") if r.info.end_time)

    def mid_trial(self) -> tuple | None:
        """(the running trials, the finished ones by key), once two have finished and one has
        been running for 1 to 8 s: well inside its ~30 s, so it cannot finish before the kill
        that follows (one found later in its run did, on a loaded machine)."""
        finished, running = self.trials("FINISHED"), self.trials("RUNNING")
        if len(finished) >= 2 and any(1.0 < time.time() - r.info.start_time / 1000 < 8.0
                                      for r in running):
            return running, {r.data.tags["raysweep.trial_key"]: r.info.run_id for r in finished}
        return None


def take_the_outage(mlflow, restart_server, watch: Watch, driver) -> tuple:
    """Kill the server once pretraining is under way, the moment a trial has finished (the
    fitter is then refitting and writing: a trial cannot finish during the outage, so the fitter
    meets it only if it is writing when it starts; once, with a trial that had finished before
    pretraining logged, it was not), and start it again once every writer has met the outage
    (30 s at least); returns (server, down_at, up_at, writers that never met it)."""
    wait_for_driver(lambda: watch.pretraining_history("loss"), driver, "pretraining logged a loss")
    since = time.time()
    wait_for_driver(lambda: watch.finished_since(since), driver, "a trial finished")
    down_at = time.time()
    stop_process_group(mlflow, graceful=False)  # at once, mid-request maybe, as a lost VM
    logs = Path("/tmp/ray/session_latest/logs")  # the driver's Ray session (Ray's own link)
    while time.time() < down_at + MAX_OUTAGE_SECONDS and (
            time.time() < down_at + OUTAGE_SECONDS or writers_missing(logs)):
        time.sleep(1)
    assert driver.poll() is None, "the sweep ended during the outage"
    return restart_server(), down_at, time.time(), writers_missing(logs)


def kill_the_driver(driver, watch: Watch, down_at: float, up_at: float) -> tuple:
    """SIGKILL the driver and its Ray once what pretraining logged during the outage is in
    MLflow and a trial is running; returns (runs finished before, runs interrupted, the time of
    the kill)."""
    import psutil

    wait_for_driver(lambda: [m for m in watch.pretraining_history("tokens_seen")
                      if down_at * 1000 < m.timestamp < up_at * 1000],
             driver, "pretraining's metrics of the outage arrived")
    running, finished_before = wait_for_driver(watch.mid_trial, driver,
                                               "a trial running after the outage")
    # The driver and everything its local Ray started, at once, as when the head is lost. Ray's
    # workers have process groups of their own: killed with the driver's group alone, a trial
    # worker went on for about 1.5 s and could finish its trial after the "kill".
    children = ray_processes_of(driver.pid)
    os.killpg(driver.pid, signal.SIGKILL)
    for process in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    killed_at = time.time()
    driver.wait()
    _, alive = psutil.wait_procs(children, timeout=60)
    assert not [p for p in alive if p.is_running()], "the killed sweep's Ray outlived its driver"
    # The runs running at the kill that did not finish. Read one by one: a failed search must
    # not read as "none were running".
    interrupted = [run
                   for run in map(watch.tracker.client.get_run, [r.info.run_id for r in running])
                   if run.info.status != "FINISHED"]
    # No trial finished after its driver died.
    assert all(r.info.end_time is None or r.info.end_time / 1000 < killed_at + 2
               for r in watch.trials())
    return finished_before, interrupted, killed_at


@pytest.fixture(scope="module")
def sweep_through_faults(tmp_path_factory):
    import ray
    import yaml

    from raysweep.spec_loader import load_spec
    from raysweep.sweep import run_sweep

    base = tmp_path_factory.mktemp("outage")
    port, log = free_port(), base / "mlflow-server.log"
    postgres = local_postgres(base)
    store = postgres.uri if postgres else f"sqlite:///{base}/server.db"

    def server():
        return start_mlflow("server", store, port, log,
                            "--artifacts-destination", str(base / "server-artifacts"))

    data = copy.deepcopy(TINY_SPEC)
    data.update(name="outage", tracking_uri=f"http://127.0.0.1:{port}")
    # Pretraining long enough (800 steps) to be training while the server is down, with recovery
    # checkpoints (each saves the metrics not yet written) and a checkpoint for the watcher to
    # find (step 400) during the outage. Trials of a few seconds: one is running at the kill.
    data["pretrain"].update(checkpoints=[2048, 102400], tokens=204800, recovery_every=100)
    data["tasks"][0].update(steps=200, lrs=[0.003])
    path = base / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = load_spec(path)
    mlflow = server()
    # MLflow's retries off in the driver and so in every Ray worker (they inherit its environment).
    env = {**os.environ, "RAY_ADDRESS": "", **MLFLOW_RETRIES_OFF}
    with open(base / "first-run.log", "w") as out:
        driver = subprocess.Popen([sys.executable, "-m", "raysweep", "run", str(path)], stdout=out,
                                  stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        watch = Watch(spec)
        mlflow, down_at, up_at, missing = take_the_outage(mlflow, server, watch, driver)
        finished_before, interrupted, killed_at = kill_the_driver(driver, watch, down_at, up_at)
        try:
            # the same spec again
            result = run_sweep(spec, echo=lambda line: None, poll_seconds=1.0)
        finally:
            ray.shutdown()
        counts = audit(spec, watch.tracker)
        record(f"MLflow server down {up_at - down_at:.0f} s mid-sweep", 1, result.ok,
               counts["lost"], counts["duplicated"],
               f"real `mlflow server` on {'PostgreSQL' if postgres else 'SQLite'} SIGKILLed, then "
               "restarted; MLflow's own HTTP retries off, so "
               "raysweep's retries ride it out in " + ", ".join(sorted(set(WRITERS) - missing)))
        record("driver killed (SIGKILL), spec run again", 1, result.ok, counts["lost"],
               counts["duplicated"], "`raysweep run` in a subprocess, its local Ray killed with "
               "it; the same sweep as the MLflow outage")
        yield {"spec": spec, "tracker": watch.tracker, "result": result, "counts": counts,
               "down_at": down_at, "up_at": up_at, "missing": missing,
               "finished_before": finished_before, "interrupted": interrupted,
               "killed_at": killed_at,
               "postgres": postgres}
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        stop_process_group(mlflow)
        if postgres:
            postgres.stop()


def test_the_sweep_does_not_fail(sweep_through_faults):
    result, tracker = sweep_through_faults["result"], sweep_through_faults["tracker"]
    assert result.ok, result.errors
    (sweep,) = tracker.find_runs({"raysweep.kind": "sweep"})
    assert sweep.info.status == "FINISHED"


def test_the_server_kept_the_sweep_in_postgresql(sweep_through_faults):
    """What MLflow's API returned is what the database holds: every run, and each trial's
    result rows, in PostgreSQL's tables."""
    from raysweep.tracking import KINDS

    postgres, tracker = sweep_through_faults["postgres"], sweep_through_faults["tracker"]
    if postgres is None:
        pytest.skip("PostgreSQL is not installed here (CI installs it)")
    runs = {r.info.run_id for kind in KINDS for r in tracker.find_runs({"raysweep.kind": kind})}
    stored = {row[0] for row in postgres.query(
        "SELECT run_uuid FROM runs WHERE lifecycle_stage = 'active'")}
    assert runs and runs == stored
    trials = {r.info.run_id for r in tracker.find_runs({"raysweep.kind": "trial"})}
    with_bleu = {row[0] for row in postgres.query(
        "SELECT DISTINCT run_uuid FROM latest_metrics WHERE key = 'bleu'")}
    assert trials and trials == with_bleu


def test_no_result_is_lost_or_duplicated(sweep_through_faults):
    spec, counts = sweep_through_faults["spec"], sweep_through_faults["counts"]
    assert counts["planned"] == spec.num_trials()
    assert counts["lost"] == 0 and counts["duplicated"] == 0, counts


def test_pretraining_metrics_logged_during_the_outage_arrived_with_their_times(
        sweep_through_faults):
    spec, tracker = sweep_through_faults["spec"], sweep_through_faults["tracker"]
    down_at, up_at = sweep_through_faults["down_at"], sweep_through_faults["up_at"]
    pre = spec.pretrain
    (pretrain,) = tracker.find_runs({"raysweep.kind": "pretrain"})
    history = tracker.client.get_metric_history(pretrain.info.run_id, "tokens_seen")
    last = pre.published_tokens()[-1] // pre.tokens_per_step()
    expected = {s for s in range(1, last + 1)
                if s % pre.log_every == 0 or s * pre.tokens_per_step() in pre.published_tokens()}
    assert {m.step for m in history} == expected  # the loss curve has no gap
    # Training went on while the server was down: points were logged then (their timestamps)
    # and written once it was back.
    during = [m for m in history if down_at * 1000 < m.timestamp < up_at * 1000]
    assert during, "no pretraining step was logged while the server was down"


def test_the_laws_were_fitted_on_every_result(sweep_through_faults):
    from raysweep.refit import analyse_sweep

    spec, result = sweep_through_faults["spec"], sweep_through_faults["result"]
    refit = {(g.task, g.d_f, g.metric): g.points for g in analyse_sweep(spec, resamples=10)}
    assert result.laws
    for law in result.laws:
        points = refit[(law["task"], law["d_f"], law["metric"])]
        assert law["points"] == {str(d_p): v for d_p, v in points.items()}
        assert len(points) == len(spec.checkpoint_tokens())  # one per starting point


def test_the_outage_reached_raysweeps_own_retries(sweep_through_faults):
    """Pretraining (its buffered metrics), the watcher, a trial and the fitter each met the outage
    and rode it out on raysweep's retries, not MLflow's."""
    missing = sweep_through_faults["missing"]
    assert not missing, f"never met the outage: {sorted(missing)}"


def test_after_the_driver_kill_no_key_runs_twice_and_none_is_missing(sweep_through_faults):
    from raysweep.plan import plan_keys

    spec, tracker = sweep_through_faults["spec"], sweep_through_faults["tracker"]
    finished_before = sweep_through_faults["finished_before"]
    interrupted = sweep_through_faults["interrupted"]
    planned = sorted(str(k) for d_p in spec.checkpoint_tokens() for k in plan_keys(spec, d_p))
    runs = tracker.find_runs({"raysweep.kind": "trial"})
    by_key = Counter(r.data.tags["raysweep.trial_key"] for r in runs)
    assert sorted(by_key) == planned and set(by_key.values()) == {1}  # one run per key
    assert {r.info.status for r in runs} == {"FINISHED"}
    # The trials running at the kill were resumed in their own runs (one attempt more)...
    assert interrupted, "no trial was running when the driver was killed"
    attempts = {r.info.run_id: r.data.tags["raysweep.attempts"] for r in runs}
    # (Or, if the kill fell between a trial's result numbers and its run's end, the run was ended
    # with those numbers, once: tests/test_trial_exactly_once.py.)
    # Whether the killed attempt had logged its numbers is read from their timestamp (set by the
    # client as it logged them), not from the run as read just after the kill, which a batch the
    # killed worker had sent may not have reached yet. An attempt is counted once it starts (the
    # run exists a moment before): a run killed in between had no attempt yet, and its first is
    # the resumed one.
    killed_at_ms = sweep_through_faults["killed_at"] * 1000
    for run in interrupted:
        logged = tracker.client.get_metric_history(run.info.run_id, "trial_seconds")
        numbers_at_kill = any(m.timestamp <= killed_at_ms for m in logged)
        started = int(run.data.tags.get("raysweep.attempts", "0"))
        expected = str(started if numbers_at_kill else started + 1)
        assert attempts[run.info.run_id] == expected, (run.data.tags, run.data.metrics)
    # ...and what had finished before the kill was not run again: same run, still one attempt.
    assert finished_before
    for run in runs:
        key = run.data.tags["raysweep.trial_key"]
        if key in finished_before:
            assert run.info.run_id == finished_before[key]
            assert run.data.tags["raysweep.attempts"] == "1"


def test_checkpoints_are_published_once(sweep_through_faults):
    from raysweep.checkpoints import published

    spec, tracker = sweep_through_faults["spec"], sweep_through_faults["tracker"]
    assert sorted(published(spec)) == spec.pretrain.published_tokens()
    (pretrain,) = tracker.find_runs({"raysweep.kind": "pretrain"})
    history = tracker.client.get_metric_history(pretrain.info.run_id, "published_tokens")
    assert Counter(m.value for m in history) == Counter(spec.pretrain.published_tokens())
