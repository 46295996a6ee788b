"""Pretraining: Ray Train TorchTrainer workers, each a DeepSpeed rank, on the mixture.

Token accounting (raysweep/data/pretraining.py): every step consumes `batch_size` packed raw
sequences of `seq_len` tokens over all workers (no padding), so tokens seen after step n is exactly
n x batch_size x seq_len. A checkpoint is published at the first step whose tokens seen reach each
scheduled D_p; its manifest records the tokens seen per mixture source.
"""

from __future__ import annotations

import os
import time

from raysweep.spec import SweepSpec


def use_bf16(spec: SweepSpec, cuda: bool) -> bool:
    return spec.pretrain.precision == "bf16" or (spec.pretrain.precision == "auto" and cuda)


def deepspeed_config(spec: SweepSpec, world_size: int, cuda: bool = False) -> dict:
    """The DeepSpeed config of a run on `world_size` workers. `batch_size` is over all workers,
    so the tokens per optimiser step stay the same whatever the worker count."""
    pre = spec.pretrain
    micro = pre.batch_size // (world_size * pre.gradient_accumulation)
    if micro * world_size * pre.gradient_accumulation != pre.batch_size:
        raise ValueError(f"pretrain.batch_size {pre.batch_size} does not divide into {world_size} "
                         f"workers x {pre.gradient_accumulation} micro-batches")
    config = {
        "train_batch_size": pre.batch_size,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": pre.gradient_accumulation,
        "zero_optimization": {"stage": pre.zero_stage},
        "bf16": {"enabled": use_bf16(spec, cuda)},
        "gradient_clipping": pre.gradient_clipping,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }
    if pre.optimizer == "adamw":
        # torch_adam: DeepSpeed's fused CPU Adam needs a C++ build; torch's AdamW is as fast here.
        config["optimizer"] = {"type": "AdamW", "params": {"lr": pre.lr, "weight_decay": 0.0,
                                                           "torch_adam": True}}
    else:  # Adafactor is passed as a client optimizer (build_optimizer), which ZeRO must allow
        config["zero_allow_untested_optimizer"] = True
    return config


def build_optimizer(spec: SweepSpec, model):
    """The client optimizer for DeepSpeed, or None when the config names one (AdamW)."""
    if spec.pretrain.optimizer != "adafactor":
        return None
    from transformers.optimization import Adafactor

    # The paper's optimizer at the spec's lr; the schedule is ours (inverse_sqrt), not Adafactor's.
    return Adafactor(model.parameters(), lr=spec.pretrain.lr, scale_parameter=False,
                     relative_step=False, warmup_init=False)


def memory_estimate(spec: SweepSpec, vocab_size: int, world_size: int | None = None) -> dict:
    """Bytes each pretraining worker needs, estimated from the model's parameter shapes (built on
    the meta device: nothing is allocated), the optimizer, the precision, ZeRO's partitioning and
    the activations of one micro-batch. An estimate for a clear early error, not a guarantee."""
    import torch

    from raysweep.model import build_model

    pre, world = spec.pretrain, world_size or spec.pretrain.workers
    with torch.device("meta"):
        model = build_model(spec, vocab_size, 0, 1)
    params = sum(p.numel() for p in model.parameters())
    if pre.optimizer == "adamw":
        optimizer_states = 8 * params  # two fp32 moments
    else:  # Adafactor: factored second moments, rows + columns per matrix
        optimizer_states = 4 * sum(sum(p.shape) if p.dim() == 2 else p.numel()
                                   for p in model.parameters())
    bf16 = use_bf16(spec, spec.resources.use_gpu)
    weights = (2 if bf16 else 4) * params
    master = 4 * params if bf16 else 0  # fp32 master weights kept by the optimizer
    gradients = 4 * params
    stage = pre.zero_stage
    share = 1 / world
    total = (weights * (share if stage >= 3 else 1) + gradients * (share if stage >= 2 else 1)
             + (optimizer_states + master) * (share if stage >= 1 else 1))
    m = spec.model
    micro = pre.batch_size // (world * pre.gradient_accumulation)
    tokens = micro * pre.seq_len
    per_layer = tokens * (12 * m.d_model + 3 * m.d_ff + 2 * m.num_heads * pre.seq_len)
    layers = m.num_layers + 2 * m.num_decoder_layers  # decoder layers also attend to the encoder
    kept = tokens * m.d_model * layers if pre.activation_checkpointing else per_layer * layers
    activations = (2 if bf16 else 4) * (kept + 3 * tokens * vocab_size)  # + logits, softmax, grad
    return {"parameters": params, "states_bytes": int(total), "activation_bytes": int(activations),
            "total_bytes": int(total + activations)}


def worker_memory_bytes(spec: SweepSpec) -> int:
    """What each pretraining worker has (resources.worker_memory_gb, or the default it names)."""
    if spec.resources.worker_memory_gb is not None:
        return int(spec.resources.worker_memory_gb * 2**30)
    if spec.resources.use_gpu:
        return 80 * 2**30
    import psutil

    return psutil.virtual_memory().total // spec.pretrain.workers


def inverse_sqrt(warmup_steps: int):
    """Linear warm-up, then the paper's inverse-square-root decay (relative to the peak lr)."""

    def factor(step: int) -> float:
        step = step + 1
        return min(step / warmup_steps, (warmup_steps / step) ** 0.5)

    return factor


def train_step(engine, batch: dict, accumulation: int):
    """One optimiser step of a DeepSpeed engine on this rank's batch, in `accumulation`
    micro-batches (the engine steps the optimizer and lr schedule on the last one only).
    Returns the mean loss, detached."""
    import torch

    losses = []
    for inputs, labels in zip(batch["input_ids"].chunk(accumulation),
                              batch["labels"].chunk(accumulation)):
        loss = engine(input_ids=inputs.to(engine.device), labels=labels.to(engine.device)).loss
        engine.backward(loss)
        engine.step()
        losses.append(loss.detach().float())
    return torch.stack(losses).mean()


def train_loop(config: dict) -> None:
    """Runs on every Ray Train worker."""
    import ray.train
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)  # workers share the machine with trials; one thread each
    if not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"  # DeepSpeed's CPU accelerator: gloo, no CUDA build
    import deepspeed

    from raysweep import checkpoints
    from raysweep.data.mixture import alignment_score
    from raysweep.data.pretraining import rank_batches, tokens_by_source, total_steps
    from raysweep.data.tokenizer import load_tokenizer, tokenizer_dir
    from raysweep.model import build_model
    from raysweep.tracking import Tracker

    spec: SweepSpec = config["spec"]
    pre = spec.pretrain
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()

    tokenizer = load_tokenizer(tokenizer_dir(spec))
    torch.manual_seed(spec.seed)  # same initial weights on every rank
    model = build_model(spec, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    if pre.activation_checkpointing:
        model.gradient_checkpointing_enable()
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=model.parameters(), optimizer=build_optimizer(spec, model),
        config=deepspeed_config(spec, world, torch.cuda.is_available()),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, inverse_sqrt(pre.warmup_steps)))

    schedule = pre.published_tokens()
    tracker = Tracker.for_spec(spec) if rank == 0 else None
    alignment = {t.name: alignment_score(pre.mixture, t) for t in spec.tasks}

    started, window_tokens, window_start = time.time(), 0, time.time()
    for step, _, batch in rank_batches(spec, tokenizer, rank, world):
        loss = train_step(engine, batch, pre.gradient_accumulation)
        tokens_seen = step * pre.tokens_per_step()
        window_tokens += pre.tokens_per_step()

        if step % pre.log_every == 0 or tokens_seen in schedule:
            mean_loss = loss.clone()
            dist.all_reduce(mean_loss)
            metrics = {"loss": mean_loss.item() / world, "tokens_seen": tokens_seen,
                       "lr": engine.get_lr()[0],
                       "tokens_per_second": window_tokens / max(time.time() - window_start, 1e-9)}
            window_tokens, window_start = 0, time.time()
            if tracker:
                tracker.log_metrics(config["run_id"], metrics, step=step)
            ray.train.report(metrics)

        if tokens_seen in schedule:
            manifest_extra = {
                "mixture": [{"source": c.source, "weight": c.weight} for c in pre.mixture],
                "tokens_by_source": tokens_by_source(spec, step),
                "alignment": alignment,
            }
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
        tracker.log_metrics(config["run_id"], {"wall_seconds": time.time() - started},
                            step=total_steps(spec))


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
