"""The comparison of candidate pretraining data (raysweep.study.compare): who is best at the
common size or the target, how sure, and what the shared test set does to a difference."""

from __future__ import annotations

import numpy as np
import pytest

from raysweep.figures.law import save_figure
from raysweep.laws import LOG_LAW
from raysweep.laws.group import LawGroup
from raysweep.study.compare import TREND_AT_BEST, Candidate, compare, describe_comparison
from raysweep.study.figures import alignment_figure, study_figure
from raysweep.study.stopping import losers
from raysweep.study.tables import table_candidates

D_P = [1e8, 2e8, 4e8, 8e8, 1.6e9]


def measured(name: str, values, se=0.3, replicates=None) -> Candidate:
    points = {d: {"y": v, "se": se, "test_se": se} for d, v in zip(D_P, values)}
    return Candidate(name, points, replicates=replicates)


def test_a_clear_lead_is_named_best_at_the_largest_common_size():
    a = measured("en-de", [20, 21, 22, 23, 24])
    b = measured("fr-ro", [20, 20.2, 20.1, 20.3, 20.2])
    c = compare([b, a], "bleu", increasing=True)
    assert c.best == "en-de" and c.basis == "measured" and c.at == 1.6e9
    assert c.p_best["en-de"] > 0.99
    assert c.ranking[0]["name"] == "en-de"
    (pair,) = c.pairs
    assert pair["better"] == "en-de" and pair["difference"] == pytest.approx(3.8)
    assert pair["se"] == pytest.approx(np.sqrt(2) * 0.3)
    assert "best: en-de, P(best) 1.00" in describe_comparison(c)


def test_lower_is_better_for_cross_entropy():
    a = measured("en-de", [3.0, 2.9, 2.8, 2.7, 2.6], se=0.01)
    b = measured("fr-ro", [3.0, 3.0, 3.0, 3.0, 3.0], se=0.01)
    assert compare([b, a], "cross_entropy", increasing=False).best == "en-de"


def test_a_lead_within_the_noise_is_no_decision_with_what_would_resolve_it():
    a = measured("en-de", [20, 21, 22, 23, 24.3])
    b = measured("en-fr", [20, 21, 22, 23, 24.0])
    c = compare([a, b], "bleu", increasing=True)
    assert c.best is None
    assert 0.5 < c.p_best["en-de"] < 0.95
    assert c.decision.startswith("no decision yet")
    assert "must shrink" in c.decision and "en-de leads en-fr by 0.3" in c.decision


def test_shared_test_set_noise_cancels_in_a_difference():
    """Two candidates scored on the same sentences: their replicates move together, so a gap of
    0.5 that independent errors of 0.3 each cannot tell is certain once the shared part cancels."""
    rng = np.random.default_rng(0)
    shared = rng.standard_normal(1000) * 0.3  # the test set's luck, the same for both
    own = [rng.standard_normal(1000) * 0.03 for _ in range(2)]
    reps = [{d: base + shared + noise for d in D_P}
            for base, noise in zip((24.5, 24.0), own)]
    a = measured("en-de", [20, 21, 22, 23, 24.5], replicates=reps[0])
    b = measured("en-fr", [20, 21, 22, 23, 24.0], replicates=reps[1])
    independent = compare([measured("en-de", [20, 21, 22, 23, 24.5]),
                           measured("en-fr", [20, 21, 22, 23, 24.0])], "bleu", increasing=True)
    paired = compare([a, b], "bleu", increasing=True)
    assert independent.best is None
    assert paired.best == "en-de" and paired.pairs[0]["se"] < 0.1


def test_equal_candidates_share_the_probability_of_being_best():
    same = [measured(name, [20, 21, 22, 23, 24]) for name in ("a", "b", "c", "d")]
    c = compare(same, "bleu", increasing=True)
    assert c.best is None
    assert all(p == pytest.approx(0.25, abs=0.02) for p in c.p_best.values())


def test_candidates_tied_without_noise_share_the_probability_and_none_is_best():
    """A metric every candidate scores 0 on (a tiny model's ROUGE-L): no one is best."""
    zero = [measured(name, [0, 0, 0, 0, 0], se=0.0) for name in ("en-de", "fr-ro")]
    c = compare(zero, "rougeL", increasing=True)
    assert c.best is None and c.p_best == {"en-de": 0.5, "fr-ro": 0.5}


def test_a_target_beyond_the_checkpoints_is_read_from_the_laws_when_they_hold():
    x = np.array(D_P)
    strong = 8 * (x / 1e6) ** 0.12  # log-law-like rises, exact
    weak = 8 * (x / 1e6) ** 0.10
    columns = {"strong": (x, strong, [0.05] * 5), "weak": (x, weak, [0.05] * 5)}
    candidates = table_candidates(columns, LOG_LAW, 0.1, increasing=True, at=1e10,
                                  resamples=200)
    c = compare(candidates, "bleu", increasing=True, at=1e10)
    assert c.basis == "predicted" and c.at == 1e10 and not c.note
    assert c.best == "strong"
    assert c.ranking[0]["value"] == pytest.approx(8 * (1e4) ** 0.12, rel=0.02)


def test_at_a_target_data_that_do_not_help_are_read_by_their_last_value():
    """A rising law overtakes, at the target, data that lead today but do not help."""
    x = np.array(D_P)
    rising = 8 * (x / 1e6) ** 0.14  # 22.5 at 1.6B, 29.0 at 10B
    falling = np.array([30, 28.5, 27, 25.4, 24.1])  # misaligned: the law cannot follow it
    candidates = table_candidates({"rising": (x, rising, [0.05] * 5),
                                   "falling": (x, falling, [0.05] * 5)}, LOG_LAW, 0.1,
                                  increasing=True, at=1e10, resamples=200)
    c = compare(candidates, "bleu", increasing=True, at=1e10)
    assert c.basis == "predicted" and c.at == 1e10
    read = {row["name"]: row for row in c.ranking}
    assert read["falling"]["value"] == 24.1 and "misaligned" in read["falling"]["read"]
    assert read["rising"]["read"] == "its law"
    assert c.best == "rising" and read["rising"]["value"] == pytest.approx(29.0, rel=0.02)
    assert compare(candidates, "bleu", increasing=True).best == "falling"  # at 1.6B
    assert "(its value at 1.6B (misaligned: more gives nothing))" in describe_comparison(c)


def test_a_target_where_a_candidate_cannot_be_read_falls_back_to_the_common_size():
    x = np.array(D_P)
    rising = 8 * (x / 1e6) ** 0.12
    candidates = table_candidates({"rising": (x, rising, [0.05] * 5),
                                   "short": (x[:2], rising[:2] + 1, [0.05] * 2)}, LOG_LAW, 0.1,
                                  increasing=True, at=1e10, resamples=200)
    c = compare(candidates, "bleu", increasing=True, at=1e10)
    assert c.basis == "measured" and c.at == 2e8
    assert "not at the target 10B: nothing to read there for short" in c.note
    assert c.best == "short"


def test_candidates_without_a_common_size_are_refused():
    a = Candidate("a", {1e8: {"y": 1.0, "se": 0.1}})
    b = Candidate("b", {2e8: {"y": 1.0, "se": 0.1}})
    with pytest.raises(ValueError, match="no pretrained checkpoint"):
        compare([a, b], "bleu", increasing=True)
    with pytest.raises(ValueError, match="two candidates"):
        compare([a], "bleu", increasing=True)


def test_the_decision_is_calibrated_on_simulated_pairs():
    """Over many simulated pairs whose true gap is 4 standard errors of the difference, the
    better one is named at least 95% of the time and the worse never; with no true gap, a
    decision is made at most as often as the confidence allows (two sides: 10% at 0.95)."""
    rng = np.random.default_rng(1)
    se, trials = 0.3, 400
    right = wrong = decided_without_gap = 0
    for _ in range(trials):
        gap = 4 * se * np.sqrt(2)
        a = measured("a", [20, 21, 22, 23, 24 + gap + rng.normal(0, se)], se=se)
        b = measured("b", [20, 21, 22, 23, 24 + rng.normal(0, se)], se=se)
        best = compare([a, b], "bleu", increasing=True).best
        right, wrong = right + (best == "a"), wrong + (best == "b")
        a0 = measured("a", [20, 21, 22, 23, 24 + rng.normal(0, se)], se=se)
        decided_without_gap += compare([a0, b], "bleu", increasing=True).best is not None
    assert right / trials >= 0.95 and wrong == 0
    assert decided_without_gap / trials <= 0.14


TABLE = """candidate,dp,bleu
en-de,1e8,20.1
en-de,2e8,21.0
en-de,4e8,22.1
en-de,8e8,22.9
en-de,1.6e9,24.0
en-fr,1e8,19.0
en-fr,2e8,19.8
en-fr,4e8,20.3
en-fr,8e8,21.1
en-fr,1.6e9,21.6
"""


def test_raysweep_compare_prints_the_decision_and_json_names_best_and_p_best(tmp_path, capsys):
    import json

    from raysweep.cli import main

    path = tmp_path / "points.csv"
    path.write_text(TABLE)
    args = ["compare", "--csv", str(path), "--by", "candidate", "--x", "dp", "--y", "bleu",
            "--baseline", "15", "--baseline-se", "0.3", "--resamples", "200"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.startswith("decision: best: en-de, P(best) 1.00 at 1.6B tokens (measured)")
    assert "en-de - en-fr: +2.4" in text and "== en-fr" in text
    assert main([*args, "--at", "1e10", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["best"] == "en-de" and set(answer["p_best"]) == {"en-de", "en-fr"}
    assert answer["comparison"]["basis"] == "predicted" and answer["comparison"]["at"] == 1e10
    assert answer["candidates"]["en-fr"]["verdict"] == "aligned"


@pytest.mark.parametrize("by, table, message", [
    ("group", TABLE, "no column 'group'; the columns are ['candidate', 'dp', 'bleu']"),
    ("candidate", "candidate,dp,bleu\na,1e8,20\na,2e8,21\na,4e8,22\n",
     "column 'candidate' names 1 candidate(s) (a); a comparison needs two or more"),
    ("candidate", TABLE.replace("en-fr,4e8,20.3", "en-fr,4e8,n/a"),
     "line 9: column 'bleu' holds 'n/a', expected a number"),
])
def test_raysweep_compare_refuses_a_bad_table_in_one_paragraph(tmp_path, capsys, by, table,
                                                                  message):
    from conftest import error_paragraph

    from raysweep.cli import main

    path = tmp_path / "points.csv"
    path.write_text(table)
    assert main(["compare", "--csv", str(path), "--by", by, "--x", "dp", "--y", "bleu"]) == 2
    err = error_paragraph(capsys.readouterr().err)
    assert message in err and str(path) in err


def test_a_loser_stops_only_when_beaten_at_the_target_in_every_comparison():
    a = measured("en-de", [20, 21, 22, 23, 24])
    b = measured("fr-ro", [20, 20.2, 20.1, 20.3, 20.2])
    c = measured("en-fr", [20, 21, 22, 23, 23.9])
    clear = compare([a, b, c], "bleu", increasing=True)
    stopped = losers([clear], 0.95, target=1.6e9)
    assert list(stopped) == ["fr-ro"]  # en-fr is within the noise of the leader: it goes on
    assert "en-de is better with P 1.000 (bleu, at 1.6B tokens, measured)" in stopped["fr-ro"]
    # Beaten at one D_f only: it goes on.
    even = compare([measured("en-de", [20, 21, 22, 23, 24]),
                    measured("fr-ro", [20, 21, 22, 23, 24.1])], "bleu", increasing=True)
    assert losers([clear, even], 0.95, target=1.6e9) == {}
    # A comparison short of the target (the target lies beyond what all can be read at) stops
    # no one: a candidate behind today may lead there.
    assert losers([clear], 0.95, target=1e10) == {}


def test_at_a_target_only_a_leader_whose_law_held_its_backtest_stops_others():
    x = np.array([*D_P, 3.2e9])
    strong, weak = 8 * (x / 1e6) ** 0.14, 8 * (x / 1e6) ** 0.10
    checked = compare(table_candidates({"strong": (x, strong, [0.05] * 6),
                                        "weak": (x, weak, [0.05] * 6)}, LOG_LAW, 0.1,
                                       increasing=True, at=1e10, resamples=200),
                      "bleu", increasing=True, at=1e10)
    assert checked.basis == "predicted" and checked.ranking[0]["law_checked"]
    assert list(losers([checked], 0.95, target=1e10)) == ["weak"]
    # Three points: the law is fitted and predicts, but nothing was held out to check it.
    unchecked = compare(table_candidates({"strong": (x[:3], strong[:3], [0.05] * 3),
                                          "weak": (x[:3], weak[:3], [0.05] * 3)}, LOG_LAW, 0.1,
                                         increasing=True, at=1e10, resamples=200),
                        "bleu", increasing=True, at=1e10)
    assert unchecked.basis == "predicted" and not unchecked.ranking[0]["law_checked"]
    assert losers([unchecked], 0.95, target=1e10) == {}


def test_the_study_figure_overlays_the_candidates_with_each_decision_in_its_title(tmp_path):
    x = np.array(D_P)
    columns = {"strong": (x, 8 * (x / 1e6) ** 0.14, [0.05] * 5),
               "weak": (x, 8 * (x / 1e6) ** 0.10, [0.05] * 5)}
    candidates = table_candidates(columns, LOG_LAW, 0.1, increasing=True, at=1e10,
                                  baseline=7.0, baseline_se=0.1, resamples=100)
    groups = [LawGroup("en-de", 4000, "bleu", {0: {"y": 7.0, "se": 0.1}, **c.points}, c.analysis,
                       candidate=c.name) for c in candidates]
    decision = compare(candidates, "bleu", increasing=True, at=1e10)
    fig = study_figure("en-de", 4000, groups, ["strong", "weak"], {"bleu": decision})
    (ax,) = [a for a in fig.axes if a.get_visible() and a.axison]
    assert ax.get_title().startswith("bleu: best: strong, P(best) 1.00")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "no pretraining (shared)" in labels
    assert any(label.startswith("strong: ") for label in labels)
    assert any(label.startswith("weak: ") for label in labels)
    save_figure(tmp_path / "study.png", fig)
    assert (tmp_path / "study.png").stat().st_size > 10_000


def test_the_alignment_figure_puts_each_candidates_gain_at_its_alignment_score(tmp_path):
    """The paper's figure: gain over no pretraining (±1 SE) against the alignment score, each
    candidate named; one whose score is unknown is left out, and the figure says so."""

    x = np.array(D_P)
    columns = {"en-de": (x, 8 * (x / 1e6) ** 0.14, [0.05] * 5),
               "en-fr": (x, 8 * (x / 1e6) ** 0.05, [0.05] * 5),
               "mystery": (x, 8 * (x / 1e6) ** 0.10, [0.05] * 5)}
    candidates = table_candidates(columns, LOG_LAW, 0.1, increasing=True, baseline=7.0,
                                  baseline_se=0.1, resamples=50)
    groups = [LawGroup("en-de", 4000, "bleu", {0: {"y": 7.0, "se": 0.1}, **c.points}, c.analysis,
                       candidate=c.name) for c in candidates]
    fig = alignment_figure("en-de", groups, {"en-de": 1.0, "en-fr": 0.35, "mystery": None})
    (ax,) = [a for a in fig.axes if a.get_visible() and a.axison]
    shown = {t.get_text(): t.xy for t in ax.texts}
    assert set(shown) == {"en-de", "en-fr"}  # named where they are; "mystery" left out
    for c in candidates[:2]:
        assert shown[c.name] == pytest.approx(
            ({"en-de": 1.0, "en-fr": 0.35}[c.name], c.analysis.gain["value"]))
    assert shown["en-de"][1] > shown["en-fr"][1] > 0
    notes = " ".join(t.get_text() for t in fig.texts)
    assert "Left out (a source's language is not known): mystery." in notes
    save_figure(tmp_path / "alignment.png", fig)
    assert (tmp_path / "alignment.png").stat().st_size > 10_000


def test_a_candidate_that_follows_no_law_yet_is_read_at_its_best_can_lose_but_never_win():
    """Its law fails and its verdict is inconclusive: at the target it is read by the straight
    line through its points in log D_p at the optimistic end of the slope's interval. A checked
    law well above that bound beats it (and may stop it); above the others, it is no decision."""

    x = np.array([*D_P, 3.2e9])
    strong = 8 * (x / 1e6) ** 0.14  # 29.0 at 10B
    jump = np.array([20, 20.1, 20, 20.1, 21.5])  # a rise, but no law follows it yet
    for offset, beaten in ((0.0, True), (10.0, False)):
        candidates = table_candidates(
            {"strong": (x, strong, [0.05] * 6), "jump": (D_P, jump + offset, [0.3] * 5)},
            LOG_LAW, 0.1, increasing=True, at=1e10, baseline=19.5 + offset, baseline_se=0.3,
            resamples=200)
        assert candidates[1].analysis.verdict == "inconclusive"
        assert not candidates[1].analysis.predictions  # its law fails: nothing to extrapolate
        c = compare(candidates, "bleu", increasing=True, at=1e10)
        read = {row["name"]: row for row in c.ranking}
        assert c.basis == "predicted" and read["jump"]["read"] == TREND_AT_BEST
        # At its best: above its last point (the trend rises), continued to 10B.
        assert read["jump"]["value"] > 21.5 + offset
        if beaten:
            assert c.best == "strong" and list(losers([c], 0.95, target=1e10)) == ["jump"]
        else:
            assert c.ranking[0]["name"] == "jump" and c.best is None
            assert "jump may lead, but it follows no law yet" in c.decision
            assert losers([c], 0.95, target=1e10) == {}
