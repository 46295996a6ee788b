"""Pretraining's metrics buffer (tracking.BufferedMetrics) against a real MLflow: logging never
waits for the tracking server, points not yet written can be saved and handed back after a
restart without being written twice, and a server that stays away fails loudly, not silently."""

from __future__ import annotations

import time

import pytest
from conftest import free_port

from raysweep.tracking import BufferedMetrics, Tracker


def new_run(uri: str, artifacts) -> tuple[Tracker, str]:
    tracker = Tracker(uri, "buffer", str(artifacts))
    tracker.ensure_experiment()
    return tracker, tracker.get_or_create_run({"raysweep.kind": "pretrain"}, "pretrain")


@pytest.fixture
def sqlite_run(tmp_path):
    return new_run(f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "artifacts")


@pytest.fixture(params=["sqlite", "file"])
def any_store_run(request, tmp_path, monkeypatch):
    """A run on MLflow's SQL store, which drops a row identical to one it has, and on its file
    store, which keeps every row it is sent (as other backends may): there, only BufferedMetrics'
    own check keeps a replayed point from being written twice."""
    if request.param == "sqlite":
        return new_run(f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "artifacts")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # in maintenance, still shipped
    return new_run(f"file://{tmp_path}/mlruns", tmp_path / "artifacts")


def history(tracker, run_id, key) -> list[tuple[int, int, float]]:
    return sorted((m.step, m.timestamp, m.value)
                  for m in tracker.client.get_metric_history(run_id, key))


def test_points_are_written_with_the_time_they_were_logged(sqlite_run):
    tracker, run_id = sqlite_run
    buffer = BufferedMetrics(tracker, run_id)
    before = int(time.time() * 1000)
    for step in range(1, 4):
        buffer.log({"loss": 1.0 / step}, step=step)
    buffer.flush()
    points = history(tracker, run_id, "loss")
    assert [(s, v) for s, _, v in points] == [(1, 1.0), (2, 0.5), (3, 1 / 3)]
    assert all(before <= t <= int(time.time() * 1000) for _, t, _ in points)
    assert buffer.unwritten() == []


def test_points_handed_back_after_a_restart_are_written_once(any_store_run):
    tracker, run_id = any_store_run
    first = BufferedMetrics(tracker, run_id)
    first.log({"loss": 2.0, "tokens_seen": 256}, step=1)
    first.flush()
    written = [{"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}
               for key in ("loss", "tokens_seen")
               for m in tracker.client.get_metric_history(run_id, key)]
    # What a recovery checkpoint held: the points above (written after it was saved, before the
    # worker died) and one that never reached MLflow.
    lost = {"key": "loss", "value": 1.5, "timestamp": written[0]["timestamp"] + 5, "step": 2}
    restarted = BufferedMetrics(tracker, run_id)
    restarted.write_unless_present(written + [lost])
    restarted.flush()
    assert [(s, v) for s, _, v in history(tracker, run_id, "loss")] == [(1, 2.0), (2, 1.5)]
    assert len(history(tracker, run_id, "tokens_seen")) == 1


def test_logging_does_not_wait_for_a_server_that_is_down(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("RAYSWEEP_MLFLOW_OUTAGE_SECONDS", "3")
    tracker = Tracker(f"http://127.0.0.1:{free_port()}", "down")  # nothing listens there
    buffer = BufferedMetrics(tracker, "0" * 32)
    started = time.monotonic()
    for step in range(1, 101):
        buffer.log({"loss": 1.0}, step=step)
    assert time.monotonic() - started < 1.0  # the train loop went on
    assert len(buffer.unwritten()) == 100  # what a recovery checkpoint saves meanwhile
    with pytest.raises(RuntimeError, match="could not be written to MLflow at http://127.0.0.1"):
        buffer.flush()  # the outage outlasted RAYSWEEP_MLFLOW_OUTAGE_SECONDS: said, not dropped
