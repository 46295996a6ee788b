"""Law points from trial results: the best learning rate on dev, the mean over finetune seeds, and
a standard error combining the test set's noise with the seeds' (raysweep.laws.points); the answer
page built from the fitted laws (raysweep.answer)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from raysweep.laws.group import LawGroup
from raysweep.laws.points import best_lr_runs, law_points
from raysweep.plan import TrialKey, TrialResult


def result(d_p, lr, seed, bleu, bleu_se=0.5, dev_ce=2.0, d_f=4000):
    return TrialResult(TrialKey("en-de", d_p, d_f, lr, seed),
                       {"bleu": bleu, "bleu_se": bleu_se, "dev_cross_entropy": dev_ce,
                        "test_sentences": 200.0}, f"{d_p}-{lr}-{seed}")


def test_the_best_lr_is_chosen_on_the_mean_dev_score_of_its_seeds():
    results = [result(100, 0.001, 0, 10, dev_ce=2.0), result(100, 0.001, 1, 11, dev_ce=2.4),
               result(100, 0.003, 0, 30, dev_ce=2.1), result(100, 0.003, 1, 31, dev_ce=2.1)]
    (runs,) = best_lr_runs(results, "en-de", 4000, "dev_cross_entropy").values()
    assert {r.key.lr for r in runs} == {0.003}  # mean 2.1 beats mean 2.2, not the best seed
    assert [r.key.seed for r in runs] == [0, 1]


def test_a_point_is_the_mean_over_seeds_with_test_and_pooled_seed_noise():
    values = {100: (10.0, 12.0), 200: (14.0, 15.0), 0: (5.0, 5.5)}
    results = [result(d_p, 0.001, seed, v, bleu_se=0.4)
               for d_p, pair in values.items() for seed, v in enumerate(pair)]
    points, noise = law_points(results, "en-de", 4000, "bleu")
    # Pooled seed variance: sum of squared deviations (2 + 0.5 + 0.125) over 3 degrees of freedom.
    pooled = (2.0 + 0.5 + 0.125) / 3
    assert noise.seed_var == pytest.approx(pooled) and noise.seeds == 2
    assert noise.test_sentences == 200 and noise.test_var == pytest.approx(0.16)
    assert points[100]["y"] == 11.0 and points[0]["y"] == 5.25
    # The test-set part does not average away over seeds (same test set); the seed part does.
    assert points[100]["se"] == pytest.approx(math.sqrt(0.16 + pooled / 2))
    assert sorted(points) == [0, 100, 200]


def test_one_seed_leaves_the_seed_noise_unmeasured():
    results = [result(d_p, 0.001, 0, 10.0 + i) for i, d_p in enumerate((0, 100, 200))]
    points, noise = law_points(results, "en-de", 4000, "bleu")
    assert noise.seed_var is None and noise.seeds == 1
    assert all(p["se"] == pytest.approx(0.5) for p in points.values())


def test_paired_replicates_give_the_shared_test_noise_between_points():
    """Each point's test-set part is the spread of its seeds' mean replicate; two points'
    covariance is what their replicates share (here: a common sentence-difficulty draw)."""
    rng = np.random.default_rng(0)
    common = rng.standard_normal(1000)  # the resamples' shared luck
    results = []
    for d_p in (0, 100, 200):
        for seed in (0, 1):
            own = rng.standard_normal(1000)
            r = result(d_p, 0.001, seed, 10.0 + d_p / 100 + seed, bleu_se=0.9)
            r.replicates = {"bleu": list(r.metrics["bleu"] + 0.8 * common + 0.3 * own)}
            results.append(r)
    points, noise = law_points(results, "en-de", 4000, "bleu")
    cov = noise.test_cov
    assert set(cov) == {(float(a), float(b)) for a in (0, 100, 200) for b in (0, 100, 200)}
    # Mean of two seeds: shared part 0.8^2, own parts 0.3^2 / 2.
    assert cov[(100.0, 100.0)] == pytest.approx(0.64 + 0.045, rel=0.12)
    assert cov[(0.0, 200.0)] == pytest.approx(0.64, rel=0.12)
    assert points[100]["test_se"] == pytest.approx(math.sqrt(cov[(100.0, 100.0)]))
    assert points[100]["se"] == pytest.approx(math.sqrt(cov[(100.0, 100.0)]
                                                        + noise.seed_var / 2))
    assert noise.seed_var == pytest.approx(0.5)  # seeds 1.0 apart at every point
    # A run without replicates (an older sweep): no shared noise claimed, the logged errors used.
    results[-1].replicates = None
    points, noise = law_points(results, "en-de", 4000, "bleu")
    assert noise.test_cov is None and points[200]["test_se"] == pytest.approx(0.9)


def test_results_without_errors_give_points_with_unknown_errors():
    results = [result(100, 0.001, 0, 10.0), result(200, 0.001, 0, 12.0)]
    for r in results:
        del r.metrics["bleu_se"]
    points, _ = law_points(results, "en-de", 4000, "bleu")
    assert all(math.isnan(p["se"]) for p in points.values())


def test_the_answer_page_leads_with_the_verdict_gain_and_prediction():
    from raysweep.answer import answer_markdown, answer_table
    from raysweep.laws import LOG_LAW
    from raysweep.laws.analysis import analyse
    from raysweep.spec_loader import spec_from_dict

    spec = spec_from_dict({
        "name": "answer", "pretrain": {"mixture": [{"source": "synthetic:en", "weight": 0.5},
                                                   {"source": "synthetic:de", "weight": 0.5}],
                                       "checkpoints": [20000, 80000, 320000, 640000]},
        "tasks": [{"name": "en-de", "source_lang": "en", "target_lang": "de",
                   "data": "synthetic:en-de", "finetune_tokens": [4000]}],
        "fit": {"target_tokens": 1000000, "target_score": {"bleu": 14}}}, base_dir=".")
    d_p = np.array([20000, 80000, 320000, 640000])
    y = np.array([8.0, 10.1, 11.9, 12.8])
    a = analyse(LOG_LAW, d_p, y, 0.1, se=[0.2] * 4, baseline=5.0, baseline_se=0.2,
                predict_at=[1e6], target_y=14, resamples=50)
    groups = [LawGroup("en-de", 4000, "bleu", {0: {"y": 5.0, "se": 0.2}}, a)]
    page = answer_markdown(spec, groups, checkpoints_in=4)
    assert "**Yes: this pretraining data helps en-de.**" in page and "final" in page
    assert f"**{a.verdict}**" in page and "+7.8 [" in page  # the gain, with its interval
    assert a.reason in page
    # The second question, in every row and in the headline: the largest checkpoint as
    # measured, the prediction at the target, and what going on from one to the other gives.
    assert "| 12.8 ± 0.2 at 640k |" in page and "| at 1M (law) | more data, to 1M |" in page
    more = a.predictions[0]["more"]
    assert more["from"] == 640000 and more["low"] > 0  # a clear rise, by the law
    assert f"{more['value']:+.2f}"[:4] in page and "(by the law, from 1.6x the data)" in page
    assert "**More of it:** BLEU at 1M pretraining tokens against the largest checkpoint" in page
    assert "D_p needed" in page and ("for 14" in page or "not reached" in page)
    without_target = dataclasses.replace(spec, fit=dataclasses.replace(spec.fit, target_score={}))
    assert "D_p needed" not in answer_markdown(without_target, groups)
    assert "provisional: 2 of 4 checkpoints in" in answer_markdown(spec, groups, checkpoints_in=2)
    table = answer_table(spec, groups)
    assert "aligned" in table and a.reason in table
    # BLEU too noisy to tell, cross-entropy clear: the headline says both, not "nothing known".
    flat = analyse(LOG_LAW, d_p, np.array([8.0, 9.5, 8.7, 9.9]), 0.1, se=[3.0] * 4, baseline=8.0,
                   baseline_se=3.0, resamples=50)
    ce = analyse(LOG_LAW, d_p, 3.0 - 0.1 * np.log(d_p / 1e4), 0.1, se=[0.01] * 4,
                 increasing=False, baseline=3.2, baseline_se=0.01, resamples=50)
    assert (flat.verdict, ce.verdict) == ("inconclusive", "aligned"), (flat.reason, ce.reason)
    mixed = answer_markdown(spec, [dataclasses.replace(groups[0], analysis=flat),
                                   dataclasses.replace(groups[0], metric="cross_entropy",
                                                       analysis=ce)])
    assert "**Not enough evidence yet for en-de in BLEU:**" in mixed
    # Improvements read as improvements: cross-entropy's fall is a reduction, in nats; a change
    # whose interval holds zero is said to be nothing.
    assert "reduction 0.616 [" in mixed and "nats" in mixed  # its gain over none: -0.616
    assert "not distinguishable from nothing" in mixed
    assert "beyond their noise: cross-entropy at D_f = 4,000" in mixed


def test_changes_read_as_improvements_whichever_way_the_metric_runs():
    from raysweep.answer import change_text

    assert change_text("bleu", {"value": 2.1, "low": 1.2, "high": 3.0}) == "+2.1 [+1.2, +3.0]"
    assert (change_text("bleu", {"value": 0.9, "low": -1.4, "high": 3.7})
            == "+0.9 [-1.4, +3.7]: not distinguishable from nothing")
    assert (change_text("cross_entropy", {"value": -0.89, "low": -0.97, "high": -0.81})
            == "reduction 0.89 [0.81, 0.97] nats")
    assert (change_text("cross_entropy", {"value": 0.19, "low": 0.16, "high": 0.22})
            == "increase 0.190 [0.160, 0.220] nats (worse)")  # to the interval's precision
    assert (change_text("cross_entropy", {"value": 0.01, "low": -0.09, "high": 0.12})
            == "+0.01 [-0.09, +0.12] nats: not distinguishable from nothing")
