"""Pretraining: Ray Train TorchTrainer workers, each a DeepSpeed rank, on the mixture.

Token accounting (raysweep/data/pretraining.py): every step consumes `batch_size` packed raw
sequences of `seq_len` tokens over all workers (no padding), so tokens seen after step n is exactly
n x batch_size x seq_len. A checkpoint is published at the first step whose tokens seen reach each
scheduled D_p; its manifest records the tokens seen per mixture source.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

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


# Dense bf16 tensor-core peaks (TFLOP/s) by GPU name, for the logged MFU; checked in this order.
GPU_PEAK_TFLOPS = {"H200": 989, "H100": 989, "A100": 312, "L40S": 362, "L4": 121}


def model_flops_per_token(spec: SweepSpec, vocab_size: int) -> float:
    """Training FLOPs per pretraining token: 3 passes (forward + backward) x 2 FLOPs per
    multiply-add, the 6N rule made explicit for an encoder-decoder on span-corrupted text. Per raw
    token the encoder reads the unmasked share plus a sentinel per span, the decoder writes the
    masked share plus the sentinels; attention scores are counted at the mean sequence lengths."""
    m, pre = spec.model, spec.pretrain
    inner = m.num_heads * m.d_kv
    spans = pre.noise_density / pre.mean_span_length
    enc_share, dec_share = 1 - pre.noise_density + spans, pre.noise_density + spans
    enc_len, dec_len = pre.seq_len * enc_share, pre.seq_len * dec_share
    ffn = (3 if m.feed_forward == "gated-gelu" else 2) * m.d_model * m.d_ff
    projections = 4 * m.d_model * inner  # q, k, v, o
    encoder = m.num_layers * (projections + ffn + 2 * enc_len * inner)
    decoder = m.num_decoder_layers * (projections + ffn + 2 * dec_len * inner  # self-attention
                                      + 2 * m.d_model * inner + 2 * enc_len * inner)  # cross: q, o
    cross_keys_values = m.num_decoder_layers * 2 * m.d_model * inner  # computed per encoder token
    macs = (enc_share * (encoder + cross_keys_values)
            + dec_share * (decoder + m.d_model * vocab_size))  # + the output projection
    return 6 * macs


def device_peak_flops(spec: SweepSpec) -> tuple[float, str]:
    """Peak FLOP/s of this worker's device, and where the figure comes from."""
    import torch

    if spec.resources.peak_tflops:
        return spec.resources.peak_tflops * 1e12, "resources.peak_tflops"
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for key, tflops in GPU_PEAK_TFLOPS.items():
            if key in name:
                return tflops * 1e12, f"{name} bf16 dense peak"
        return 0.0, f"{name}: unknown peak (set resources.peak_tflops)"
    import psutil

    # Per core and cycle: two 8-wide fp32 FMAs (AVX2, and AMD's AVX-512, which is double-pumped)
    # = 32 FLOPs; Intel cores with two 512-bit FMA units do 64.
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    per_cycle = 64 if "avx512f" in info and "GenuineIntel" in info else 32
    freq = psutil.cpu_freq()
    ghz = (freq.max or freq.current) / 1000 if freq and (freq.max or freq.current) else 2.5
    threads = torch.get_num_threads()
    return (threads * ghz * 1e9 * per_cycle,
            f"{threads} CPU thread(s) at {ghz:.1f} GHz x {per_cycle} FLOP/cycle (estimate)")


RECOVERY_STATE = "raysweep_recovery.json"
DEEPSPEED_TAG = "deepspeed"


def save_recovery(engine, step: int, rank: int, unwritten_metrics: list[dict] = ()):
    """A recovery checkpoint of this rank: DeepSpeed's full state (weights, optimizer shards, lr
    schedule) in a fresh local folder, which Ray Train uploads and merges with the other ranks'.
    The data stream needs only the step (rank_batches resumes from it exactly); rank 0 adds the
    metrics it has logged but not yet written to MLflow (the tracking server may be down)."""
    import tempfile

    from ray.train import Checkpoint

    from raysweep.checkpoints import write_json_atomic

    folder = tempfile.mkdtemp(prefix=f"raysweep-recovery-{step:09d}-")
    engine.save_checkpoint(folder, tag=DEEPSPEED_TAG)  # each rank writes its own shard
    if rank == 0:
        write_json_atomic(Path(folder) / RECOVERY_STATE,
                          {"step": step, "unwritten_metrics": list(unwritten_metrics)})
    return Checkpoint.from_directory(folder)


def load_recovery(engine, folder: str) -> tuple[int, list[dict]]:
    """Restore the engine from a recovery checkpoint; returns the step it was saved at and the
    metrics that were not yet written to MLflow then."""
    import json

    # DeepSpeed unpickles its state files with weights_only=False; ours unpickles only data.
    engine.checkpoint_engine.load = weights_only_load
    engine.load_checkpoint(folder, tag=DEEPSPEED_TAG)
    state = json.loads((Path(folder) / RECOVERY_STATE).read_text())
    return state["step"], state.get("unwritten_metrics", [])


def weights_only_load(path: str, map_location=None):
    """torch.load of a DeepSpeed state file that unpickles tensors, containers and the three
    plain DeepSpeed types a ZeRO optimizer state holds, and nothing else: a file planted in the
    sweep's storage cannot run code when a restarted worker loads it."""
    import pickle

    import torch
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    try:
        with torch.serialization.safe_globals([fragment_address, LossScaler, DynamicLossScaler,
                                               ZeroStageEnum]):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        raise RuntimeError(f"recovery checkpoint file {path} holds objects raysweep does not "
                           f"unpickle, since unpickling them could run code: {unsafe or err}. "
                           f"Delete the recovery folder if you did not expect this.") from None


def remove_unregistered_recoveries() -> list[str]:
    """Delete recovery folders that a failed attempt uploaded but Ray Train never registered (the
    worker died before the controller collected its report): nothing would resume from them, and
    rotation would never delete them. Called by rank 0 before an attempt reports anything."""
    import pyarrow.fs
    import ray.train
    from ray.train import CheckpointConsistencyMode

    storage = ray.train.get_context().get_storage()
    registered = {Path(reported.checkpoint.path).name for reported in
                  ray.train.get_all_reported_checkpoints(CheckpointConsistencyMode.COMMITTED)}
    fs = storage.storage_filesystem
    removed = []
    for info in fs.get_file_info(pyarrow.fs.FileSelector(storage.experiment_fs_path,
                                                          allow_not_found=True)):
        if (info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith("checkpoint_")
                and info.base_name not in registered):
            fs.delete_dir(info.path)
            removed.append(info.base_name)
    return removed


def train_loop(config: dict) -> None:
    """Runs on every Ray Train worker. Started again after a failure: it then resumes from the
    latest recovery checkpoint, and the data stream from the step after it."""
    import ray.train
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)  # workers share the machine with trials; one thread each
    if not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"  # DeepSpeed's CPU accelerator: gloo, no CUDA build
    import deepspeed
    from ray.train import CheckpointUploadMode

    from raysweep import checkpoints
    from raysweep.data.mixture import alignment_score
    from raysweep.data.pretraining import rank_batches, tokens_by_source, total_steps
    from raysweep.data.tokenizer import fetch_tokenizer, load_tokenizer
    from raysweep.model import build_model
    from raysweep.tracking import BufferedMetrics, Tracker

    spec: SweepSpec = config["spec"]
    pre = spec.pretrain
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()

    tokenizer = load_tokenizer(fetch_tokenizer(spec))
    torch.manual_seed(spec.seed)  # same initial weights on every rank
    model = build_model(spec, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    if pre.activation_checkpointing:
        model.gradient_checkpointing_enable()
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=model.parameters(), optimizer=build_optimizer(spec, model),
        config=deepspeed_config(spec, world, torch.cuda.is_available()),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, inverse_sqrt(pre.warmup_steps)))

    # Rank 0 logs; through a buffer, so training goes on while MLflow is slow or down.
    mlflow_log = BufferedMetrics(Tracker.for_spec(spec), config["run_id"]) if rank == 0 else None
    start_step = 1
    recovery = ray.train.get_checkpoint()
    if recovery:
        with recovery.as_directory() as folder:
            resumed_from, unwritten = load_recovery(engine, folder)
        start_step = resumed_from + 1
        if mlflow_log:
            mlflow_log.write_unless_present(unwritten)
            mlflow_log.log({"resumed_from_step": resumed_from}, step=resumed_from)
    if rank == 0:
        remove_unregistered_recoveries()

    schedule, last_step = pre.published_tokens(), total_steps(spec)
    alignment = {t.name: alignment_score(pre.mixture, t) for t in spec.tasks}
    flops_per_token = model_flops_per_token(spec, len(tokenizer))
    peak_flops, _ = device_peak_flops(spec)
    # tokens/s measures training: the time spent saving checkpoints is logged on its own.
    started, window_tokens, window_start, window_saving = time.time(), 0, time.time(), 0.0
    for step, _, batch in rank_batches(spec, tokenizer, rank, world, start_step):
        loss = train_step(engine, batch, pre.gradient_accumulation)
        tokens_seen = step * pre.tokens_per_step()
        window_tokens += pre.tokens_per_step()
        publish = tokens_seen in schedule
        recover = (step % pre.recovery_every == 0 or publish) and step < last_step

        metrics = {}
        if step % pre.log_every == 0 or publish:
            mean_loss = loss.clone()
            dist.all_reduce(mean_loss)
            tokens_per_second = window_tokens / max(time.time() - window_start - window_saving, 1e-9)
            metrics = {"loss": mean_loss.item() / world, "tokens_seen": tokens_seen,
                       "engine_steps": engine.global_steps,  # DeepSpeed's own count: restored too
                       "lr": engine.get_lr()[0], "tokens_per_second": tokens_per_second,
                       "model_tflops_per_second": flops_per_token * tokens_per_second / 1e12}
            if peak_flops:
                metrics["mfu"] = flops_per_token * tokens_per_second / (peak_flops * world)
            if mlflow_log:
                mlflow_log.log(metrics, step=step)
            window_tokens, window_start, window_saving = 0, time.time(), 0.0

        saving_started = time.time()
        if publish:
            manifest_extra = {
                "mixture": [{"source": c.source, "weight": c.weight} for c in pre.mixture],
                "tokens_by_source": tokens_by_source(spec, step),
                "alignment": alignment,
            }
            # ZeRO-3 partitions the parameters: every rank gathers them, rank 0 exports.
            gathered = (deepspeed.zero.GatheredParameters(list(engine.module.parameters()))
                        if pre.zero_stage == 3 else contextlib.nullcontext())
            with gathered:  # a replay after a restart finds it published and leaves it be
                if rank == 0:
                    checkpoints.publish(spec, engine.module, tokens_seen, step, manifest_extra)
            if mlflow_log:  # on a replay too: written only if MLflow has no such point yet
                mlflow_log.log({"published_tokens": tokens_seen}, step=step, unless_present=True)
            dist.barrier()
        if recover:
            # Also at every publication, so a restart never replays past a published checkpoint.
            # ASYNC: Ray uploads the folder in the background while training goes on.
            unwritten = mlflow_log.unwritten() if mlflow_log else []
            ray.train.report({**metrics, "step": step, "tokens_seen": tokens_seen},
                             checkpoint=save_recovery(engine, step, rank, unwritten),
                             checkpoint_upload_mode=CheckpointUploadMode.ASYNC)
        if publish or recover:
            window_saving += time.time() - saving_started
            if mlflow_log:
                mlflow_log.log({"checkpoint_seconds": time.time() - saving_started}, step=step)

    if mlflow_log:
        mlflow_log.log({"wall_seconds": time.time() - started}, step=last_step)
        mlflow_log.flush()


def run_pretraining(spec: SweepSpec, run_id: str) -> None:
    """Pretrain to the budget (the last published checkpoint). Blocks; raises if training fails
    more than pretrain.max_failures times. A rerun with the same storage resumes from the latest
    recovery checkpoint (Ray Train finds it in the run folder)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from raysweep.storage import ray_storage_path

    res = spec.resources
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"spec": spec, "run_id": run_id},
        scaling_config=ScalingConfig(num_workers=spec.pretrain.workers, use_gpu=res.use_gpu,
                                     resources_per_worker={"CPU": res.pretrain_worker_cpus,
                                                           **res.pretrain_resources}),
        run_config=RunConfig(name="pretrain", storage_path=ray_storage_path(spec),
                             checkpoint_config=CheckpointConfig(num_to_keep=spec.pretrain.recovery_keep),
                             failure_config=FailureConfig(max_failures=spec.pretrain.max_failures)),
    )
    trainer.fit()


def worker_env() -> dict[str, str]:
    """Environment for every Ray worker process of a sweep."""
    env = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.update({k: os.environ[k] for k in ("TORCH_EXTENSIONS_DIR", "HF_HUB_OFFLINE") if k in os.environ})
    return env
