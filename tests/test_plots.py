"""The scaling-curve figures: error bars, axes set by the data (not by a wild extrapolation),
the verdict in the title, the reason in full, and PNGs that save.

Set RAYSWEEP_PLOTS_CHECK=/some/dir to keep the rendered PNGs there for a look."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402

from raysweep import plots  # noqa: E402
from raysweep.laws import DEFAULT_HUBER_DELTA, LOG_LAW  # noqa: E402
from raysweep.laws.analysis import Analysis, analyse  # noqa: E402
from raysweep.laws.group import LawGroup  # noqa: E402

TARGET = 1e8
BASELINE, BASELINE_SE = 9.0, 0.4
WILD = 1e20

try:  # the bootstrap's many small fits run ~10x slower when BLAS threads fight over few cores
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - an optional speed-up only
    def threadpool_limits(limits=None):
        return contextlib.nullcontext()


def _synthetic(seed: int = 1, scale: float = 1.0):
    """6 log-spaced checkpoints of a rising, log-law-like BLEU with 3% noise."""
    x = np.logspace(math.log10(2e4), math.log10(6.4e5), 6)
    rng = np.random.default_rng(seed)
    y = scale * (10 + 3 * np.log(x / 1e4)) * (1 + 0.03 * rng.standard_normal(x.size))
    se = 0.03 * y
    points = {0: BASELINE * scale, **{int(round(d)): float(v) for d, v in zip(x, y)}}
    return x, y, se, points


def _analyse(points: dict, se, expected_points=None, baseline=BASELINE) -> Analysis:
    x = [d for d in points if d > 0]
    with threadpool_limits(1):
        return analyse(LOG_LAW, x, [points[d] for d in x], DEFAULT_HUBER_DELTA["bleu"], se=se,
                       baseline=baseline, baseline_se=BASELINE_SE, predict_at=[TARGET],
                       band_at=plots.band_points(points, TARGET), resamples=50,
                       expected_points=expected_points)


@pytest.fixture(scope="module")
def fitted():
    _, _, se, points = _synthetic()
    return points, se, _analyse(points, se, expected_points=8)


@pytest.fixture(scope="module")
def wild(fitted):
    """The same fit, but its band and prediction run off to 1e20 beyond the checkpoints, and an
    earlier fit that jumps to 1e20 (and to inf, nan) halfway."""
    points, se, analysis = fitted
    # Beyond the largest checkpoint the band grows geometrically, to 1e20 at the target.
    reach = math.log(max(b["extrapolation"] for b in analysis.band))

    def runaway(b):
        grown = b["value"] * (WILD / b["value"]) ** (math.log(b["extrapolation"]) / reach)
        return dict(b, value=grown, high=2 * grown)

    band = [runaway(b) if b["extrapolation"] > 1 else b for b in analysis.band]
    predictions = [dict(p, value=WILD, low=1.0, high=WILD) for p in analysis.predictions]
    xs = [b["x"] for b in analysis.band]
    earlier = [b["value"] for b in analysis.band[:20]] + [WILD, math.inf, math.nan] + [WILD] * 17
    return points, dataclasses.replace(analysis, band=band, predictions=predictions), \
        [(3, xs, earlier), (4, xs, [b["value"] for b in analysis.band])]


@pytest.fixture
def out(tmp_path) -> Path:
    folder = Path(os.environ.get("RAYSWEEP_PLOTS_CHECK", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _data_range(points: dict, se) -> tuple[float, float]:
    pretrained = [d for d in points if d > 0]
    values = [points[d] + s * k for d, s in zip(pretrained, se) for k in (-1, 1)]
    values += [BASELINE - BASELINE_SE, BASELINE + BASELINE_SE]
    return min(values), max(values)


def _errorbars(ax) -> list[ErrorbarContainer]:
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def _saved(fig, path: Path) -> None:
    plots.save_figure(path, fig)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _inside_figure(fig, artists) -> None:
    """Nothing cut off: each text lies within the figure's canvas."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    for artist in artists:
        box = artist.get_window_extent(renderer)
        assert (box.x0 >= canvas.x0 - 1 and box.x1 <= canvas.x1 + 1 and box.y0 >= canvas.y0 - 1
                and box.y1 <= canvas.y1 + 1), f"cut off: {artist}"


def test_law_figure_shows_errors_verdict_reason_and_saves(fitted, out):
    points, se, analysis = fitted
    fig = plots.law_figure("en-de", 1000, "bleu", points, analysis)
    ax = fig.axes[0]
    bars = _errorbars(ax)
    assert bars and bars[0].has_yerr and len(bars[0].lines[2][0].get_segments()) == 6
    low, high = ax.get_ylim()
    data_low, data_high = _data_range(points, se)
    assert low <= data_low and high >= data_high  # every error bar shows
    prediction = analysis.predictions[0]
    # An ordinary extrapolation's interval is part of the claim: it shows in full.
    assert low <= prediction["low"] and high >= prediction["high"]
    assert ax.get_xlim()[0] < min(d for d in points if d > 0) and ax.get_xlim()[1] > TARGET
    labels = ax.get_legend_handles_labels()[1]
    assert any("extrapolation" in t for t in labels)
    assert any("SE" in t for t in labels)  # which multiple the bars are
    assert any(t.startswith("gain over no pretraining") for t in labels)
    assert analysis.verdict in ax.get_title() and "PROVISIONAL" in ax.get_title()
    caption = " ".join(t.get_text() for t in fig.texts)
    assert " ".join(analysis.reason.split()) in " ".join(caption.split())  # in full
    _inside_figure(fig, [*fig.texts, ax.title, ax.get_legend()])
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # beside the axes: it covers no point
    _saved(fig, out / "law_bleu.png")


def test_wild_band_and_history_do_not_set_the_range_or_spike(wild, fitted, out):
    points, analysis, history = wild
    _, se, _ = fitted
    fig = plots.law_figure("en-de", 1000, "bleu", points, analysis, history)
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    data_low, data_high = _data_range(points, se)
    span = data_high - data_low
    assert low <= data_low and high >= data_high
    assert high - low <= 10 * span and low >= data_low - 5 * span
    height = high - low
    earlier = [line for line in ax.lines if line.get_gid() == "earlier-fit"]
    assert len(earlier) == 2
    for line in earlier:
        ys = np.asarray(line.get_ydata(), dtype=float)
        shown = ys[np.isfinite(ys)]
        assert shown.size and shown.min() >= low - height and shown.max() <= high + height
        steps = np.abs(np.diff(ys))
        assert np.all(steps[np.isfinite(steps)] < height)  # no vertical spike across the axes
    for text in ax.texts:  # the earlier fits' labels: only where they show
        x, y = text.xy
        assert low <= y <= high and ax.get_xlim()[0] <= x <= ax.get_xlim()[1]
    fig.canvas.draw()
    assert ax.get_ylim() == (low, high)  # drawing did not autoscale them back
    assert any("runs off the axes" in t for t in ax.get_legend_handles_labels()[1])
    _saved(fig, out / "law_bleu_wild.png")


def test_points_with_errors_and_bare_values_both_work(fitted, out):
    points, se, analysis = fitted
    measured = {d: {"y": v, "se": 0.5 + d / 1e6, "seeds": 3} for d, v in points.items()}
    fig = plots.law_figure("en-de", 1000, "bleu", measured, analysis)
    ax = fig.axes[0]
    bars = _errorbars(ax)
    assert len(bars) == 1  # each checkpoint once, all fitted
    segments = bars[0].lines[2][0].get_segments()
    half = sorted((s[1][1] - s[0][1]) / 2 for s in segments)
    expected = sorted(plots.ERROR_BAR_SE * measured[d]["se"] for d in points if d > 0)
    assert np.allclose(half, expected)  # the callers' measured errors, not re-derived ones
    baseline_band = [p for p in ax.patches if "±" in (p.get_label() or "")]
    assert baseline_band, "the baseline's error shows as a band"
    _saved(fig, out / "law_bleu_dict_points.png")
    # A D_p that went through float and back is still the checkpoint the law was fitted to.
    drifted = {d * (1 + 1e-9): v for d, v in points.items() if d > 0}
    fig = plots.law_figure("en-de", 1000, "bleu", drifted, analysis)
    assert len(_errorbars(fig.axes[0])) == 1
    plt.close(fig)


def test_no_law_still_draws_the_points(out):
    _, _, se, points = _synthetic()
    few = {d: v for d, v in points.items() if d < 5e4}  # baseline and two checkpoints
    analysis = _analyse(few, se[:2])
    assert not analysis.params and not analysis.band
    fig = plots.law_figure("en-de", 1000, "bleu", few, analysis)
    ax = fig.axes[0]
    assert analysis.verdict in ax.get_title()
    # Bare values and no fit: no error is known, and the figure says so rather than hide it.
    assert any("SE not known" in t for t in ax.get_legend_handles_labels()[1])
    empty = Analysis(law="log_law", num_points=0, dropped=0, verdict="not fitted",
                     reason="no law for this metric")
    fig2 = plots.law_figure("en-de", 1000, "chrf", {0: {"y": 30.0, "se": 1.0},
                                                   1e5: {"y": 35.0, "se": 1.0}}, empty)
    bars = _errorbars(fig2.axes[0])
    assert bars and len(bars[0].lines[2][0].get_segments()) == 1  # the checkpoint's own bar
    assert "not fitted" in fig2.axes[0].get_title()
    _saved(fig, out / "law_bleu_too_few.png")
    plt.close(fig2)


def test_task_figure_error_bars_and_same_range_rule(fitted, wild, out):
    points, se, analysis = fitted
    wild_points, wild_analysis, _ = wild
    _, _, se2, points2 = _synthetic(seed=2, scale=1.3)
    groups = [LawGroup("en-de", 1000, "bleu", points, analysis),
              LawGroup("en-de", 3000, "bleu", points2,
                       _analyse(points2, se2, baseline=BASELINE * 1.3)),
              LawGroup("en-de", 1000, "chrf", wild_points, wild_analysis)]
    fig = plots.task_figure("en-de", groups)
    bleu, chrf = fig.axes[0], fig.axes[1]
    assert _errorbars(bleu) and _errorbars(chrf)
    data_low, data_high = _data_range(points, se)
    low, high = chrf.get_ylim()
    assert high - low <= 10 * (data_high - data_low)
    assert any("aligned" in t for t in bleu.get_legend_handles_labels()[1])
    _inside_figure(fig, [bleu.get_legend(), chrf.get_legend()])
    _saved(fig, out / "task_en-de.png")


def test_metric_vs_cross_entropy_keeps_units_and_error_bars(out):
    ce = {0: {"y": 4.0, "se": 0.05}, 20000: {"y": 3.5, "se": 0.04}, 80000: {"y": 3.1, "se": 0.04}}
    bleu = {0: 9.0, 20000: {"y": 12.0, "se": 0.4}, 80000: {"y": 15.0, "se": 0.5}}
    fig = plots.metric_vs_cross_entropy_figure("en-de", 1000, "bleu", ce, bleu)
    ax = fig.axes[0]
    assert "nats/token" in ax.get_xlabel()
    bars = _errorbars(ax)
    assert bars and bars[0].has_xerr and bars[0].has_yerr
    _saved(fig, out / "bleu_vs_cross_entropy.png")


def test_drawing_a_figure_keeps_the_callers_backend_and_leaves_no_pyplot_figure(tmp_path):
    """In a notebook, drawing raysweep's figures must not switch the inline backend: they are
    made with matplotlib's object API. Run in a fresh interpreter with the svg backend chosen."""
    import subprocess
    import sys

    script = f"""
import matplotlib, matplotlib.pyplot as plt
from raysweep import plots
from raysweep.laws import LOG_LAW
from raysweep.laws.analysis import analyse
x = [2e4, 5e4, 1e5, 2e5, 4e5, 6.4e5]
y = [8.0, 8.9, 9.7, 10.4, 11.0, 11.3]
a = analyse(LOG_LAW, x, y, 0.1, se=[0.3] * 6, baseline=7.0, baseline_se=0.3, band_at=x,
            resamples=20)
fig = plots.law_figure("en-de", 4000, "bleu", {{0: 7.0, **dict(zip(x, y))}}, a)
plots.save_figure({str(tmp_path / "law.png")!r}, fig)
print(matplotlib.get_backend(), len(plt.get_fignums()))
"""
    env = {**os.environ, "MPLBACKEND": "svg"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["svg", "0"]
    assert (tmp_path / "law.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
