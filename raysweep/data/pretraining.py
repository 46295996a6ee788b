"""The pretraining input pipeline of one rank: mixture -> packed sequences -> span-corrupted batches.

How tokens are counted (the unit of the paper's D_p): raw text tokens after tokenisation, the
`</s>` that ends each document included, before span corruption. Documents are concatenated and
cut into sequences of exactly `seq_len` tokens (packing), so no step carries padding and

    tokens seen after step s = s x batch_size x seq_len        (over all ranks together)

Step s draws all its sequences from one mixture component, `batch_source(spec, s)` (the paper
mixes per batch). Each rank reads its own shard of every source (document i goes to rank
i mod world size), takes batch_size / world consecutive packed sequences from it, and never sees
another rank's documents: no text is seen twice within a run. Span-corruption masks are seeded
by (seed, rank, step), so a batch is a pure function of the step and a resumed run continues
with exactly the batches it would have seen.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator

import numpy as np

from raysweep.data.mixture import batch_source
from raysweep.spec import SweepSpec


def total_steps(spec: SweepSpec) -> int:
    """Steps to reach the last scheduled checkpoint."""
    return spec.pretrain.published_tokens()[-1] // spec.pretrain.tokens_per_step()


def steps_by_source(spec: SweepSpec, steps: int) -> list[int]:
    """How many of steps 1..`steps` each mixture component supplies."""
    counts = Counter(batch_source(spec, step) for step in range(1, steps + 1))
    return [counts[i] for i in range(len(spec.pretrain.mixture))]


def tokens_by_source(spec: SweepSpec, steps: int) -> dict[str, int]:
    """Tokens seen per mixture source after `steps` steps (recorded in each manifest)."""
    per_step = spec.pretrain.tokens_per_step()
    counts = steps_by_source(spec, steps)
    seen: dict[str, int] = {}
    for component, count in zip(spec.pretrain.mixture, counts):
        seen[component.source] = seen.get(component.source, 0) + count * per_step
    return seen


def rank_batches(spec: SweepSpec, tokenizer, rank: int, world: int,
                 start_step: int = 1) -> Iterator[tuple[int, int, dict]]:
    """(step, mixture component, batch) for steps start_step..total_steps on this rank."""
    from raysweep.data.collators import packed_sequences, span_corruption_batch
    from raysweep.data.sources import monolingual_source
    from raysweep.data.synthetic import Family
    from raysweep.data.tokenizer import sentinel_ids

    pre = spec.pretrain
    per_rank = pre.batch_size // world
    where = spec.source_file or "<spec>"
    streams = [packed_sequences(monolingual_source(c.source, c.language, Family.of(spec),
                                                   f"pretrain.mixture[{i}].source", where,
                                                   spec.base_dir).documents(rank, world),
                                tokenizer, pre.seq_len)
               for i, c in enumerate(pre.mixture)]
    # Resuming: skip what the steps before start_step consumed, so nothing is repeated or missed.
    for stream, steps in zip(streams, steps_by_source(spec, start_step - 1)):
        for _ in itertools.islice(stream, steps * per_rank):
            pass
    sentinels, eos = sentinel_ids(tokenizer), tokenizer.eos_token_id
    for step in range(start_step, total_steps(spec) + 1):
        source = batch_source(spec, step)
        sequences = list(itertools.islice(streams[source], per_rank))
        if len(sequences) < per_rank:  # a finite source that validation could not count (hub)
            raise RuntimeError(
                f"pretraining source pretrain.mixture[{source}] ({pre.mixture[source].source}) ran "
                f"out of documents on rank {rank} at step {step}: the laws assume no data is "
                f"repeated, so add data, lower its weight or lower pretrain.checkpoints.")
        rng = np.random.default_rng([spec.seed, rank, step])
        yield step, source, span_corruption_batch(sequences, rng, sentinels, eos,
                                                  pre.noise_density, pre.mean_span_length)
