"""Extrapolation accuracy (raysweep.laws.holdout, `raysweep fit --holdout-last K`,
bench/bench_extrapolation.py): fit on all but the K largest D, predict the held-out points."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from raysweep.cli import main
from raysweep.laws import LOG_LAW
from raysweep.laws.analysis import ALIGNED, MISALIGNED
from raysweep.laws.holdout import NO_PREDICTION, _row, holdout, summarise

ROOT = Path(__file__).resolve().parents[1]
D = np.logspace(5, 9, 8)
FALLING = ([1e8, 2e8, 4e8, 8e8, 1.6e9, 3.2e9, 6.4e9], [30, 28.5, 27, 25.4, 24.1, 22.5, 21])
DEMO_STORE = ROOT / "runs" / "demo" / "mlflow.db"


def log_law(d, a=2.0, alpha=0.5, beta=1.5):
    return np.log(a * np.asarray(d) ** alpha) ** beta


def write_csv(path: Path, x, y, se=None) -> Path:
    rows = [f"{a},{b}" + ("" if se is None else f",{s}")
            for a, b, s in zip(x, y, se if se is not None else x)]
    path.write_text("d_p,bleu" + ("" if se is None else ",se") + "\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("last", [1, 2])
def test_exact_log_law_data_is_predicted_closely_and_held(last):
    y = log_law(D)
    h = holdout(LOG_LAW, D, y, last, 0.1, se=0.01 * y, resamples=150)
    assert h.verdict == ALIGNED and h.law_holds and h.fitted_on == D.size - last
    assert [r.x for r in h.held_out] == pytest.approx(D[-last:])
    for r in h.held_out:
        assert abs(r.relative_error) < 1e-3 and r.held and r.predictive_held
        assert r.low <= r.predicted <= r.high and r.se == pytest.approx(0.01 * r.y)
        assert r.predictive_low <= r.low and r.predictive_high >= r.high
    s = summarise([h])
    assert s["points"] == last and s["held"] == s["held_of"] == last
    assert s["median_abs_relative_error"] < 1e-3


def test_the_predictive_interval_widens_each_side_by_the_points_own_error():
    z = 1.6448536269514722  # 90%
    prediction = {"value": 10.0, "low": 9.0, "high": 12.0, "extrapolation": 1.5}
    row = _row(12.5, 12.5, 1.0, prediction, z)
    assert row.held is False and row.predictive_held is True
    assert row.predictive_high == pytest.approx(10 + math.hypot(2.0, z * 1.0))
    assert row.predictive_low == pytest.approx(10 - math.hypot(1.0, z * 1.0))
    assert row.relative_error == pytest.approx(-2.5 / 12.5)
    assert _row(12.5, 12.5, math.nan, prediction, z).predictive_held is None  # se unknown


def test_a_falling_table_gives_no_prediction_and_says_why(tmp_path, capsys):
    h = holdout(LOG_LAW, *FALLING, 2, 0.1, resamples=100)
    assert h.verdict == MISALIGNED and h.law_holds is False and not h.predicted
    assert h.note.startswith(NO_PREDICTION) and "wrong way" in h.note
    assert all(r.predicted is None and r.relative_error is None for r in h.held_out)
    path = write_csv(tmp_path / "falling.csv", *FALLING)
    assert main(["fit", "--csv", str(path), "--x", "d_p", "--y", "bleu", "--holdout-last", "2",
                 "--resamples", "100"]) == 0
    out = capsys.readouterr().out
    assert out.count(NO_PREDICTION) >= 3  # the reason, then each held-out point
    assert "goes the wrong way" in out and "no prediction in 1 of 1 law(s)" in out


@pytest.mark.parametrize("last, expected", [
    ("6", "holding out 6 of 8 points leaves 2 to fit"),
    ("0", "holding out 0 points holds out nothing"),
])
def test_a_holdout_that_leaves_too_few_points_is_refused(tmp_path, capsys, last, expected):
    path = write_csv(tmp_path / "points.csv", D, log_law(D))
    assert main(["fit", "--csv", str(path), "--x", "d_p", "--y", "bleu",
                 "--holdout-last", last]) == 2
    err = capsys.readouterr().err
    assert "--holdout-last" in err and expected in err and "K from 1 to 5" in err
    assert "Traceback" not in err and err.count("\n") == 1  # one paragraph


def test_holdout_json_is_a_list_of_laws(tmp_path, capsys):
    y = log_law(D)
    path = write_csv(tmp_path / "points.csv", D, y, 0.01 * y)
    assert main(["fit", "--csv", str(path), "--x", "d_p", "--y", "bleu", "--se", "se",
                 "--holdout-last", "2", "--resamples", "100", "--json"]) == 0
    (law,) = json.loads(capsys.readouterr().out)
    assert law["x"] == "d_p" and law["y"] == "bleu" and law["law"] == "log_law"
    assert law["last"] == 2 and law["fitted_on"] == 6 and law["predicted"] is True
    assert law["verdict"] == ALIGNED and law["law_holds"] is True and law["note"] == ""
    assert [p["x"] for p in law["held_out"]] == pytest.approx(D[-2:])
    for point in law["held_out"]:
        assert {"y", "se", "predicted", "low", "high", "relative_error", "held",
                "predictive_low", "predictive_high", "predictive_held",
                "extrapolation"} <= set(point)
        assert point["held"] is True and abs(point["relative_error"]) < 1e-3


def test_the_text_table_shows_each_held_out_point_and_a_summary(tmp_path, capsys):
    y = log_law(D)
    path = write_csv(tmp_path / "points.csv", D, y, 0.01 * y)
    assert main(["fit", "--csv", str(path), "--x", "d_p", "--y", "bleu", "--se", "se",
                 "--holdout-last", "1", "--resamples", "100"]) == 0
    out = capsys.readouterr().out
    assert "held-out d_p" in out and "rel. error" in out and "1e+09" in out
    assert out.strip().splitlines()[-1].startswith("summary: median |relative error|")
    assert "interval held 1 of 1 (100%)" in out


def test_a_sweep_with_too_few_checkpoints_to_hold_out_is_refused(finished_sweep, capsys):
    """The shared tiny sweep (3 checkpoints) read from MLflow: one held out would leave two."""
    from conftest import error_paragraph

    spec = finished_sweep[0]
    assert main(["fit", str(spec.source_file), "--holdout-last", "1"]) == 2
    err = error_paragraph(capsys.readouterr().err)
    assert f"sweep {spec.name!r} has at most 3 checkpoints per law" in err
    assert "--holdout-last 1" in err


needs_demo = pytest.mark.skipif(not DEMO_STORE.exists(),
                                reason="no demo sweep here (make it: raysweep run jobs/demo.yaml)")


@needs_demo
def test_a_sweep_holdout_refits_every_law_from_mlflow(capsys):
    assert main(["fit", str(ROOT / "jobs/demo.yaml"), "--holdout-last", "4"]) == 2
    assert "leaves 2 to fit" in capsys.readouterr().err
    assert main(["fit", str(ROOT / "jobs/demo.yaml"), "--holdout-last", "1", "--resamples", "20",
                 "--json"]) == 0
    laws = json.loads(capsys.readouterr().out)
    assert {law["metric"] for law in laws} >= {"bleu", "cross_entropy"}
    fitted = [law for law in laws if "skipped" not in law]
    assert fitted and all(law["last"] == 1 and len(law["held_out"]) == 1 for law in fitted)


@needs_demo
def test_the_extrapolation_benchmark_runs_on_the_demo_store():
    done = subprocess.run([sys.executable, "bench/bench_extrapolation.py", "--specs",
                           "jobs/demo.yaml", "--resamples", "20"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "== demo (jobs/demo.yaml)" in done.stdout and "all aligned laws" in done.stdout
    assert "at most 0.061 for BLEU" in done.stdout
