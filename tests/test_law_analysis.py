"""Uncertainty, backtest, diagnosis and verdict on data with known truth; the `raysweep fit` CLI."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from raysweep.cli import main
from raysweep.laws import LOG_LAW, POWER_LAW
from raysweep.laws.analysis import (
    ALIGNED,
    INCONCLUSIVE,
    MISALIGNED,
    NO_EFFECT,
    Noise,
    analyse,
)
from raysweep.laws.intervals import bootstrap

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_laws import coverage_study  # noqa: E402

D = np.logspace(5, 9, 8)


def log_law(d, a=2.0, alpha=0.5, beta=1.5):
    return np.log(a * d ** alpha) ** beta


def power_law(d, e=2.0, a=50.0, alpha=0.3):
    return e + a / d ** alpha


def test_bootstrap_intervals_cover_the_truth_at_about_their_level():
    # 40 noisy data sets (2% multiplicative noise) from one log-law; the 90% interval of the
    # prediction at 10x the largest D must contain the truth in roughly 90% of them.
    # Tolerance: 75%..100% (binomial sd at n=40 is ~5%; percentile bootstraps on 8 points are
    # known to under-cover a little). bench/bench_laws.py measures it over more seeds.
    truth = log_law(D[-1] * 10)
    covered = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        y = log_law(D) * (1 + 0.02 * rng.standard_normal(D.size))
        boot = bootstrap(LOG_LAW, D, y, 0.1, resamples=100, at=[D[-1] * 10], seed=seed)
        low, high = boot.predictions[D[-1] * 10]
        covered += low <= truth <= high
    assert 0.75 <= covered / 40 <= 1.0


def test_aligned_data_gets_an_aligned_verdict_and_a_good_backtest():
    # 0.5% noise: extrapolating 4 points over 2 decades is sensitive to noise (at 1% noise the
    # median backtest error is ~5%, its 90th percentile ~11%: bench/bench_laws.py-style check).
    rng = np.random.default_rng(3)
    y = log_law(D) * (1 + 0.005 * rng.standard_normal(D.size))
    a = analyse(LOG_LAW, D, y, 0.1, predict_at=[1e10], target_y=float(log_law(3e9)), resamples=200)
    assert a.verdict == ALIGNED, a.reason
    assert a.backtest["fitted_on"] == 4 and len(a.backtest["held_out"]) == 4
    assert a.backtest["max_relative_error"] < 0.1
    (p,) = a.predictions
    assert p["low"] <= p["value"] <= p["high"]
    assert abs(p["value"] - log_law(1e10)) / log_law(1e10) < 0.05
    assert a.required_x == pytest.approx(3e9, rel=0.3)


def test_a_significant_drop_is_called_misaligned():
    y = log_law(D).copy()
    y[5] *= 0.6  # BLEU falls by 40% at one checkpoint, far beyond the noise
    a = analyse(LOG_LAW, D, y, 0.1, resamples=50)
    assert a.verdict == MISALIGNED


def test_falling_cross_entropy_is_monotone_rising_is_not():
    rng = np.random.default_rng(4)
    ce = power_law(D) * (1 + 0.002 * rng.standard_normal(D.size))
    assert analyse(POWER_LAW, D, ce, 1e-3, resamples=50).verdict == ALIGNED
    rising = ce.copy()
    rising[4:] += 1.0
    bad = analyse(POWER_LAW, D, rising, 1e-3, resamples=50)
    assert bad.verdict == MISALIGNED and "wrong way" in bad.reason


@pytest.mark.parametrize("x, y, expected", [
    ([1e5, 1e6], [10, 12], INCONCLUSIVE),                                  # fewer than 3 points
    ([1e5, 1e5, 1e5, 1e5], [10, 11, 12, 13], INCONCLUSIVE),                # duplicate x only
    ([1e5, 1e6, 1e7, 0, -1], [10, 12, 14, 9, 8], None),                    # non-positive x dropped
    ([1e5, 1e6, 1e7, 1e8], [10, math.nan, math.inf, 14], INCONCLUSIVE),    # NaN / inf dropped
    ([1e5, 1e6, 1e7, 1e8], [0, -3, 12, 14], INCONCLUSIVE),                 # non-positive y dropped
])
def test_bad_points_never_crash(x, y, expected):
    a = analyse(LOG_LAW, x, y, 0.1, resamples=20)
    if expected:
        assert a.verdict == expected and "too few points" in a.reason and not a.params
    else:
        assert a.dropped == 2 and a.num_points == 3


def test_a_metric_whose_every_value_is_identical_has_no_effect():
    a = analyse(LOG_LAW, D[:5], [7.0] * 5, 0.1, se=[0.0] * 5, baseline=7.0, baseline_se=0.0,
                resamples=20)
    assert a.verdict == NO_EFFECT, a.reason
    assert a.gain["value"] == 0 and a.trend["value"] == pytest.approx(0, abs=1e-9)


def test_unreachable_target_says_so():
    a = analyse(LOG_LAW, D, log_law(D), 0.1, target_y=1e6, resamples=20)
    assert a.required_x is None


def test_shuffled_input_gives_the_same_analysis():
    rng = np.random.default_rng(5)
    y = log_law(D) * (1 + 0.01 * rng.standard_normal(D.size))
    order = rng.permutation(D.size)
    a = analyse(LOG_LAW, D, y, 0.1, predict_at=[1e10], resamples=100)
    b = analyse(LOG_LAW, D[order], y[order], 0.1, predict_at=[1e10], resamples=100)
    assert a.params == b.params and a.intervals == b.intervals and a.predictions == b.predictions


def _write_csv(path, x, y):
    path.write_text("d_p,bleu\n" + "".join(f"{a},{b}\n" for a, b in zip(x, y)))
    return path


def test_fit_cli_json(tmp_path, capsys):
    path = _write_csv(tmp_path / "points.csv", D, log_law(D))
    assert main(["fit", "--csv", str(path), "--x", "d_p", "--y", "bleu", "--law", "log_law",
                 "--predict-at", "1e10", "--resamples", "50", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == ALIGNED and set(out["params"]) == {"A", "alpha", "beta"}
    assert set(out["intervals"]) == {"A", "alpha", "beta"} and out["backtest"]["fitted_on"] == 4
    assert out["predictions"][0]["x"] == 1e10


FALLING_TABLE = ([1e8, 2e8, 4e8, 8e8, 1.6e9, 3.2e9, 6.4e9], [30, 28.5, 27, 25.4, 24.1, 22.5, 21])


def test_a_bare_table_that_falls_reads_misaligned_with_no_parameters_or_prediction(
        tmp_path, capsys):
    """BLEU copied from a paper, no errors given, falling smoothly from 30 to 21: the noise is
    estimated without the law (which, held to rise, cannot follow a fall), so the fall reads as
    what it is, and the flat fit the law runs to is not shown as its parameters."""
    path = _write_csv(tmp_path / "falling.csv", *FALLING_TABLE)
    assert main(["fit", "--csv", str(path), "--x", "d_p", "--y", "bleu", "--law", "log_law",
                 "--predict-at", "1e10", "--resamples", "50", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == MISALIGNED and "goes the wrong way" in out["reason"]
    assert out["trend"]["high"] < -5  # a fall of about 9 BLEU, measured well clear of zero
    assert out["params"] == {} and out["predictions"] == [] and out["law_holds"] is False
    assert "cannot follow the points" in out["params_note"]


def test_a_dip_and_a_rise_then_fall_in_bare_tables_read_misaligned():
    x = np.array(FALLING_TABLE[0])
    rise_then_fall = 25 + 6 * np.sin(np.pi * np.log(x / x[0]) / np.log(x[-1] / x[0]))
    assert analyse(LOG_LAW, x, rise_then_fall, 0.1, resamples=30).verdict == MISALIGNED
    dip = log_law(D).copy()
    dip[5] *= 0.6
    assert analyse(LOG_LAW, D, dip, 0.1, resamples=30).verdict == MISALIGNED


def test_fit_cli_text(tmp_path, capsys):
    path = _write_csv(tmp_path / "points.csv", D, power_law(D))
    assert main(["fit", "--csv", str(path), "--x", "d_p", "--y", "bleu", "--law", "power_law",
                 "--resamples", "50"]) == 0
    out = capsys.readouterr().out
    assert "power_law fitted to 8 points" in out and "90% interval" in out
    assert out.strip().splitlines()[0].startswith("verdict: aligned")  # the answer first


@pytest.mark.parametrize("content, args, expected", [
    (None, ["--x", "d_p", "--y", "bleu"], "CSV file not found"),
    ("d_p,bleu\n1,2\n", ["--x", "tokens", "--y", "bleu"], "no column 'tokens'"),
    ("d_p,bleu\n1,abc\n", ["--x", "d_p", "--y", "bleu"], "line 2: column 'bleu' holds 'abc'"),
    ("d_p,bleu\n1,2\n", ["--x", "d_p", "--y", "bleu", "--law", "cubic"], "not a known law"),
])
def test_fit_cli_bad_input(tmp_path, capsys, content, args, expected):
    path = tmp_path / "p.csv"
    if content is not None:
        path.write_text(content)
    assert main(["fit", "--csv", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------------
# Verdicts read against the measured noise (issue 16): points with their standard errors and a
# no-pretraining baseline, as a sweep gives them.

DP = np.logspace(np.log10(2e4), np.log10(6.4e5), 6)  # the demo's checkpoints


def rising_bleu(d):
    """A concave rise from ~8 to ~12 BLEU over the demo's range (the log-law's regime)."""
    return log_law(d, a=2.0, alpha=0.5, beta=1.2) - 3.0


def noisy(values, relative, seed):
    return values * (1 + relative * np.random.default_rng(seed).standard_normal(np.size(values)))


def test_a_log_law_with_1_percent_noise_over_three_decades_is_aligned_from_a_csv(tmp_path, capsys):
    # The case: the fixed 10% backtest threshold called this misaligned, while the
    # prediction at 10x was within 1% of the truth.
    d = np.logspace(5, 8, 8)
    y = noisy(log_law(d), 0.01, 7)
    path = tmp_path / "points.csv"
    path.write_text("d_p,bleu,se\n" + "".join(f"{a},{b},{0.01 * b}\n" for a, b in zip(d, y)))
    assert main(["fit", "--csv", str(path), "--x", "d_p", "--y", "bleu", "--se", "se",
                 "--predict-at", "1e9", "--resamples", "200", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == ALIGNED, out["reason"]
    (p,) = out["predictions"]
    assert p["low"] <= p["value"] <= p["high"] and p["extrapolation"] == pytest.approx(10)
    assert abs(p["value"] / log_law(1e9) - 1) < 0.05  # coverage: the test below


def test_aligned_points_with_measured_errors_report_the_gain_over_no_pretraining():
    y = noisy(rising_bleu(DP), 0.02, 1)
    a = analyse(LOG_LAW, DP, y, 0.1, se=0.02 * y, baseline=6.0, baseline_se=0.15,
                predict_at=[1e6], resamples=100)
    assert a.verdict == ALIGNED, a.reason
    assert a.gain["low"] > 0 and a.gain["value"] == pytest.approx(y[-1] - 6.0)
    (p,) = a.predictions
    assert p["low"] <= p["value"] <= p["high"] and p["low"] > 0  # nothing clipped to 0
    assert [pt["se"] for pt in a.points] == pytest.approx(0.02 * y)  # the errors it was judged with


def test_a_rising_metric_is_never_fitted_with_a_falling_curve_or_a_pole():
    # Noisy, nearly flat BLEU: the paper's parameterisation found beta < 0 fits running into a
    # pole just past the data (predictions of 1e20). The directed law keeps every prediction
    # finite and its interval around it.
    y = np.array([3.1, 2.6, 4.4, 3.0, 4.9, 3.3])
    a = analyse(LOG_LAW, DP, y, 0.1, se=[0.5] * 6, predict_at=[1e6, 1e8], band_at=DP,
                resamples=100)
    assert all(b["value"] <= b2["value"] + 1e-9 for b, b2 in zip(a.band, a.band[1:]))
    for p in a.predictions:
        assert math.isfinite(p["value"]) and p["value"] < 20 and p["low"] <= p["value"] <= p["high"]


def test_pretraining_that_leaves_the_metric_worse_than_none_is_misaligned():
    # The real-text case: cross-entropy after pretraining worse than without, at every
    # checkpoint, while the points themselves fall along a power law.
    ce = power_law(DP, e=7.2, a=30.0, alpha=0.5)
    a = analyse(POWER_LAW, DP, ce, 1e-3, se=[0.01] * 6, baseline=7.2, baseline_se=0.01,
                resamples=50)
    assert a.verdict == MISALIGNED and "worse than no pretraining" in a.reason, a.reason


def test_a_flat_metric_at_the_baseline_has_no_effect():
    y = noisy(np.full(6, 20.0), 0.002, 0)
    a = analyse(LOG_LAW, DP, y, 0.1, se=0.002 * y, baseline=20.0, baseline_se=0.04, resamples=50)
    assert a.verdict == NO_EFFECT, a.reason


def test_noise_larger_than_the_effect_is_inconclusive_and_says_what_would_resolve_it():
    y = noisy(rising_bleu(DP), 0.15, 2)
    noise = Noise(test_sentences=100, seeds=1, test_var=float(np.mean((0.15 * y) ** 2)))
    a = analyse(LOG_LAW, DP, y, 0.1, se=0.15 * y, baseline=8.0, baseline_se=1.2, noise=noise,
                resamples=50)
    assert a.verdict == INCONCLUSIVE, a.reason
    needed = int(a.reason.split("about ")[1].split(" test sentences")[0].replace(",", ""))
    assert needed > 100 and "seeds >= 2" in a.reason


def test_a_verdict_before_every_checkpoint_is_in_is_provisional():
    y = noisy(rising_bleu(DP), 0.01, 4)
    a = analyse(LOG_LAW, DP[:4], y[:4], 0.1, se=0.01 * y[:4], expected_points=6, resamples=50)
    assert a.provisional and a.reason.startswith("provisional (4 of 6 checkpoints)")
    assert not analyse(LOG_LAW, DP, y, 0.1, se=0.01 * y, expected_points=6,
                       resamples=50).provisional
    # A checkpoint that arrived with a value the law cannot take (a BLEU of 0) is in, not missing.
    zero_first = np.concatenate([[0.0], y[1:]])
    a = analyse(LOG_LAW, DP, zero_first, 0.1, se=0.01 * y, expected_points=6, resamples=50)
    assert a.dropped == 1 and not a.provisional, a.reason


def test_intervals_from_measured_errors_cover_the_truth_at_about_their_level():
    # The parametric bootstrap draws from each point's own error: over 40 noisy studies the 90%
    # interval of the prediction at 10x the largest D_p holds the truth about 90% of the time.
    # A study whose law fails its own tests (a false alarm at this noise) gives no prediction at
    # all: coverage is over the predictions a reader gets, and few may be missing.
    truth = float(log_law(D[-1] * 10))
    covered, widths = 0, []
    for seed in range(30):
        y = noisy(log_law(D), 0.02, 100 + seed)
        a = analyse(LOG_LAW, D, y, 0.1, se=0.02 * y, predict_at=[D[-1] * 10], resamples=60,
                    seed=seed)
        if not a.predictions:
            assert a.law_holds is False
            continue
        covered += a.predictions[0]["low"] <= truth <= a.predictions[0]["high"]
        widths.append((a.predictions[0]["high"] - a.predictions[0]["low"]) / truth)
    assert len(widths) >= 26
    assert 0.7 <= covered / len(widths) <= 1.0  # binomial sd at n = 30 is ~5.5%
    # ... and not by being wide: 2% noise per point, 10x past the data, the median 90% interval
    # spans under a fifth of the truth (measured: a tenth).
    assert float(np.median(widths)) < 0.2


def shared_noise_study(truth, shared_sd: float, own_sd: float, seed: int):
    """Points scored on one test set: a common draw (the test set's luck, the same for every
    checkpoint and the baseline) plus each point's own noise; and the Noise that says so."""
    rng = np.random.default_rng(seed)
    common = shared_sd * rng.standard_normal()
    y = truth + common + own_sd * rng.standard_normal(truth.size)
    baseline = float(truth[0]) - 2.0 + common + own_sd * rng.standard_normal()
    keys = [0.0, *map(float, DP)]
    cov = {(a, b): shared_sd ** 2 + (own_sd ** 2 if a == b else 0.0) for a in keys for b in keys}
    se = math.hypot(shared_sd, own_sd)
    return y, baseline, se, Noise(test_sentences=100, seeds=2, test_var=se ** 2, seed_var=0.0,
                                  test_cov=cov)


def test_noise_shared_by_every_checkpoint_cancels_in_the_trend_and_the_gain():
    """One test set scores every checkpoint: its luck moves all points together. Judged as
    independent errors, a real rise of ~4 BLEU under 1.5 BLEU of test-set noise per point is
    inconclusive; with the shared part measured (paired replicates), it is aligned, and the gain
    over no pretraining is as precise as the points' own noise allows."""
    y, baseline, se, noise = shared_noise_study(rising_bleu(DP), 1.5, 0.15, seed=5)
    independent = analyse(LOG_LAW, DP, y, 0.1, se=[se] * 6, baseline=baseline, baseline_se=se,
                          resamples=100)
    paired = analyse(LOG_LAW, DP, y, 0.1, se=[se] * 6, baseline=baseline, baseline_se=se,
                     noise=noise, resamples=100)
    assert independent.verdict == INCONCLUSIVE, independent.reason
    assert paired.verdict == ALIGNED, paired.reason
    assert "shared between checkpoints measured" in paired.noise_source
    assert paired.gain["se"] < 0.3 < independent.gain["se"]
    assert paired.trend["se"] < independent.trend["se"] / 3


def test_with_shared_noise_measured_the_trend_and_gain_z_are_calibrated():
    """Over 4,000 studies of a metric that does not move, under the same shared noise: the trend's
    and the gain's z-scores, from the measured covariance, have standard deviation 1 (so the 1%
    thresholds mean 1%); judged as independent errors they would be far below 1 (every real
    change of that size missed)."""
    from raysweep.laws import evidence

    keys = [0.0, *map(float, DP)]
    z_trend, z_gain, z_naive = [], [], []
    for seed in range(4000):
        y, baseline, se, noise = shared_noise_study(np.full(6, 10.0), 1.5, 0.15, seed)
        cov = np.array([[noise.test_cov[(a, b)] for b in keys[1:]] for a in keys[1:]])
        z_trend.append(evidence.trend_change(DP, y, [se] * 6, 1.0, 1.0, cov=cov).z)
        z_naive.append(evidence.trend_change(DP, y, [se] * 6, 1.0, 1.0).z)
        z_gain.append(evidence.gain_over_baseline(y[-1], se, baseline + 2.0, se, 1.0,
                                                  noise.test_cov[(0.0, float(DP[-1]))]).z)
    assert 0.93 < np.std(z_trend) < 1.07 and 0.93 < np.std(z_gain) < 1.07
    assert np.std(z_naive) < 0.2


# Realistic noise (issue 20): sweeps measure their points with 5-30% relative error, not 0.1-1%.
# The parametric bootstrap draws from each point's measured error (log_sigma), as analyse does;
# bench/bench_laws.py's coverage_study, which prints the same figures over more studies.

@pytest.mark.parametrize("noise", [0.05, 0.15, 0.30])
def test_at_realistic_noise_prediction_intervals_hold_the_truth_near_their_level(noise):
    """90% intervals of the prediction at the largest checkpoint, over 30 studies per noise level
    (60 resamples each, for time; a sweep uses 200).
    Two-sided: below 75% they are too narrow to trust, at 100% of 30 studies (a 4% chance for a
    true 90% interval) too wide to be of use. Measured with 100 resamples (bench/bench_laws.py's
    coverage_study): 86% and 86.5% of 200 studies at 5% and 15% noise, 90% of 40 at 30%, a
    percentile bootstrap's known under-coverage on 8 points, said in the README."""
    coverage, width = coverage_study(noise, studies=30, resamples=60)
    assert 0.75 <= coverage["prediction"] < 1.0, (coverage, width)
    # The interval is as wide as the noise says: about 2 x 1.645 x the prediction's own error
    # (~0.8 x the per-point noise, for 8 points pooled by the law), never far off it.
    assert 1.5 * noise < width["prediction"] < 5.0 * noise, width


def test_at_low_noise_the_log_laws_parameters_are_recovered():
    """Where they are identifiable (1% noise over 4 decades), the 90% intervals of A, alpha and
    beta hold the true values in most studies. At 30% noise A and beta are not identifiable
    (their intervals held the truth in 17% of studies, bench/bench_laws.py), so not asserted."""
    coverage, width = coverage_study(0.01, studies=30, resamples=60)
    for name in ("A", "alpha", "beta"):
        assert 0.65 <= coverage[name] < 1.0, (name, coverage, width)



def test_a_figure_keeps_one_earlier_fit_per_smaller_number_of_checkpoints():
    """The online fitter refits a law after every result: its figure's faint earlier fits are
    the last fit made with each smaller number of checkpoints, not every refit's."""
    from raysweep.law_tables import earlier_fits

    rng = np.random.default_rng(5)
    y = log_law(D) * (1 + 0.01 * rng.standard_normal(D.size))
    history, replaced, last_at = [], None, {}
    for n in (3, 3, 4, 4, 4, 5, 5, 6, 6, 6):  # several results per number of checkpoints
        noisy = y[:n] * (1 + 0.002 * rng.standard_normal(n))  # a new seed moves the points
        analysis = analyse(LOG_LAW, D[:n], noisy, 0.1, band_at=[1e10], resamples=10)
        if replaced is not None:
            history = earlier_fits(history, replaced, analysis.num_points)
        replaced = last_at[n] = analysis
    assert [h[0] for h in history] == [3, 4, 5]
    for n, xs, values in history:  # each the last fit with that many checkpoints
        assert xs == [1e10] and values == [b["value"] for b in last_at[n].band]
