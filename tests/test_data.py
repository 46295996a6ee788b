"""Data layer: synthetic languages, span corruption, finetune prefixes."""

from __future__ import annotations

import numpy as np
import pytest

from raysweep.data import synthetic
from raysweep.data.collators import corrupt, random_spans_noise_mask, span_counts


def test_synthetic_streams_are_deterministic_and_languages_differ():
    assert synthetic.monolingual_document("en", 7) == synthetic.monolingual_document("en", 7)
    assert synthetic.monolingual_document("en", 7) != synthetic.monolingual_document("en", 8)
    en, de = synthetic.parallel_pair("en", "de", 3)
    assert (de, en) == synthetic.parallel_pair("de", "en", 3)  # one meaning, either direction
    assert set(en.split()) - {"."} != set(de.split()) - {"."}
    # Word order is part of the language: German stand-in is verb-final.
    assert synthetic.language("de").order == "SOV" and synthetic.language("en").order == "SVO"


@pytest.mark.parametrize("length, density, span", [(64, 0.15, 3.0), (512, 0.15, 3.0), (100, 0.5, 2.0)])
def test_noise_mask_has_exact_noise_and_span_counts(length, density, span):
    rng = np.random.default_rng(0)
    num_noise, num_spans = span_counts(length, density, span)
    for _ in range(50):
        mask = random_spans_noise_mask(length, density, span, rng)
        assert mask.sum() == num_noise and not mask[0]
        starts = np.flatnonzero(mask[1:] & ~mask[:-1])
        assert len(starts) == num_spans


def test_noise_density_over_many_draws():
    rng = np.random.default_rng(1)
    masks = [random_spans_noise_mask(200, 0.15, 3.0, rng) for _ in range(200)]
    assert np.mean(masks) == pytest.approx(0.15, abs=0.005)
    # Every position gets masked sometimes (spans are placed uniformly, not always at the end).
    assert np.mean(masks, axis=0)[1:].min() > 0


def test_corruption_round_trip():
    tokens = np.arange(10, 30)
    mask = np.zeros(20, dtype=bool)
    mask[[3, 4, 10, 18, 19]] = True  # like T5's masks: starts with kept text, ends with noise
    inputs, targets = corrupt(tokens, mask, sentinels=[100, 101, 102], eos=1)
    assert inputs == [10, 11, 12, 100, 15, 16, 17, 18, 19, 101, 21, 22, 23, 24, 25, 26, 27, 102, 1]
    assert targets == [100, 13, 14, 101, 20, 102, 28, 29, 1]
    # Filling each sentinel of the inputs with what follows it in the targets gives back the text.
    # (T5's targets mark the *kept* spans with the same sentinels, in the same order.)
    spans, current = {}, None
    for t in targets[:-1]:
        if t >= 100:
            current = t
            spans[current] = []
        else:
            spans[current].append(t)
    restored = [x for t in inputs[:-1] for x in (spans[t] if t >= 100 else [t])]
    assert restored == list(tokens)
