"""Pretraining throughput and MFU on one GPU: raysweep's DeepSpeed step against a plain PyTorch
step.

    .venv/bin/python bench/bench_gpu_pretrain.py                  # t5-base, bf16, ZeRO-2, one GPU
    .venv/bin/python bench/bench_gpu_pretrain.py --preset t5-770m --micro-batch 16
    .venv/bin/python bench/bench_gpu_pretrain.py --preset t5-tiny --steps 3   # CPU smoke run

Both loops train the same model on the same span-corrupted batches (random token ids of the
spec's vocabulary, through raysweep's real span-corruption collator; the input pipeline has its
own benchmark), side by side in one run:
  1. raysweep: `raysweep.pretrain.engine.train_step` on the DeepSpeed engine that `deepspeed_config`
     builds from the spec (bf16, ZeRO stage, gradient clipping, the inverse-sqrt schedule);
  2. plain: torch autocast bf16, fused AdamW, the same clipping and schedule.
Prints tokens/s (raw text tokens, the unit of D_p), model TFLOP/s and MFU against the device's peak
(raysweep.pretrain.throughput.device_peak_flops), and the engine's peak memory beside raysweep's
estimate.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _common import load_bench_spec, refuse  # noqa: E402


def make_spec(args):
    from raysweep.spec import MODEL_PRESETS

    spec = load_bench_spec(args.spec)
    if args.preset not in MODEL_PRESETS:
        refuse(f"--preset {args.preset!r} is not a model preset; expected one of "
               f"{', '.join(sorted(MODEL_PRESETS))}")
    import torch

    cuda = torch.cuda.is_available()
    model = dataclasses.replace(spec.model, preset=args.preset, **MODEL_PRESETS[args.preset])
    pre = dataclasses.replace(spec.pretrain, workers=1, batch_size=args.micro_batch,
                              seq_len=args.seq_len, zero_stage=args.zero, gradient_accumulation=1,
                              precision="bf16" if cuda else "fp32", optimizer="adamw")
    resources = dataclasses.replace(spec.resources, use_gpu=cuda)
    return dataclasses.replace(spec, model=model, pretrain=pre, resources=resources)


def batches(spec, vocab: int, count: int, seed: int = 0) -> list[dict]:
    import numpy as np

    from raysweep.data.collators import span_corruption_batch

    pre, rng = spec.pretrain, np.random.default_rng(seed)
    sentinels = list(range(vocab - 1, vocab - 101, -1))  # T5's <extra_id_i>: the top of the vocab
    out = []
    for _ in range(count):
        sequences = [rng.integers(2, vocab - 100, pre.seq_len) for _ in range(pre.batch_size)]
        out.append(span_corruption_batch(sequences, rng, sentinels, 1, pre.noise_density,
                                         pre.mean_span_length))
    return out


def timed(step, data: list[dict], warmup: int, sync) -> float:
    """Seconds per step over data[warmup:]."""
    for batch in data[:warmup]:
        step(batch)
    sync()
    started = time.perf_counter()
    for batch in data[warmup:]:
        step(batch)
    sync()
    return (time.perf_counter() - started) / (len(data) - warmup)


def raysweep_step_time(spec, vocab: int, data, warmup: int, device) -> tuple[float, int]:
    import deepspeed
    import torch

    from raysweep.model import build_model
    from raysweep.pretrain.engine import build_optimizer, deepspeed_config, inverse_sqrt, train_step

    torch.manual_seed(0)
    model = build_model(spec, vocab, 0, 1)
    config = deepspeed_config(spec, 1, device.type == "cuda")
    # A one-worker sweep runs stage 0 (nothing to partition); measured here is the stage that each
    # GPU of a multi-GPU node runs, as asked (--zero).
    config["zero_optimization"]["stage"] = spec.pretrain.zero_stage
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=model.parameters(), optimizer=build_optimizer(spec, model),
        config=config,
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(
            opt, inverse_sqrt(spec.pretrain.warmup_steps)))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = timed(lambda b: train_step(engine, b, 1), data, warmup, _sync(device))
    return seconds, torch.cuda.max_memory_allocated() if device.type == "cuda" else 0


def plain_step_time(spec, vocab: int, data, warmup: int, device) -> float:
    import torch

    from raysweep.model import build_model
    from raysweep.pretrain.engine import inverse_sqrt

    torch.manual_seed(0)
    model = build_model(spec, vocab, 0, 1).to(device)
    cuda = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.pretrain.lr, weight_decay=0.0,
                                  fused=cuda)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                 inverse_sqrt(spec.pretrain.warmup_steps))

    def step(batch):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = model(input_ids=batch["input_ids"].to(device),
                         labels=batch["labels"].to(device)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.pretrain.gradient_clipping)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)

    return timed(step, data, warmup, _sync(device))


def _sync(device):
    import torch

    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="jobs/demo.yaml", help="other fields come from here")
    parser.add_argument("--preset", default="t5-base")
    parser.add_argument("--micro-batch", type=int, default=32, help="sequences per step")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--zero", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=32128, help="T5's; mT5's is 250112")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    import torch

    cuda = torch.cuda.is_available()
    if not cuda:  # DeepSpeed's CPU accelerator, one process: a smoke run, not a measurement
        os.environ.update(DS_ACCELERATOR="cpu", MASTER_ADDR="127.0.0.1", MASTER_PORT="29731",
                          RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
        torch.set_num_threads(1)
    import deepspeed

    from raysweep.pretrain.engine import memory_estimate
    from raysweep.pretrain.throughput import device_peak_flops, model_flops_per_token

    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
    device = torch.device("cuda" if cuda else "cpu")
    spec = make_spec(args)
    warmup = min(args.warmup, args.steps - 1)
    data = batches(spec, args.vocab, args.steps)
    tokens_per_step = spec.pretrain.tokens_per_step()
    flops_per_token = model_flops_per_token(spec, args.vocab)
    peak, peak_source = device_peak_flops(spec)
    estimate = memory_estimate(spec, args.vocab)

    name = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"{args.preset} ({estimate['parameters'] / 1e6:,.1f}M parameters, vocab {args.vocab}), "
          f"{spec.pretrain.batch_size} x {spec.pretrain.seq_len} tokens per step, "
          f"{'bf16' if cuda else 'fp32'}, ZeRO-{args.zero}, on {name}; peak {peak / 1e12:,.1f} "
          f"TFLOP/s ({peak_source}); {flops_per_token / 1e9:.2f} GFLOP per token")
    seconds, peak_memory = raysweep_step_time(spec, args.vocab, data, warmup, device)
    if cuda:
        torch.cuda.empty_cache()
    plain = plain_step_time(spec, args.vocab, data, warmup, device)
    for label, step_seconds in (("raysweep (DeepSpeed)", seconds), ("plain PyTorch", plain)):
        rate = tokens_per_step / step_seconds
        mfu = flops_per_token * rate / peak if peak else float("nan")
        print(f"{label:22} {rate:12,.0f} tokens/s  {flops_per_token * rate / 1e12:8.2f} TFLOP/s  "
              f"MFU {mfu:6.1%}")
    print(f"raysweep / plain: {plain / seconds:.2f}")
    if cuda:
        print(f"engine peak memory {peak_memory / 2**30:.1f} GiB; raysweep's estimate "
              f"{estimate['total_bytes'] / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
