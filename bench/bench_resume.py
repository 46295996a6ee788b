"""Resuming pretraining's data stream late costs what resuming it early does.

    .venv/bin/python bench/bench_resume.py [--spec jobs/demo.yaml] [--late 5000] [--repeats 5]
                                           [--file-mb 200]

A restarted worker rebuilds its data stream before its first step. Measured side by side in one
run, on one thread, for this rank of two (rank 0, world 2), each `--repeats` times, the median
and min-max printed:
  1. restart at step 2 and at step `--late` from the saved stream position (what a recovery
     checkpoint holds): seconds to the first batch; the ratio late / early (target: <= 1.2);
  2. restart at step `--late` without a position (a checkpoint of raysweep before positions were
     saved): the stream re-reads and re-tokenizes every step before it, as every restart did;
  3. with `--file-mb`: the same for a generated local JSONL corpus of that size (not kept), whose
     rows a resume still reads, without tokenizing them (a streamed file has no index to seek).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from _common import load_bench_spec, refuse

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RANK, WORLD = 0, 2


def position_at(spec, tokenizer, step: int) -> dict:
    """The stream position after `step`, as a recovery checkpoint saves it (JSON)."""
    from raysweep.pretrain.batches import rank_batches

    batches = rank_batches(spec, tokenizer, RANK, WORLD)
    for done, _, _ in batches:
        if done == step:
            return json.loads(json.dumps(batches.position()))
    raise SystemExit(f"bench_resume: the spec has fewer than {step} steps")


def seconds_to_first_batch(spec, tokenizer, step: int, position: dict | None) -> float:
    from raysweep.pretrain.batches import rank_batches

    started = time.perf_counter()
    next(rank_batches(spec, tokenizer, RANK, WORLD, start_step=step, position=position))
    return time.perf_counter() - started


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s [{min(values):.3f}-{max(values):.3f}]"


def measure(label: str, spec, tokenizer, late: int, repeats: int) -> None:
    early_position, late_position = (position_at(spec, tokenizer, 1),
                                     position_at(spec, tokenizer, late - 1))
    early, later, reread = [], [], []
    for _ in range(repeats):  # interleaved, so a drift in load falls on all three alike
        early.append(seconds_to_first_batch(spec, tokenizer, 2, early_position))
        later.append(seconds_to_first_batch(spec, tokenizer, late, late_position))
        reread.append(seconds_to_first_batch(spec, tokenizer, late, None))
    ratios = [b / a for a, b in zip(early, later)]
    print(f"{label}: to the first batch after a restart, {repeats} repeats, median [min-max]")
    rows = [("from the saved position, at step 2", spread(early)),
            (f"from the saved position, at step {late:,}", spread(later)),
            (f"without a position (re-read), at step {late:,}", spread(reread))]
    for what, figure in rows:
        print(f"  {what + ':':48} {figure}")
    print(f"  late / early: {statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
          f" (target <= 1.2)")


def file_spec(spec, folder: Path, megabytes: int):
    """The spec with one mixture source: a generated JSONL file of about `megabytes` MB."""
    from raysweep.data import synthetic

    path, written, index = folder / "corpus.jsonl", 0, 0
    with path.open("w") as out:
        while written < megabytes * 1e6:
            line = json.dumps({"text": synthetic.monolingual_document("en", index)}) + "\n"
            out.write(line)
            written, index = written + len(line), index + 1
    source = dataclasses.replace(spec.pretrain.mixture[0], source=f"file:{path}", weight=1.0,
                                 language="en")
    return dataclasses.replace(spec, pretrain=dataclasses.replace(spec.pretrain, mixture=(source,)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="jobs/demo.yaml")
    parser.add_argument("--late", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--file-mb", type=int, default=0)
    args = parser.parse_args()

    from raysweep.data.tokenizer import train_tokenizer

    spec = load_bench_spec(args.spec)
    if args.late < 3 or args.repeats < 1 or args.file_mb < 0:
        refuse("--late must be at least 3, --repeats at least 1 and --file-mb not negative")
    tokens = (args.late + 1) * spec.pretrain.tokens_per_step()  # a schedule that reaches --late
    spec = dataclasses.replace(spec, pretrain=dataclasses.replace(
        spec.pretrain, checkpoints=(tokens,), tokens=tokens))
    tokenizer = train_tokenizer(spec)
    measure(f"synthetic mixture ({', '.join(c.source for c in spec.pretrain.mixture)})",
            spec, tokenizer, args.late, args.repeats)
    if args.file_mb:
        with tempfile.TemporaryDirectory() as folder:
            measure(f"local JSONL corpus, {args.file_mb} MB",
                    file_spec(spec, Path(folder), args.file_mb),
                    tokenizer, args.late, args.repeats)


if __name__ == "__main__":
    main()
