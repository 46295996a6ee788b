"""The DeepSpeed side of pretraining: the engine's config and optimizer, the lr schedule, one
optimiser step, and the memory a worker needs (checked before anything starts)."""

from __future__ import annotations

from raysweep.model import build_model
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
        # One rank has nothing to partition: ZeRO would only add its flat-buffer copies to every
        # step (12% of a demo step on the CPU, measured), so a single worker runs stage 0.
        "zero_optimization": {"stage": pre.zero_stage if world_size > 1 else 0},
        "gradient_clipping": pre.gradient_clipping,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }
    if use_bf16(spec, cuda) and pre.optimizer == "adafactor":
        # DeepSpeed's bf16 optimizer flattens the weights the way ZeRO does (bf16_optimizer.py);
        # autocast keeps fp32 weights in their shapes, which Adafactor needs to factor its moments.
        config["torch_autocast"] = {"enabled": True, "dtype": "bfloat16"}
    else:
        config["bf16"] = {"enabled": use_bf16(spec, cuda)}
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
    bf16_weights = bf16 and pre.optimizer == "adamw"  # Adafactor under autocast keeps fp32 weights
    weights = (2 if bf16_weights else 4) * params
    master = 4 * params if bf16_weights else 0  # fp32 master weights kept by the optimizer
    gradients = 4 * params
    stage = pre.zero_stage
    share = 1 / world
    total = (weights * (share if stage >= 3 else 1) + gradients * (share if stage >= 2 else 1)
             + (optimizer_states + master) * (share if stage >= 1 else 1))
    m = spec.model
    micro = pre.batch_size // (world * pre.gradient_accumulation)
    tokens = micro * pre.seq_len
    per_layer = tokens * (12 * m.d_model + 3 * m.d_ff + 2 * m.num_heads * pre.seq_len)
    # A T5 decoder layer also attends to the encoder; a decoder-only model has its layers alone.
    layers = m.num_layers if m.family == "causal" else m.num_layers + 2 * m.num_decoder_layers
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
    """Linear warm-up, then the paper's inverse-square-root decay (relative to the peak lr).

    Hand-written rather than transformers' get_inverse_sqrt_schedule: that one gives lr 0 to the
    first step (step / warmup at step 0), a wasted step; here step k uses (k + 1) / warmup."""

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
