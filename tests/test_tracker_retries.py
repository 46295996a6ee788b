"""Every tracker write rides out a tracking-server outage, the ones that once went around the retry
(a resumed run's RUNNING status, JSON artifacts) included. Real parts: an `mlflow server` on
127.0.0.1 (SQLite behind it, artifacts proxied), SIGKILLed while the writes start and started again
on the same port and store a few seconds later."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import free_port, start_mlflow, stop_process_group

pytestmark = [pytest.mark.fault]


def test_status_and_artifact_writes_wait_for_the_server_to_come_back(tmp_path, monkeypatch):
    from raysweep.tracking import Tracker

    # MLflow's own HTTP retries (minutes, by default) cut to one quick try: the outage then
    # reaches the tracker's retry at once, as it does after MLflow's retries run out.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    port, log = free_port(), tmp_path / "server.log"

    def server():
        return start_mlflow("server", f"sqlite:///{tmp_path}/server.db", port, log,
                            "--artifacts-destination", str(tmp_path / "artifacts"))

    mlflow = server()
    try:
        tracker = Tracker(f"http://127.0.0.1:{port}", "outage")
        tracker.ensure_experiment()
        run_id = tracker.get_or_create_run({"raysweep.kind": "sweep"}, "sweep")
        tracker.end_run(run_id, "FAILED")  # as a sweep stopped midway, resumed below
        stop_process_group(mlflow, graceful=False)
        errors: list[BaseException] = []

        def writes():
            try:
                tracker.set_running(run_id)
                tracker.log_dict(run_id, {"bleu": [1.0, 2.0]}, "test_bootstrap.json")
            except BaseException as err:  # reported below: a write that gave up
                errors.append(err)

        writer = threading.Thread(target=writes)
        writer.start()
        time.sleep(4)
        assert writer.is_alive(), "the writes did not wait for the server"
        mlflow = server()
        writer.join(timeout=300)  # the server restarts slowly on a busy 2-core machine
        assert not writer.is_alive() and not errors, errors
        assert tracker.client.get_run(run_id).info.status == "RUNNING"
        assert tracker.load_dict(run_id, "test_bootstrap.json") == {"bleu": [1.0, 2.0]}
    finally:
        stop_process_group(mlflow)
