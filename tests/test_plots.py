"""The scaling-curve figures: error bars, axes set by the data (not by a wild extrapolation),
the verdict in the title, the reason in full, and PNGs that save; readable in MLflow's ~600 px
wide preview: tick labels like 655k and 1M, the law drawn no further than the target D_p,
legends and notes outside the axes, a metric without signal said to be one.

Set RAYSWEEP_PLOTS_CHECK=/some/dir to keep the rendered PNGs there for a look."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402

from raysweep.figures import law as plots  # noqa: E402
from raysweep.laws import DEFAULT_HUBER_DELTA, LOG_LAW  # noqa: E402
from raysweep.laws.analysis import Analysis, analyse  # noqa: E402
from raysweep.laws.group import LawGroup  # noqa: E402
from raysweep.study.figures import study_figure  # noqa: E402

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


def _legend_labels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def _notes(fig) -> str:
    """The figure's notes (and title), whitespace normalised."""
    return " ".join(" ".join(t.get_text() for t in fig.texts).split())


def _outside_axes(fig, ax) -> None:
    """The axes' legend covers no part of the axes (it lies under them)."""
    fig.canvas.draw()
    legend, box = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert not legend.overlaps(box) and legend.y1 <= box.y0


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
    labels = _legend_labels(ax)
    assert any("extrapolation" in t for t in labels)
    assert any("SE" in t for t in labels)  # which multiple the bars are
    assert any(t.startswith("prediction at 100M") for t in labels)
    assert analysis.verdict in ax.get_title() and "PROVISIONAL" in ax.get_title()
    notes = _notes(fig)
    assert "Gain over no pretraining at D_p = 640k: " in notes  # the numbers, in the notes
    assert "Prediction at D_p = 100M: " in notes
    assert " ".join(analysis.reason.split()) in notes  # in full
    _inside_figure(fig, [*fig.texts, ax.title, ax.get_legend()])
    _outside_axes(fig, ax)  # under the axes: it covers no point
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
    assert any("runs off the axes" in t for t in _legend_labels(ax))
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
    assert any("SE not known" in t for t in _legend_labels(ax))
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
    assert any("aligned" in t for t in _legend_labels(bleu))
    assert any(t.startswith("D_f = 3,000: ") for t in _legend_labels(bleu))  # each D_f's verdict
    (title,) = [t for t in fig.texts if t.get_gid() == "figure-title"]
    assert title.get_text().startswith("en-de: BLEU ")  # the task and its answer
    _inside_figure(fig, [bleu.get_legend(), chrf.get_legend(), *fig.texts])
    for ax in (bleu, chrf):
        _outside_axes(fig, ax)
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
from raysweep.figures import law as plots
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


TICK = re.compile(r"^\d+(\.\d)?[kMBT]?$")


def _tick_texts(ax) -> list[str]:
    ax.figure.canvas.draw()
    return [t.get_text() for t in ax.get_xticklabels() if t.get_text()]


def test_d_p_reads_like_655k_and_1m(fitted):
    points, _, analysis = fitted
    assert [plots.token_text(v) for v in (20480, 655360, 1e6, 1.5e6, 2.5e9, 640)] == [
        "20k", "655k", "1M", "1.5M", "2.5B", "640"]
    fig = plots.law_figure("en-de", 1000, "bleu", points, analysis)
    ax = fig.axes[0]
    texts = _tick_texts(ax)
    assert texts and all(TICK.match(t) for t in texts), texts  # no 6.55e+05, no $10^{5}$
    assert {"100k", "1M", "100M"} <= set(texts)
    assert ax.yaxis.get_offset_text().get_text() == ""  # y ticks read as they are
    assert "e+" not in " ".join(t.get_text() for t in ax.get_yticklabels())


def _law_xs(ax) -> tuple[float, float, float]:
    """The largest D_p of the law's curve, of its band and of the earlier fits drawn."""
    curve = [max(line.get_xdata()) for line in ax.lines if line.get_gid() == "law"]
    band = [path.vertices[:, 0].max() for c in ax.collections if c.get_gid() == "band"
            for path in c.get_paths() if len(path.vertices)]
    earlier = [np.nanmax(np.asarray(line.get_xdata(), dtype=float)) for line in ax.lines
               if line.get_gid() == "earlier-fit"]
    assert curve and band
    return max(curve), max(band), max(earlier, default=0.0)


def test_the_law_is_drawn_up_to_the_target_and_no_further(out):
    _, _, se, points = _synthetic()
    target = 1e6
    x = sorted(d for d in points if d > 0)
    assert max(plots.band_points(points, target)) == pytest.approx(target)
    assert max(plots.band_points(points, None)) == pytest.approx(x[-1])  # nothing asked beyond
    assert max(plots.band_points(points, 1e5)) == pytest.approx(x[-1])  # the checkpoints, all
    # A law analysed while its band still ran to 10x the largest checkpoint (6.4M).
    far = np.logspace(math.log10(x[0]), math.log10(10 * x[-1]), 40)
    with threadpool_limits(1):
        analysis = analyse(LOG_LAW, x, [points[d] for d in x], DEFAULT_HUBER_DELTA["bleu"], se=se,
                           baseline=BASELINE, baseline_se=BASELINE_SE, predict_at=[target],
                           band_at=far, resamples=50)
    assert max(b["x"] for b in analysis.band) > 6 * target
    history = [(4, list(far), [b["value"] for b in analysis.band])]
    figures = {"target given": plots.law_figure("en-de", 1000, "bleu", points, analysis, history,
                                                target_tokens=target),
               "the prediction's": plots.law_figure("en-de", 1000, "bleu", points, analysis),
               "task": plots.task_figure("en-de", [LawGroup("en-de", 1000, "bleu", points,
                                                            analysis)], target_tokens=target)}
    for name, fig in figures.items():
        curve, band, earlier = _law_xs(fig.axes[0])
        assert curve == pytest.approx(target) and band == pytest.approx(target), name
        assert earlier <= target * (1 + 1e-9), name
        assert fig.axes[0].get_xlim()[1] < 2 * target, name
    _saved(figures["target given"], out / "law_bleu_to_target.png")


def _flat_points(value: float = 0.5) -> dict:
    """The offline COMET stand-in: every checkpoint scores the same, within 1e-4."""
    x = np.logspace(math.log10(2e4), math.log10(6.4e5), 6)
    return {0: {"y": value, "se": 1e-4},
            **{int(d): {"y": value + 3e-5 * (-1) ** i, "se": 1e-4} for i, d in enumerate(x)}}


def _analyse_points(points: dict, metric: str = "comet") -> Analysis:
    x = [d for d in points if d > 0]
    with threadpool_limits(1):
        return analyse(LOG_LAW, x, [points[d]["y"] for d in x], DEFAULT_HUBER_DELTA[metric],
                       se=[points[d]["se"] for d in x], baseline=points[0]["y"],
                       baseline_se=points[0]["se"], predict_at=[1e6],
                       band_at=plots.band_points(points, 1e6), resamples=50)


def _no_signal(fig) -> list[str]:
    return [" ".join(t.get_text().split()) for t in fig.texts if t.get_gid() == "no-signal"]


def test_a_metric_without_signal_says_so_on_each_figure(fitted, out):
    flat = _flat_points()
    flat_analysis = _analyse_points(flat)
    fig = plots.law_figure("en-de", 1000, "comet", flat, flat_analysis, target_tokens=1e6)
    (warning,) = _no_signal(fig)
    assert ("does not vary across checkpoints" in warning and "carries no signal here" in warning
            and "COMET stand-in" in warning)
    low, high = fig.axes[0].get_ylim()
    assert high - low >= 0.05  # drawn flat, not its noise magnified to fill the axes
    _inside_figure(fig, fig.texts)
    _saved(fig, out / "law_comet_no_signal.png")
    points, _, analysis = fitted
    assert not _no_signal(plots.law_figure("en-de", 1000, "bleu", points, analysis))
    task = plots.task_figure("en-de", [LawGroup("en-de", 1000, "bleu", points, analysis),
                                       LawGroup("en-de", 1000, "comet", flat, flat_analysis)])
    assert len(_no_signal(task)) == 1 and "COMET does not vary" in _no_signal(task)[0]
    assert "NO SIGNAL" in task.axes[1].get_title() and "SIGNAL" not in task.axes[0].get_title()
    assert not _no_signal(plots.task_figure("en-de", [LawGroup("en-de", 1000, "bleu", points,
                                                               analysis)]))
    ce = {d: {"y": 4.0 - 0.1 * i, "se": 0.02} for i, d in enumerate(flat)}
    assert _no_signal(plots.metric_vs_cross_entropy_figure("en-de", 1000, "comet", ce, flat))
    varying = {d: {"y": 0.5 + 0.01 * i, "se": 1e-3} for i, d in enumerate(flat)}
    assert not _no_signal(plots.metric_vs_cross_entropy_figure("en-de", 1000, "comet", ce,
                                                               varying))
    _saved(task, out / "task_with_no_signal.png")


def test_parameters_show_only_where_the_points_pin_them_down(fitted):
    points, _, analysis = fitted
    loose = dataclasses.replace(analysis, law_holds=True,
                                params={"A": 3.1e20, "alpha": 813.0, "beta": 0.74},
                                intervals={"A": (0.0, 1e21), "alpha": (0.0, 1.2e11),
                                           "beta": (0.08, 1.6)})
    notes = _notes(plots.law_figure("en-de", 1000, "bleu", points, loose))
    assert "813" not in notes and "Parameters not shown" in notes
    tight = dataclasses.replace(loose, params={"A": 2.0, "alpha": 0.3, "beta": 1.1},
                                intervals={"A": (1.5, 2.6), "alpha": (0.25, 0.36),
                                           "beta": (0.9, 1.3)})
    notes = _notes(plots.law_figure("en-de", 1000, "bleu", points, tight))
    assert "α = 0.3 [0.25, 0.36]" in notes and "β = 1.1 [0.9, 1.3]" in notes
    failed = dataclasses.replace(tight, law_holds=False)
    assert "α = " not in _notes(plots.law_figure("en-de", 1000, "bleu", points, failed))


def test_every_figure_reads_at_600_px(fitted):
    """Saved 1000-1300 px wide, shown 600 px wide: every text at least 9 px tall there, every
    legend under its axes."""
    from matplotlib.text import Text

    points, _, analysis = fitted
    flat = _flat_points()
    groups = [LawGroup("en-de", 1000, "bleu", points, analysis),
              LawGroup("en-de", 1000, "comet", flat, _analyse_points(flat))]
    ce = {d: {"y": 4.0 - 0.1 * i, "se": 0.02} for i, d in enumerate(points)}
    figures = [plots.law_figure("en-de", 1000, "bleu", points, analysis),
               plots.task_figure("en-de", groups),
               plots.metric_vs_cross_entropy_figure("en-de", 1000, "bleu", ce, points),
               study_figure("en-de", 1000, [dataclasses.replace(g, candidate="web")
                                            for g in groups], ["web"], {})]
    for fig in figures:
        width = fig.get_figwidth() * fig.dpi
        assert 1000 <= width <= 1300
        fig.canvas.draw()
        scale = 600 / width
        hidden = {id(label) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
                  for tick in axis.get_major_ticks() + axis.get_minor_ticks()
                  if not min(axis.get_view_interval()) <= tick.get_loc()
                  <= max(axis.get_view_interval()) for label in (tick.label1, tick.label2)}
        texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()
                 and id(t) not in hidden]  # the labels of ticks out of view are not drawn
        for text in texts:
            assert text.get_fontsize() * fig.dpi / 72 * scale >= 9, text
            if "\n" not in text.get_text():
                assert text.get_window_extent().height * scale >= 9, text
        for ax in fig.axes:
            if ax.get_legend() is not None:
                _outside_axes(fig, ax)
        _inside_figure(fig, texts)
