"""raysweep's pretraining loop against a plain PyTorch loop: same model, optimizer, batches and
device, measured the same way, repeated in interleaved pairs.

    .venv/bin/python bench/bench_train_loop.py [--spec jobs/demo.yaml] [--steps 300] [--pairs 5]

Each pair runs both arms one after the other, the order alternating (plain first in even pairs),
so a drift in the machine's load falls on both alike:
  plain: the spec's model and optimizer (torch AdamW, or transformers' Adafactor as raysweep's
     engine builds it), the inverse-sqrt schedule and gradient clipping, on batches drawn from the
     real input pipeline inside the loop, one CPU thread;
  raysweep: `raysweep.pretrain.loop.train_loop` under Ray Train with one worker and one thread:
     DeepSpeed engine (stage 0: one worker has nothing for ZeRO to partition), metrics to
     MLflow, recovery checkpoints every pretrain.recovery_every steps and the published
     checkpoints.
Both are timed by raysweep's own Throughput meter over windows of pretrain.log_every steps, with
checkpoint saves left out (what a sweep logs as tokens_per_second); an arm's figure is the median
of its windows after the first. Prints each pair, then each arm's median tokens/s and the median
ratio raysweep / plain over the pairs, each with its min-max (target: ratio >= 0.9).

The plain arm mirrors only a CPU fp32 spec without gradient accumulation or activation
checkpointing; any other spec is refused with one line (exit status 2) rather than compared
unlike with like.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import threading

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from _common import load_bench_spec, refuse  # noqa: E402


def unmirrored(spec) -> list[str]:
    """What the plain arm cannot mirror in this spec (empty: comparable)."""
    pre = spec.pretrain
    reasons = []
    if spec.resources.use_gpu:
        reasons.append("resources.use_gpu (the plain arm runs on the CPU)")
    if pre.precision == "bf16":
        reasons.append("pretrain.precision bf16 (the plain arm trains in fp32)")
    if pre.gradient_accumulation != 1:
        reasons.append(f"pretrain.gradient_accumulation {pre.gradient_accumulation} (plain: 1)")
    if pre.activation_checkpointing:
        reasons.append("pretrain.activation_checkpointing (plain: off)")
    return reasons


def plain_loop(spec, tokenizer, steps: int) -> float:
    """Median tokens/s of the plain loop's windows after the first."""
    import torch

    from raysweep.model import build_model
    from raysweep.pretrain.batches import rank_batches
    from raysweep.pretrain.engine import build_optimizer, inverse_sqrt
    from raysweep.pretrain.throughput import Throughput

    torch.set_num_threads(1)
    torch.manual_seed(spec.seed)
    pre = spec.pretrain
    model = build_model(spec, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    # DeepSpeed's AdamW from raysweep's config is torch's, weight decay 0 (engine.deepspeed_config).
    optimizer = build_optimizer(spec, model) or torch.optim.AdamW(model.parameters(), lr=pre.lr,
                                                                  weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, inverse_sqrt(pre.warmup_steps))
    meter, windows = Throughput(0.0, 0.0, 1), []
    for step, _, batch in rank_batches(spec, tokenizer, 0, 1):
        if step > steps:
            break
        model(**batch).loss.backward()
        if pre.gradient_clipping:
            torch.nn.utils.clip_grad_norm_(model.parameters(), pre.gradient_clipping)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        meter.add(pre.tokens_per_step())
        if step % pre.log_every == 0:
            windows.append(meter.read()["tokens_per_second"])
    return statistics.median(windows[1:])


def raysweep_loop(spec) -> tuple[float, dict]:
    """Median tokens/s of raysweep's logged windows after the first, and its last metrics."""
    from raysweep.pretrain.loop import run_pretraining
    from raysweep.tracking import Tracker

    tracker = Tracker.for_spec(spec)
    tracker.ensure_experiment()
    run_id = tracker.get_or_create_run({"raysweep.kind": "pretrain"}, "pretrain")
    thread = threading.Thread(target=run_pretraining, args=(spec, run_id))
    thread.start()
    thread.join()
    windows = [m.value
               for m in sorted(tracker.client.get_metric_history(run_id, "tokens_per_second"),
                               key=lambda m: m.step)]
    return statistics.median(windows[1:]), tracker.client.get_run(run_id).data.metrics


def spread(values: list[float], fmt: str) -> str:
    return (f"{format(statistics.median(values), fmt)} "
            f"[{format(min(values), fmt)}-{format(max(values), fmt)}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="jobs/demo.yaml")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()

    spec = load_bench_spec(args.spec)
    if reasons := unmirrored(spec):
        refuse(f"{args.spec} cannot be compared like with like: the plain arm cannot mirror "
               f"{'; '.join(reasons)}")
    if args.steps < 3 * spec.pretrain.log_every or args.pairs < 1:
        refuse(f"--steps must be at least 3 x pretrain.log_every ({3 * spec.pretrain.log_every}: "
               f"each arm needs windows after its first) and --pairs at least 1")
    run_pairs(spec, args.steps, args.pairs)


def run_pairs(spec, steps: int, pairs: int) -> None:
    import ray

    from raysweep.data.tokenizer import save_tokenizer, train_tokenizer
    from raysweep.sweep import worker_env

    tokens = steps * spec.pretrain.tokens_per_step()
    pre = dataclasses.replace(spec.pretrain, workers=1, checkpoints=(tokens // 2, tokens),
                              tokens=tokens)
    spec = dataclasses.replace(spec, pretrain=pre, tracking_uri=None)
    tokenizer = train_tokenizer(spec)
    print(f"model {spec.model.preset or 'custom'} ({spec.model.family}), "
          f"{pre.batch_size} x {pre.seq_len} tokens per step, {steps} steps, {pre.optimizer}, "
          f"one worker (ZeRO off), 1 thread, windows of {pre.log_every} steps, "
          f"recovery checkpoint every {pre.recovery_every} steps; {pairs} pairs")
    plain, ours, ratios, metrics = [], [], [], {}
    ray.init(num_cpus=2, runtime_env={"env_vars": worker_env()}, log_to_driver=False)
    try:
        for pair in range(pairs):
            with tempfile.TemporaryDirectory() as storage:  # a fresh run: nothing to resume
                run_spec = dataclasses.replace(spec, storage=storage)
                save_tokenizer(run_spec, tokenizer)
                arms = ["plain", "raysweep"] if pair % 2 == 0 else ["raysweep", "plain"]
                for arm in arms:
                    if arm == "plain":
                        plain.append(plain_loop(run_spec, tokenizer, steps))
                    else:
                        value, metrics = raysweep_loop(run_spec)
                        ours.append(value)
            ratios.append(ours[-1] / plain[-1])
            print(f"pair {pair + 1} ({' then '.join(arms)}): plain {plain[-1]:,.0f}, raysweep "
                  f"{ours[-1]:,.0f} tokens/s -> {ratios[-1]:.2f}", flush=True)
    finally:
        ray.shutdown()
    print(f"plain PyTorch loop:             {spread(plain, ',.0f')} tokens/s")
    print(f"raysweep (Ray Train+DeepSpeed): {spread(ours, ',.0f')} tokens/s")
    print(f"raysweep / plain:               {spread(ratios, '.2f')} (median [min-max] over "
          f"{pairs} pairs; target >= 0.9)")
    print(f"estimated MFU {metrics.get('mfu', 0):.3%} "
          f"({metrics.get('model_tflops_per_second', 0) * 1e3:.2f} model GFLOP/s), "
          f"last raysweep run")


if __name__ == "__main__":
    main()
