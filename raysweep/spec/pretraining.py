"""What is pretrained on and how: `SyntheticSpec` (the synthetic language family behind every
`synthetic:` source), `MixtureComponent` and `PretrainSpec` (the mixture, the D_p schedule and the
optimiser); or, in place of pretraining, `SeriesSpec` of `SeriesCheckpoint`s made elsewhere. Each
checks its own fields."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from raysweep.spec.errors import Fields


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
            fields.fail("checkpoints", "or `series.steps` (one of the two) must list the "
                        "checkpoints",
                        {"checkpoints": len(self.checkpoints), "steps": list(self.steps)})
        if self.steps:
            if self.tokens_per_step is None or self.tokens_per_step <= 0:
                fields.fail("tokens_per_step", "must be a positive number of tokens with "
                            "series.steps (D_p = step x tokens_per_step)", self.tokens_per_step)
            if "{step}" not in self.name:
                fields.fail("name", "must hold {step}, where each step's number goes", self.name)
            _increasing(fields, "steps", list(self.steps))
        if self.attach and self.hub:
            fields.fail("attach", "is for a folder series (a trainer writing into "
                        "`series.folder`); hub revisions are all there already", self.attach)
        fields.positive(self.settle_seconds, "settle_seconds")
        where = "revision" if self.hub else "folder"
        for i, point in enumerate(self.checkpoints):
            if getattr(point, where) is None:
                fields.fail(f"checkpoints[{i}].{where}", f"must say which {where} holds the "
                            f"checkpoint (this is a {'hub' if self.hub else 'folder'} series)",
                            None)
        for i, point in enumerate(self.checkpoints):
            # A tokens file fills it in a local folder series (spec_loader).
            if point.tokens is None:
                fields.fail(f"checkpoints[{i}].tokens", "must be given: only a local folder "
                            "series that is not followed while written (attach) reads it from a "
                            "tokens file", None)
        _increasing(fields, "checkpoints[].tokens", [p.tokens for p in self.checkpoints])


def _increasing(fields: Fields, name: str, values: list[int]) -> None:
    if any(v <= 0 for v in values) or any(b <= a for a, b in zip(values, values[1:])):
        fields.fail(name, "must be positive and strictly increasing (each checkpoint has seen more "
                          "pretraining than the one before)", values)
