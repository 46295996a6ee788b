"""Every branch of the verdict (raysweep.laws.evidence.judge), each reached on evidence built by
hand, so that removing a branch fails its test: harm and wrong-way movement (misaligned), a law
that fails or does not predict (misaligned, unless the data clearly help), data that help but the
law does not describe (aligned, no effect or inconclusive, never misaligned), and the plain
aligned, no effect and inconclusive."""

from __future__ import annotations

import pytest

from raysweep.laws.evidence import (
    ALIGNED,
    INCONCLUSIVE,
    MISALIGNED,
    NO_EFFECT,
    Change,
    Evidence,
    judge,
    law_problem,
)

MISS = {"x": 4e9, "y": 20.0, "low": 21.0, "high": 23.0}


def evidence(trend=(5.0, 1.0), gain=(6.0, 1.0), tail=(2.0, 1.0), p_fit=0.5, steps=(),
             misses=(), min_effect=0.5) -> Evidence:
    """A rising metric (BLEU-like): each change as (value, standard error), better = positive."""
    return Evidence(sign=1.0, chi2=3.0, dof=3, p_fit=p_fit, scale=1.0, trend=Change(*trend),
                    gain=None if gain is None else Change(*gain), steps=list(steps),
                    backtest_misses=list(misses), min_effect=min_effect,
                    tail=None if tail is None else Change(*tail))


@pytest.mark.parametrize("case, expected, words", [
    ("worse than none", dict(gain=(-4.0, 1.0)), "worse than no pretraining"),
    ("wrong-way trend", dict(trend=(-5.0, 1.0)), "goes the wrong way"),
    ("wrong-way step", dict(steps=[{"from_x": 1e8, "to_x": 2e8, "change": -3.0, "se": 0.5}]),
     "non-monotonic"),
    ("law fails, no clear gain", dict(p_fit=1e-4, gain=(1.0, 1.0)), "the law fails"),
    ("law does not predict, no clear gain", dict(misses=[MISS], gain=(1.0, 1.0)),
     "the law does not predict"),
    ("law fails, no baseline", dict(p_fit=1e-4, gain=None), "the law fails"),
])
def test_each_misaligned_branch(case, expected, words):
    verdict, reason = judge(evidence(**expected))
    assert verdict == MISALIGNED and words in reason, (case, reason)


def test_a_metric_that_helps_and_keeps_improving_is_aligned_though_the_law_fails():
    verdict, reason = judge(evidence(p_fit=1e-4))
    assert verdict == ALIGNED, reason
    assert "pretraining helps" in reason and "the law fails" in reason
    assert "no prediction is read from it" in reason


def test_a_metric_that_helps_and_flattens_at_the_end_says_more_changes_nothing():
    # The demo's ROUGE-L at D_f = 4k: a clear gain, saturating near its ceiling, the log-law
    # missing the flat end; still improving across the whole range.
    verdict, reason = judge(evidence(p_fit=1e-4, tail=(0.05, 0.1)))
    assert verdict == ALIGNED and "flattens at the last checkpoints" in reason, reason
    # ... and with no measurable trend left across the whole range: no effect of more data.
    verdict, reason = judge(evidence(p_fit=1e-4, trend=(0.1, 0.1), tail=(0.05, 0.1)))
    assert verdict == NO_EFFECT and "the gain has saturated" in reason, reason
    assert "pretraining helps" in reason and "no prediction" in reason


def test_a_metric_that_helps_whose_future_the_noise_cannot_tell_is_inconclusive():
    verdict, reason = judge(evidence(misses=[MISS], trend=(1.0, 1.0), tail=(1.0, 2.0)))
    assert verdict == INCONCLUSIVE and "the noise cannot tell" in reason, reason
    assert "pretraining helps" in reason and "the law does not predict" in reason


def test_the_plain_verdicts():
    assert judge(evidence())[0] == ALIGNED
    verdict, reason = judge(evidence(trend=(0.0, 0.1), gain=(0.0, 0.1)))
    assert verdict == NO_EFFECT and "changes nothing measurable" in reason, reason
    verdict, reason = judge(evidence(trend=(1.0, 1.0), gain=(1.0, 1.0)))
    assert verdict == INCONCLUSIVE and "too large to tell" in reason, reason


def test_a_law_problem_is_named_only_where_there_is_one():
    assert law_problem(evidence()) is None
    assert law_problem(evidence(p_fit=None)) is None  # untested is not failed
    assert "fails" in law_problem(evidence(p_fit=1e-4))
    assert "does not predict" in law_problem(evidence(misses=[MISS]))
