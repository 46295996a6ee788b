"""Shared fixtures: a tiny, complete sweep spec (real parts, small sizes)."""

from __future__ import annotations

import copy
import os
import re
import sys
from pathlib import Path

import pytest

# The local servers (MLflow, PostgreSQL) live beside the benchmarks, which start them too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from _servers import Postgres, free_port, start_mlflow, stop_process_group  # noqa: E402,F401

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

# The decoder-only family at the same tiny size (a preset sets `family`; explicit dims say it).
CAUSAL_TINY = {"family": "causal", "d_model": 32, "d_ff": 64, "num_layers": 2, "num_heads": 2,
               "d_kv": 16}


def wait_for_driver(condition, driver, what: str, timeout: float = 600):
    """condition()'s first truthy value, polled while the sweep's driver process runs; the test
    fails if the driver ends first or the wait times out."""
    import time

    deadline = time.time() + timeout
    while not (value := condition()):
        assert driver.poll() is None, f"the sweep ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


def local_postgres(folder: Path) -> Postgres | None:
    """A PostgreSQL server for a test's `mlflow server` (the production store), or None where
    PostgreSQL is not installed; .ci/run installs it, so on CI its absence fails the test."""
    from _servers import postgres_bin

    if postgres_bin() is None:
        if os.environ.get("RAYSWEEP_CI"):
            pytest.fail("PostgreSQL is not installed: .ci/run installs the Debian package")
        return None
    return Postgres(free_port(), folder / "postgres.log")


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


BUCKET = "raysweep-test"


@pytest.fixture(scope="module")
def s3_bucket(tmp_path_factory):
    """An S3 bucket (BUCKET) on moto's standalone server on 127.0.0.1 (no network), reached
    through the environment alone (AWS_ENDPOINT_URL, keys), as on a cloud cluster."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "RAYSWEEP_CACHE": str(tmp_path_factory.mktemp("node-cache"))}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        yield s3
    server.stop()


LOG_RECORD = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING) raysweep[.\w]*: ")


def error_paragraph(err: str) -> str:
    """The one-paragraph error a refused command ends stderr with: before it, raysweep's own log
    records only (what it did before it found the problem), never a traceback."""
    *logged, last = err.splitlines()
    assert last.startswith("error: ") and err.endswith("\n") and "Traceback" not in err, err
    assert all(LOG_RECORD.match(line) for line in logged), logged
    return last
