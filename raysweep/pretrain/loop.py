"""The pretraining loop on every Ray Train worker (one DeepSpeed rank each), and its launch.

Token accounting (raysweep/pretrain/batches.py): every step consumes `batch_size` packed raw
sequences of `seq_len` tokens over all workers (no padding), so tokens seen after step n is exactly
n x batch_size x seq_len. A checkpoint is published at the first step whose tokens seen reach each
scheduled D_p; its manifest records the tokens seen per mixture source.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

import torch
import torch.distributed as dist

from raysweep import checkpoints
from raysweep.data.mixture import mixture_manifest, tokens_by_source, total_steps
from raysweep.data.tokenizer import fetch_tokenizer, load_tokenizer
from raysweep.model import build_model
from raysweep.plan import stopped, tell_watcher
from raysweep.pretrain.batches import rank_batches
from raysweep.pretrain.engine import build_optimizer, deepspeed_config, inverse_sqrt, train_step
from raysweep.pretrain.recovery import load_recovery, remove_unregistered_recoveries, save_recovery
from raysweep.pretrain.throughput import Throughput, device_peak_flops, model_flops_per_token
from raysweep.spec import SweepSpec
from raysweep.tracking import BufferedMetrics, Tracker

logger = logging.getLogger(__name__)


class Publisher:
    """Owns what happens between steps: when a step publishes a checkpoint (its tokens seen reach
    a scheduled D_p) and when it saves a recovery checkpoint (every pretrain.recovery_every steps
    and at every publication, so a restart never replays past a published checkpoint)."""

    def __init__(self, spec: SweepSpec, rank: int, mlflow_log, last_step: int):
        self.spec, self.rank, self.mlflow_log, self.last_step = spec, rank, mlflow_log, last_step
        self.schedule = set(spec.pretrain.published_tokens())

    def publishes(self, step: int) -> bool:
        return step * self.spec.pretrain.tokens_per_step() in self.schedule

    def saves_recovery(self, step: int) -> bool:
        return (step % self.spec.pretrain.recovery_every == 0 or self.publishes(step)) \
            and step < self.last_step

    def after_step(self, engine, step: int, metrics: dict, stream_position) -> None:
        """Publish and save what this step calls for; log how long that took.
        stream_position() gives where the data stream stands (saved with a recovery)."""
        started = time.time()
        if self.publishes(step):
            self._publish(engine, step)
        if self.saves_recovery(step):
            self._save_recovery(engine, step, metrics, stream_position())
        if self.mlflow_log and (self.publishes(step) or self.saves_recovery(step)):
            self.mlflow_log.log({"checkpoint_seconds": time.time() - started}, step=step)

    def _publish(self, engine, step: int) -> None:
        import deepspeed  # lazy: see train_loop (DS_ACCELERATOR is set there first)

        pre, tokens_seen = self.spec.pretrain, step * self.spec.pretrain.tokens_per_step()
        manifest_extra = {**mixture_manifest(self.spec),
                          "tokens_by_source": tokens_by_source(self.spec, step)}
        # ZeRO-3 partitions the parameters: every rank gathers them, rank 0 exports.
        gathered = (deepspeed.zero.GatheredParameters(list(engine.module.parameters()))
                    if pre.zero_stage == 3 else contextlib.nullcontext())
        with gathered:  # a replay after a restart finds it published and leaves it be
            if self.rank == 0:
                checkpoints.publish(self.spec, engine.module, tokens_seen, step, manifest_extra)
                tell_watcher(self.spec)
        if self.mlflow_log:  # on a replay too: written only if MLflow has no such point yet
            self.mlflow_log.log({"published_tokens": tokens_seen}, step=step, unless_present=True)
        dist.barrier()

    def _save_recovery(self, engine, step: int, metrics: dict, stream_position: dict) -> None:
        import ray.train  # lazy: see train_loop
        from ray.train import CheckpointUploadMode

        # ASYNC: Ray uploads the folder in the background while training goes on.
        unwritten = self.mlflow_log.unwritten() if self.mlflow_log else []
        tokens_seen = step * self.spec.pretrain.tokens_per_step()
        ray.train.report({**metrics, "step": step, "tokens_seen": tokens_seen},
                         checkpoint=save_recovery(engine, step, self.rank, stream_position,
                                                  unwritten),
                         checkpoint_upload_mode=CheckpointUploadMode.ASYNC)


def _engine(spec: SweepSpec, world: int):
    """The tokenizer, and the DeepSpeed engine with the same initial weights on every rank."""
    import deepspeed  # lazy: see train_loop

    tokenizer = load_tokenizer(fetch_tokenizer(spec))
    torch.manual_seed(spec.seed)
    model = build_model(spec, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    if spec.pretrain.activation_checkpointing:
        model.gradient_checkpointing_enable()
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=model.parameters(), optimizer=build_optimizer(spec, model),
        config=deepspeed_config(spec, world, torch.cuda.is_available()),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(
            opt, inverse_sqrt(spec.pretrain.warmup_steps)))
    return engine, tokenizer


def _resume(engine, mlflow_log, rank: int, world: int) -> tuple[int, dict | None]:
    """Restore the latest recovery checkpoint Ray Train hands back, if any; returns the step it
    was saved at (0 for a fresh start) and where this rank's data stream stood then. Rank 0
    writes the metrics MLflow did not have then."""
    import ray.train  # lazy: see train_loop

    recovery = ray.train.get_checkpoint()
    if not recovery:
        return 0, None
    with recovery.as_directory() as folder:
        recovered = load_recovery(engine, folder, rank, world)
    if recovered.stream_position is None:
        logger.warning(
            "recovery checkpoint at step %d has no data-stream position for rank %d of %d (saved "
            "by an older raysweep or another worker count): re-reading and tokenizing the %d "
            "steps of data before it, which takes as long as reading them did the first time",
            recovered.step, rank, world, recovered.step)
    if mlflow_log:
        mlflow_log.write_unless_present(recovered.unwritten_metrics)
        mlflow_log.log({"resumed_from_step": recovered.step}, step=recovered.step)
    return recovered.step, recovered.stream_position


def _step_metrics(engine, loss, step: int, world: int, tokens_per_step: int, meter) -> dict:
    """What a logged step reports (every rank takes part: the loss is averaged over them)."""
    mean_loss = loss.clone()
    dist.all_reduce(mean_loss)
    return {"loss": mean_loss.item() / world, "tokens_seen": step * tokens_per_step,
            "engine_steps": engine.global_steps,  # DeepSpeed's own count: restored too
            "lr": engine.get_lr()[0], **meter.read()}


def train_loop(config: dict) -> None:
    """Runs on every Ray Train worker. Started again after a failure: it then resumes from the
    latest recovery checkpoint, and the data stream from the position saved in it."""
    # Ray Train is imported where it is used: it takes 1.5 s, and `raysweep validate` imports this
    # module (through the checkpoint source) without training.
    import ray.train

    torch.set_num_threads(1)  # workers share the machine with trials; one thread each
    if not torch.cuda.is_available():
        # DeepSpeed's CPU accelerator (gloo, no CUDA build): read when deepspeed is first
        # imported, which is why deepspeed is imported inside the functions that use it.
        os.environ["DS_ACCELERATOR"] = "cpu"
    spec: SweepSpec = config["spec"]
    pre = spec.pretrain
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    engine, tokenizer = _engine(spec, world)
    # Rank 0 logs; through a buffer, so training goes on while MLflow is slow or down.
    mlflow_log = BufferedMetrics(Tracker.for_spec(spec), config["run_id"]) if rank == 0 else None
    resumed_from, stream_position = _resume(engine, mlflow_log, rank, world)
    if rank == 0:
        remove_unregistered_recoveries()

    last_step = total_steps(spec)
    publisher = Publisher(spec, rank, mlflow_log, last_step)
    meter = Throughput(model_flops_per_token(spec, len(tokenizer)), device_peak_flops(spec)[0],
                       world)
    started = time.time()
    batches = rank_batches(spec, tokenizer, rank, world, resumed_from + 1, stream_position)
    for step, _, batch in batches:
        if (publisher.publishes(step) or step % pre.recovery_every == 0) and _stopped(spec, rank):
            break  # a study's loser: no checkpoint from here on (raysweep.study.stopping)
        loss = train_step(engine, batch, pre.gradient_accumulation)
        meter.add(pre.tokens_per_step())
        metrics = {}
        if step % pre.log_every == 0 or publisher.publishes(step):
            metrics = _step_metrics(engine, loss, step, world, pre.tokens_per_step(), meter)
            if mlflow_log:
                mlflow_log.log(metrics, step=step)
        with meter.paused():  # tokens/s measures training; saving is logged on its own
            publisher.after_step(engine, step, metrics, batches.position)
    if mlflow_log:
        mlflow_log.log({"wall_seconds": time.time() - started}, step=last_step)
        mlflow_log.flush()


def _stopped(spec: SweepSpec, rank: int) -> bool:
    """Whether this study candidate was stopped: read by rank 0 and sent to every rank, so that
    all of them leave the loop at the same step (a rank that went on would wait forever in the
    next collective)."""
    if not spec.candidate:
        return False
    flag = torch.tensor([int(rank == 0 and spec.candidate in stopped(spec))])
    if dist.is_available() and dist.is_initialized():
        dist.broadcast(flag, src=0)
    return bool(flag.item())


def run_pretraining(spec: SweepSpec, run_id: str) -> None:
    """Pretrain to the budget (the last published checkpoint). Blocks; raises if training fails
    more than pretrain.max_failures times. A rerun with the same storage resumes from the latest
    recovery checkpoint (Ray Train finds it in the run folder)."""
    # Ray Train where it is used: see train_loop.
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    res = spec.resources
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"spec": spec, "run_id": run_id},
        scaling_config=ScalingConfig(num_workers=spec.pretrain.workers, use_gpu=res.use_gpu,
                                     resources_per_worker={"CPU": res.pretrain_worker_cpus,
                                                           **res.pretrain_resources}),
        run_config=RunConfig(name="pretrain", storage_path=spec.folder.ray_path,
                             checkpoint_config=CheckpointConfig(num_to_keep=spec.pretrain.recovery_keep),
                             failure_config=FailureConfig(max_failures=spec.pretrain.max_failures)),
    )
    trainer.fit()
