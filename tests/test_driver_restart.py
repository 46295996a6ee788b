"""Kill the driver mid-sweep (SIGKILL to `raysweep run`, as when the head's job dies) and run the
same spec again: the sweep resumes, no trial key runs to a second finished result, none is missing,
and no checkpoint is published twice. Real parts: the command line in a subprocess with its own
local Ray, MLflow on SQLite."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

pytestmark = pytest.mark.slow


def ray_processes_of(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.fixture(scope="module")
def restarted_sweep(tmp_path_factory):
    import yaml
    from conftest import TINY_SPEC

    from raysweep.spec import load_spec
    from raysweep.tracking import Tracker

    base = tmp_path_factory.mktemp("restart")
    path = base / "spec.yaml"
    path.write_text(yaml.safe_dump(copy.deepcopy(TINY_SPEC)))
    spec = load_spec(path)
    command = [sys.executable, "-m", "raysweep", "run", str(path)]
    env = {**os.environ, "RAY_ADDRESS": ""}

    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env, start_new_session=True)
    tracker = None
    deadline = time.time() + 600
    while time.time() < deadline and first.poll() is None:
        time.sleep(1)
        if (spec.root / "mlflow.db").exists():
            tracker = tracker or Tracker.for_spec(spec)
            try:
                if len(tracker.find_runs({"raysweep.kind": "trial"}, "FINISHED")) >= 4:
                    break
            except Exception:  # the experiment is not created yet
                continue
    assert first.poll() is None, "the first run ended before it could be killed:\n" + first.stdout.read()
    finished_before = {r.data.tags["raysweep.trial_key"]: r.info.run_id
                       for r in tracker.find_runs({"raysweep.kind": "trial"}, "FINISHED")}
    children = ray_processes_of(first.pid)
    os.killpg(first.pid, signal.SIGKILL)  # the driver and the local Ray it started
    first.wait()
    import psutil

    psutil.wait_procs(children, timeout=60)

    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    return spec, tracker, finished_before, second


def test_the_rerun_finishes_the_sweep(restarted_sweep):
    _, _, _, second = restarted_sweep
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]


def test_no_key_runs_twice_and_none_is_missing(restarted_sweep):
    from raysweep.finetune import plan_keys

    spec, tracker, finished_before, _ = restarted_sweep
    planned = sorted(str(k) for d_p in spec.checkpoint_tokens() for k in plan_keys(spec, d_p))
    runs = tracker.find_runs({"raysweep.kind": "trial"})
    by_key = Counter(r.data.tags["raysweep.trial_key"] for r in runs)
    assert sorted(by_key) == planned and set(by_key.values()) == {1}  # one run per key
    assert {r.info.status for r in runs} == {"FINISHED"}
    # The trials running at the kill were resumed in their own runs (a second attempt)...
    assert any(r.data.tags["raysweep.attempts"] == "2" for r in runs)
    # ...and what had finished before the kill was not run again: same run, still one attempt.
    for run in runs:
        key = run.data.tags["raysweep.trial_key"]
        if key in finished_before:
            assert run.info.run_id == finished_before[key]
            assert run.data.tags["raysweep.attempts"] == "1"


def test_checkpoints_are_published_once(restarted_sweep):
    from raysweep.checkpoints import published

    spec, tracker, _, _ = restarted_sweep
    assert sorted(published(spec)) == spec.pretrain.published_tokens()
    (pretrain,) = tracker.find_runs({"raysweep.kind": "pretrain"})
    history = tracker.client.get_metric_history(pretrain.info.run_id, "published_tokens")
    assert Counter(m.value for m in history) == Counter(spec.pretrain.published_tokens())
