"""raysweep's pretraining loop against a plain PyTorch loop: same model, batches and device.

    .venv/bin/python bench/bench_train_loop.py [--spec jobs/demo.yaml] [--steps 300]

Runs, one after the other in one invocation, on one CPU thread each (a pretraining worker's share):
  1. plain: the spec's model, torch AdamW, the inverse-sqrt schedule and gradient clipping, on
     batches built beforehand (the input pipeline's cost is left out: an upper bound);
  2. raysweep: `raysweep.pretrain.loop.train_loop` under Ray Train with one worker: DeepSpeed engine
     (ZeRO from the spec), batches built inline by the real pipeline, metrics to MLflow, recovery
     checkpoints every pretrain.recovery_every steps and the published checkpoints.
Prints tokens/s of both and their ratio (target: raysweep at least 0.85 of plain), twice for
raysweep: the training steps alone (what the run logs as tokens_per_second) and over the whole run
with checkpoint saves included.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import threading
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def plain_loop(spec, tokenizer, steps: int) -> float:
    import torch

    from raysweep.data.pretraining import rank_batches
    from raysweep.model import build_model
    from raysweep.pretrain.engine import inverse_sqrt

    torch.set_num_threads(1)
    torch.manual_seed(spec.seed)
    pre = spec.pretrain
    model = build_model(spec, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=pre.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, inverse_sqrt(pre.warmup_steps))
    batches = [b for _, (_, _, b) in zip(range(steps), rank_batches(spec, tokenizer, 0, 1))]

    def step(batch):
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), pre.gradient_clipping)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:5]:  # warm-up, as DeepSpeed's first steps are in the other run's too
        step(batch)
    started = time.perf_counter()
    for batch in batches:
        step(batch)
    return steps * pre.tokens_per_step() / (time.perf_counter() - started)


def raysweep_loop(spec) -> tuple[float, float, dict]:
    """(tokens/s of the training steps, tokens/s over the whole loop, last logged metrics)."""
    import ray

    from raysweep.pretrain.loop import run_pretraining, worker_env
    from raysweep.tracking import Tracker

    tracker = Tracker.for_spec(spec)
    tracker.ensure_experiment()
    run_id = tracker.get_or_create_run({"raysweep.kind": "pretrain"}, "pretrain")
    ray.init(num_cpus=2, runtime_env={"env_vars": worker_env()}, log_to_driver=False)
    try:
        thread = threading.Thread(target=run_pretraining, args=(spec, run_id))
        thread.start()
        thread.join()
    finally:
        ray.shutdown()
    history = tracker.client.get_metric_history(run_id, "tokens_seen")
    steady = [m.value for m in tracker.client.get_metric_history(run_id, "tokens_per_second")][1:]
    first, last = min(history, key=lambda m: m.step), max(history, key=lambda m: m.step)
    whole = (last.value - first.value) / ((last.timestamp - first.timestamp) / 1000)
    return statistics.median(steady), whole, tracker.client.get_run(run_id).data.metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="jobs/demo.yaml")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()

    from raysweep.data.tokenizer import save_tokenizer, train_tokenizer
    from raysweep.spec_loader import load_spec

    spec = load_spec(args.spec)
    with tempfile.TemporaryDirectory() as storage:
        tokens = args.steps * spec.pretrain.tokens_per_step()
        pre = dataclasses.replace(spec.pretrain, workers=1, checkpoints=(tokens // 2, tokens),
                                  tokens=tokens, log_every=10)
        spec = dataclasses.replace(spec, storage=storage, pretrain=pre, tracking_uri=None)
        tokenizer = train_tokenizer(spec)
        save_tokenizer(spec, tokenizer)
        print(f"model {spec.model.preset or 'custom'}, {pre.batch_size} x {pre.seq_len} tokens per "
              f"step, {args.steps} steps, ZeRO-{pre.zero_stage}, 1 thread, "
              f"recovery checkpoint every {pre.recovery_every} steps")
        plain = plain_loop(spec, tokenizer, args.steps)
        print(f"plain PyTorch loop:             {plain:10,.0f} tokens/s")
        steady, whole, metrics = raysweep_loop(spec)
        print(f"raysweep (Ray Train+DeepSpeed): {steady:10,.0f} tokens/s training steps "
              f"-> {steady / plain:.2f} of plain (target >= 0.85)")
        print(f"                                {whole:10,.0f} tokens/s with checkpoint saves "
              f"-> {whole / plain:.2f} of plain")
        print(f"estimated MFU {metrics.get('mfu', 0):.3%} "
              f"({metrics['model_tflops_per_second'] * 1e3:.2f} model GFLOP/s)")


if __name__ == "__main__":
    main()
