"""Stop paying for losers: a candidate beaten with the policy's confidence on the study's
decision metric at every D_f stops pretraining (its finished work stays).

A candidate is beaten when the comparison's leader is better than it with probability at least
`confidence` (the pair's P(better), which counts the test-set noise they share): a pairwise test
against the leader, not P(best) below 1 - confidence, which would stop every candidate of a
many-way tie. The comparison is at the target; a candidate whose data may still help but follow
no law yet is read there at its best (raysweep.study.compare's trend at best): it can be beaten,
never lead. The comparisons are read again at every checkpoint, so a loser's chance of being
stopped by noise adds up over the looks; and a stopped candidate keeps its reading in the
study's final comparison, so a stop that later looks wrong shows as "no decision", not as a wrong
answer. bench/bench_study.py measures both. The decision is pure (`losers`, `decide_stops`);
raysweep.plan's `record_stop` and `stopped` keep what was decided in the study's folder, where
every part of the job reads it.
"""

from __future__ import annotations

from raysweep.plan import stopped
from raysweep.study.compare import Comparison, study_comparisons
from raysweep.text import tokens


def beaten(comparison: Comparison, confidence: float) -> tuple[str, dict[str, float]]:
    """(the leader, the candidates it beats with probability >= confidence -> that probability).
    The leader is the best-ranked candidate whose reading can be trusted. At a target beyond
    the checkpoints that is one whose law held its backtest: a curve that rises and then falls
    (the paper's fluctuating, misaligned BLEU) looks aligned on its first points, and its
    prediction stopped the eventual best (bench/bench_study.py); a candidate read at its best
    (compare.TREND_AT_BEST) is a bound, and bounds only those above it."""
    trusted = [row for row in comparison.ranking
               if comparison.basis == "measured" or row["law_checked"]]
    if not trusted:
        return "", {}
    leader = trusted[0]["name"]
    return leader, {p["worse"]: p["p_better"] for p in comparison.pairs
                    if p["better"] == leader and p["p_better"] >= confidence}


def losers(comparisons: list[Comparison], confidence: float, target: float,
           labels: list[str] | None = None) -> dict[str, str]:
    """Candidates beaten at `target` (D_p) in every comparison given (the decision metric at
    each D_f, named by `labels`, e.g. "D_f 4,000") -> why, in words: by whom, with what
    probability, where. A comparison that could not be made at the target (it fell back to the
    sizes measured: some candidate cannot be read there yet) stops no one: a candidate behind
    today may still lead at the target."""
    if not comparisons or any(c.at < target * (1 - 1e-9) for c in comparisons):
        return {}
    labels = labels or [""] * len(comparisons)
    each = [beaten(c, confidence) for c in comparisons]
    names = set.intersection(*(set(b) for _, b in each))
    return {name: "; ".join(f"{leader} is better with P {b[name]:.3f} "
                            f"({c.metric}{' at ' + label if label else ''}, at "
                            f"{tokens(c.at)} tokens, {c.basis})"
                            for c, (leader, b), label in zip(comparisons, each, labels))
            for name in sorted(names)}


def decide_stops(spec, groups) -> dict[str, tuple[str, int]]:
    """The candidates of a study (its spec and the fitter's laws) to stop now, by its `stop`
    policy: name -> (why, its last checkpoint's D_p). None before every candidate still training
    has `stop.after` checkpoints; the comparison is at fit.target_tokens."""
    policy = spec.stop
    if policy is None:
        return {}
    done = stopped(spec)
    live = [c.name for c in spec.candidates if c.name not in done]
    reached = {name: sorted({d for g in groups if g.candidate == name for d in g.points if d})
               for name in live}
    if len(live) < 2 or any(len(reached[name]) < policy.after for name in live):
        return {}
    mine = [g for g in groups if g.candidate in live and g.metric == policy.metric]
    found = study_comparisons(spec, mine, at=spec.fit.target_tokens)
    if len(found) < sum(len(task.finetune_tokens) for task in spec.tasks):
        return {}  # some D_f has no comparison yet: no candidate is beaten at every D_f
    labels = [f"D_f {d_f:,}" + (f" of {task}" if len(spec.tasks) > 1 else "")
              for task, d_f, _ in found]
    beaten_now = losers([c for _, _, c in found], policy.confidence, spec.fit.target_tokens,
                        labels)
    return {name: (why, reached[name][-1]) for name, why in beaten_now.items()}
