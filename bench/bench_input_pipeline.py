"""The pretraining input pipeline must not be the bottleneck, and must stream in flat memory.

    .venv/bin/python bench/bench_input_pipeline.py [--spec jobs/demo.yaml] [--steps 200]

Prints, measured side by side in one run on one thread (a pretraining worker's share):
  1. source -> span-corrupted batches (raysweep.pretrain.batches.rank_batches), tokens/s;
  2. one pretraining step of the spec's model (forward, backward, AdamW) on those batches,
     tokens/s; and their ratio (target: at least 10);
  3. resident memory while streaming a local JSONL corpus (larger than the steps need) through
     the same pipeline: it must stay flat, not grow with what has been read.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import dataclasses  # noqa: E402

import torch  # noqa: E402
from _common import load_bench_spec  # noqa: E402

from raysweep.data import synthetic  # noqa: E402
from raysweep.data.tokenizer import train_tokenizer  # noqa: E402
from raysweep.model import build_model  # noqa: E402
from raysweep.pretrain.batches import rank_batches  # noqa: E402
from raysweep.spec import MixtureComponent  # noqa: E402


def rss_mb() -> float:
    """Current resident set size (Linux /proc), in MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def pipeline_rate(spec, tokenizer, steps: int) -> float:
    batches = rank_batches(spec, tokenizer, rank=0, world=1)
    next(batches)  # warm up: opens sources
    started = time.perf_counter()
    for _ in range(steps):
        next(batches)
    return steps * spec.pretrain.tokens_per_step() / (time.perf_counter() - started)


def step_rate(spec, tokenizer, steps: int) -> float:
    torch.manual_seed(0)
    model = build_model(spec, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.pretrain.lr)
    batches = [b for _, (_, _, b) in zip(range(steps + 1), rank_batches(spec, tokenizer, 0, 1))]

    def step(batch):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step(batches[0])  # warm up
    started = time.perf_counter()
    for batch in batches[1:steps + 1]:
        step(batch)
    return steps * spec.pretrain.tokens_per_step() / (time.perf_counter() - started)


def streaming_memory(spec, tokenizer, documents: int) -> list[tuple[int, float]]:
    """RSS after each tenth of a JSONL corpus of `documents` documents has been read."""
    folder = Path(tempfile.mkdtemp(prefix="raysweep-bench-"))
    corpus = folder / "en.jsonl"
    with corpus.open("w") as f:
        for i in range(documents):
            f.write(json.dumps({"text": synthetic.monolingual_document("en", i)}) + "\n")
    size_mb = corpus.stat().st_size / 2**20
    tokens_per_doc = 60  # generous upper bound on the mean: run out of steps before documents
    steps = documents * tokens_per_doc // spec.pretrain.tokens_per_step() // 2
    stream_spec = dataclasses.replace(
        spec, pretrain=dataclasses.replace(
            spec.pretrain, mixture=(MixtureComponent(f"file:{corpus}", 1.0, "en"),),
            checkpoints=(steps * spec.pretrain.tokens_per_step(),)))
    samples = []
    for step, _, _ in rank_batches(stream_spec, tokenizer, rank=0, world=1):
        if step % (steps // 10) == 0:
            samples.append((step, rss_mb()))
    print(f"    corpus: {documents:,} documents, {size_mb:.0f} MiB on disk, {steps:,} steps read")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="jobs/demo.yaml")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--documents", type=int, default=300_000)
    args = parser.parse_args()
    torch.set_num_threads(1)

    spec = load_bench_spec(args.spec)
    tokenizer = train_tokenizer(spec)
    pipeline = pipeline_rate(spec, tokenizer, args.steps)
    train = step_rate(spec, tokenizer, min(args.steps, 50))
    print(f"spec {args.spec}: {spec.pretrain.batch_size} x {spec.pretrain.seq_len} tokens per "
          f"step, one thread")
    print(f"  input pipeline (source -> batches): {pipeline:12,.0f} tokens/s")
    print(f"  pretraining step of the model:      {train:12,.0f} tokens/s")
    print(f"  ratio pipeline / step: {pipeline / train:.1f}x (target: at least 10x)")
    print("  resident memory while streaming a local JSONL corpus:")
    samples = streaming_memory(spec, tokenizer, args.documents)
    for step, mb in samples:
        print(f"    after step {step:6,}: {mb:7.1f} MiB")
    growth = samples[-1][1] - samples[0][1]
    print(f"  growth from the first to the last tenth: {growth:+.1f} MiB (target: flat)")


if __name__ == "__main__":
    main()
