"""The two model families, each behind one small interface: how it is built, what a pretraining
batch and a (source, target) batch are, the per-sentence loss of a batch, and how it translates
(`load_model` reads a saved model of either family, by its config). Everything else
(pretraining, trials, metrics, laws) is the same for both.

- Seq2Seq: the T5-style encoder-decoder (T5 v1.1 layout), pretrained by span corruption.
- Causal: a decoder-only LM (Llama layout through transformers, no model code of ours),
  pretrained by next-token prediction on the same packed sequences. A pair is one sequence,
  `source </s> target </s>`, with the loss on the target only; translating decodes what follows
  the source's `</s>`. The tokenizer's end-of-sequence token is the separator because every
  tokenizer has one and pretraining already taught it as a boundary between texts.
"""

from __future__ import annotations

import numpy as np
import torch

from raysweep.data.collators import (
    attention_mask,
    encode,
    next_token_batch,
    pad_id,
    padded,
    prompt_target_batch,
    seq2seq_batch,
    span_corruption_batch,
)
from raysweep.data.tokenizer import sentinel_ids
from raysweep.spec import SweepSpec


class Seq2Seq:
    """The T5-style encoder-decoder."""

    name = "seq2seq"

    def build(self, spec: SweepSpec, vocab_size: int, pad_token_id: int, eos_token_id: int):
        """A freshly initialised T5 (seeded by the caller through torch.manual_seed)."""
        from transformers import T5Config, T5ForConditionalGeneration

        m = spec.model
        config = T5Config(
            vocab_size=vocab_size, d_model=m.d_model, d_ff=m.d_ff, d_kv=m.d_kv,
            num_layers=m.num_layers, num_decoder_layers=m.num_decoder_layers,
            num_heads=m.num_heads, dropout_rate=m.dropout,
            feed_forward_proj=m.feed_forward, tie_word_embeddings=False,  # untied, as in T5 v1.1
            pad_token_id=pad_token_id, eos_token_id=eos_token_id,
            decoder_start_token_id=pad_token_id)
        return T5ForConditionalGeneration(config)

    def pretraining_batch(self, sequences: list[np.ndarray], rng: np.random.Generator,
                          spec: SweepSpec, tokenizer) -> dict:

        pre = spec.pretrain
        return span_corruption_batch(sequences, rng, sentinel_ids(tokenizer),
                                     tokenizer.eos_token_id, pre.noise_density,
                                     pre.mean_span_length)

    def pair_batch(self, pairs: list[tuple[str, str]], tokenizer, max_length: int) -> dict:
        return seq2seq_batch(pairs, tokenizer, max_length)

    def sentence_nll(self, model, batch: dict) -> tuple[list[float], list[int]]:
        """Per pair: summed NLL (nats) of the target, teacher-forced, and its token count."""
        batch = on_device(batch, model)
        return _summed_nll(model(**batch).logits, batch["labels"])

    def translate(self, model, tokenizer, sources: list[str], max_length: int, max_new_tokens: int,
                  num_beams: int) -> list[str]:
        ids = encode(tokenizer, sources, max_length)
        prompts = on_device({"input_ids": padded(ids, pad_id(tokenizer)),
                             "attention_mask": attention_mask(ids)}, model)
        generated = model.generate(**prompts, max_new_tokens=max_new_tokens, num_beams=num_beams,
                                   do_sample=False)
        return tokenizer.batch_decode(generated, skip_special_tokens=True)


class Causal:
    """The decoder-only LM (Llama layout)."""

    name = "causal"

    def build(self, spec: SweepSpec, vocab_size: int, pad_token_id: int, eos_token_id: int):
        """A freshly initialised Llama-layout LM (seeded by the caller through
        torch.manual_seed)."""
        from transformers import LlamaConfig, LlamaForCausalLM

        m = spec.model
        # Rotary positions need no table, but transformers sizes its caches by this.
        longest = max([spec.pretrain.seq_len] + [2 * t.max_length + spec.evaluation.max_new_tokens
                                                 for t in spec.tasks])
        config = LlamaConfig(
            vocab_size=vocab_size, hidden_size=m.d_model, intermediate_size=m.d_ff,
            num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads,
            num_key_value_heads=m.num_heads, head_dim=m.d_kv, attention_dropout=m.dropout,
            max_position_embeddings=longest, tie_word_embeddings=False,
            pad_token_id=pad_token_id, bos_token_id=eos_token_id, eos_token_id=eos_token_id)
        return LlamaForCausalLM(config)

    def pretraining_batch(self, sequences: list[np.ndarray], rng: np.random.Generator,
                          spec: SweepSpec, tokenizer) -> dict:
        return next_token_batch(sequences)

    def pair_batch(self, pairs: list[tuple[str, str]], tokenizer, max_length: int) -> dict:
        return prompt_target_batch(pairs, tokenizer, max_length)

    def sentence_nll(self, model, batch: dict) -> tuple[list[float], list[int]]:
        """Per pair: summed NLL (nats) of the target given the source, and its token count.
        Position i predicts token i + 1, as the model's own loss does."""
        batch = on_device(batch, model)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return _summed_nll(logits[:, :-1], batch["labels"][:, 1:])

    def translate(self, model, tokenizer, sources: list[str], max_length: int, max_new_tokens: int,
                  num_beams: int) -> list[str]:
        """Greedy (or beam) continuation of each `source </s>`, padded on the left so that every
        prompt ends where generation starts."""
        ids = encode(tokenizer, sources, max_length)
        prompts = on_device({"input_ids": padded(ids, pad_id(tokenizer), left=True),
                             "attention_mask": attention_mask(ids, left=True)}, model)
        generated = model.generate(**prompts, max_new_tokens=max_new_tokens, num_beams=num_beams,
                                   do_sample=False, pad_token_id=pad_id(tokenizer),
                                   eos_token_id=tokenizer.eos_token_id)
        return tokenizer.batch_decode(generated[:, prompts["input_ids"].shape[1]:],
                                      skip_special_tokens=True)


def on_device(batch: dict, model) -> dict:
    """A batch's tensors on the model's device (a trial's GPU, or the CPU)."""
    return {name: value.to(model.device) for name, value in batch.items()}


def _summed_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[list[float], list[int]]:
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(),
                                             ignore_index=-100, reduction="none")
    return loss.view_as(labels).sum(1).tolist(), (labels != -100).sum(1).tolist()


FAMILIES = {"seq2seq": Seq2Seq(), "causal": Causal()}


def family(spec: SweepSpec) -> Seq2Seq | Causal:
    """The spec's model family."""
    return FAMILIES[spec.model.family]


def for_model(model) -> Seq2Seq | Causal:
    """The family of a built or loaded model (a checkpoint series made elsewhere included)."""
    return FAMILIES["seq2seq" if model.config.is_encoder_decoder else "causal"]


def build_model(spec: SweepSpec, vocab_size: int, pad_token_id: int, eos_token_id: int):
    """A freshly initialised model of the spec's family and dims (seeded by the caller)."""
    return family(spec).build(spec, vocab_size, pad_token_id, eos_token_id)


def load_model(source: str, revision: str | None = None):
    """A model saved by transformers (a folder, or a hub id at a revision), of the family its
    config says, built from its safetensors weights: a pickle beside them (pytorch_model.bin) is
    never read, so a planted file cannot run code."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    config = AutoConfig.from_pretrained(source, revision=revision, trust_remote_code=False)
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    return auto.from_pretrained(source, revision=revision, use_safetensors=True,
                                trust_remote_code=False)
