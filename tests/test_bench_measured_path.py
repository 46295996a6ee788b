"""The measured-path benchmark (bench/bench_measured_path.py) runs and reports complete tables,
and law_points' seed_variance="net" only ever takes noise out of the seeds' spread."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from raysweep.laws.points import law_points

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    """The benchmark as a module (bench/ is no package), registered so its dataclasses resolve."""
    spec = importlib.util.spec_from_file_location("bench_measured_path",
                                                  ROOT / "bench" / "bench_measured_path.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_quick_run_reports_every_shape_with_shares_and_coverages(bench, capsys):
    summary = bench.main(["--quick", "--resamples", "20", "--workers", "1"])
    assert "coverage of the 90% intervals" in capsys.readouterr().out
    assert summary["studies"] == 20  # 5 shapes x 2 metrics x 2 noises, 2 seeds
    rows = [row for band in summary["matrix"].values() for row in band.values()]
    shapes = {shape for band in summary["matrix"].values() for shape in band} - {"all"}
    assert shapes == set(bench.EXPECTED)
    for row in rows:
        assert row["right"] + row["inconclusive"] + row["wrong"] == row["total"] > 0
        assert row["swapped"] <= row["wrong"]
    totals = [band["all"]["total"] for band in summary["matrix"].values() if "all" in band]
    assert sum(totals) == summary["studies"]
    quantities = {quantity for quantity, _, _ in summary["coverage"]}
    assert quantities == {"gain", "trend", "prediction"}
    for row in summary["coverage"].values():
        assert row["count"] + row["missing"] > 0
        assert math.isnan(row["coverage"]) or 0.0 <= row["coverage"] <= 1.0
    assert all(ratio > 0 for ratio in summary["errors"].values())


def _study(bench, seeds: int, rep: int = 0):
    return bench.Study("aligned", "rougeL", 0.05, seeds, 1000 + rep, 0.1, 6, 200, 0.3)


def test_net_seed_variance_is_never_larger_and_changes_nothing_with_one_seed(bench):
    for rep in range(3):
        results, *_ = bench.simulate_trials(_study(bench, 2, rep))
        double, noise_double = law_points(results, bench.TASK, bench.D_F, "rougeL")
        net, noise_net = law_points(results, bench.TASK, bench.D_F, "rougeL",
                                    seed_variance="net")
        assert 0.0 <= noise_net.seed_var < noise_double.seed_var
        assert all(net[d]["se"] <= double[d]["se"] for d in double)
        assert net[0]["y"] == double[0]["y"] and noise_net.test_cov == noise_double.test_cov
    results, *_ = bench.simulate_trials(_study(bench, 1))
    assert law_points(results, bench.TASK, bench.D_F, "rougeL", seed_variance="net") \
        == law_points(results, bench.TASK, bench.D_F, "rougeL")


def test_net_seed_variance_without_replicates_is_the_double_count(bench):
    results, *_ = bench.simulate_trials(_study(bench, 2))
    for r in results:
        r.replicates = None
    assert law_points(results, bench.TASK, bench.D_F, "rougeL", seed_variance="net") \
        == law_points(results, bench.TASK, bench.D_F, "rougeL")
    with pytest.raises(ValueError, match="seed_variance"):
        law_points(results, bench.TASK, bench.D_F, "rougeL", seed_variance="half")
