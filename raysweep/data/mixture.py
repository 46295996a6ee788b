"""Pretraining mixtures: language shares, the paper's alignment score, per-batch source choice."""

from __future__ import annotations

import random
from collections import Counter

from raysweep.spec import MixtureComponent, SweepSpec, TaskSpec


def component_language(component: MixtureComponent) -> str | None:
    if component.language:
        return component.language
    kind, _, rest = component.source.partition(":")
    return rest if kind == "synthetic" else None


def language_shares(mixture: tuple[MixtureComponent, ...]) -> dict[str, float]:
    shares: dict[str, float] = {}
    for component in mixture:
        language = component_language(component) or "unknown"
        shares[language] = shares.get(language, 0.0) + component.weight
    return shares


UNKNOWN_ALIGNMENT = "unknown (give each source its language)"
"""What is shown for the alignment score of a mixture with a source of unknown language."""


def alignment_score(mixture: tuple[MixtureComponent, ...], task: TaskSpec) -> float | None:
    """Isik et al.'s translation alignment score A(D, T(src, dest)) = Ps*Pd + 0.7*Ps + 0.8*Pd.

    1.0 for a 50/50 mixture of the two task languages; 0 when neither is in the mixture. None
    when a source's language is not known (a `file:` or `hf:` source without `language`): its
    share could be either task language, and a 0 would read as "misaligned by design"."""
    if any(component_language(c) is None for c in mixture):
        return None
    shares = language_shares(mixture)
    p_src, p_dest = shares.get(task.source_lang, 0.0), shares.get(task.target_lang, 0.0)
    return p_src * p_dest + 0.7 * p_src + 0.8 * p_dest


def alignment_text(mixture: tuple[MixtureComponent, ...], task: TaskSpec) -> str:
    """The score as the plan and the answer show it: `0.70`, or UNKNOWN_ALIGNMENT."""
    score = alignment_score(mixture, task)
    return UNKNOWN_ALIGNMENT if score is None else f"{score:.2f}"


def mixture_params(spec: SweepSpec) -> dict[str, str | float]:
    """The mixture and its alignment score with every task (the paper's predictor of whether a
    law will hold), as MLflow params."""
    scores = {task.name: alignment_score(spec.pretrain.mixture, task) for task in spec.tasks}
    return {"mixture": mixture_text(spec.pretrain.mixture),
            **{f"alignment.{name}": UNKNOWN_ALIGNMENT if score is None else round(score, 4)
               for name, score in scores.items()}}


def batch_source(spec: SweepSpec, step: int) -> int:
    """Index of the mixture component that batch `step` is drawn from.

    A pure function of (seed, step): every worker draws the same source for the same step (the
    paper mixes per batch), and a restarted run draws the same sequence again."""
    weights = [c.weight for c in spec.pretrain.mixture]
    return random.Random(f"raysweep-mixture-{spec.seed}-{step}").choices(range(len(weights)),
                                                                         weights)[0]


def mixture_text(mixture: tuple[MixtureComponent, ...]) -> str:
    """`synthetic:en x 0.5, synthetic:de x 0.5`: a mixture as the plan and MLflow show it."""
    return ", ".join(f"{c.source} x {c.weight:g}" for c in mixture)


def mixture_manifest(spec: SweepSpec) -> dict:
    """What every published checkpoint's manifest says of the data it was trained on: the
    mixture, and its alignment score for each task."""
    mixture = spec.pretrain.mixture
    return {"mixture": [{"source": c.source, "weight": c.weight} for c in mixture],
            "alignment": {t.name: alignment_score(mixture, t) for t in spec.tasks}}


def total_steps(spec: SweepSpec) -> int:
    """Steps to reach the last scheduled checkpoint."""
    return spec.pretrain.published_tokens()[-1] // spec.pretrain.tokens_per_step()


def steps_by_source(spec: SweepSpec, steps: int) -> list[int]:
    """How many of steps 1..`steps` each mixture component supplies."""
    counts = Counter(batch_source(spec, step) for step in range(1, steps + 1))
    return [counts[i] for i in range(len(spec.pretrain.mixture))]


def tokens_by_source(spec: SweepSpec, steps: int) -> dict[str, int]:
    """Tokens seen per mixture source after `steps` steps (recorded in each manifest)."""
    per_step = spec.pretrain.tokens_per_step()
    counts = steps_by_source(spec, steps)
    seen: dict[str, int] = {}
    for component, count in zip(spec.pretrain.mixture, counts):
        seen[component.source] = seen.get(component.source, 0) + count * per_step
    return seen
