"""The decoder-only family (`model.family: causal`) in its parts: presets of their namesakes'
sizes, FLOPs that agree with the built model, pair batches with the loss on the target only, a
per-sentence loss equal to the model's own, batched decoding equal to one sentence at a time, and
finetuning that learns a task. Real transformers models, tiny and built here."""

from __future__ import annotations

import pytest
import torch
from conftest import CAUSAL_TINY

from raysweep.data.collators import encode, pair_token_counts, prompt_target_batch
from raysweep.model import build_model, family, for_model
from raysweep.spec import SpecError
from raysweep.spec_loader import spec_from_dict


@pytest.fixture
def causal(tiny_spec_dict, tmp_path):
    """(spec, tokenizer, tiny causal model, the task's splits)."""
    from raysweep.data.sources import parallel_splits
    from raysweep.data.synthetic import Family
    from raysweep.data.tokenizer import train_tokenizer

    tiny_spec_dict["model"] = CAUSAL_TINY
    spec = spec_from_dict(tiny_spec_dict, base_dir=str(tmp_path))
    tokenizer = train_tokenizer(spec)
    torch.manual_seed(0)
    model = build_model(spec, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    splits = parallel_splits(spec.tasks[0], Family.of(spec), "<spec>", "task data", spec.base_dir)
    return spec, tokenizer, model, splits


# Pythia's parameter counts (its model cards): the presets follow its widths and depths in the
# Llama layout, with its vocabulary (50,304 rows) here.
@pytest.mark.parametrize("preset, pythia", [("causal-160m", 162_322_944),
                                            ("causal-410m", 405_334_016),
                                            ("causal-1b", 1_011_781_632)])
def test_the_causal_presets_have_about_their_namesakes_parameters(tiny_spec_dict, preset, pythia):
    from raysweep.pretrain.engine import memory_estimate

    tiny_spec_dict["model"] = {"preset": preset}
    spec = spec_from_dict(tiny_spec_dict)
    assert spec.model.family == "causal"
    assert memory_estimate(spec, 50304)["parameters"] == pytest.approx(pythia, rel=0.03)


def test_a_preset_of_the_other_family_is_refused_naming_the_field(tiny_spec_dict):
    tiny_spec_dict["model"] = {"preset": "t5-small", "family": "causal"}
    with pytest.raises(SpecError, match=r"`model.family` must be 'seq2seq' for preset 't5-small'"):
        spec_from_dict(tiny_spec_dict)


def test_flops_per_token_are_six_per_weight_plus_attention(tiny_spec_dict):
    """6 x (every weight a token passes through: all but the input embedding) + the attention
    scores, from the model actually built."""
    from raysweep.pretrain.throughput import model_flops_per_token

    tiny_spec_dict["model"] = {"preset": "causal-160m"}
    spec = spec_from_dict(tiny_spec_dict)
    with torch.device("meta"):
        model = build_model(spec, 50304, 0, 1)
    matrices = sum(p.numel() for n, p in model.named_parameters()
                   if p.dim() == 2 and "embed_tokens" not in n)
    m, seq_len = spec.model, spec.pretrain.seq_len
    attention = 6 * m.num_layers * 2 * seq_len * m.num_heads * m.d_kv
    assert model_flops_per_token(spec, 50304) == pytest.approx(6 * matrices + attention, rel=1e-9)


def test_a_pair_is_source_eos_target_eos_with_the_loss_on_the_target_only(causal):
    spec, tokenizer, model, splits = causal
    pairs = splits.train[:5]
    batch = prompt_target_batch(pairs, tokenizer, 32)
    eos = tokenizer.eos_token_id
    for row, labels, (source, target) in zip(batch["input_ids"], batch["labels"], pairs):
        (source_ids,), (target_ids,) = (encode(tokenizer, [source], 32),
                                        encode(tokenizer, [target], 32))
        n = len(source_ids) + len(target_ids)
        assert (row[:n].tolist() == source_ids + target_ids
                and source_ids[-1] == target_ids[-1] == eos)
        assert (labels[:len(source_ids)].eq(-100).all()
                and labels[len(source_ids):n].tolist() == target_ids)
        assert labels[n:].eq(-100).all()
    # D_f counts exactly the tokens a pair brings: source and target, each with its </s>.
    assert pair_token_counts(pairs, tokenizer, 32) == batch["attention_mask"].sum(1).tolist()


def test_the_per_sentence_loss_is_the_models_own_loss(causal):
    spec, tokenizer, model, splits = causal
    batch = prompt_target_batch(splits.test[:8], tokenizer, 32)
    nll, tokens = for_model(model).sentence_nll(model.eval(), batch)
    with torch.no_grad():
        own = model(**batch).loss.item()  # transformers' shifted mean over the target tokens
    assert sum(nll) / sum(tokens) == pytest.approx(own, rel=1e-5)
    assert tokens == [len(encode(tokenizer, [t], 32)[0]) for _, t in splits.test[:8]]


def test_batched_decoding_equals_one_sentence_at_a_time(causal):
    """Left padding: every prompt in a batch ends where its continuation starts."""
    spec, tokenizer, model, splits = causal
    sources = sorted((s for s, _ in splits.test[:6]), key=len)  # different lengths
    assert len({len(encode(tokenizer, [s], 32)[0]) for s in sources}) > 1
    decode = family(spec).translate
    batched = decode(model.eval(), tokenizer, sources, 32, 12, 1)
    alone = [decode(model, tokenizer, [s], 32, 12, 1)[0] for s in sources]
    assert batched == alone and any(batched)


def test_finetuning_learns_the_task(causal):
    """The loss on the target only goes down on held-out pairs after finetuning."""
    from raysweep.evaluation.metrics import cross_entropy
    from raysweep.finetune import finetune

    spec, tokenizer, model, splits = causal
    before = cross_entropy(model, splits.dev, tokenizer, 32)
    trained = finetune(model, splits.train[:200], spec.tasks[0], 0.003, tokenizer)
    after = cross_entropy(model, splits.dev, tokenizer, 32)
    assert trained["steps_run"] == spec.tasks[0].steps
    assert after < before - 0.5, (before, after)
