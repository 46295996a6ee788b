"""Uncertainty, backtest, diagnosis and verdict on data with known truth; the `raysweep fit` CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from raysweep.cli import main
from raysweep.laws import LOG_LAW, POWER_LAW
from raysweep.laws.analysis import ALIGNED, MISALIGNED, TOO_FEW, analyse, bootstrap

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
    assert bad.verdict == MISALIGNED and "non-monotonic" in bad.reason


@pytest.mark.parametrize("x, y, expected", [
    ([1e5, 1e6], [10, 12], TOO_FEW),                                  # fewer points than parameters
    ([1e5, 1e5, 1e5, 1e5], [10, 11, 12, 13], TOO_FEW),                # duplicate x only
    ([1e5, 1e6, 1e7, 0, -1], [10, 12, 14, 9, 8], None),               # non-positive x dropped
    ([1e5, 1e6, 1e7, 1e8], [10, math.nan, math.inf, 14], TOO_FEW),    # NaN / inf dropped
    ([1e5, 1e6, 1e7, 1e8], [0, -3, 12, 14], TOO_FEW),                 # non-positive y dropped
])
def test_bad_points_never_crash(x, y, expected):
    a = analyse(LOG_LAW, x, y, 0.1, resamples=20)
    if expected:
        assert a.verdict == expected and not a.params
    else:
        assert a.dropped == 2 and a.num_points == 3


def test_constant_metric_is_reported_not_fitted():
    a = analyse(LOG_LAW, D[:5], [7.0] * 5, 0.1, resamples=20)
    assert a.verdict == MISALIGNED and "does not change" in a.reason and not a.params


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


def test_fit_cli_text(tmp_path, capsys):
    path = _write_csv(tmp_path / "points.csv", D, power_law(D))
    assert main(["fit", "--csv", str(path), "--x", "d_p", "--y", "bleu", "--law", "power_law",
                 "--resamples", "50"]) == 0
    out = capsys.readouterr().out
    assert "power_law fitted to 8 points" in out and "90% interval" in out
    assert out.strip().splitlines()[-1].startswith("verdict: aligned")


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


def test_the_law_table_flags_a_prediction_outside_its_own_interval():
    from raysweep.sweep import laws_table

    fit = {"task": "en-de", "d_f": 4000, "metric": "bleu", "law": "log_law", "num_points": 6,
           "params": {"A": 1.2}, "verdict": "misaligned", "reason": "the law fails",
           "predictions": [{"x": 1e6, "value": 1.3e49, "low": 0.0, "high": 1.4e36}]}
    assert "unreliable" in laws_table([fit])
    fit["predictions"] = [{"x": 1e6, "value": 30.0, "low": 28.0, "high": 33.0}]
    assert "unreliable" not in laws_table([fit])
