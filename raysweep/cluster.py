"""Can this cluster run this spec? Every stage's resource request must fit on some node type.

Ray would otherwise queue an unsatisfiable request forever (an autoscaler that has no node type for
it just warns in its log), so a spec asking for a GPU on a CPU laptop, or for a custom resource
that no node type advertises, would hang instead of failing. The node types come from:

- a cluster launcher config (`raysweep validate SPEC --cluster cluster.yaml`),
- the config the cluster's autoscaler runs with (`ray up` hands the head its copy,
  ~/ray_bootstrap_config.yaml; `ray start --head --autoscaling-config=FILE` any file): the nodes
  it can add, which a sweep that starts on the head alone needs, and
- the nodes alive now (a local Ray, a fixed cluster).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import yaml

from raysweep.spec import SpecError, SweepSpec

BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml").expanduser()
# What Ray itself accounts for on every node, never requested by raysweep.
_IGNORED = {"memory", "object_store_memory"}


def node_types_of_config(config: dict) -> dict[str, dict]:
    """{name: {"resources": {...}, "max_workers": n}} of a cluster launcher config."""
    types = {}
    for name, node in (config.get("available_node_types") or {}).items():
        count = 1 if name == config.get("head_node_type") else node.get("max_workers", 0)
        types[name] = {"resources": dict(node.get("resources") or {}), "max_workers": count}
    return types


def load_cluster_config(path: str | os.PathLike) -> dict[str, dict]:
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise SpecError(f"{path}: the cluster config cannot be read "
                        f"({' '.join(str(err).split())}); "
                        f"pass a Ray cluster launcher YAML such as cluster.yaml.") from None
    if not isinstance(config, dict) or not config.get("available_node_types"):
        raise SpecError(f"{path}: not a Ray cluster launcher config: it has no "
                        f"`available_node_types` (see cluster.yaml).")
    return node_types_of_config(config)


def live_node_types() -> dict[str, dict]:
    """The nodes of the Ray cluster this process is connected to, each its own 'type'; plus the
    autoscaler's node types when this is the head of a `ray up` cluster."""
    import ray

    # A live node lists every resource it has: no GPU key means no GPU.
    types = {f"node {n['NodeID'][:8]} ({n.get('NodeManagerAddress', '?')})":
             {"resources": {"CPU": 0, "GPU": 0, **{k: v for k, v in n["Resources"].items()
                                                   if not k.startswith("node:")}},
              "max_workers": 1}
             for n in ray.nodes() if n.get("Alive")}
    config = autoscaler_config()
    if config is not None:
        types.update(node_types_of_config(yaml.safe_load(config.read_text()) or {}))
    return types


def autoscaler_config() -> Path | None:
    """The file the autoscaler of the connected cluster was started with, where this process can
    see it (on the head, where `ray job submit` runs drivers): the --autoscaling-config of the
    cluster's monitor process, else ~/ray_bootstrap_config.yaml; None for a cluster without one."""
    import psutil
    import ray

    gcs = ray.get_runtime_context().gcs_address
    for process in psutil.process_iter(["cmdline"]):
        args = process.info["cmdline"] or []
        if any(a.endswith("monitor.py") for a in args) and f"--gcs-address={gcs}" in args:
            for arg in args:
                if arg.startswith("--autoscaling-config="):
                    path = Path(arg.split("=", 1)[1]).expanduser()
                    return path if path.is_file() else None
    return BOOTSTRAP_CONFIG if BOOTSTRAP_CONFIG.is_file() else None


def demands(spec: SweepSpec) -> list[tuple[str, dict[str, str], dict[str, float], int]]:
    """(what, the spec field behind each resource, resources of one, how many run at once) for
    every stage of the sweep."""
    res = spec.resources
    gpu = 1.0 if res.use_gpu else 0.0
    return [
        ("each pretraining worker",
         {"CPU": "resources.pretrain_worker_cpus", "GPU": "resources.use_gpu",
          **{k: f"resources.pretrain_resources.{k}" for k in res.pretrain_resources}},
         {"CPU": res.pretrain_worker_cpus, "GPU": gpu, **res.pretrain_resources},
         spec.pretrain.workers),
        # A trial calls its node's COMET scorer while it still holds its own resources.
        ("each finetune trial with its node's COMET scorer",
         {"CPU": "resources.trial_cpus", "GPU": "resources.use_gpu and evaluation.comet_gpus",
          **{k: f"resources.trial_resources.{k}" for k in res.trial_resources}},
         {"CPU": res.trial_cpus, "GPU": gpu + spec.evaluation.comet_gpus, **res.trial_resources},
         1),
        ("the checkpoint watcher and law fitter",
         {k: f"resources.coordinator_resources.{k}" for k in res.coordinator_resources},
         dict(res.coordinator_resources), 1),
    ]


def check_resources(spec: SweepSpec, node_types: dict[str, dict], where_nodes: str) -> None:
    """Raise SpecError naming the resource if some stage fits on no node type (or, for the
    pretraining workers that must all run at once, not on all node types together)."""
    where = spec.source_file or "<spec>"
    offered = ", ".join(f"{name} {_show(t['resources'])}" for name, t in node_types.items())
    for what, fields, wanted, count in demands(spec):
        wanted = {k: v for k, v in wanted.items() if v > 0 and k not in _IGNORED}

        def fits(resources: dict) -> bool:
            return all(_has(resources, k, v) for k, v in wanted.items())

        if not any(fits(t["resources"]) for t in node_types.values()):
            short, named = _short_resource(wanted, node_types, what)
            field = fields.get(short, ", ".join(fields.values()))
            raise SpecError(
                f"{where}: field `{field}`: no node type of {where_nodes} can satisfy "
                f"{named}, so it would wait forever. Node types: "
                f"{offered or 'none'}. Request what a node type offers, or add a node type that "
                f"offers it (cluster.yaml); nothing was started.")
        capacity = sum(t["max_workers"] * _how_many(t["resources"], wanted)
                       for t in node_types.values())
        if capacity < count:
            raise SpecError(
                f"{where}: field `pretrain.workers`: {count} workers must run at once, but the "
                f"node types of {where_nodes} hold at most {capacity} of them ({what}: "
                f"{_show(wanted)}; node types: {offered}). Lower pretrain.workers or raise the "
                f"node types' max_workers; nothing was started.")


def _has(resources: dict, name: str, amount: float) -> bool:
    # A node type that does not declare CPU or GPU (AWS fills them in from the instance type) is
    # not judged on them.
    return resources.get(name, math.inf if name in ("CPU", "GPU") else 0) >= amount


def _short_resource(wanted: dict, node_types: dict[str, dict], what: str) -> tuple[str | None, str]:
    """(name, words) of the resource that is short: one no node type has enough of, else the one
    that the node types offering all the others lack."""
    for name, amount in wanted.items():
        if not any(_has(t["resources"], name, amount) for t in node_types.values()):
            return name, f"`{name}`: {what} asks for {amount:g}"
    for name, amount in wanted.items():
        others = [n for n, t in node_types.items()
                  if all(_has(t["resources"], k, v) for k, v in wanted.items() if k != name)]
        if others:  # they offer everything else, so `name` is what is short
            most = max(node_types[n]["resources"].get(name, 0) for n in others)
            return name, (f"`{name}`: {what} asks for {amount:g}, and the node types that offer "
                          f"the rest ({', '.join(others)}) have at most {most:g}")
    return None, f"the combination {_show(wanted)} ({what})"


def _how_many(resources: dict, wanted: dict) -> int:
    counts = [resources[k] // v for k, v in wanted.items() if k in resources]
    return int(min(counts)) if counts else 1


def _show(resources: dict) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in resources.items() if k not in _IGNORED) + "}"
