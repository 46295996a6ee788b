"""Data layer: synthetic languages, span corruption, finetune prefixes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raysweep.data import synthetic
from raysweep.data.collators import corrupt, random_spans_noise_mask, span_counts


def test_synthetic_streams_are_deterministic_and_languages_differ():
    assert synthetic.monolingual_document("en", 7) == synthetic.monolingual_document("en", 7)
    assert synthetic.monolingual_document("en", 7) != synthetic.monolingual_document("en", 8)
    en, de = synthetic.parallel_pair("en", "de", 3)
    assert (de, en) == synthetic.parallel_pair("de", "en", 3)  # one meaning, either direction
    assert set(en.split()) - {"."} != set(de.split()) - {"."}
    # Word order is part of the language: German stand-in is verb-final.
    assert (synthetic.language("de").shape.order == "SOV"
            and synthetic.language("en").shape.order == "SVO")


@pytest.mark.parametrize("length, density, span",
                         [(64, 0.15, 3.0), (512, 0.15, 3.0), (100, 0.5, 2.0)])
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


# --------------------------------------------------------------------------------------------------
# The synthetic family: relatedness and morphology


def test_relatedness_controls_shared_words():
    unrelated = synthetic.Family(relatedness=0.0)
    default = synthetic.Family()
    cognate = synthetic.Family(relatedness=1.0)
    assert synthetic.shared_words("en", "de", unrelated) == 0
    assert synthetic.shared_words("en", "de", cognate) > 0.8
    # Each language inherits independently, so two languages share about relatedness^2.
    shares = [synthetic.shared_words(a, b, default)
              for a, b in [("en", "de"), ("en", "fr"), ("de", "ro")]]
    assert 0.02 < np.mean(shares) < 0.25
    # Cognates look alike: a cognate pair differs in a few sounds, not in shape.
    en, de = synthetic.language("en", cognate), synthetic.language("de", cognate)
    same_length = [len(a) == len(b) for a, b in zip(en.nouns, de.nouns)]
    assert np.mean(same_length) > 0.8 and en.nouns != de.nouns


def test_languages_differ_in_morphology_and_have_no_homonyms():
    family = synthetic.Family()
    for code in ("en", "de", "fr", "ro", "xx"):
        lang = synthetic.language(code, family)
        words = lang.nouns + lang.verbs + lang.adjectives + (lang.conjunction,)
        # one word, one meaning: translation is well defined
        assert len(set(words)) == len(words), code
    de, en = synthetic.language("de", family), synthetic.language("en", family)
    assert de.object_suffix and not en.object_suffix  # German stand-in marks objects with a case
    # One meaning, rendered: plural subject, past tense, object with an adjective.
    clause = ((0, True, 1, True, 2, False, 3),)
    english = synthetic.render(en, clause).split()
    assert english == [en.nouns[0] + en.plural_suffix, en.verbs[1] + en.past_marker,
                       en.adjectives[3], en.nouns[2], "."]
    german = synthetic.render(de, clause).split()  # verb-final, object in the accusative
    assert german == [de.nouns[0] + de.plural_suffix, de.adjectives[3],
                      de.nouns[2] + de.object_suffix, de.verbs[1] + de.past_marker, "."]
    fr = synthetic.language("fr", family)  # past tense as an auxiliary word, adjective after
    assert synthetic.render(fr, clause).split()[1:5] == [fr.past_marker, fr.verbs[1], fr.nouns[2],
                                                        fr.adjectives[3]]


def test_family_parameters_change_the_languages():
    small = synthetic.Family(nouns=5, verbs=3, adjectives=2)
    words = {w for i in range(200) for w in synthetic.monolingual_document("en", i, small).split()}
    en = synthetic.language("en", small)
    assert {w.removesuffix(en.plural_suffix) for w in words} <= set(
        en.nouns + en.verbs + en.adjectives + (en.conjunction, ".")) | {
        v + en.past_marker for v in en.verbs}
    assert synthetic.monolingual_document("en", 0, synthetic.Family(seed=1)) != \
        synthetic.monolingual_document("en", 0, synthetic.Family(seed=2))


# --------------------------------------------------------------------------------------------------
# The pretraining pipeline: exact token accounting across workers, resumable streams


def _spec(data: dict, tmp_path):
    from raysweep.spec_loader import spec_from_dict

    return spec_from_dict(data, base_dir=str(tmp_path))


def _raw_tokens(inputs: list[int], targets: list[int], sentinels: set[int], eos: int) -> list[int]:
    """Undo span corruption: fill each sentinel of the inputs with the span the targets give it."""
    spans, current = {}, None
    for t in targets[:-1]:
        if t in sentinels:
            current, spans[t] = t, []
        else:
            spans[current].append(t)
    assert inputs[-1] == eos and targets[-1] == eos
    return [x for t in inputs[:-1] for x in (spans[t] if t in sentinels else [t])]


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    from conftest import TINY_SPEC

    from raysweep.data.tokenizer import train_tokenizer
    from raysweep.spec_loader import spec_from_dict

    return train_tokenizer(spec_from_dict(TINY_SPEC, base_dir=str(tmp_path_factory.mktemp("tok"))))


def test_token_accounting_is_exact_across_workers(tiny_spec_dict, tmp_path, tiny_tokenizer):
    from raysweep.data.mixture import steps_by_source, tokens_by_source, total_steps
    from raysweep.data.tokenizer import sentinel_ids
    from raysweep.pretrain.batches import rank_batches

    tiny_spec_dict["pretrain"]["mixture"] = [{"source": "synthetic:en", "weight": 0.7},
                                             {"source": "synthetic:de", "weight": 0.3}]
    spec = _spec(tiny_spec_dict, tmp_path)
    pre, world = spec.pretrain, 2
    sentinels, eos = set(sentinel_ids(tiny_tokenizer)), tiny_tokenizer.eos_token_id
    seen_raw = {0: [], 1: []}
    sources_by_step = {}
    for rank in range(world):
        for step, source, batch in rank_batches(spec, tiny_tokenizer, rank, world):
            assert sources_by_step.setdefault(step, source) == source  # ranks agree on the source
            assert batch["input_ids"].shape[0] == pre.batch_size // world
            for inputs, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist()):
                raw = _raw_tokens(inputs, labels, sentinels, eos)
                assert len(raw) == pre.seq_len  # packed: every sequence is exactly seq_len tokens
                seen_raw[rank].append((source, tuple(raw)))
    steps = total_steps(spec)
    assert sorted(sources_by_step) == list(range(1, steps + 1))
    tokens = sum(len(raw) for rank in seen_raw.values() for _, raw in rank)
    assert tokens == steps * pre.tokens_per_step() == pre.published_tokens()[-1]
    # No text is seen twice: the two ranks read disjoint sequences.
    assert not {raw for _, raw in seen_raw[0]} & {raw for _, raw in seen_raw[1]}
    # The manifest's per-source accounting matches what the ranks actually read.
    by_source = tokens_by_source(spec, steps)
    for i, component in enumerate(pre.mixture):
        read = sum(len(raw) for rank in seen_raw.values() for s, raw in rank if s == i)
        assert by_source[component.source] == read
    assert sum(by_source.values()) == tokens
    counts = steps_by_source(spec, 2000)  # the per-batch mixture follows the weights
    assert counts[0] / sum(counts) == pytest.approx(0.7, abs=0.04)


def test_resumed_stream_continues_where_it_stopped(tiny_spec_dict, tmp_path, tiny_tokenizer):
    from raysweep.pretrain.batches import rank_batches

    spec = _spec(tiny_spec_dict, tmp_path)
    full = list(rank_batches(spec, tiny_tokenizer, rank=1, world=2))
    resumed = list(rank_batches(spec, tiny_tokenizer, rank=1, world=2, start_step=17))
    assert [s for s, _, _ in resumed] == [s for s, _, _ in full[16:]]
    for (_, source_a, a), (_, source_b, b) in zip(full[16:], resumed):
        assert source_a == source_b
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])


class CountingTokenizer:
    """The real tokenizer, counting the documents it encodes."""

    def __init__(self, tokenizer):
        self.tokenizer, self.encoded = tokenizer, 0

    def __call__(self, texts):
        self.encoded += len(texts)
        return self.tokenizer(texts)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


@pytest.mark.parametrize("mixture", ["synthetic", "file"])
def test_a_stream_resumed_from_its_position_continues_exactly_and_reads_nothing_again(
        tiny_spec_dict, tmp_path, tiny_tokenizer, mixture):
    import json

    from raysweep.data import synthetic
    from raysweep.pretrain.batches import rank_batches

    if mixture == "file":  # a local file (blank lines skipped) beside a synthetic source
        lines = [json.dumps({"text": synthetic.monolingual_document("de", i)}) for i in range(3000)]
        (tmp_path / "de.jsonl").write_text("\n".join(line + ("\n" if i % 7 else "\n\n")
                                                     for i, line in enumerate(lines)))
        tiny_spec_dict["pretrain"]["mixture"] = [
            {"source": "synthetic:en", "weight": 0.5},
            {"source": "file:de.jsonl", "language": "de", "weight": 0.5}]
    tiny_spec_dict["pretrain"]["checkpoints"] = [2048, 32768]  # 128 steps: many chunks read
    spec = _spec(tiny_spec_dict, tmp_path)
    whole = rank_batches(spec, tiny_tokenizer, rank=1, world=2)
    full = list(whole)
    first = rank_batches(spec, tiny_tokenizer, rank=1, world=2)
    for step, _, _ in first:
        if step == 4:
            break
    position = json.loads(json.dumps(first.position()))  # saved as JSON in a recovery checkpoint
    assert position["step"] == 4 and position["world"] == 2
    counting = CountingTokenizer(tiny_tokenizer)
    resumed = list(rank_batches(spec, counting, rank=1, world=2, start_step=5, position=position))
    assert [s for s, _, _ in resumed] == [s for s, _, _ in full[4:]]
    for (_, source_a, a), (_, source_b, b) in zip(full[4:], resumed):
        assert source_a == source_b
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    # Tokenized on resuming: only the documents read after the position, none before it.
    documents_read = [sum(s["documents"] for s in p["sources"])
                      for p in (position, whole.position())]
    assert counting.encoded == documents_read[1] - documents_read[0] > 0


def test_byt5_tokenizer_needs_no_training_and_corrupts_bytes(tiny_spec_dict, tmp_path):
    from raysweep.data.tokenizer import (
        load_tokenizer,
        save_tokenizer,
        sentinel_ids,
        train_tokenizer,
    )
    from raysweep.pretrain.batches import rank_batches

    tiny_spec_dict["tokenizer"] = {"kind": "byt5", "sentinels": 20}
    spec = _spec(tiny_spec_dict, tmp_path)
    tokenizer = train_tokenizer(spec)
    save_tokenizer(spec, tokenizer)
    tokenizer = load_tokenizer(spec.root / "tokenizer")  # what every stage uses
    sentinels = sentinel_ids(tokenizer)
    assert len(sentinels) == 20 and len(set(sentinels)) == 20
    text = synthetic.monolingual_document("de", 0)
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == len(text.encode()) + 1  # one token per byte, then </s>
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    step, _, batch = next(iter(rank_batches(spec, tokenizer, 0, 1)))
    raw = _raw_tokens(batch["input_ids"][0].tolist(), batch["labels"][0].tolist(), set(sentinels),
                      tokenizer.eos_token_id)
    assert step == 1 and len(raw) == spec.pretrain.seq_len
