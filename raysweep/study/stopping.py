"""Stop paying for losers: a candidate beaten with the policy's confidence on the study's
decision metric at every D_f stops pretraining (its finished work stays).

A candidate is beaten when the comparison's leader is better than it with probability at least
`confidence` (the pair's P(better), which counts the test-set noise they share): a pairwise test
against the leader, not P(best) below 1 - confidence, which would stop every candidate of a
many-way tie. The comparisons are read again at every checkpoint, so a loser's chance of being
stopped by noise adds up over the looks; bench/bench_study.py measures what that costs.
Pure Python: the study driver acts on what `losers` returns.
"""

from __future__ import annotations

from raysweep.study.compare import Comparison
from raysweep.text import tokens


def beaten(comparison: Comparison, confidence: float) -> dict[str, float]:
    """The candidates the leader beats with probability >= confidence -> that probability. At a
    target beyond the checkpoints, only a leader whose law held its backtest beats anyone: a
    curve that rises and then falls (the paper's fluctuating, misaligned BLEU) looks aligned on
    its first points, and its prediction stopped the eventual best (bench/bench_study.py)."""
    leader = comparison.ranking[0]
    if comparison.basis == "predicted" and not leader["law_checked"]:
        return {}
    return {p["worse"]: p["p_better"] for p in comparison.pairs
            if p["better"] == leader["name"] and p["p_better"] >= confidence}


def losers(comparisons: list[Comparison], confidence: float, target: float) -> dict[str, str]:
    """Candidates beaten at `target` (D_p) in every comparison given (the decision metric at
    each D_f) -> why, in words: by whom, with what probability, where. A comparison that could
    not be made at the target (it fell back to the sizes measured: some candidate cannot be read
    there yet) stops no one: a candidate behind today may still lead at the target."""
    if not comparisons or any(c.at < target * (1 - 1e-9) for c in comparisons):
        return {}
    each = [beaten(c, confidence) for c in comparisons]
    names = set.intersection(*(set(b) for b in each))
    return {name: "; ".join(f"{c.ranking[0]['name']} is better with P {b[name]:.3f} "
                            f"({c.metric} at {tokens(c.at)} tokens, {c.basis})"
                            for c, b in zip(comparisons, each))
            for name in sorted(names)}
