"""The driver of one sweep: prepare, start the actors, pretrain, wait, summarise.

    prepare (tokenizer, data checks, COMET model, MLflow runs)
      -> LawFitter actor, CheckpointWatcher actor (hosts the Tune experiment)
      -> pretraining (Ray Train + DeepSpeed) in a driver thread, publishing checkpoints
      -> progress lines until the watcher's experiment ends -> law table

A rerun of the same spec with the same storage resumes: published checkpoints are not redone
(pretraining is skipped once the last one exists) and finished trial keys are not rerun.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from raysweep.spec import SpecError, SweepSpec

NAMESPACE = "raysweep"


@dataclass
class SweepOutcome:
    ok: bool
    progress: dict
    laws: list[dict]
    """laws.json's entries: per (task, D_f, metric), the points and the analysis as a dict."""
    errors: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    groups: list[dict] = field(default_factory=list)
    """The same laws with their Analysis objects: the input of raysweep.answer."""


def plan_text(spec: SweepSpec, available: dict[str, int] | None = None) -> str:
    """What `raysweep validate` prints: the checkpoints, sizes and trial count."""
    from raysweep.data.mixture import alignment_score
    from raysweep.storage import storage_uri

    lines = [f"sweep {spec.name!r}: storage {storage_uri(spec)}",
             f"  tracking: {spec.resolved_tracking_uri()}"]
    mixture = ", ".join(f"{c.source} x {c.weight:g}" for c in spec.pretrain.mixture)
    lines.append(f"  pretraining mixture: {mixture}")
    from raysweep.pretrain import memory_estimate, worker_memory_bytes

    pre = spec.pretrain
    memory = memory_estimate(spec, _vocab_size(spec, None))
    lines.append(f"  pretraining: {pre.workers} workers, ZeRO-{pre.zero_stage}, {pre.optimizer}, "
                 f"{pre.tokens_per_step()} tokens/step; model {memory['parameters'] / 1e6:,.1f}M "
                 f"parameters, about {memory['total_bytes'] / 2**30:.2f} GiB per worker of "
                 f"{worker_memory_bytes(spec) / 2**30:.0f} GiB")
    tokens = spec.pretrain.published_tokens()
    lines.append(f"  checkpoints (D_p, tokens): {', '.join(f'{t:,}' for t in tokens)} "
                 f"+ the no-pretraining baseline (D_p = 0); budget {tokens[-1]:,} tokens")
    lines.append(f"  recovery: a checkpoint every {pre.recovery_every} steps (keep "
                 f"{pre.recovery_keep}), up to {pre.max_failures} restarts")
    for task in spec.tasks:
        lines.append(f"  task {task.name} ({task.source_lang}->{task.target_lang}, {task.data}): "
                     f"alignment score {alignment_score(spec.pretrain.mixture, task):.2f}")
        known = (available or {}).get(task.name)
        lines.append(f"    finetune sizes (D_f, tokens): {', '.join(f'{t:,}' for t in task.finetune_tokens)}"
                     + (f" of {known:,} available" if known is not None
                        else " (data size checked when the run starts)"))
        lines.append(f"    learning rates: {', '.join(f'{lr:g}' for lr in task.lrs)}; "
                     f"{task.steps} steps of {task.batch_size} pairs")
    lines.append(f"  trials: {spec.num_trials()} "
                 f"({len(tokens) + 1} starting points x finetune sizes x learning rates)")
    return "\n".join(lines)


def needs_network(spec: SweepSpec) -> bool:
    """Whether preparing this spec reads from the hub (a hub tokenizer, or hf: sources)."""
    sources = [c.source for c in spec.pretrain.mixture] + [t.data for t in spec.tasks]
    return spec.tokenizer.kind == "hub" or any(s.startswith("hf:") for s in sources)


def check(spec: SweepSpec, offline: bool = False):
    """Everything that can be checked before anything is written. Returns (tokenizer, available).

    offline=True (`raysweep validate`): hub tokenizers and hf: datasets are not fetched, so a
    paper-scale spec validates on a machine without network; their sizes are checked when the
    run starts (tokenizer None, available sizes missing)."""
    from raysweep.data import check_sources
    from raysweep.data.tokenizer import (
        fetch_tokenizer,
        load_tokenizer,
        tokenizer_dir,
        train_tokenizer,
    )

    # Offline (validate), a bucket is not read either: the tokenizer is trained or fetched at run.
    saved = tokenizer_dir(spec) if offline else fetch_tokenizer(spec)
    if (saved / "tokenizer_config.json").exists():
        tokenizer = load_tokenizer(saved)
    elif offline and needs_network(spec):
        tokenizer = None
    else:
        try:
            tokenizer = train_tokenizer(spec)
        except OSError as err:  # a hub tokenizer that cannot be fetched
            if spec.tokenizer.kind != "hub":
                raise
            raise SpecError(f"{spec.source_file}: field `tokenizer.hub_id`: "
                            f"{spec.tokenizer.hub_id!r} could not be loaded "
                            f"({' '.join(str(err).split())[:300]}). Check the id and the network, "
                            f"or use tokenizer.kind unigram; nothing was written.") from None
    available = check_sources(spec, tokenizer)
    check_memory(spec, tokenizer)
    return tokenizer, available


def _vocab_size(spec: SweepSpec, tokenizer) -> int:
    if tokenizer is not None:
        return len(tokenizer)
    # Offline validation of a hub tokenizer: mT5's vocabulary (the paper's) as the estimate.
    return {"unigram": spec.tokenizer.vocab_size + spec.tokenizer.sentinels,
            "byt5": 259 + spec.tokenizer.sentinels}.get(spec.tokenizer.kind, 250_112)


def check_memory(spec: SweepSpec, tokenizer) -> None:
    """Too little memory for the model is said before anything starts, from a size estimate."""
    from raysweep.pretrain import memory_estimate, worker_memory_bytes

    need = memory_estimate(spec, _vocab_size(spec, tokenizer))
    have = worker_memory_bytes(spec)
    if need["total_bytes"] > have:
        pre, gib = spec.pretrain, 2**30
        raise SpecError(
            f"{spec.source_file or '<spec>'}: pretraining this model needs about "
            f"{need['total_bytes'] / gib:.1f} GiB per worker ({need['parameters'] / 1e6:,.0f}M "
            f"parameters: weights, gradients and {pre.optimizer} states "
            f"{need['states_bytes'] / gib:.1f} GiB with ZeRO-{pre.zero_stage} over {pre.workers} "
            f"workers, activations {need['activation_bytes'] / gib:.1f} GiB), but each worker has "
            f"{have / gib:.1f} GiB (resources.worker_memory_gb). Raise pretrain.workers or "
            f"pretrain.zero_stage, set pretrain.gradient_accumulation or "
            f"pretrain.activation_checkpointing, or choose a smaller model.preset; nothing was "
            f"written.")


def _connect_ray(spec: SweepSpec) -> str | None:
    """Connect to the cluster (RAY_ADDRESS) or start a local Ray; returns the dashboard's address
    when this call started Ray (Ray binds it to 127.0.0.1 unless told otherwise)."""
    import ray

    from raysweep.pretrain import worker_env

    if ray.is_initialized():
        return None
    runtime_env = {"env_vars": worker_env()}
    if os.environ.get("RAY_ADDRESS"):  # inside `ray job submit`, or pointed at a cluster
        context = ray.init(namespace=NAMESPACE, runtime_env=runtime_env)
    else:  # a local Ray for this sweep; oversubscribed CPUs let pretraining and trials overlap
        # Worker logs stay in Ray's session logs (set RAYSWEEP_WORKER_LOGS=1 to stream them here):
        # the driver prints one progress line per change instead.
        context = ray.init(num_cpus=spec.resources.local_cpus, namespace=NAMESPACE,
                           runtime_env=runtime_env,
                           log_to_driver=os.environ.get("RAYSWEEP_WORKER_LOGS") == "1",
                           logging_level=logging.WARNING)
    return context.dashboard_url or None


def format_progress(progress: dict, total_checkpoints: int, total_trials: int) -> str:
    finished = progress["done"] + progress["skipped"]
    return (f"checkpoints {progress['checkpoints']}/{total_checkpoints} published | trials "
            f"{finished}/{total_trials} done, {progress['running']} running, "
            f"{progress['queued']} queued, {progress['failed']} failed"
            + (f" | {len(progress['rejected'])} checkpoint(s) skipped as unusable"
               if progress.get("rejected") else ""))


def run_sweep(spec: SweepSpec, echo=print, poll_seconds: float = 5.0) -> SweepOutcome:
    import ray

    from raysweep import checkpoints
    from raysweep.cluster import check_resources, live_node_types
    from raysweep.comet_scoring import load_comet
    from raysweep.data.mixture import alignment_score
    from raysweep.data.tokenizer import save_tokenizer
    from raysweep.finetune import FITTER_NAME
    from raysweep.fitter import LawFitter
    from raysweep.pretrain import run_pretraining
    from raysweep.scorer import stop_scorers
    from raysweep.tracking import Tracker
    from raysweep.watcher import CheckpointWatcher

    started = time.time()
    tokenizer, _ = check(spec)  # raises SpecError before anything is written
    dashboard = _connect_ray(spec)
    check_resources(spec, live_node_types(), "this Ray cluster")  # ditto
    if dashboard:
        echo(f"[raysweep] Ray dashboard: http://{dashboard}")
    spec.root.mkdir(parents=True, exist_ok=True)
    save_tokenizer(spec, tokenizer)
    echo(f"[raysweep] preparing COMET model {spec.evaluation.comet_model!r}")
    load_comet(spec.evaluation.comet_model, spec.root)  # built/downloaded once, before trials race

    tracker = Tracker.for_spec(spec)
    tracker.ensure_experiment()
    sweep_run = tracker.get_or_create_run({"raysweep.kind": "sweep"}, spec.name)
    pretrain_run = tracker.get_or_create_run({"raysweep.kind": "pretrain"}, "pretrain", sweep_run)
    laws_run = tracker.get_or_create_run({"raysweep.kind": "laws"}, "laws", sweep_run)
    for run_id in (sweep_run, pretrain_run, laws_run):
        tracker.set_running(run_id)
    if spec.source_file and os.path.isfile(spec.source_file):
        tracker.log_artifact(sweep_run, spec.source_file)
    tracker.log_params(sweep_run, {"num_trials": spec.num_trials(),
                                   "checkpoints": ",".join(map(str, spec.pretrain.published_tokens()))})
    # The translation alignment score of the mixture for every task: the paper's predictor of
    # whether a law will hold. On the sweep run (compare sweeps) and the pretraining run.
    mixture_params = {"mixture": ", ".join(f"{c.source} x {c.weight:g}" for c in spec.pretrain.mixture),
                      **{f"alignment.{task.name}": round(alignment_score(spec.pretrain.mixture, task), 4)
                         for task in spec.tasks}}
    for run_id in (sweep_run, pretrain_run):
        tracker.log_params(run_id, mixture_params)

    # The coordinators come back if their process dies (a lost node, an OOM kill): Ray restarts
    # them from the spec, their __init__ rebuilds their state from storage and MLflow, and the
    # calls in flight (the watcher's `run` included) are retried on the new process.
    coordinators = {"resources": spec.resources.coordinator_resources,
                    "max_restarts": -1, "max_task_retries": -1}
    fitter = LawFitter.options(name=FITTER_NAME.format(spec.name), **coordinators).remote(spec, laws_run)
    watcher = CheckpointWatcher.options(**coordinators).remote(spec, sweep_run)
    experiment = watcher.run.remote()

    schedule = spec.pretrain.published_tokens()
    pretrain_error: list[str] = []

    def pretrain() -> None:
        try:
            # The watcher verifies each checkpoint's weights; here a manifest is enough.
            if set(schedule) <= set(checkpoints.published(spec, verify_weights=False)):
                echo("[raysweep] pretraining: every scheduled checkpoint is already published")
            else:
                echo(f"[raysweep] pretraining: {spec.pretrain.workers} workers, up to "
                     f"{schedule[-1]:,} tokens")
                run_pretraining(spec, pretrain_run)
            tracker.end_run(pretrain_run, "FINISHED")
        except Exception as err:  # reported by the driver; the watcher still finishes what exists
            pretrain_error.append(f"pretraining failed: {type(err).__name__}: {err}")
            tracker.end_run(pretrain_run, "FAILED")
        finally:
            watcher.pretraining_finished.remote()

    thread = threading.Thread(target=pretrain, name="pretraining", daemon=True)
    thread.start()
    last = None
    while True:
        done, _ = ray.wait([experiment], timeout=poll_seconds)
        if not thread.is_alive():  # again each time: a restarted watcher starts without it
            watcher.pretraining_finished.remote()
        line = format_progress(ray.get(watcher.progress.remote()), len(schedule), spec.num_trials())
        if line != last:
            latest_fit = ray.get(fitter.latest.remote())
            echo(f"[raysweep] {time.time() - started:6.0f}s  {line}"
                 + (f"\n[raysweep]          latest fit: {latest_fit}" if latest_fit else ""))
            last = line
        if done:
            break
    thread.join()
    final = ray.get(experiment)
    # Results whose trial died between its MLflow run and handing it over (its watcher was killed)
    # are in MLflow only: the fitter takes them in before the last summary.
    late = ray.get(fitter.sync.remote())
    if late:
        echo(f"[raysweep] the fitter took in {late} finished trial(s) it had not been handed")
    laws, groups = ray.get([fitter.summary.remote(), fitter.answer_groups.remote()])
    errors = pretrain_error + final.pop("errors")
    finished = final["done"] + final["skipped"]
    ok = not errors and finished == spec.num_trials()
    tracker.end_run(laws_run, "FINISHED")
    tracker.end_run(sweep_run, "FINISHED" if ok else "FAILED")
    for handle in (watcher, fitter):
        ray.kill(handle)
    final["comet_scorers"] = stop_scorers(spec)
    return SweepOutcome(ok, final, laws, errors, time.time() - started, groups)
