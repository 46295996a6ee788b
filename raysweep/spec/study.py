"""A study: candidate pretraining data compared in one job. `CandidateSpec` is one candidate (a
name, its mixture, optionally its own budget, or a series made elsewhere), `StopSpec` the optional
policy that stops pretraining a candidate once the leader beats it. Each checks its own fields;
what spans the study (two or more candidates, distinct names, budgets against the shared
schedule, the stop metric against fit.metrics) is SweepSpec.check's, which also derives each
candidate's own spec (SweepSpec.candidate_spec)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from raysweep.spec.errors import Fields
from raysweep.spec.pretraining import MixtureComponent, PretrainSpec, SeriesSpec
from raysweep.spec.tasks import METRICS

SAFE_NAME = re.compile(r"[A-Za-z0-9_-]+")
"""A candidate's name: it names a folder (`<storage>/<study>/candidates/<name>/`, local or in a
bucket) and an MLflow tag, so ASCII letters, digits, '-' and '_' only."""


@dataclass(frozen=True)
class CandidateSpec:
    """One candidate of a study: the pretraining data it is judged on. Everything else (model,
    tokenizer, schedule, tasks, grid, fit, resources) is the study's, shared by every candidate,
    so that the data is the only difference between them."""

    name: str
    """Letters, digits, '-' and '_': it names the candidate's folder and its runs' MLflow tag."""
    mixture: tuple[MixtureComponent, ...] = ()
    """This candidate's pretraining mixture (as `pretrain.mixture` in a sweep). With `series`, the
    mixture its checkpoints were trained on, for the alignment score."""
    tokens: int | None = None
    """Its own pretraining budget, at most the study's (`pretrain.tokens`); its checkpoints are
    the study's schedule up to it, and the budget itself. Default: the study's budget."""
    series: SeriesSpec | None = None
    """Checkpoints made elsewhere, finetuned in place of pretraining this candidate (as `series`
    in a sweep). A study's candidates are all pretrained or all series."""

    def check(self, fields: Fields) -> None:
        if not SAFE_NAME.fullmatch(self.name or ""):
            fields.fail("name", "must be one or more of the letters a-z and A-Z, digits, '-' and "
                        "'_' (no dots, slashes or spaces): it names the candidate's folder, "
                        "candidates/<name>/, and the MLflow tag of its runs", self.name)
        if not self.mixture:
            fields.fail("mixture", "must list at least one source with a weight: the data this "
                        "candidate is pretrained on (with `series`, the data its checkpoints were "
                        "trained on, for the alignment score)", [])
        PretrainSpec(mixture=self.mixture).check_mixture(fields)
        if self.series is None:
            if self.tokens is not None:
                fields.positive(self.tokens, "tokens")
            return
        if self.tokens is not None:
            fields.fail("tokens", "must be left out with a series: the series' own checkpoints "
                        "are the candidate's", self.tokens)
        self.series.check(fields.at("series"))


@dataclass(frozen=True)
class StopSpec:
    """Stop paying for losers: once every candidate has `after` checkpoints, a candidate that the
    leader beats on `metric` with probability `confidence` or more, at every finetune size, stops
    pretraining; its finished checkpoints and trials stay (raysweep.study.stopping decides)."""

    after: int = 3
    """Checkpoints every candidate must have before any candidate is stopped: no verdict from a
    law (or a comparison) on fewer points."""
    confidence: float = 0.95
    """Probability that the leader is better than a candidate needed to stop it: above 0.5 (a
    coin flip stops nothing), below 1 (certainty is never reached)."""
    metric: str = "bleu"
    """The study's decision metric: one of `fit.metrics`."""

    def check(self, fields: Fields) -> None:
        if self.after < 2:
            fields.fail("after", "must be at least 2: no candidate is stopped on a single "
                        "checkpoint", self.after)
        if not 0.5 < self.confidence < 1:
            fields.fail("confidence", "must be between 0.5 and 1 (both excluded): the "
                        "probability that the leader is better, needed to stop a candidate",
                        self.confidence)
        if self.metric not in METRICS:
            fields.fail("metric", f"must be one of {', '.join(METRICS)}", self.metric)
