"""What is measured: `TaskSpec` (a downstream translation task, finetuned from every checkpoint),
`EvaluationSpec` (decoding and COMET), and `FitSpec` (the scaling-law fits over `METRICS`). Each
checks its own fields."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from raysweep.spec.errors import Fields


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
    """Steps between dev cross-entropy checks during finetuning; 0 = none (the paper's fixed
    steps)."""
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
    """GPU share of each node's shared COMET scorer actor (raysweep/evaluation/scorer.py); 0 scores
    on CPU."""
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
                    fields.fail(f"{option}.{metric}", f"must be one of {', '.join(METRICS)}",
                                metric)
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
