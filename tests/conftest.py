"""Shared fixtures: a tiny, complete sweep spec (real parts, small sizes)."""

from __future__ import annotations

import copy
import os
import socket

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download

TINY_SPEC = {
    "name": "tiny",
    "storage": "runs",
    "model": {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1,
              "num_heads": 2, "d_kv": 16},
    "tokenizer": {"kind": "unigram", "vocab_size": 600, "train_documents": 2000},
    "pretrain": {
        "mixture": [{"source": "synthetic:en", "weight": 0.5},
                    {"source": "synthetic:de", "weight": 0.5}],
        "checkpoints": [2048, 4096, 8192],
        "batch_size": 8, "seq_len": 32, "lr": 0.003, "warmup_steps": 5, "workers": 2,
        "zero_stage": 1, "log_every": 5,
    },
    "tasks": [{
        "name": "en-de", "source_lang": "en", "target_lang": "de", "data": "synthetic:en-de",
        "finetune_tokens": [1000, 3000], "lrs": [0.001, 0.003], "steps": 10, "batch_size": 8,
        "max_length": 32, "dev_examples": 16, "test_examples": 16, "train_examples": 400,
    }],
    "evaluation": {"comet_model": "tiny-local", "max_new_tokens": 16},
    "fit": {"min_points": 3, "target_tokens": 100000},
    "resources": {"local_cpus": 6, "max_concurrent_trials": 2},
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for the servers tests start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow(command: str, backend_store_uri: str, port: int, log, *options: str):
    """`mlflow ui` or `mlflow server` on 127.0.0.1:port, in its own process group, returned once
    it answers /health; the test fails with the server's log if it does not come up."""
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    with open(log, "a") as out:  # the server keeps its own copy of the file
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), command, "--backend-store-uri",
             backend_store_uri, "--host", "127.0.0.1", "--port", str(port), *options],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"mlflow {command} did not come up:\n{Path(log).read_text()[-3000:]}")
            time.sleep(0.5)


def stop_process_group(process, timeout: float = 30, graceful: bool = True) -> None:
    """SIGTERM (graceful) or SIGKILL to a process started with start_new_session and its
    children; SIGKILL if SIGTERM has not stopped them within `timeout`."""
    import signal
    import subprocess

    try:
        os.killpg(process.pid, signal.SIGTERM if graceful else signal.SIGKILL)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
    # The leader has exited, but a child of the group may still drain (an MLflow server's
    # uvicorn waits on open connections): the group goes too, never outliving the test.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def tiny_spec_dict() -> dict:
    return copy.deepcopy(TINY_SPEC)


@pytest.fixture
def write_spec(tmp_path):
    """Write a spec dict as YAML into tmp_path and return its path."""
    import yaml

    def write(data: dict, name: str = "spec.yaml"):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data))
        return path

    return write


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory):
    """One tiny sweep run to the end (and rerun, which must find nothing to do), shared by the
    tests that look at its results: in MLflow and storage, the CLI, the notebook, the MLflow UI.
    Returns (spec, first outcome, rerun outcome, progress lines, tracker); the spec is loaded from
    a YAML file (spec.source_file) for the commands that take a path."""
    import ray
    import yaml

    from raysweep.spec_loader import load_spec
    from raysweep.sweep import run_sweep
    from raysweep.tracking import Tracker

    base = tmp_path_factory.mktemp("sweep")
    # Two tasks from one pretraining run: en-de (aligned with the en+de mixture) and a small en-fr.
    data = {**TINY_SPEC, "tasks": TINY_SPEC["tasks"] + [{
        **TINY_SPEC["tasks"][0], "name": "en-fr", "target_lang": "fr", "data": "synthetic:en-fr",
        "finetune_tokens": [1000], "lrs": [0.003]}]}
    (base / "sweep.yaml").write_text(yaml.safe_dump(data))
    spec = load_spec(base / "sweep.yaml")
    lines: list[str] = []
    try:
        first = run_sweep(spec, echo=lines.append, poll_seconds=1.0)
        rerun = run_sweep(spec, echo=lines.append, poll_seconds=1.0)  # resumes: nothing to do
    finally:
        ray.shutdown()
    return spec, first, rerun, lines, Tracker.for_spec(spec)
