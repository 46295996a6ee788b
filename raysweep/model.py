"""The T5-style encoder-decoder, built from the spec's dimensions (T5 v1.1 layout)."""

from __future__ import annotations

from raysweep.spec import SweepSpec


def build_model(spec: SweepSpec, vocab_size: int, pad_token_id: int, eos_token_id: int):
    """A freshly initialised T5 (seeded by the caller through torch.manual_seed)."""
    from transformers import T5Config, T5ForConditionalGeneration

    m = spec.model
    config = T5Config(
        vocab_size=vocab_size, d_model=m.d_model, d_ff=m.d_ff, d_kv=m.d_kv, num_layers=m.num_layers,
        num_decoder_layers=m.num_decoder_layers, num_heads=m.num_heads, dropout_rate=m.dropout,
        feed_forward_proj=m.feed_forward, tie_word_embeddings=False,  # untied, as in T5 v1.1
        pad_token_id=pad_token_id, eos_token_id=eos_token_id, decoder_start_token_id=pad_token_id)
    return T5ForConditionalGeneration(config)
