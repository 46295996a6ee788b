"""cluster.yaml: valid for Ray's cluster launcher (its own JSON schema) and shaped as documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_passes_the_launchers_schema(cluster):
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(cluster, schema)


def test_head_is_on_demand_and_gpu_workers_are_spot(cluster):
    nodes = cluster["available_node_types"]
    head = nodes[cluster["head_node_type"]]
    assert "InstanceMarketOptions" not in head["node_config"]
    assert head["resources"].get("coordinator", 0) > 0
    workers = {name: n for name, n in nodes.items() if name != cluster["head_node_type"]}
    assert workers
    for name, node in workers.items():
        assert node["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot", name
        assert node["min_workers"] == 0, f"{name}: an idle cluster must cost only its head"


def test_pools_are_kept_apart_with_several_instance_types_each(cluster):
    nodes = cluster["available_node_types"].values()
    for pool in ("pretrain_pool", "finetune_pool"):
        types = {n["node_config"]["InstanceType"] for n in nodes if pool in n["resources"]}
        assert len(types) >= 2, pool
    assert not any({"pretrain_pool", "finetune_pool"} <= set(n["resources"]) for n in nodes)


def test_services_bind_privately_and_token_auth_stays_on(cluster):
    commands = "\n".join(cluster["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in commands
    assert "RAY_AUTH_MODE=disabled" not in commands
    assert "mlflow server --host $(hostname -I" in commands and "0.0.0.0" not in commands


def test_the_head_exports_every_environment_variable_the_job_specs_use(cluster):
    import re

    used = set()
    for path in (ROOT / "jobs").rglob("*.yaml"):
        used |= set(re.findall(r"\$\{(\w+)\}", path.read_text()))
    assert used >= {"RAYSWEEP_BUCKET", "MLFLOW_TRACKING_URI"}
    start = "\n".join(cluster["head_start_ray_commands"])
    exported = start.split("ray start --head")[0]  # job drivers inherit what `ray start` sees
    assert all(f"{name}=" in exported for name in used), used


def test_mlflow_runs_on_postgresql_and_its_password_stays_off_command_lines(cluster):
    setup = "\n".join(cluster["head_setup_commands"])
    start = "\n".join(cluster["head_start_ray_commands"])
    assert "install -y -q postgresql" in setup and '".[server]"' in setup  # psycopg for the server
    assert "openssl rand" in setup and "umask 077" in setup  # a password of its own, private
    assert "sqlite" not in start and "--backend-store-uri" not in start
    uri = start.split("MLFLOW_BACKEND_STORE_URI=")[1].split(" nohup ")[0]
    assert "~/.mlflow-backend-uri" in uri and "postgresql://mlflow:" in uri  # managed, else local
    # The URI is the server's environment alone: not exported to `ray start` and so to the jobs.
    assert ("export MLFLOW_BACKEND_STORE_URI" not in start
            and "--default-artifact-root s3://" in start)
