"""A sweep on an autoscaling cluster that loses whole nodes, as spot GPU nodes are reclaimed.

Ray's fake multi-node provider runs the real autoscaler and launches each node as its own raylet
(with its object store, agents and workers) on this machine. Its node types are cluster.yaml's,
scaled to this machine: the same custom resources (the pools, the head's `coordinator`),
min_workers 0, two CPUs each and no GPU. The sweep starts on the head alone; the autoscaler adds a
pretraining node and finetuning nodes as the sweep asks for them. One whole node is SIGKILLed
mid-pretraining (its raylet and every process on it at once) and one mid-trial; the sweep finishes
with nothing lost or duplicated (tests/reliability.py's audit), and once it ends the autoscaler
removes the idle nodes.

What the fake provider cannot show (the README's limits say so too): its nodes share this
machine's disk, so the sweep's local storage is reachable from every node (a real cluster needs
a bucket: tests/test_bucket_storage.py), and a lost node's name stays in the provider's books until
the autoscaler finds it dead, where a cloud reports the reclaim itself."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import TINY_SPEC, free_port, wait_for_driver
from reliability import audit, record

pytestmark = [pytest.mark.slow, pytest.mark.fault]

ROOT = Path(__file__).resolve().parents[1]
POOLS = ("pretrain_pool", "finetune_pool")
RAY = str(Path(sys.executable).parent / "ray")  # the venv's, whether or not it is on PATH
# Token authentication off for this loopback test cluster and its drivers, said explicitly: an
# earlier test's ray.init leaves RAY_AUTH_MODE=token in this process's environment, and a driver
# that inherited it saw its watcher actor cancelled before it ran.
NO_TOKENS = {"RAY_AUTH_MODE": "disabled"}


def fake_cluster_config() -> dict:
    """cluster.yaml's node types at this machine's scale, for the fake multi-node provider."""
    import yaml

    cluster = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    types = {}
    for name, node in cluster["available_node_types"].items():
        custom = {k: v for k, v in node["resources"].items() if k not in ("CPU", "GPU")}
        if name == cluster["head_node_type"]:  # the provider's own name for the head
            types["ray.head.default"] = {"resources": {"CPU": 2, **custom}, "node_config": {},
                                         "max_workers": 0}
        else:  # pools of 2 workers at most; one node of each type, so each pool has two types
            types[name] = {"resources": {"CPU": 2, **{k: min(v, 2) for k, v in custom.items()},
                                         "object_store_memory": 200_000_000},
                           "node_config": {}, "min_workers": node["min_workers"], "max_workers": 1}
    return {"cluster_name": "fake", "max_workers": 4, "upscaling_speed": 1.0,
            "idle_timeout_minutes": 0.1, "head_node_type": "ray.head.default",
            "available_node_types": types, "auth": {}, "docker": {}, "file_mounts": {},
            "cluster_synced_files": [], "initialization_commands": [], "setup_commands": [],
            "head_setup_commands": [], "worker_setup_commands": [],
            "head_start_ray_commands": [], "worker_start_ray_commands": []}


def start_fake_cluster(config: dict, folder: Path) -> tuple[str, str]:
    """`ray start --head` with the fake provider's autoscaler; returns the cluster's address and
    its dashboard's (where the test reads the cluster's state)."""
    import ray._private.services

    ip, port, dashboard = ray._private.services.get_node_ip_address(), free_port(), free_port()
    config["provider"] = {"type": "fake_multinode", "use_node_id_as_ip": True,
                          "disable_node_updaters": True, "disable_launch_config_check": True,
                          "gcs_address": f"{ip}:{port}"}
    path = folder / "fake-cluster.yaml"
    path.write_text(json.dumps(config))
    head = config["available_node_types"]["ray.head.default"]["resources"]
    subprocess.run(
        [RAY, "start", "--head", f"--port={port}", f"--autoscaling-config={path}",
         f"--num-cpus={head['CPU']}", "--object-store-memory=300000000", "--disable-usage-stats",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         "--resources", json.dumps({k: v for k, v in head.items() if k != "CPU"})],
        env={**os.environ, **NO_TOKENS, "RAY_FAKE_CLUSTER": "1",
             "AUTOSCALER_UPDATE_INTERVAL_S": "1"},
        check=True, capture_output=True)
    return f"{ip}:{port}", f"http://127.0.0.1:{dashboard}"


def node_processes(node_id: str) -> list:
    """Every process of one node: its raylet and all it started (agents, workers)."""
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        if f"--node_id={node_id}" in (process.info["cmdline"] or []):
            return [process, *process.children(recursive=True)]
    return []


def node_of_process(pid: int) -> str | None:
    """The node whose raylet started process `pid`."""
    import psutil

    for process in psutil.Process(pid).parents():
        for arg in process.cmdline():
            if arg.startswith("--node_id="):
                return arg.split("=", 1)[1]
    return None


def kill_node(node_id: str) -> int:
    """SIGKILL every process of the node at once, as a reclaimed VM; how many there were."""
    import psutil

    victims = node_processes(node_id)
    assert victims, f"node {node_id} has no processes"
    for process in victims:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    return len(victims)


class NodeLog:
    """Samples the live nodes once a second: which pools each offered, and how many were up."""

    def __init__(self, dashboard: str):
        self.dashboard = dashboard
        self.pools_seen: set[str] = set()
        self.most_alive = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def alive(self) -> list:
        from ray.util.state import list_nodes

        # (Filtered, the dead nodes read as "missing output" and raise unless told not to.)
        return list_nodes(address=self.dashboard, filters=[("state", "=", "ALIVE")],
                          raise_on_missing_output=False)

    def _sample(self):
        while not self.stop.wait(1.0):
            try:
                nodes = self.alive()
            except Exception:  # the dashboard is busy or restarting: the next sample
                continue
            self.most_alive = max(self.most_alive, len(nodes))
            self.pools_seen |= {pool for n in nodes for pool in POOLS if pool in n.resources_total}


def cluster_spec(base: Path, name: str, **resources):
    import yaml

    from raysweep.spec_loader import load_spec

    data = copy.deepcopy(TINY_SPEC)
    data["name"] = name
    # Pretraining of 200 steps with recovery checkpoints, so a node is lost mid-way; trials of
    # several seconds, so one is running when its node goes.
    data["pretrain"].update(checkpoints=[2048, 51200, 102400], recovery_every=25, max_failures=3)
    data["tasks"][0].update(finetune_tokens=[1000], steps=200)
    data["resources"] = {"pretrain_resources": {"pretrain_pool": 1},
                         "trial_resources": {"finetune_pool": 1},
                         "coordinator_resources": {"coordinator": 1}, "max_concurrent_trials": 2,
                         "trial_retries": 2, **resources}
    path = base / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_spec(path)


@pytest.fixture(scope="module")
def autoscaled_sweep(tmp_path_factory):
    """`raysweep run` against the cluster (RAY_ADDRESS set, as `ray job submit` runs it on
    the head), in a process of its own; this process only reads the cluster's state."""
    from raysweep.checkpoints import published
    from raysweep.tracking import Tracker

    base = tmp_path_factory.mktemp("autoscaling")
    config = fake_cluster_config()
    address, dashboard = start_fake_cluster(config, base)
    env = {**os.environ, **NO_TOKENS, "RAY_ADDRESS": address}
    nodes = None
    try:
        # Bad input first: a trial asks for more of its pool than any node type has.
        refused = cluster_spec(base, "refused", trial_resources={"finetune_pool": 2})
        refusal = subprocess.run([sys.executable, "-m", "raysweep", "run",
                                  str(refused.source_file)],
                                 env=env, capture_output=True, text=True, timeout=600, check=False)
        nodes = NodeLog(dashboard)
        started_on = len(nodes.alive())
        spec = cluster_spec(base, "autoscaled")
        tracker = Tracker.for_spec(spec)
        with open(base / "sweep.log", "w") as out:
            driver = subprocess.Popen([sys.executable, "-m", "raysweep", "run",
                                       str(spec.source_file)],
                                      env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            pretraining_node, published_at_kill = lose_the_pretraining_node(
                spec, tracker, driver, dashboard)
            trial_node, trial_run = lose_a_trial_node(tracker, driver)
            returncode = driver.wait(timeout=1200)
        finally:
            if driver.poll() is None:
                driver.kill()
        idle_removed = wait_until_only_the_head_is_left(nodes)
    finally:
        if nodes:
            nodes.stop.set()
        subprocess.run([RAY, "stop", "--force"], capture_output=True, check=False)
    counts = audit(spec, tracker)
    record("whole node lost mid-pretraining (raylet and all its processes SIGKILLed)", 1,
           returncode == 0, counts["lost"], counts["duplicated"],
           "fake multi-node autoscaling cluster shaped like cluster.yaml; the autoscaler adds a "
           "new node")
    record("whole node lost mid-trial (raylet and all its processes SIGKILLed)", 1,
           returncode == 0, counts["lost"], counts["duplicated"], "the same sweep; Tune retries "
           "the trial on another node")
    return {"spec": spec, "tracker": tracker, "returncode": returncode, "counts": counts,
            "log": (base / "sweep.log").read_text(), "refusal": refusal, "refused": refused,
            "base": base, "started_on": started_on, "nodes": nodes, "idle_removed": idle_removed,
            "pretraining_node": pretraining_node, "published_at_kill": published_at_kill,
            "all_published": sorted(published(spec)), "trial_node": trial_node,
            "trial_run": trial_run}


def lose_the_pretraining_node(spec, tracker, driver, dashboard: str) -> tuple[str, list[int]]:
    """Kill the node of the pretraining workers once they have logged a loss, before the last
    checkpoint; returns (its node id, the checkpoints published at the kill)."""
    from ray.util.state import list_actors

    from raysweep.checkpoints import published

    def training_node():
        try:
            (run,) = tracker.find_runs({"raysweep.kind": "pretrain"})
        except Exception:  # not created yet
            return None
        if "loss" not in run.data.metrics:
            return None
        workers = list_actors(address=dashboard, filters=[("class_name", "=", "RayTrainWorker"),
                                                          ("state", "=", "ALIVE")],
                              raise_on_missing_output=False)
        return workers[0].node_id if workers else None

    node = wait_for_driver(training_node, driver, "pretraining under way on its node")
    at_kill = sorted(published(spec))
    assert len(at_kill) < len(spec.pretrain.published_tokens()), "pretraining ended first"
    kill_node(node)
    return node, at_kill


def lose_a_trial_node(tracker, driver) -> tuple[str, str]:
    """Kill the node of a trial that has been running for a second (its run names its worker
    process); returns (the node id, the trial's run id)."""
    def running_trial():
        try:
            runs = tracker.find_runs({"raysweep.kind": "trial"}, "RUNNING")
        except Exception:
            return None
        for run in runs:
            pid = run.data.tags.get("raysweep.worker", "").rpartition(":")[2]
            if pid and time.time() - run.info.start_time / 1000 > 1.0:
                node = node_of_process(int(pid))
                if node:
                    return node, run.info.run_id
        return None

    node, run_id = wait_for_driver(running_trial, driver, "a trial running on a finetuning node")
    kill_node(node)
    return node, run_id


def wait_until_only_the_head_is_left(nodes: NodeLog, timeout: float = 180) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(nodes.alive()) == 1:
            return True
        time.sleep(1)
    return False


def test_the_sweep_starts_on_the_head_alone_and_the_autoscaler_adds_both_pools(autoscaled_sweep):
    assert autoscaled_sweep["started_on"] == 1
    nodes = autoscaled_sweep["nodes"]
    assert nodes.pools_seen == set(POOLS) and nodes.most_alive >= 3, vars(nodes)


def test_the_sweep_finishes_after_losing_a_node_mid_pretraining_and_one_mid_trial(
        autoscaled_sweep):
    spec, tracker = autoscaled_sweep["spec"], autoscaled_sweep["tracker"]
    assert autoscaled_sweep["returncode"] == 0, autoscaled_sweep["log"][-3000:]
    (sweep,) = tracker.find_runs({"raysweep.kind": "sweep"})
    assert sweep.info.status == "FINISHED"
    assert autoscaled_sweep["pretraining_node"] != autoscaled_sweep["trial_node"]
    # The node went before the last checkpoint, and every checkpoint was published after all.
    assert autoscaled_sweep["published_at_kill"] != autoscaled_sweep["all_published"]
    assert autoscaled_sweep["all_published"] == spec.pretrain.published_tokens()


def test_the_trial_on_the_lost_node_ran_again_in_its_own_run(autoscaled_sweep):
    tracker, run_id = autoscaled_sweep["tracker"], autoscaled_sweep["trial_run"]
    run = tracker.client.get_run(run_id)
    assert run.info.status == "FINISHED"
    # A second attempt, unless the node went between its numbers and its end (then ended with
    # the numbers: tests/test_trial_exactly_once.py).
    assert run.data.tags["raysweep.attempts"] == "2" or (
        run.data.tags["raysweep.attempts"] == "1" and "trial_seconds" in run.data.metrics)


def test_no_result_is_lost_or_duplicated(autoscaled_sweep):
    spec, counts = autoscaled_sweep["spec"], autoscaled_sweep["counts"]
    assert counts["planned"] == spec.num_trials()
    assert counts["lost"] == 0 and counts["duplicated"] == 0, counts


def test_idle_nodes_are_removed_once_the_sweep_ends(autoscaled_sweep):
    assert autoscaled_sweep["idle_removed"]


def test_a_request_no_node_type_can_meet_is_refused_as_validate_refuses_it(autoscaled_sweep):
    """The driver reads the node types the autoscaler can add (not only the head that is up)
    and refuses what none of them offers, with `raysweep validate --cluster`'s paragraph."""
    refused, run = autoscaled_sweep["refused"], autoscaled_sweep["refusal"]
    refusal = run.stderr
    assert run.returncode == 2, (run.stdout[-2000:], refusal[-2000:])
    assert "resources.trial_resources.finetune_pool" in refusal and "wait forever" in refusal
    assert not (refused.root / "mlflow.db").exists()  # nothing was started
    config_file = autoscaled_sweep["base"] / "fake-cluster.yaml"
    validate = subprocess.run(
        [sys.executable, "-m", "raysweep", "validate", str(refused.source_file), "--cluster",
         str(config_file)], capture_output=True, text=True, check=False)
    assert validate.returncode == 2
    # The same paragraph, up to the node types each lists (the driver adds the live head's).
    said = " ".join(refusal.replace("this Ray cluster", str(config_file)).split())
    said = said[said.index(str(refused.source_file)):]  # the paragraph, from the file it names
    assert said.split(" Node types:")[0] in " ".join(validate.stderr.split()), validate.stderr
