"""The shared COMET scorer: one Ray actor per node loads the COMET model once and scores the
translations of every trial on that node.

A real COMET model (wmt22-comet-da) is about 2 GB; loaded per trial, a sweep of hundreds of trials
would spend GPU hours reloading it. The actor is named after the sweep and the node, created by the
first trial that needs it (`get_if_exists`, so racing trials get the same one), pinned to that node,
and detached, so it outlives the trial that created it; the driver stops it when the sweep ends.
It takes no CPU (scoring is short and trials wait for it) and `evaluation.comet_gpus` of a GPU.
"""

from __future__ import annotations

import os

import ray

from raysweep.evaluation.comet_model import comet_scores, load_comet
from raysweep.spec import SweepSpec

SCORER_PREFIX = "raysweep-comet-{sweep}-"


@ray.remote(num_cpus=0)
class CometScorer:
    def __init__(self, model: str, cache_dir: str):
        import torch


        torch.set_num_threads(1)
        self.model = load_comet(model, cache_dir)
        self.gpus = 1 if torch.cuda.is_available() else 0
        self.stats_ = {"loads": 1, "calls": 0, "segments": 0, "pid": os.getpid(),
                       "node_id": ray.get_runtime_context().get_node_id()}

    def score(self, sources: list[str], hypotheses: list[str], references: list[str],
              batch_size: int) -> tuple[list[float], float]:
        """(segment scores, system score): the trial needs the segments for the score's SE."""

        self.stats_["calls"] += 1
        self.stats_["segments"] += len(sources)
        return comet_scores(self.model, sources, hypotheses, references, batch_size, self.gpus)

    def stats(self) -> dict:
        return dict(self.stats_)


def scorer_for_this_node(spec: SweepSpec):
    """The sweep's scorer on the node this code runs on, started if there is none yet."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()  # whole: fake multi-node ids share a prefix
    return CometScorer.options(
        name=SCORER_PREFIX.format(sweep=spec.name) + node, get_if_exists=True,
        lifetime="detached", num_gpus=spec.evaluation.comet_gpus,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
    ).remote(spec.evaluation.comet_model, str(spec.root))


def stop_scorers(spec: SweepSpec, with_stats: bool = True) -> list[dict]:
    """Stop the sweep's scorers (driver, at the end); returns their stats (none when stopping
    in a hurry: `ray job stop` gives the driver seconds)."""
    prefix = SCORER_PREFIX.format(sweep=spec.name)
    stats = []
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith(prefix):
            handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
            try:
                if with_stats:
                    stats.append(ray.get(handle.stats.remote(), timeout=30))
            except Exception:  # a scorer that died: nothing to report, still stop it
                pass
            ray.kill(handle)
    return stats
