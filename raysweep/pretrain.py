"""Pretraining: Ray Train TorchTrainer workers, each a DeepSpeed rank, on the mixture.

Token accounting: every step consumes `batch_size` packed raw sequences of `seq_len` tokens over
all workers (no padding), so tokens seen after step n is exactly n x batch_size x seq_len. A
checkpoint is published at the first step whose tokens seen reach each scheduled D_p.
"""

from __future__ import annotations

import os
import time

from raysweep.spec import SweepSpec


def deepspeed_config(spec: SweepSpec, world_size: int) -> dict:
    pre = spec.pretrain
    return {
        "train_batch_size": pre.batch_size,
        "train_micro_batch_size_per_gpu": pre.batch_size // world_size,
        "gradient_accumulation_steps": 1,
        # torch_adam: DeepSpeed's fused CPU Adam needs a C++ build; torch's AdamW is as fast here.
        "optimizer": {"type": "AdamW", "params": {"lr": pre.lr, "weight_decay": 0.0,
                                                  "torch_adam": True}},
        "zero_optimization": {"stage": pre.zero_stage},
        "gradient_clipping": 1.0,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


def inverse_sqrt(warmup_steps: int):
    """Linear warm-up, then the paper's inverse-square-root decay (relative to the peak lr)."""

    def factor(step: int) -> float:
        step = step + 1
        return min(step / warmup_steps, (warmup_steps / step) ** 0.5)

    return factor


def train_loop(config: dict) -> None:
    """Runs on every Ray Train worker."""
    import numpy as np
    import ray.train
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)  # workers share the machine with trials; one thread each
    if not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"  # DeepSpeed's CPU accelerator: gloo, no CUDA build
    import deepspeed

    from raysweep import checkpoints
    from raysweep.data.collators import packed_sequences, span_corruption_batch
    from raysweep.data.mixture import alignment_score, batch_source
    from raysweep.data.sources import monolingual_source
    from raysweep.data.tokenizer import load_tokenizer, sentinel_ids, tokenizer_dir
    from raysweep.model import build_model
    from raysweep.tracking import Tracker

    spec: SweepSpec = config["spec"]
    pre = spec.pretrain
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()

    tokenizer = load_tokenizer(tokenizer_dir(spec))
    torch.manual_seed(spec.seed)  # same initial weights on every rank
    model = build_model(spec, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=model.parameters(), config=deepspeed_config(spec, world),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, inverse_sqrt(pre.warmup_steps)))

    # One packed stream per source; each rank reads its own shard, so no document is seen twice.
    streams = [packed_sequences(monolingual_source(c.source, c.language, spec.seed, "", "",
                                                   spec.base_dir).documents(rank, world),
                                tokenizer, pre.seq_len) for c in pre.mixture]
    sentinels, eos = sentinel_ids(tokenizer), tokenizer.eos_token_id
    rng = np.random.default_rng([spec.seed, rank])
    per_rank = pre.batch_size // world
    schedule = pre.published_tokens()
    total_steps = schedule[-1] // pre.tokens_per_step()
    tracker = Tracker.for_spec(spec) if rank == 0 else None
    manifest_extra = {
        "mixture": [{"source": c.source, "weight": c.weight} for c in pre.mixture],
        "alignment": {t.name: alignment_score(pre.mixture, t) for t in spec.tasks},
    }

    started, window_tokens, window_start = time.time(), 0, time.time()
    for step in range(1, total_steps + 1):
        source = batch_source(spec, step)
        batch = span_corruption_batch([next(streams[source]) for _ in range(per_rank)], rng,
                                      sentinels, eos, pre.noise_density, pre.mean_span_length)
        loss = engine(input_ids=batch["input_ids"], labels=batch["labels"]).loss
        engine.backward(loss)
        engine.step()
        tokens_seen = step * pre.tokens_per_step()
        window_tokens += pre.tokens_per_step()

        if step % pre.log_every == 0 or tokens_seen in schedule:
            mean_loss = loss.detach().clone()
            dist.all_reduce(mean_loss)
            metrics = {"loss": mean_loss.item() / world, "tokens_seen": tokens_seen,
                       "lr": engine.get_lr()[0],
                       "tokens_per_second": window_tokens / max(time.time() - window_start, 1e-9)}
            window_tokens, window_start = 0, time.time()
            if tracker:
                tracker.log_metrics(config["run_id"], metrics, step=step)
            ray.train.report(metrics)

        if tokens_seen in schedule:
            if pre.zero_stage == 3:  # parameters are partitioned: gather them to export
                with deepspeed.zero.GatheredParameters(list(engine.module.parameters())):
                    if rank == 0:
                        checkpoints.publish(spec, engine.module, tokens_seen, step, manifest_extra)
            elif rank == 0:
                checkpoints.publish(spec, engine.module, tokens_seen, step, manifest_extra)
            if tracker:
                tracker.log_metrics(config["run_id"], {"published_tokens": tokens_seen}, step=step)
            dist.barrier()

    if tracker:
        tracker.log_metrics(config["run_id"], {"wall_seconds": time.time() - started}, step=total_steps)


def run_pretraining(spec: SweepSpec, run_id: str) -> None:
    """Pretrain to the last scheduled checkpoint. Blocks; raises if training fails."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    res = spec.resources
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"spec": spec, "run_id": run_id},
        scaling_config=ScalingConfig(num_workers=spec.pretrain.workers, use_gpu=res.use_gpu,
                                     resources_per_worker={"CPU": res.pretrain_worker_cpus,
                                                           **res.pretrain_resources}),
        run_config=RunConfig(name="pretrain", storage_path=str((spec.root / "ray").resolve())),
    )
    trainer.fit()


def worker_env() -> dict[str, str]:
    """Environment for every Ray worker process of a sweep."""
    env = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.update({k: os.environ[k] for k in ("TORCH_EXTENSIONS_DIR", "HF_HUB_OFFLINE") if k in os.environ})
    return env
