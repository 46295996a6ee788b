"""Batches: packed T5 span corruption (encoder-decoder) or packed next-token sequences
(decoder-only) for pretraining; padded (source, target) pairs for finetuning and scoring.

Span corruption follows T5 (Raffel et al. 2020, `random_spans_noise_mask` in t5.data): a fixed
number of noise tokens split into a fixed number of spans, each replaced by one sentinel in the
inputs, the targets being the sentinels followed by what they hide. With packed raw sequences of a
fixed length, input and target lengths are fixed too, so pretraining batches carry no padding and
tokens seen = steps x batch x seq_len exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import numpy as np
import torch


def span_counts(length: int, noise_density: float, mean_span_length: float) -> tuple[int, int]:
    """(noise tokens, noise spans) for a raw sequence of `length` tokens."""
    num_noise = min(max(int(round(length * noise_density)), 1), length - 1)
    num_spans = max(int(round(num_noise / mean_span_length)), 1)
    return num_noise, num_spans


def random_spans_noise_mask(length: int, noise_density: float, mean_span_length: float,
                            rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of the noise tokens; starts with a non-noise span, as in T5."""
    num_noise, num_spans = span_counts(length, noise_density, mean_span_length)

    def random_segmentation(num_items: int, num_segments: int) -> np.ndarray:
        # Split num_items into num_segments positive parts, uniformly at random.
        first_in_segment = np.arange(num_items - 1) < num_segments - 1
        rng.shuffle(first_in_segment)
        segment_id = np.cumsum(np.concatenate([[0], first_in_segment]))
        return np.bincount(segment_id, minlength=num_segments)

    noise_lengths = random_segmentation(num_noise, num_spans)
    keep_lengths = random_segmentation(length - num_noise, num_spans)
    span_lengths = np.stack([keep_lengths, noise_lengths], axis=1).reshape(-1)
    starts = np.zeros(length, dtype=bool)
    starts[np.cumsum(span_lengths)[:-1]] = True
    return np.cumsum(starts) % 2 == 1


def corrupt(tokens: np.ndarray, mask: np.ndarray, sentinels: list[int], eos: int):
    """(inputs, targets) for one raw sequence: noise spans -> sentinels in inputs, and back."""

    def keep_with_sentinels(keep: np.ndarray) -> list[int]:
        out, span = [], 0
        for i, token in enumerate(tokens):
            if keep[i]:
                out.append(int(token))
            elif i == 0 or keep[i - 1]:  # first token of a dropped span
                out.append(sentinels[span])
                span += 1
        return out + [eos]

    return keep_with_sentinels(~mask), keep_with_sentinels(mask)


class PackedSequences:
    """Raw token sequences of exactly `seq_len`, documents concatenated (each ending in </s>), and
    where the packing stands: `position()` (documents read, tokens read but not yet yielded) is
    what a restart needs to go on with the next sequence without tokenizing anything again.

    documents(skip) must give the source's documents from the `skip`-th on."""

    def __init__(self, documents: Callable[[int], Iterator[str]], tokenizer, seq_len: int,
                 position: dict | None = None):
        self.tokenizer, self.seq_len = tokenizer, seq_len
        self.documents_read = position["documents"] if position else 0
        self.buffer: list[int] = list(position["buffer"]) if position else []
        self._documents = documents(self.documents_read)

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            while len(self.buffer) >= self.seq_len:  # cut before yielding: position() is exact
                sequence = np.asarray(self.buffer[:self.seq_len])
                del self.buffer[:self.seq_len]
                yield sequence
            # The fast tokenizer encodes lists at once.
            if not (chunk := list(itertools.islice(self._documents, 64))):
                return
            self.documents_read += len(chunk)
            for ids in self.tokenizer(chunk)["input_ids"]:
                self.buffer.extend(ids)

    def position(self) -> dict:
        return {"documents": self.documents_read, "buffer": list(self.buffer)}


def span_corruption_batch(sequences: list[np.ndarray], rng: np.random.Generator,
                          sentinels: list[int], eos: int, noise_density: float,
                          mean_span_length: float) -> dict:
    inputs, targets = [], []
    for tokens in sequences:
        mask = random_spans_noise_mask(len(tokens), noise_density, mean_span_length, rng)
        source, target = corrupt(tokens, mask, sentinels, eos)
        inputs.append(source)
        targets.append(target)
    return {"input_ids": torch.tensor(inputs), "labels": torch.tensor(targets)}


def encode(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids of each text, cut to `max_length` with the end-of-sequence token last, whether
    or not the tokenizer appends one itself (T5's does, GPT-NeoX's does not)."""
    eos = tokenizer.eos_token_id
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [ids[:max_length - 1] + [eos] for ids in encoded]


def pad_id(tokenizer) -> int:
    """The padding id: the tokenizer's, or its end-of-sequence id where it has none (GPT-NeoX)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def padded(rows: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
    """Rows of ids as one tensor, filled with `value` on the right (or the left)."""
    width = max(len(row) for row in rows)
    return torch.tensor([[value] * (width - len(row)) + row if left
                         else row + [value] * (width - len(row))
                         for row in rows])


def attention_mask(rows: list[list[int]], left: bool = False) -> torch.Tensor:
    return padded([[1] * len(row) for row in rows], 0, left)


def seq2seq_batch(pairs: list[tuple[str, str]], tokenizer, max_length: int) -> dict:
    """Padded (source, target) batch for an encoder-decoder; padding in labels is -100 so the
    loss ignores it."""
    sources = encode(tokenizer, [s for s, _ in pairs], max_length)
    targets = encode(tokenizer, [t for _, t in pairs], max_length)
    return {"input_ids": padded(sources, pad_id(tokenizer)),
            "attention_mask": attention_mask(sources), "labels": padded(targets, -100)}


def prompt_target_batch(pairs: list[tuple[str, str]], tokenizer, max_length: int) -> dict:
    """Padded `source </s> target </s>` sequences for a decoder-only model, the labels on the
    target only (-100 on the source and the padding)."""
    sources = encode(tokenizer, [s for s, _ in pairs], max_length)
    targets = encode(tokenizer, [t for _, t in pairs], max_length)
    rows = [s + t for s, t in zip(sources, targets)]
    return {"input_ids": padded(rows, pad_id(tokenizer)), "attention_mask": attention_mask(rows),
            "labels": padded([[-100] * len(s) + t for s, t in zip(sources, targets)], -100)}


def next_token_batch(sequences: list[np.ndarray]) -> dict:
    """Next-token prediction on packed sequences as they are (the model shifts the labels)."""
    ids = torch.as_tensor(np.stack(sequences), dtype=torch.long)
    return {"input_ids": ids, "labels": ids}


def pair_token_counts(pairs: list[tuple[str, str]], tokenizer, max_length: int) -> list[int]:
    """Tokens each pair contributes to D_f: source + target, each cut to max_length with its
    </s>, as the batches above hold them (the same count for both families)."""
    counts = []
    for start in range(0, len(pairs), 1024):  # batched: the fast tokenizer encodes in parallel
        chunk = pairs[start:start + 1024]
        sources = encode(tokenizer, [s for s, _ in chunk], max_length)
        targets = encode(tokenizer, [t for _, t in chunk], max_length)
        counts += [len(s) + len(t) for s, t in zip(sources, targets)]
    return counts


def finetune_prefix(train: list[tuple[str, str]], tokenizer, max_length: int,
                    tokens: int) -> tuple[list[tuple[str, str]], int]:
    """The first whole pairs of the (already shuffled) training split holding at most `tokens`.

    Every checkpoint of a sweep gets the same prefix, so only D_p varies between them."""
    chosen, total = [], 0
    for pair, n in zip(train, pair_token_counts(train, tokenizer, max_length)):
        if total + n > tokens:
            break
        chosen.append(pair)
        total += n
    return chosen, total
