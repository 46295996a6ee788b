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
from reliability import audit, record

pytestmark = [pytest.mark.slow, pytest.mark.fault]


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

    from raysweep.spec_loader import load_spec
    from raysweep.tracking import Tracker

    base = tmp_path_factory.mktemp("restart")
    path = base / "spec.yaml"
    data = copy.deepcopy(TINY_SPEC)
    data["tasks"][0]["steps"] = 600  # trials of a few seconds: some are running when it is killed
    data["tasks"][0]["lrs"] = [0.003]  # 8 trials: 2 finished before the kill, the rest after
    path.write_text(yaml.safe_dump(data))
    spec = load_spec(path)
    command = [sys.executable, "-m", "raysweep", "run", str(path)]
    env = {**os.environ, "RAY_ADDRESS": ""}

    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env, start_new_session=True)
    tracker = None
    deadline = time.time() + 600
    while time.time() < deadline and first.poll() is None:
        time.sleep(1)
        # The driver has created the store and logged the spec (an artifact): reading the store
        # before that would race the driver's schema migration of the new SQLite file.
        if (spec.root / "mlartifacts").exists():
            tracker = tracker or Tracker.for_spec(spec)
            try:
                runs = tracker.find_runs({"raysweep.kind": "trial"})
            except Exception:  # the experiment is not created yet
                continue
            # Mid-sweep: results have landed and trials are well under way.
            finished = [r for r in runs if r.info.status == "FINISHED"]
            running = [r for r in runs if r.info.status == "RUNNING"
                       and time.time() - r.info.start_time / 1000 > 1.0]
            if len(finished) >= 2 and running:
                break
    assert first.poll() is None, "the first run ended before it could be killed:\n" + first.stdout.read()
    finished_before = {r.data.tags["raysweep.trial_key"]: r.info.run_id
                       for r in tracker.find_runs({"raysweep.kind": "trial"}, "FINISHED")}
    children = ray_processes_of(first.pid)
    os.killpg(first.pid, signal.SIGKILL)  # the driver and the local Ray it started
    killed_at = time.time()
    first.wait()
    import psutil

    _, alive = psutil.wait_procs(children, timeout=60)
    assert not [p for p in alive if p.is_running()], "the killed sweep's Ray outlived its driver"
    # Trials whose runs had not finished when the driver died (and none finished after it).
    interrupted = [r for r in tracker.find_runs({"raysweep.kind": "trial"})
                   if r.info.status == "RUNNING"]
    assert all(r.info.end_time is None or r.info.end_time / 1000 < killed_at + 2
               for r in tracker.find_runs({"raysweep.kind": "trial"}))

    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    counts = audit(spec, tracker)
    record("driver killed (SIGKILL), spec run again", 1, second.returncode == 0, counts["lost"],
           counts["duplicated"], "`raysweep run` in a subprocess, its local Ray killed with it")
    return spec, tracker, finished_before, second, interrupted


def test_the_rerun_finishes_the_sweep(restarted_sweep):
    _, _, _, second, _ = restarted_sweep
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]


def test_no_key_runs_twice_and_none_is_missing(restarted_sweep):
    from raysweep.finetune import plan_keys

    spec, tracker, finished_before, _, interrupted = restarted_sweep
    planned = sorted(str(k) for d_p in spec.checkpoint_tokens() for k in plan_keys(spec, d_p))
    runs = tracker.find_runs({"raysweep.kind": "trial"})
    by_key = Counter(r.data.tags["raysweep.trial_key"] for r in runs)
    assert sorted(by_key) == planned and set(by_key.values()) == {1}  # one run per key
    assert {r.info.status for r in runs} == {"FINISHED"}
    # The trials running at the kill were resumed in their own runs (a second attempt)...
    assert interrupted, "no trial was running when the driver was killed"
    attempts = {r.info.run_id: r.data.tags["raysweep.attempts"] for r in runs}
    assert all(attempts[r.info.run_id] == "2" for r in interrupted)
    # ...and what had finished before the kill was not run again: same run, still one attempt.
    for run in runs:
        key = run.data.tags["raysweep.trial_key"]
        if key in finished_before:
            assert run.info.run_id == finished_before[key]
            assert run.data.tags["raysweep.attempts"] == "1"


def test_checkpoints_are_published_once(restarted_sweep):
    from raysweep.checkpoints import published

    spec, tracker, *_ = restarted_sweep
    assert sorted(published(spec)) == spec.pretrain.published_tokens()
    (pretrain,) = tracker.find_runs({"raysweep.kind": "pretrain"})
    history = tracker.client.get_metric_history(pretrain.info.run_id, "published_tokens")
    assert Counter(m.value for m in history) == Counter(spec.pretrain.published_tokens())
