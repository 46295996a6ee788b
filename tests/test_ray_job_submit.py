"""The cluster path, locally: a real Ray head started with `ray start --head` (token
authentication on, the client reading the token from a file), the sweep submitted with
`ray job submit --working-dir . -- python -m raysweep run SPEC` exactly as on the cloud, stopped
mid-trial with `ray job stop` (SIGTERM: no run left RUNNING, no COMET scorer left alive),
resubmitted to its end, its results checked in MLflow, and resubmitted once more (it resumes:
nothing is rerun). Only the head this test started is stopped."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from conftest import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head of our own (own temp dir, ports and token); yields (dashboard URL, client env,
    GCS address)."""
    # Short: Ray's unix socket paths live under the temp dir and must stay below ~107 characters.
    temp = Path(tempfile.mkdtemp(prefix="rs-head-", dir="/tmp"))
    token = temp / "auth_token"
    token.write_text(secrets.token_hex(16))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    dashboard, gcs = free_port(), free_port()
    log = (temp / "head.log").open("w")
    # --block: this process owns the head's processes; terminating it stops exactly them.
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", f"--port={gcs}", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard}", "--num-cpus=6", f"--temp-dir={temp / 'ray'}", "--block"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 180
        while subprocess.run([str(BIN / "ray"), "job", "list", "--address", url], env=env,
                             capture_output=True).returncode != 0:
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head did not come up:\n"
                            f"{(temp / 'head.log').read_text()[-3000:]}")
            time.sleep(2)
        yield url, env, f"127.0.0.1:{gcs}"
    finally:
        head.terminate()
        head.wait(timeout=60)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def submit(url: str, env: dict, spec_path: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", url, "--working-dir", ".", *options,
         "--", "python", "-m", "raysweep", "run", str(spec_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def ray_cli(env: dict, *args: str) -> str:
    done = subprocess.run([str(BIN / "ray"), *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def stop_mid_trial(url: str, env: dict, gcs: str, spec_path: Path,
                   tracker_of) -> tuple[float, list]:
    """Submit without waiting, `ray job stop` it while a trial runs; returns when the stop was
    sent and the trial keys that were RUNNING then."""
    # The driver gets seconds between SIGTERM and SIGKILL (RAY_JOB_STOP_WAIT_TIME_S, default 3),
    # set in the job's runtime env as the README says for a remote MLflow server.
    submitted = submit(url, env, spec_path, "--no-wait", "--submission-id", "stopped-sweep",
                       "--runtime-env-json",
                       json.dumps({"env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": "30"}}))
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]

    def live_scorers() -> list:
        listed = ray_cli(env, "list", "actors", "--address", gcs, "--format", "json",
                         "--filter", "class_name=CometScorer", "--filter", "state=ALIVE")
        return [] if listed.strip() == "No resource in the cluster" else json.loads(listed)

    deadline = time.monotonic() + 600
    while not live_scorers():  # the first trial has started the node's COMET scorer
        assert time.monotonic() < deadline, "no COMET scorer started within 10 minutes"
        time.sleep(1)
    running = []
    while not running:  # then a trial that started a moment ago: the stop lands inside it
        assert time.monotonic() < deadline, "no trial started within 10 minutes"
        time.sleep(0.2)
        tracker = tracker_of()
        running = [r for r in (tracker.find_runs({"raysweep.kind": "trial"}, "RUNNING")
                               if tracker else []) if time.time() - r.info.start_time / 1000 < 3]
    stop_sent = time.time()
    ray_cli(env, "job", "stop", "--address", url, "stopped-sweep")
    assert "was stopped" in ray_cli(env, "job", "status", "--address", url, "stopped-sweep")
    logs = ray_cli(env, "job", "logs", "--address", url, "stopped-sweep")
    assert "[raysweep] stopped;" in logs, logs[-3000:]  # the driver's own cleanup ran to its end
    # The job's COMET scorer (a detached actor: it would outlive the job) was stopped.
    assert live_scorers() == []
    return stop_sent, [r.data.tags["raysweep.trial_key"] for r in running]


def test_token_auth_is_on_and_a_wrong_token_is_refused(ray_head, tmp_path):
    url, env, _ = ray_head
    wrong = tmp_path / "wrong_token"
    wrong.write_text(secrets.token_hex(16))
    listed = subprocess.run([str(BIN / "ray"), "job", "list", "--address", url],
                            env={**env, "RAY_AUTH_TOKEN_PATH": str(wrong)}, capture_output=True,
                            text=True)
    assert listed.returncode != 0 and "token" in (listed.stdout + listed.stderr).lower()


def test_ray_job_stop_then_submit_runs_the_sweep_and_a_resubmission_resumes_it(
        ray_head, tmp_path, tiny_spec_dict):
    from raysweep.plan import plan_keys
    from raysweep.spec_loader import load_spec
    from raysweep.tracking import Tracker

    url, env, gcs = ray_head
    tiny_spec_dict.update(name="submitted", storage=str(tmp_path / "storage"))
    tiny_spec_dict["pretrain"]["checkpoints"] = [2048, 4096]
    # 150 steps (about 25 s a trial alone): longer than `ray job stop` takes to land, its CLI's
    # start-up included, with pretraining beside it on two cores (10 steps, 3.5 s, and 60 steps,
    # 11 s, each lost that race once: the trial had finished before the stop).
    tiny_spec_dict["tasks"][0].update(finetune_tokens=[1000], lrs=[0.003], steps=150)
    spec_path = tmp_path / "submitted.yaml"
    spec_path.write_text(yaml.safe_dump(tiny_spec_dict))
    spec = load_spec(spec_path)

    def tracker_once_mlflow_is_set_up():
        # Not before the driver has created the store: opening it while the driver creates its
        # tables races MLflow's schema setup ("table ... already exists").
        return Tracker.of_existing_sweep(spec) if (spec.root / "mlartifacts").exists() else None

    stop_sent, stopped = stop_mid_trial(url, env, gcs, spec_path, tracker_once_mlflow_is_set_up)
    tracker = Tracker.for_spec(spec)
    runs = tracker.find_runs({"raysweep.kind": "trial"})
    others = [tracker.find_runs({"raysweep.kind": kind}) for kind in ("sweep", "pretrain", "laws")]
    assert not [r for r in runs + sum(others, []) if r.info.status == "RUNNING"]
    killed = {r.data.tags["raysweep.trial_key"] for r in runs if r.info.status == "KILLED"}
    # The stop interrupted a running trial.
    # Each run's status and when it ended, in seconds after the stop was sent: a trial that ended
    # FINISHED before 0 lost the race to the stop; one that ended FINISHED after it outlived it.
    assert killed, {"running at the stop": stopped,
                    "now": {r.data.tags["raysweep.trial_key"]: (r.info.status,
                            round(r.info.end_time / 1000 - stop_sent, 1) if r.info.end_time
                            else None)
                            for r in runs}}

    first = submit(url, env, spec_path)  # resumes the stopped sweep, to its end
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert ("Job 'raysubmit_" in first.stdout + first.stderr
            and "succeeded" in first.stdout + first.stderr)
    assert "sweep 'submitted' finished" in first.stdout

    planned = sorted(str(k) for d_p in spec.checkpoint_tokens() for k in plan_keys(spec, d_p))
    runs = tracker.find_runs({"raysweep.kind": "trial"})
    assert sorted(r.data.tags["raysweep.trial_key"] for r in runs) == planned
    assert {r.info.status for r in runs} == {"FINISHED"}
    (pretrain,) = tracker.find_runs({"raysweep.kind": "pretrain"})
    assert pretrain.data.metrics["tokens_seen"] == 4096

    again = submit(url, env, spec_path)  # the same spec: resumes, finds everything done
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
    assert "every scheduled checkpoint is already published" in again.stdout
    assert f"trials {len(planned)}/{len(planned)} done" in again.stdout
    rerun = tracker.find_runs({"raysweep.kind": "trial"})
    assert len(rerun) == len(planned)  # nothing ran twice
    # The trials the stop interrupted ran again in their own runs; no other trial ran twice.
    assert {r.data.tags["raysweep.trial_key"] for r in rerun
            if r.data.tags["raysweep.attempts"] != "1"} == killed
