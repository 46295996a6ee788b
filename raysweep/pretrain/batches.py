"""The pretraining input pipeline of one rank: mixture -> packed sequences -> the model family's
batches (span-corrupted for an encoder-decoder, as they are for a decoder-only model).

How tokens are counted (the unit of the paper's D_p): raw text tokens after tokenisation, the
`</s>` that ends each document included, before span corruption. Documents are concatenated and
cut into sequences of exactly `seq_len` tokens (packing), so no step carries padding and

    tokens seen after step s = s x batch_size x seq_len        (over all ranks together)

Step s draws all its sequences from one mixture component, `batch_source(spec, s)` (the paper
mixes per batch). Each rank reads its own shard of every source (document i goes to rank
i mod world size), takes batch_size / world consecutive packed sequences from it, and never sees
another rank's documents: no text is seen twice within a run. Span-corruption masks are seeded
by (seed, rank, step), so a resumed run continues with exactly the batches it would have seen:
from the stream position saved in a recovery checkpoint (RankBatches.position), or, without one,
by reading again what the earlier steps consumed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from raysweep.data.collators import PackedSequences
from raysweep.data.mixture import batch_source, steps_by_source, total_steps
from raysweep.data.sources import monolingual_source
from raysweep.data.synthetic import Family
from raysweep.model import family
from raysweep.spec import SweepSpec


class RankBatches:
    """(step, mixture component, batch) for steps start_step..total_steps on this rank, and where
    its sources stand: `position()` after step s is what `RankBatches(..., start_step=s + 1,
    position=...)` needs to go on with exactly the batches this stream would have given next,
    tokenizing nothing twice (the recovery checkpoints save it). Without a position, a stream
    that starts past step 1 reads and tokenizes everything the earlier steps consumed."""

    def __init__(self, spec: SweepSpec, tokenizer, rank: int, world: int, start_step: int = 1,
                 position: dict | None = None):

        self.spec, self.tokenizer, self.rank, self.world = spec, tokenizer, rank, world
        self.start_step, self.step = start_step, start_step - 1
        pre = spec.pretrain
        self.per_rank = pre.batch_size // world
        where = spec.source_file or "<spec>"
        sources = [monolingual_source(c.source, c.language, Family.of(spec),
                                      f"pretrain.mixture[{i}].source", where, spec.base_dir)
                   for i, c in enumerate(pre.mixture)]
        positions = position["sources"] if position else [None] * len(sources)
        self.streams = [PackedSequences(
                            lambda skip, source=source: source.documents(rank, world, skip),
                            tokenizer, pre.seq_len, at)
                        for source, at in zip(sources, positions)]
        self._sequences = [iter(stream) for stream in self.streams]
        self._steps = self._batches()
        if position is None:  # skip what the steps before start_step consumed, by reading it
            for sequences, steps in zip(self._sequences, steps_by_source(spec, start_step - 1)):
                for _ in itertools.islice(sequences, steps * self.per_rank):
                    pass

    def __iter__(self):
        return self

    def __next__(self) -> tuple[int, int, dict]:
        return next(self._steps)

    def _batches(self) -> Iterator[tuple[int, int, dict]]:

        pre, batch_of = self.spec.pretrain, family(self.spec).pretraining_batch
        for step in range(self.start_step, total_steps(self.spec) + 1):
            source = batch_source(self.spec, step)
            sequences = list(itertools.islice(self._sequences[source], self.per_rank))
            if len(sequences) < self.per_rank:  # a finite source that validation could not count
                raise RuntimeError(
                    f"pretraining source pretrain.mixture[{source}] ({pre.mixture[source].source}) "
                    f"ran out of documents on rank {self.rank} at step {step}: the laws assume no "
                    f"data is repeated, so add data, lower its weight or lower "
                    f"pretrain.checkpoints.")
            self.step = step
            rng = np.random.default_rng([self.spec.seed, self.rank, step])
            yield step, source, batch_of(sequences, rng, self.spec, self.tokenizer)

    def position(self) -> dict:
        """Where the stream stands after the last step it gave (JSON-ready)."""
        return {"step": self.step, "rank": self.rank, "world": self.world,
                "sources": [stream.position() for stream in self.streams]}


def rank_batches(spec: SweepSpec, tokenizer, rank: int, world: int, start_step: int = 1,
                 position: dict | None = None) -> RankBatches:
    """This rank's batches from start_step on (see RankBatches)."""
    return RankBatches(spec, tokenizer, rank, world, start_step, position)
