"""The sweep spec: an immutable `SweepSpec` of sections, every field documented where it is
declared, and each section checking its own fields (`check`); the rules that span sections are
`SweepSpec.check`'s. A bad spec costs the user one clear paragraph and nothing else (`SpecError`,
exit status 2 on the command line), before anything is written or started.

Reading a YAML file into a spec (`extends`, `${VAR}`, strict fields) is raysweep.spec_loader's;
the checks that need the data, the tokenizer or the machine are raysweep.preflight's.

Longer than the ~400 lines aimed at, on purpose: about 270 of its lines are the field docstrings,
the user's reference (error messages point here), and each check sits beside the fields it reads.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from raysweep.storage import SweepFolder, is_remote


class SpecError(ValueError):
    """A spec that cannot be run. The message is one paragraph naming the field or file."""


def fail(where: str, path: str, expected: str, got: Any) -> typing.NoReturn:
    """Raise the one-paragraph error for field `path` of spec file `where`."""
    raise SpecError(
        f"{where}: field `{path}` {expected}, but the spec has {got!r}. "
        f"Fix that field and run `raysweep validate` again; nothing was written."
    )


@dataclass(frozen=True)
class SourceName:
    """A source field's value, parsed: `synthetic:LANG[-LANG]`, `file:PATH` or `hf:DATASET[:CONFIG]`
    (raysweep.data.sources reads what it names)."""

    kind: str  # synthetic | file | hf
    location: str
    config: str | None = None

    @staticmethod
    def parse(text: str, field: str, where: str) -> SourceName:
        kind, _, rest = text.partition(":")
        if kind not in ("synthetic", "file", "hf") or not rest:
            raise SpecError(
                f"{where}: field `{field}` is {text!r}, expected a source such as "
                f"`synthetic:en`, `synthetic:en-de`, `file:data/train.jsonl` or `hf:wmt14:de-en`; "
                f"nothing was written.")
        if kind == "hf":
            location, _, config = rest.partition(":")
            return SourceName(kind, location, config or None)
        return SourceName(kind, rest)


@dataclass(frozen=True)
class Fields:
    """Where a section's fields are (the spec file, the section's path), so that a section's own
    checks name each field in full: `tasks[1].seeds`, not `seeds`."""

    where: str
    prefix: str = ""

    def at(self, section: str) -> Fields:
        return Fields(self.where, f"{self.prefix}{section}.")

    def fail(self, name: str, expected: str, got: Any) -> typing.NoReturn:
        fail(self.where, f"{self.prefix}{name}", expected, got)

    def positive(self, value: float, name: str) -> None:
        if not value > 0:
            self.fail(name, "must be greater than zero", value)


# --------------------------------------------------------------------------------------------------
# Components


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
    "causal-160m": dict(family="causal", d_model=768, d_ff=2048, num_layers=12, num_heads=12, d_kv=64),
    "causal-410m": dict(family="causal", d_model=1024, d_ff=2816, num_layers=24, num_heads=16,
                        d_kv=64),
    "causal-1b": dict(family="causal", d_model=2048, d_ff=5632, num_layers=16, num_heads=8, d_kv=256),
}


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


@dataclass(frozen=True)
class SyntheticSpec:
    """The offline family of synthetic languages behind every `synthetic:` source
    (raysweep/data/synthetic.py): one meaning space, per-language words, order and morphology."""

    relatedness: float = 0.3
    """Probability that a language's word for a concept is a cognate (a sound-shifted copy) of the
    family's proto word: 0 = unrelated lexicons, 1 = every word a cognate."""
    nouns: int = 30
    """Concepts per part of speech: fewer make translation easier to learn."""
    verbs: int = 12
    adjectives: int = 8

    def check(self, fields: Fields) -> None:
        if not 0 <= self.relatedness <= 1:
            fields.fail("relatedness", "must be between 0 and 1", self.relatedness)
        for name in ("nouns", "verbs", "adjectives"):
            if getattr(self, name) < 2:
                fields.fail(name, "must be at least 2", getattr(self, name))


@dataclass(frozen=True)
class MixtureComponent:
    source: str
    """A monolingual source: `synthetic:LANG`, `file:PATH` (JSONL with "text", or .txt),
    or `hf:DATASET[:CONFIG]`."""
    weight: float
    """Probability that a batch is drawn from this source. Weights sum to 1."""
    language: str | None = None
    """Language code of the source (for the alignment score); implied by `synthetic:LANG`."""


@dataclass(frozen=True)
class PretrainSpec:
    """Pretraining with Ray Train + DeepSpeed on the mixture."""

    mixture: tuple[MixtureComponent, ...] = ()
    """Sources with weights; one source is chosen per batch, as in the paper."""
    checkpoints: tuple[int, ...] = ()
    """Scheduled D_p in tokens: a list, or `{first: N, count: K}` for K log-spaced values from N to
    `tokens`. A checkpoint is published at the first step whose tokens seen reach each value; its
    exact D_p (a whole number of steps) is printed by `raysweep validate`."""
    tokens: int | None = None
    """The pretraining budget in tokens: training stops there, and the final model is published as
    the last checkpoint. Default: the last scheduled checkpoint."""
    batch_size: int = 16
    """Sequences per optimiser step, over all workers together."""
    seq_len: int = 64
    """Tokens of raw text per sequence, before span corruption (packed, so no padding)."""
    lr: float = 1e-3
    """Peak learning rate."""
    warmup_steps: int = 50
    """Linear warm-up steps, then inverse square root decay."""
    workers: int = 2
    """Ray Train workers (one DeepSpeed rank each)."""
    zero_stage: Literal[0, 1, 2, 3] = 1
    """DeepSpeed ZeRO stage: 0, 1, 2 or 3."""
    optimizer: Literal["adamw", "adafactor"] = "adamw"
    """`adamw` (torch's AdamW) or `adafactor` (the paper's; transformers' Adafactor at the
    spec's lr and schedule, without its own relative-step schedule)."""
    gradient_accumulation: int = 1
    """Micro-batches per optimiser step on each worker: the same tokens per step (batch_size is
    over all workers), less activation memory. batch_size must divide by workers x this."""
    gradient_clipping: float = 1.0
    """Largest global gradient norm; 0 turns clipping off."""
    activation_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more compute."""
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """`auto` (bf16 with a GPU, fp32 on CPU), `bf16` (needs resources.use_gpu) or `fp32`."""
    noise_density: float = 0.15
    """Share of tokens masked by span corruption."""
    mean_span_length: float = 3.0
    """Mean length of a masked span."""
    log_every: int = 10
    """Steps between logged pretraining metrics."""
    recovery_every: int = 100
    """Steps between recovery checkpoints (full DeepSpeed state, for restarts; one is also saved
    at every published checkpoint). Separate from the published evaluation checkpoints."""
    recovery_keep: int = 2
    """Recovery checkpoints kept; older ones are deleted (rotation)."""
    max_failures: int = 3
    """Worker or node failures pretraining survives: each restarts the workers from the latest
    recovery checkpoint (Ray Train's FailureConfig)."""

    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def published_tokens(self) -> list[int]:
        """The exact D_p of each scheduled checkpoint and of the budget: whole steps, rounded up."""
        per_step = self.tokens_per_step()
        wanted = set(self.checkpoints) | ({self.tokens} if self.tokens else set())
        return sorted({math.ceil(t / per_step) * per_step for t in wanted})

    def check(self, fields: Fields) -> None:
        self.check_mixture(fields)
        self._check_budget(fields)
        for name in ("batch_size", "seq_len", "lr", "workers", "log_every", "recovery_every",
                     "recovery_keep", "gradient_accumulation"):
            fields.positive(getattr(self, name), name)
        self._check_optimiser(fields)

    def check_mixture(self, fields: Fields) -> None:
        if not self.mixture:
            fields.fail("mixture", "must list at least one source with a weight", [])
        for i, component in enumerate(self.mixture):
            fields.positive(component.weight, f"mixture[{i}].weight")
        total = sum(c.weight for c in self.mixture)
        if abs(total - 1.0) > 1e-6:
            fields.fail("mixture", f"must have weights that sum to 1 (they sum to {total:g})",
                        [c.weight for c in self.mixture])

    def _check_optimiser(self, fields: Fields) -> None:
        if self.max_failures < 0:
            fields.fail("max_failures", "must be 0 or more", self.max_failures)
        if self.batch_size % (self.workers * self.gradient_accumulation):
            fields.fail("batch_size", f"must be divisible by pretrain.workers x "
                        f"pretrain.gradient_accumulation ({self.workers} x "
                        f"{self.gradient_accumulation}), so every micro-batch has the same size",
                        self.batch_size)
        if self.optimizer == "adafactor" and self.zero_stage > 0:
            # ZeRO hands the optimizer flat 1-D partitions of the weights (DeepSpeed's
            # stage_1_and_2.py / stage3.py), so Adafactor could not factor its second moments: it
            # would silently keep Adam-sized states and take different steps than the paper's.
            fields.fail("zero_stage", "must be 0 with pretrain.optimizer adafactor: ZeRO stages "
                        "1-3 flatten the weights the optimizer sees, so Adafactor would lose its "
                        "factored second moments (use zero_stage 0, or optimizer adamw with ZeRO)",
                        self.zero_stage)
        if self.gradient_clipping < 0:
            fields.fail("gradient_clipping", "must be 0 (off) or positive", self.gradient_clipping)
        if not 0 < self.noise_density < 1:
            fields.fail("noise_density", "must be between 0 and 1", self.noise_density)
        if self.mean_span_length < 1:
            fields.fail("mean_span_length", "must be at least 1", self.mean_span_length)

    def _check_budget(self, fields: Fields) -> None:
        if not self.checkpoints:
            fields.fail("checkpoints", "must list at least one D_p in tokens", [])
        for i, tokens in enumerate(self.checkpoints):
            fields.positive(tokens, f"checkpoints[{i}]")
        if self.tokens is None:
            return
        fields.positive(self.tokens, "tokens")
        for i, tokens in enumerate(self.checkpoints):
            if tokens > self.tokens:
                fields.fail(f"checkpoints[{i}]", f"is beyond the token budget pretrain.tokens "
                            f"({self.tokens:,}): pretraining stops there, so this checkpoint "
                            f"would never be published. Raise pretrain.tokens or drop it", tokens)


@dataclass(frozen=True)
class SeriesCheckpoint:
    """One checkpoint of a series made elsewhere."""

    tokens: int | None = None
    """Its D_p: the pretraining tokens it has seen. Left out in a local folder series: read from
    the file `series.tokens_file` in its folder."""
    revision: str | None = None
    """Hub series: the revision (branch, tag or commit) that holds it."""
    folder: str | None = None
    """Folder series: its folder, relative to `series.folder`."""


@dataclass(frozen=True)
class SeriesSpec:
    """Checkpoints made elsewhere, finetuned in place of pretraining: revisions of one hub model
    (Pythia's `step{N}`) or HF-format folders (what save_pretrained writes) from another trainer.
    Their weights must be safetensors; the model's own tokenizer is used; the no-pretraining
    baseline is the same architecture freshly initialised."""

    hub: str | None = None
    """A hub model id (`EleutherAI/pythia-160m`) whose revisions are the checkpoints."""
    folder: str | None = None
    """A folder holding one checkpoint folder per checkpoint: local (relative to the spec file)
    or a bucket URI."""
    checkpoints: tuple[SeriesCheckpoint, ...] = ()
    """The checkpoints, each with its D_p (`tokens`) and its `revision` (hub) or `folder`, in
    increasing D_p."""
    steps: tuple[int, ...] = ()
    """Instead of `checkpoints`: the training steps of the checkpoints, increasing; step N is the
    revision or subfolder `name` with N put in, with D_p = N x `tokens_per_step`."""
    name: str = "step{step}"
    """With `steps`: how a step's revision or subfolder is named (`{step}` is the step)."""
    tokens_per_step: int | None = None
    """With `steps`: the series' tokens per training step (Pythia: 1024 x 2048 = 2,097,152)."""
    attach: bool = False
    """Follow `folder` while another trainer is still writing into it: each checkpoint is taken
    once it is complete (`complete_marker`, or the settle rule) and finetuned while training goes
    on; the sweep ends when the last D_p is in, or on `raysweep stop` with those in by then."""
    complete_marker: str | None = None
    """With `attach`: a checkpoint is complete once this file is in its folder (one the trainer
    writes last, e.g. HF Trainer's trainer_state.json). Default: the settle rule."""
    tokens_file: str = "tokens.json"
    """In a local folder series, the file in a checkpoint's folder that gives its D_p when
    `checkpoints` leaves it out: JSON `{"tokens": N}`, written by the trainer."""
    settle_seconds: float = 60.0
    """With `attach` and no `complete_marker`: a checkpoint is complete once its folder holds
    config.json and safetensors weights and none of its files has changed for this long."""

    def points(self) -> list[SeriesCheckpoint]:
        """Every checkpoint with its D_p and where it is (`steps` written out)."""
        if self.checkpoints:
            return list(self.checkpoints)
        where = "revision" if self.hub else "folder"
        return [SeriesCheckpoint(step * (self.tokens_per_step or 0),
                                 **{where: self.name.format(step=step)}) for step in self.steps]

    def label(self, point: SeriesCheckpoint) -> str:
        """Where a checkpoint comes from, as a record says it: `hub-id@revision` or its folder."""
        if self.hub:
            return f"{self.hub}@{point.revision}"
        return f"{self.folder.rstrip('/')}/{point.folder}"

    def check(self, fields: Fields) -> None:
        if (self.hub is None) == (self.folder is None):
            fields.fail("hub", "or `series.folder` (one of the two) must say where the checkpoints "
                               "are", {"hub": self.hub, "folder": self.folder})
        if bool(self.checkpoints) == bool(self.steps):
            fields.fail("checkpoints", "or `series.steps` (one of the two) must list the checkpoints",
                        {"checkpoints": len(self.checkpoints), "steps": list(self.steps)})
        if self.steps:
            if self.tokens_per_step is None or self.tokens_per_step <= 0:
                fields.fail("tokens_per_step", "must be a positive number of tokens with "
                            "series.steps (D_p = step x tokens_per_step)", self.tokens_per_step)
            if "{step}" not in self.name:
                fields.fail("name", "must hold {step}, where each step's number goes", self.name)
            _increasing(fields, "steps", list(self.steps))
        if self.attach and self.hub:
            fields.fail("attach", "is for a folder series (a trainer writing into `series.folder`); "
                                  "hub revisions are all there already", self.attach)
        fields.positive(self.settle_seconds, "settle_seconds")
        where = "revision" if self.hub else "folder"
        for i, point in enumerate(self.checkpoints):
            if getattr(point, where) is None:
                fields.fail(f"checkpoints[{i}].{where}", f"must say which {where} holds the "
                            f"checkpoint (this is a {'hub' if self.hub else 'folder'} series)", None)
        for i, point in enumerate(self.checkpoints):
            if point.tokens is None:  # a tokens file fills it in a local folder series (spec_loader)
                fields.fail(f"checkpoints[{i}].tokens", "must be given: only a local folder series "
                            "that is not followed while written (attach) reads it from a tokens file",
                            None)
        _increasing(fields, "checkpoints[].tokens", [p.tokens for p in self.checkpoints])


def _increasing(fields: Fields, name: str, values: list[int]) -> None:
    if any(v <= 0 for v in values) or any(b <= a for a, b in zip(values, values[1:])):
        fields.fail(name, "must be positive and strictly increasing (each checkpoint has seen more "
                          "pretraining than the one before)", values)


@dataclass(frozen=True)
class TaskSpec:
    """A downstream translation task, finetuned from every checkpoint and from scratch."""

    name: str
    """Name used in trial keys and MLflow, e.g. `en-de`."""
    source_lang: str
    """Language translated from."""
    target_lang: str
    """Language translated to."""
    data: str
    """A parallel source: `synthetic:SRC-TGT`, `file:PATH` (JSONL `{"translation": {...}}` or TSV),
    or `hf:DATASET:CONFIG` (WMT layout)."""
    finetune_tokens: tuple[int, ...]
    """Finetune sizes D_f in tokens (source + target tokens, end-of-sequence included)."""
    lrs: tuple[float, ...] = (1e-3,)
    """Constant learning rates tried for every (checkpoint, D_f); the best by dev cross-entropy is
    used in the fits."""
    steps: int = 100
    """Optimiser steps per finetune trial (cycling over the D_f tokens)."""
    batch_size: int = 16
    """Sentence pairs per finetune step."""
    max_length: int = 48
    """Longest source or target kept, in tokens."""
    dev_examples: int = 100
    """Sentence pairs in the dev set (learning-rate choice)."""
    test_examples: int = 100
    """Sentence pairs in the test set (reported metrics)."""
    train_examples: int = 20000
    """Sentence pairs available for finetuning (synthetic sources generate this many)."""
    eval_every: int = 0
    """Steps between dev cross-entropy checks during finetuning; 0 = none (the paper's fixed steps)."""
    patience: int = 0
    """With eval_every: stop after this many checks without a better dev cross-entropy and keep
    the best weights (early stopping); 0 = run all `steps`."""
    seeds: int = 1
    """Finetune replicates of every (checkpoint, D_f, lr): seeds `seed`, `seed` + 1, ... (each
    shuffles the D_f batches and seeds the baseline's initial weights differently). A law point is
    their mean; with 2 or more, the spread between seeds enters its standard error, so a verdict
    can tell finetuning noise from a failing law."""

    def check(self, fields: Fields) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            # It names trial keys, MLflow tags and the searches that find them.
            fields.fail("name", "must use only letters, digits, '.', '-' and '_'", self.name)
        if not self.finetune_tokens:
            fields.fail("finetune_tokens", "must list at least one D_f in tokens", [])
        for j, tokens in enumerate(self.finetune_tokens):
            fields.positive(tokens, f"finetune_tokens[{j}]")
        if not self.lrs:
            fields.fail("lrs", "must list at least one learning rate", [])
        for j, lr in enumerate(self.lrs):
            fields.positive(lr, f"lrs[{j}]")
        for name in ("steps", "batch_size", "max_length", "dev_examples", "test_examples",
                     "train_examples"):
            fields.positive(getattr(self, name), name)
        for name in ("eval_every", "patience"):
            if getattr(self, name) < 0:
                fields.fail(name, "must be 0 (off) or more", getattr(self, name))
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            fields.fail("seeds", "must be a whole number of finetune replicates, 1 or more",
                        self.seeds)
        if self.test_examples < 2:
            fields.fail("test_examples", "must be at least 2: each metric's standard error is "
                        "measured on the test set", self.test_examples)
        if self.patience and not self.eval_every:
            fields.fail("patience", "needs tasks[].eval_every (steps between dev checks) to stop "
                        "early", self.patience)


@dataclass(frozen=True)
class EvaluationSpec:
    comet_model: str = "Unbabel/wmt22-comet-da"
    """COMET model: a hub id, a local checkpoint directory, or `tiny-local` (a small model built
    offline under the sweep's storage: real COMET code, meaningless scores; for demos and tests)."""
    comet_batch_size: int = 16
    """Sentences per COMET forward pass."""
    comet_gpus: float = 0
    """GPU share of each node's shared COMET scorer actor (raysweep/evaluation/scorer.py); 0 scores on CPU."""
    max_new_tokens: int = 48
    """Longest generated translation, in tokens."""
    num_beams: int = 1
    """1 = greedy decoding."""
    bleu_tokenize: str = "13a"
    """sacrebleu tokenizer (13a, intl, zh, char, none)."""

    def check(self, fields: Fields) -> None:
        if self.comet_gpus < 0:
            fields.fail("comet_gpus", "must be 0 or more", self.comet_gpus)
        if self.num_beams < 1:
            fields.fail("num_beams", "must be at least 1", self.num_beams)


METRICS = ("bleu", "chrf", "rougeL", "comet", "cross_entropy")
LR_CHOICES = ("dev_cross_entropy", "dev_bleu", "dev_chrf")


@dataclass(frozen=True)
class FitSpec:
    """Scaling-law fitting options."""

    metrics: tuple[str, ...] = METRICS
    """Metrics to fit: task metrics get the log-law, `cross_entropy` the power law."""
    huber_delta: dict[str, float] = field(default_factory=dict)
    """Huber delta per metric, overriding the paper's defaults (0.1 task metrics, 1e-3 CE)."""
    lr_choice: Literal["dev_cross_entropy", "dev_bleu", "dev_chrf"] = "dev_cross_entropy"
    """How the best learning rate of each (checkpoint, D_f) is chosen, always on the dev set:
    `dev_cross_entropy` (lowest), `dev_bleu` or `dev_chrf` (highest; the dev set is decoded)."""
    min_points: int = 3
    """Fewest checkpoints (D_p > 0) before a law is fitted."""
    target_tokens: int | None = None
    """D_p at which to predict the metric (the size you are considering pretraining on)."""
    target_score: dict[str, float] = field(default_factory=dict)
    """Per metric, the score you need (e.g. {bleu: 30}): the answer says at what D_p the fitted law
    reaches it."""
    min_effect: dict[str, float] = field(default_factory=dict)
    """Per metric, the smallest change worth telling from none, in the metric's units, overriding
    the defaults (0.5 BLEU or chrF point, 0.005 ROUGE-L or COMET, 0.02 nats of cross-entropy).
    "No effect" means every change is measured to lie within it; an inconclusive verdict says how
    much less noise it would take to resolve a change of this size."""
    bootstrap_resamples: int = 200
    """Bootstrap refits behind every interval (the online fitter repeats them at each update)."""
    interval_level: float = 0.9
    """Coverage of the reported intervals."""
    backtest_points: int = 4
    """The paper's check: fit on this many smallest-D_p checkpoints, predict the rest; the law
    predicts when every held-out checkpoint lands inside that fit's own predictive interval (its
    relative error is reported too: the paper's figure, <= 0.061 for BLEU on aligned mixtures)."""

    def check(self, fields: Fields) -> None:
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown:
            fields.fail("metrics", f"must only name metrics from {', '.join(METRICS)}", unknown)
        for option in ("huber_delta", "min_effect", "target_score"):
            for metric, value in getattr(self, option).items():
                if metric not in METRICS:
                    fields.fail(f"{option}.{metric}", f"must be one of {', '.join(METRICS)}", metric)
                if not value > 0:
                    fields.fail(f"{option}.{metric}", "must be a positive number", value)
        if self.min_points < 2:
            fields.fail("min_points", "must be at least 2", self.min_points)
        if self.target_tokens is not None:
            fields.positive(self.target_tokens, "target_tokens")
        fields.positive(self.bootstrap_resamples, "bootstrap_resamples")
        if not 0 < self.interval_level < 1:
            fields.fail("interval_level", "must be between 0 and 1", self.interval_level)
        if self.backtest_points < 2:
            fields.fail("backtest_points", "must be at least 2", self.backtest_points)


@dataclass(frozen=True)
class ResourceSpec:
    local_cpus: int = 8
    """Logical CPUs for a local Ray (oversubscribed on purpose, so pretraining and finetuning can
    run together on a laptop; threads are pinned to 1 per process)."""
    pretrain_worker_cpus: float = 1
    """CPUs requested by each pretraining worker."""
    trial_cpus: float = 1
    """CPUs requested by each finetune trial."""
    max_concurrent_trials: int = 2
    """Finetune trials running at once."""
    trial_retries: int = 1
    """Times a failed finetune trial is run again (a lost spot node, a transient error) before it is
    recorded as failed, with its reason, in its MLflow run."""
    use_gpu: bool = False
    """Pretraining workers and trials request a GPU each."""
    peak_tflops: float | None = None
    """Peak dense TFLOP/s of one pretraining worker's device, for the logged MFU. Default: looked up
    from the GPU's name (bf16 tensor-core peak), or estimated for a CPU from its clock."""
    worker_memory_gb: float | None = None
    """Memory of each pretraining worker's device in GiB (GPU memory with use_gpu, else RAM),
    checked against an estimate before anything starts. Default: 80 with a GPU (A100/H100 80GB),
    else this machine's RAM shared by the workers."""
    pretrain_resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources each pretraining worker requests, e.g. {pretrain_pool: 1}: on a
    cluster, only the node type that advertises them (cluster.yaml) runs pretraining."""
    trial_resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources each finetune trial requests, e.g. {finetune_pool: 1}."""
    coordinator_resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources of the watcher and fitter actors, e.g. {coordinator: 0.01}: keeps them
    on the on-demand head node, where a spot preemption cannot take them."""

    def check(self, fields: Fields) -> None:
        for name in ("local_cpus", "max_concurrent_trials"):
            fields.positive(getattr(self, name), name)
        for group in ("pretrain_resources", "trial_resources", "coordinator_resources"):
            for name, amount in getattr(self, group).items():
                fields.positive(amount, f"{group}.{name}")
        if self.trial_retries < 0:
            fields.fail("trial_retries", "must be 0 or more", self.trial_retries)
        if self.peak_tflops is not None:
            fields.positive(self.peak_tflops, "peak_tflops")
        if self.pretrain_worker_cpus < 0 or self.trial_cpus < 0:
            fail(fields.where, "resources", "must not request negative CPUs",
                 (self.pretrain_worker_cpus, self.trial_cpus))


@dataclass(frozen=True)
class SweepSpec:
    name: str
    """Sweep name: the MLflow experiment and the folder under `storage`."""
    storage: str = "./raysweep-runs"
    """Where checkpoints, tokenizer and (by default) MLflow live: a folder (relative paths are
    taken from the spec file's folder; `file:///abs/path` is the folder /abs/path), or a bucket
    URI `s3://BUCKET/PREFIX` (`gs://` likewise) shared by every node of a cluster. `${VAR}` takes
    an environment variable."""
    tracking_uri: str | None = None
    """MLflow tracking URI; default: SQLite file `<storage>/<name>/mlflow.db` (a local storage
    folder only). `${VAR}` takes an environment variable, e.g. `${MLFLOW_TRACKING_URI}`."""
    seed: int = 0
    """Seed for data order, initialisation and finetuning."""
    model: ModelSpec = ModelSpec()
    tokenizer: TokenizerSpec = TokenizerSpec()
    synthetic: SyntheticSpec = SyntheticSpec()
    pretrain: PretrainSpec = PretrainSpec()
    series: SeriesSpec | None = None
    """Checkpoints made elsewhere, in place of pretraining (then `pretrain` holds only the
    `mixture` they were trained on, for the alignment score)."""
    tasks: tuple[TaskSpec, ...] = ()
    evaluation: EvaluationSpec = EvaluationSpec()
    fit: FitSpec = FitSpec()
    resources: ResourceSpec = ResourceSpec()
    source_file: str | None = None
    """Set by `load_spec`: the YAML file this spec came from (not a YAML field)."""
    base_dir: str | None = None
    """Set by `load_spec`: the folder relative data paths are taken from (not a YAML field)."""

    # ---- derived paths -----------------------------------------------------------------------
    @property
    def folder(self) -> SweepFolder:
        """The sweep's shared folder (raysweep.storage): what every stage reads and writes."""
        return SweepFolder(self.storage, self.name)

    @property
    def root(self) -> Path:
        """This node's folder for the sweep: the storage folder itself, or for a bucket storage
        a local cache of it."""
        return self.folder.root

    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.root / 'mlflow.db').resolve()}"

    # ---- the plan ------------------------------------------------------------------------------
    def published_tokens(self) -> list[int]:
        """D_p of every checkpoint: pretraining's schedule, or the series'."""
        if self.series:
            return [point.tokens for point in self.series.points()]
        return self.pretrain.published_tokens()

    def checkpoint_tokens(self) -> list[int]:
        """D_p of every finetuned starting point, the no-pretraining baseline (0) first."""
        return [0] + self.published_tokens()

    def num_trials(self) -> int:
        points = len(self.checkpoint_tokens())
        return sum(points * len(t.finetune_tokens) * len(t.lrs) * t.seeds for t in self.tasks)

    # ---- what the sweep ran with, for its MLflow run --------------------------------------------
    def as_dict(self) -> dict:
        """Every field as plain data, as resolved: `extends` merged, the model preset's dims
        written out, `${VAR}` taken, paths absolute. A spec built from several files logs what
        it ran with, not just its top file."""
        import json

        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples -> lists, for YAML

    def key_settings(self) -> dict[str, str]:
        """The settings that tell two sweeps apart, as MLflow params (the runs table's columns)."""
        settings = self._series_settings() if self.series else self._pretraining_settings()
        settings.update({"pretrain.tokens": self.published_tokens()[-1],
                         "evaluation.comet_model": self.evaluation.comet_model,
                         "fit.target_tokens": self.fit.target_tokens})
        for task in self.tasks:
            settings[f"task.{task.name}"] = (
                f"{task.data}; D_f {', '.join(map(str, task.finetune_tokens))}; lrs "
                f"{', '.join(f'{lr:g}' for lr in task.lrs)}; {task.seeds} seeds; {task.steps} "
                f"steps; {task.test_examples} test sentences")
        return {name: str(value) for name, value in settings.items()}

    def _pretraining_settings(self) -> dict:
        model, pre = self.model, self.pretrain
        return {
            "model": f"{model.preset or 'custom'} ({model.family}): d_model {model.d_model}, d_ff "
                     f"{model.d_ff}, {model.layers()} layers"
                     + (f", {model.feed_forward}" if model.family == "seq2seq" else ""),
            "tokenizer": {"unigram": f"unigram, {self.tokenizer.vocab_size} pieces",
                          "hub": f"hub {self.tokenizer.hub_id}",
                          "saved": f"saved {self.tokenizer.path}"}.get(self.tokenizer.kind,
                                                                       self.tokenizer.kind),
            "pretrain.batch": f"{pre.batch_size} x {pre.seq_len} tokens",
            "pretrain.optimizer": f"{pre.optimizer}, lr {pre.lr:g}, ZeRO-{pre.zero_stage}, "
                                  f"{pre.precision}, {pre.workers} workers",
        }

    def _series_settings(self) -> dict:
        where = f"hub {self.series.hub}" if self.series.hub else f"folder {self.series.folder}"
        return {"model": f"series: {where}, {len(self.series.points())} checkpoints",
                "tokenizer": "the series' own"}

    # ---- checks: each section checks its own fields; the rules across sections are here ----------
    def check(self) -> None:
        """Raise SpecError (one paragraph naming the field) if this spec cannot be run. Data-
        dependent checks (files, sizes, memory) are raysweep.preflight's, after these."""
        fields = Fields(self.source_file or "<spec>")
        if not self.name.replace("-", "").replace("_", "").isalnum():
            fields.fail("name", "must use only letters, digits, '-' and '_'", self.name)
        for name in ("storage", "tracking_uri"):
            location = getattr(self, name) or ""
            if re.match(r"^\w[\w+.-]*://[^/@]*@", location):
                # A spec is committed, copied into MLflow and shown in logs: no secrets in it.
                fields.fail(name, "must not hold credentials (user:password@ in the URI); give "
                            "them by environment variable instead: AWS_ACCESS_KEY_ID/"
                            "AWS_SECRET_ACCESS_KEY or an instance role for S3, "
                            "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD for MLflow",
                            re.sub(r"//[^/@]*@", "//***@", location))
        if is_remote(self.storage) and not self.tracking_uri:
            fields.fail("tracking_uri", f"must be set when storage is a bucket ({self.storage}): "
                        f"the default SQLite file lives in a local storage folder. Point it at an "
                        f"MLflow server, e.g. ${{MLFLOW_TRACKING_URI}} (cluster.yaml runs one on "
                        f"the head)", None)
        if self.series:
            self._check_series(fields)
        else:
            for section in ("model", "tokenizer", "pretrain"):
                getattr(self, section).check(fields.at(section))
        for section in ("synthetic", "evaluation", "fit", "resources"):
            getattr(self, section).check(fields.at(section))
        self._check_saved_tokenizer(fields.at("tokenizer"))
        if not self.tasks:
            fields.fail("tasks", "must list at least one task", [])
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            fields.fail("tasks", "must have distinct task names", names)
        for i, task in enumerate(self.tasks):
            task.check(fields.at(f"tasks[{i}]"))
        if self.pretrain.precision == "bf16" and not self.resources.use_gpu:
            fields.fail("pretrain.precision", "can be bf16 only with resources.use_gpu: true (CPU "
                        "pretraining runs in fp32; use auto or fp32)", self.pretrain.precision)

    def _check_series(self, fields: Fields) -> None:
        """A series replaces pretraining: its checkpoints bring their architecture and tokenizer,
        so the sections that would describe them must be left out."""
        self.series.check(fields.at("series"))
        replaced = {"model": (self.model != ModelSpec(), "the series' own architecture is used"),
                    "tokenizer": (self.tokenizer != TokenizerSpec(), "the model's own tokenizer is used"),
                    "pretrain.checkpoints": (bool(self.pretrain.checkpoints or self.pretrain.tokens),
                                             "the series' checkpoints replace pretraining's; "
                                             "`pretrain` gives only the `mixture` they were "
                                             "trained on, for the alignment score")}
        for name, (given, why) in replaced.items():
            if given:
                fields.fail(name, f"must be left out with a series: {why}", "given")
        self.pretrain.check_mixture(fields.at("pretrain"))

    def _check_saved_tokenizer(self, fields: Fields) -> None:
        """A `kind: saved` tokenizer's folder exists and holds a saved tokenizer (it is loaded by
        raysweep.data.tokenizer); a sweep that holds its own copy already needs it no more."""
        tok = self.tokenizer
        if tok.kind != "saved":
            return
        wanted = ("Give a saved tokenizer folder, such as another sweep's "
                  "<storage>/<sweep>/tokenizer (saved when that sweep starts), relative to this "
                  "spec file's folder; nothing was written.")
        where = f"{fields.where}: field `{fields.prefix}path`"
        if is_remote(tok.path):
            raise SpecError(f"{where}: {tok.path!r} is a bucket URI, but a saved tokenizer is read "
                            f"from a local folder. Copy the folder to this machine, or train the "
                            f"same tokenizer in both sweeps with tokenizer.train_sources. {wanted}")
        if (self.root / "tokenizer" / "tokenizer_config.json").is_file():
            return  # the sweep holds its own copy already (a resumed run, status)
        folder = tok.saved_folder(self.base_dir)
        if not folder.is_dir():
            raise SpecError(f"{where}: {str(folder)!r} is not a folder. {wanted}")
        if not (folder / "tokenizer_config.json").is_file():
            raise SpecError(f"{where}: {str(folder)!r} holds no saved tokenizer (no "
                            f"tokenizer_config.json, which saving a tokenizer writes last). "
                            f"{wanted}")


