"""The tracking server goes down in the middle of a sweep, for 30 s at least and until every kind
of writer has met the outage, and comes back: the sweep does not fail and nothing is lost. Pretraining keeps training while its metrics wait in a buffer;
trials, the watcher and the fitter retry their writes until the server answers again. MLflow's
own HTTP client would retry a refused connection for minutes by itself, outlasting the outage;
the sweep runs with those retries off (MLFLOW_HTTP_REQUEST_MAX_RETRIES=0, as once they are spent),
so the outage reaches raysweep's retry path, and the test reads in Ray's logs which actors took
it. The outage starts once pretraining is under way and a trial has finished (so the fitter is
writing that trial's law). Real parts:
a real `mlflow server` (SQLite behind it, artifacts proxied) on 127.0.0.1, killed (SIGKILL, as
when its machine is lost) and started again on the same port and store; a local Ray,
DeepSpeed, Tune."""

from __future__ import annotations

import copy
import os
import re
import threading
import time
from pathlib import Path

import pytest
from conftest import TINY_SPEC, free_port, start_mlflow, stop_process_group
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


@pytest.fixture(scope="module")
def sweep_through_an_outage(tmp_path_factory):
    import ray

    from raysweep.spec_loader import spec_from_dict
    from raysweep.sweep import run_sweep
    from raysweep.tracking import Tracker

    base = tmp_path_factory.mktemp("outage")
    port, log = free_port(), base / "mlflow-server.log"

    def server():
        return start_mlflow("server", f"sqlite:///{base}/server.db", port, log,
                            "--artifacts-destination", str(base / "server-artifacts"))

    data = copy.deepcopy(TINY_SPEC)
    data.update(name="outage", tracking_uri=f"http://127.0.0.1:{port}")
    # Pretraining long enough (800 steps) to be training while the server is down, with recovery
    # checkpoints (each saves the metrics not yet written) and a checkpoint for the watcher to
    # find (step 400) during the outage.
    data["pretrain"].update(checkpoints=[2048, 102400], tokens=204800, recovery_every=100)
    data["tasks"][0].update(steps=100, lrs=[0.003])
    spec = spec_from_dict(data, base_dir=str(base))
    mlflow = server()
    outcome: dict = {}
    # Set before the sweep starts Ray: its workers inherit the driver's environment.
    saved_env = {name: os.environ.get(name) for name in MLFLOW_RETRIES_OFF}
    os.environ.update(MLFLOW_RETRIES_OFF)
    driver = threading.Thread(target=lambda: outcome.update(
        result=run_sweep(spec, echo=lambda line: None, poll_seconds=1.0)), daemon=True)
    try:
        driver.start()
        tracker = Tracker.for_spec(spec)

        def under_way() -> bool:
            """Pretraining has logged a loss and a trial has finished."""
            try:
                (pretrain,) = tracker.find_runs({"raysweep.kind": "pretrain"})
                return ("loss" in tracker.client.get_run(pretrain.info.run_id).data.metrics
                        and bool(tracker.find_runs({"raysweep.kind": "trial"}, "FINISHED")))
            except Exception:  # the driver has not created the experiment or the runs yet
                return False

        deadline = time.time() + 600
        while not under_way():
            assert time.time() < deadline and driver.is_alive(), "the sweep never got under way"
            time.sleep(0.2)
        down_at = time.time()
        stop_process_group(mlflow, graceful=False)  # at once, mid-request maybe, as a lost VM
        logs = Path("/tmp/ray/session_latest/logs")  # this test's Ray session (Ray's own link)
        while time.time() < down_at + MAX_OUTAGE_SECONDS and (
                time.time() < down_at + OUTAGE_SECONDS or writers_missing(logs)):
            time.sleep(1)
        mlflow = server()
        up_at = time.time()
        assert driver.is_alive(), "the sweep ended during the outage"
        driver.join(timeout=900)
        assert not driver.is_alive(), "the sweep did not finish after the outage"
        result = outcome["result"]
        missing = writers_missing(logs)
        counts = audit(spec, tracker)
        record(f"MLflow server down {up_at - down_at:.0f} s mid-sweep", 1, result.ok,
               counts["lost"], counts["duplicated"],
               "real `mlflow server` SIGKILLed, then restarted; MLflow's own HTTP retries off, so "
               "raysweep's retries ride it out in " + ", ".join(sorted(set(WRITERS) - missing)))
        yield spec, tracker, result, counts, down_at, up_at, missing
    finally:
        ray.shutdown()
        stop_process_group(mlflow)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_the_sweep_does_not_fail(sweep_through_an_outage):
    _, tracker, result, *_ = sweep_through_an_outage
    assert result.ok, result.errors
    (sweep,) = tracker.find_runs({"raysweep.kind": "sweep"})
    assert sweep.info.status == "FINISHED"


def test_no_result_is_lost_or_duplicated(sweep_through_an_outage):
    spec, _, _, counts, *_ = sweep_through_an_outage
    assert counts["planned"] == spec.num_trials()
    assert counts["lost"] == 0 and counts["duplicated"] == 0, counts


def test_pretraining_metrics_logged_during_the_outage_arrived_with_their_times(sweep_through_an_outage):
    spec, tracker, _, _, down_at, up_at, _ = sweep_through_an_outage
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


def test_the_laws_were_fitted_on_every_result(sweep_through_an_outage):
    from raysweep.fitter import analyse_sweep

    spec, _, result, *_ = sweep_through_an_outage
    refit = {(g["task"], g["d_f"], g["metric"]): g["points"] for g in analyse_sweep(spec, resamples=10)}
    for law in result.laws:
        points = refit[(law["task"], law["d_f"], law["metric"])]
        assert law["points"] == {str(d_p): v for d_p, v in points.items()}
        assert len(points) == len(spec.checkpoint_tokens())  # one per starting point


def test_the_outage_reached_raysweeps_own_retries(sweep_through_an_outage):
    """Pretraining (its buffered metrics), the watcher, a trial and the fitter each met the outage
    and rode it out on raysweep's retries, not MLflow's."""
    *_, missing = sweep_through_an_outage
    assert not missing, f"never met the outage: {sorted(missing)}"
