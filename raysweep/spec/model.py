"""The model and its tokenizer: `ModelSpec` (a preset from `MODEL_PRESETS`, or explicit dims) and
`TokenizerSpec` (which tokenizer every stage of the sweep shares), each checking its own fields.
Whether a `kind: saved` tokenizer's folder holds one is read from disk by raysweep.preflight."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from raysweep.spec.errors import Fields, SourceName, SpecError
from raysweep.storage import SweepFolder


@dataclass(frozen=True)
class ModelSpec:
    """The model that is pretrained and finetuned: a `preset`, or explicit dims (fields written
    next to a preset override it). T5 v1.1 naming for both families."""

    preset: str | None = None
    """One of MODEL_PRESETS: t5-tiny (tests, demo), t5-small, t5-base, t5-770m, t5-3b
    (encoder-decoders); causal-tiny, causal-160m, causal-410m, causal-1b (decoder-only)."""
    family: Literal["seq2seq", "causal"] = "seq2seq"
    """`seq2seq`: a T5-style encoder-decoder, pretrained by span corruption. `causal`: a
    decoder-only LM in the Llama layout (rotary positions, SwiGLU, RMSNorm), pretrained by
    next-token prediction and finetuned on `source </s> target </s>` with the loss on the target
    only. A preset sets it."""
    d_model: int = 64
    """Width of the residual stream."""
    d_ff: int = 128
    """Width of the feed-forward layers."""
    num_layers: int = 2
    """Encoder layers (seq2seq); all the layers (causal)."""
    num_decoder_layers: int = 2
    """Decoder layers (seq2seq only)."""
    num_heads: int = 4
    """Attention heads."""
    d_kv: int = 16
    """Width of each attention head."""
    dropout: float = 0.0
    """Dropout rate (the paper's T5 pretraining uses none)."""
    feed_forward: Literal["gated-gelu", "relu"] = "gated-gelu"
    """Feed-forward block of a seq2seq model: `gated-gelu` (T5 v1.1) or `relu` (the original T5,
    e.g. T5-3B). A causal model's is SwiGLU (Llama's)."""

    def check(self, fields: Fields) -> None:
        for name in ("d_model", "d_ff", "num_layers", "num_decoder_layers", "num_heads", "d_kv"):
            fields.positive(getattr(self, name), name)
        preset_family = MODEL_PRESETS[self.preset]["family"] if self.preset else self.family
        if preset_family != self.family:
            fields.fail("family", f"must be {preset_family!r} for preset {self.preset!r} (or leave "
                                  f"it out: the preset sets it)", self.family)

    def layers(self) -> str:
        """The layer count as people say it: `2+2` (encoder + decoder) or `4`."""
        if self.family == "causal":
            return str(self.num_layers)
        return f"{self.num_layers}+{self.num_decoder_layers}"


# The paper's T5-770M (T5 v1.1 large) and T5-3B (the original T5's, ReLU feed-forward), and
# T5 v1.1's small and base. The decoder-only presets follow Pythia's widths and depths (160m,
# 410m, 1b) in the Llama layout, with SwiGLU's d_ff at 8/3 of d_model as in Llama, so each has
# about its namesake's parameters. The vocabulary comes from the sweep's tokenizer.
MODEL_PRESETS = {
    "t5-tiny": dict(family="seq2seq", d_model=64, d_ff=128, num_layers=2, num_decoder_layers=2,
                    num_heads=4, d_kv=16),
    "t5-small": dict(family="seq2seq", d_model=512, d_ff=1024, num_layers=8, num_decoder_layers=8,
                     num_heads=6, d_kv=64),
    "t5-base": dict(family="seq2seq", d_model=768, d_ff=2048, num_layers=12, num_decoder_layers=12,
                    num_heads=12, d_kv=64),
    "t5-770m": dict(family="seq2seq", d_model=1024, d_ff=2816, num_layers=24, num_decoder_layers=24,
                    num_heads=16, d_kv=64),
    "t5-3b": dict(family="seq2seq", d_model=1024, d_ff=16384, num_layers=24, num_decoder_layers=24,
                  num_heads=32, d_kv=128, feed_forward="relu"),
    "causal-tiny": dict(family="causal", d_model=64, d_ff=176, num_layers=4, num_heads=4, d_kv=16),
    "causal-160m": dict(family="causal", d_model=768, d_ff=2048, num_layers=12, num_heads=12,
                        d_kv=64),
    "causal-410m": dict(family="causal", d_model=1024, d_ff=2816, num_layers=24, num_heads=16,
                        d_kv=64),
    "causal-1b": dict(family="causal", d_model=2048, d_ff=5632, num_layers=16, num_heads=8,
                      d_kv=256),
}


# Ends every refusal of a `kind: saved` tokenizer's path (here, and raysweep.preflight's).
SAVED_TOKENIZER_HINT = ("Give a saved tokenizer folder, such as another sweep's "
                        "<storage>/<sweep>/tokenizer (saved when that sweep starts), relative to "
                        "this spec file's folder; nothing was written.")


@dataclass(frozen=True)
class TokenizerSpec:
    """Which tokenizer every stage of the sweep shares (saved once under the sweep's storage).

    Cross-entropy is in nats per token, so sweeps meant to be compared must share one tokenizer:
    give them the same `train_sources`, or point the later ones at a saved one (`kind: saved`)."""

    kind: Literal["unigram", "byt5", "hub", "saved"] = "unigram"
    """`unigram`: trained offline on the sweep's mixture and task data (or on `train_sources`);
    `byt5`: bytes, nothing to train; `hub`: loaded by `hub_id` (needs network on first use);
    `saved`: the saved tokenizer folder at `path`, copied into the sweep's storage."""
    vocab_size: int = 1000
    """Vocabulary size for `unigram` (T5 sentinels come on top)."""
    train_documents: int = 20000
    """How many documents the `unigram` tokenizer is trained on, in equal shares per source."""
    train_sources: tuple[str, ...] = ()
    """Monolingual sources the `unigram` tokenizer is trained on instead of the sweep's own mixture
    and task data, e.g. `[synthetic:en, synthetic:de, synthetic:fr, synthetic:ro]`: sweeps with the
    same list (and vocab_size, train_documents, seed, synthetic) train the same tokenizer whatever
    their mixtures. Empty (default): the mixture's sources and the tasks' training sides."""
    hub_id: str | None = None
    """Tokenizer id on the hub for `kind: hub`, e.g. `google/mt5-base`."""
    path: str | None = None
    """Saved tokenizer folder for `kind: saved`, e.g. another sweep's `<storage>/<sweep>/tokenizer`
    (written when that sweep starts); a local folder, relative to the spec file's folder. Read
    once: the sweep then keeps its own copy."""
    sentinels: int = 100
    """Number of T5 sentinel tokens `<extra_id_i>` for span corruption (`unigram`, `byt5`)."""

    def saved_folder(self, base_dir: str | None) -> Path:
        """`path` on this machine: relative paths are taken from the spec file's folder."""
        return (Path(base_dir or ".") / (self.path or "")).resolve()

    def check(self, fields: Fields) -> None:
        """`train_sources` and `path` belong to one kind each: with another they would be ignored,
        and the sweep would silently score in other units than the sweeps it is compared with."""
        if self.kind == "hub" and not self.hub_id:
            fields.fail("hub_id", "must name a hub tokenizer when tokenizer.kind is hub", None)
        if self.train_sources and self.kind != "unigram":
            fields.fail("train_sources", "is only used when tokenizer.kind is unigram",
                        list(self.train_sources))
        for i, source in enumerate(self.train_sources):
            SourceName.parse(source, f"{fields.prefix}train_sources[{i}]", fields.where)
        if self.path is not None and self.kind != "saved":
            fields.fail("path", "is only read when tokenizer.kind is saved (add kind: saved to "
                        "reuse that tokenizer)", self.path)
        if self.kind == "saved" and not self.path:
            fields.fail("path", "must name a saved tokenizer folder when tokenizer.kind is saved",
                        None)
        fields.positive(self.vocab_size, "vocab_size")
        # Storage knows which locations are buckets; the folder itself is read by preflight.
        if self.kind == "saved" and SweepFolder(self.path, "").remote:
            raise SpecError(f"{fields.where}: field `{fields.prefix}path`: {self.path!r} is a "
                            f"bucket URI, but a saved tokenizer is read from a local folder. Copy "
                            f"the folder to this machine, or train the same tokenizer in both "
                            f"sweeps with tokenizer.train_sources. {SAVED_TOKENIZER_HINT}")
