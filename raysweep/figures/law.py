"""Scaling-curve figures: a metric against D_p (log axis) with its fitted law, interval band and the
no-pretraining baseline. Pure matplotlib (Agg backend: no display needed), one figure per law;
the paper's view of a task, a panel per metric, is raysweep.figures.panels' (imported here).

The figures are read by people deciding whether to trust a law, so they show the noise (error
bars, the baseline's band) and keep the axes on what was measured: a law extrapolated from noisy
points can swing arbitrarily far, and must neither flatten the data into a line nor be hidden.
The law is drawn up to the target D_p asked about, no further. They are read in MLflow's preview,
~600 px wide: sizes and fonts are raysweep.figures.parts', legends and notes go under the axes.
"""

from __future__ import annotations

import math

import numpy as np

from raysweep.figures.draw import (
    draw_baseline,
    draw_history,
    draw_law,
    draw_points,
    draw_predictions,
    shade_extrapolation,
)
from raysweep.figures.layout import arrange, notes_text, panel_legend
from raysweep.figures.panels import law_panel, task_figure
from raysweep.figures.parts import (
    BAND_REACH,
    ERROR_BAR_SE,
    FONT,
    LAW_NAMES,
    NAMES,
    UNITS,
    WIDTH_IN,
    curve_end,
    data_extent,
    figure,
    fit_extent,
    flat_span,
    measured,
    no_signal_note,
    number_or_nan,
    parameter_note,
    style_axes,
    token_text,
    value_se,
    wrap,
    x_limits,
    y_limits,
)

__all__ = ["BAND_REACH", "ERROR_BAR_SE", "UNITS", "band_points", "law_figure", "law_panel",
           "metric_vs_cross_entropy_figure", "save_figure", "save_law_figure", "task_figure"]

_LAW_PANEL_IN = 2.9  # the law figure's axes height
_NOTES_IN = WIDTH_IN - 0.2  # the notes' width (the figure less its margins)


def band_points(points: dict, target_tokens: int | None) -> list[float]:
    """Where to draw the fitted curve: from the smallest D_p to the target (or the largest D_p,
    where the target lies within the checkpoints or none is set), never further.
    `points`: {D_p: value} or {D_p: {"y", "se", ...}} (only the D_p are used)."""
    pretrained = [d for d in points if d > 0]
    if not pretrained:
        return []
    high = max(max(pretrained), target_tokens or 0)
    return list(np.logspace(math.log10(min(pretrained)), math.log10(high), 40))


def _verdict_title(analysis) -> str:
    verdict = getattr(analysis, "verdict", None) or "not fitted"
    return f"verdict: {verdict}" + (" (PROVISIONAL)" if getattr(analysis, "provisional", False)
                                    else "")


def _law_notes(analysis, rows: list[dict], ylim) -> tuple[list[str], bool]:
    """The law figure's notes (the numbers behind its legend, the reason, the errors, the
    parameters) and whether a prediction runs off the axes."""
    pct = f"{analysis.level:.0%}"
    notes, off = [], False
    for p in analysis.predictions:
        value, low, high = (number_or_nan(p.get(k)) for k in ("value", "low", "high"))
        notes.append(f"Prediction at D_p = {token_text(p['x'])}: {value:.3g}, {pct} interval "
                     f"[{low:.3g}, {high:.3g}] ({number_or_nan(p.get('extrapolation')):.3g}x "
                     f"the largest checkpoint).")
        off |= any(math.isfinite(v) and not ylim[0] <= v <= ylim[1] for v in (value, low, high))
    gain = analysis.gain
    if gain:
        notes.append(f"Gain over no pretraining at D_p = {token_text(gain['x'])}: "
                     f"{gain['value']:+.3g} ± {gain['se']:.2g} SE, {pct} interval "
                     f"[{gain['low']:.3g}, {gain['high']:.3g}].")
    if analysis.reason:
        notes.append(f"Why {analysis.verdict}: {analysis.reason}")
    notes.append(f"Error bars: ±{ERROR_BAR_SE:g} standard error"
                 + (f", {analysis.noise_source}." if analysis.noise_source else ".")
                 if any(math.isfinite(r["se"]) for r in rows)
                 else "No error bars: the points' standard errors are not known.")
    notes.append(parameter_note(analysis))
    return [n for n in notes if n], off


def _law_legend(ax, analysis, marks: dict, off: bool, largest: float) -> None:
    """The law figure's legend, short labels in two columns (the numbers are in the notes)."""
    pct = f"{analysis.level:.0%}"
    entries = list(marks["points"])
    entries.append(marks["baseline"])
    if marks["law"] is not None:
        name = LAW_NAMES.get(analysis.law, analysis.law).split(" ")[0]
        entries.append((marks["law"], f"{name} fit ({analysis.num_points} pts), {pct} band"))
    if marks["prediction"] is not None:
        where = token_text(analysis.predictions[-1]["x"])
        entries.append((marks["prediction"], f"prediction at {where}, {pct} interval"
                        + (" (runs off the axes)" if off else "")))
    if marks["shade"] is not None:
        entries.append((marks["shade"], f"extrapolation (past {token_text(largest)})"))
    if marks["history"] is not None:
        entries.append((marks["history"], "earlier fits (label: points)"))
    entries = [e for e in entries if e is not None]
    panel_legend(ax, [h for h, _ in entries], [t for _, t in entries], ncol=2)


def law_figure(task: str, d_f: int, metric: str, points: dict, analysis,
               history: list[tuple[int, list, list]] = (), target_tokens: float | None = None):
    """The figure for one (task, D_f, metric) law. `points`: {D_p: value} or {D_p: {"y", "se",
    ...}}, D_p = 0 the no-pretraining baseline. `history`: earlier fits as (points fitted, xs,
    values), drawn faint under the latest, so the figure shows how the law moved.
    `target_tokens`: the D_p asked about (fit.target_tokens); the curve, its band and the earlier
    fits stop there (by default at the analysis's prediction, else at the largest checkpoint)."""
    rows, baseline = measured(points, analysis)
    end = curve_end(rows, analysis, target_tokens)
    ylim = y_limits(data_extent(rows, baseline), fit_extent(analysis, end), flat_span(points))
    xlim = x_limits([r["x"] for r in rows] + ([end] if analysis.band else [])
                    + [number_or_nan(p["x"]) for p in analysis.predictions])
    fig = figure()
    ax = fig.add_axes((0.1, 0.1, 0.8, 0.8))
    fitted = [r["x"] for r in rows if r["fitted"]]
    law = draw_law(ax, analysis, end, "C1", 0.2)
    largest = max(fitted) if law is not None and fitted else math.inf
    marks = {"points": draw_points(ax, rows, "C0", "checkpoints"),
             "baseline": draw_baseline(ax, baseline, "0.35", "no pretraining"), "law": law,
             "prediction": draw_predictions(ax, analysis),
             "shade": shade_extrapolation(ax, largest, xlim),
             "history": draw_history(ax, history, ylim, xlim, end)}
    style_axes(ax, metric, xlim, ylim, WIDTH_IN - 1.0)
    ax.set_title(wrap([f"{task}, D_f = {d_f:,}: {NAMES.get(metric, metric)}",
                       _verdict_title(analysis)], WIDTH_IN - 1.0, FONT["title"]),
                 fontsize=FONT["title"])
    notes, off = _law_notes(analysis, rows, ylim)
    _law_legend(ax, analysis, marks, off, largest)
    texts = notes_text(fig, notes, _NOTES_IN, warning=no_signal_note(metric, points))
    arrange(fig, [[ax]], _LAW_PANEL_IN, notes=texts)
    return fig


def save_law_figure(path, *args, **kwargs) -> None:
    save_figure(path, law_figure(*args, **kwargs))


def metric_vs_cross_entropy_figure(task: str, d_f: int, metric: str, cross_entropy: dict,
                                   values: dict):
    """A task metric against downstream cross-entropy, one point per D_p (the best lr of each):
    does lower cross-entropy mean better translations here? (The paper finds it need not.)
    Both dicts: {D_p: value} or {D_p: {"y", "se", ...}}; errors, where known, as bars both ways."""
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    fig = figure()
    ax = fig.add_axes((0.1, 0.1, 0.8, 0.8))
    shared = sorted(d for d in set(cross_entropy) & set(values)
                    if all(math.isfinite(value_se(p[d])[0]) for p in (cross_entropy, values)))
    ce = [value_se(cross_entropy[d]) for d in shared]
    ys = [value_se(values[d]) for d in shared]
    handle = ax.errorbar([c for c, _ in ce], [y for y, _ in ys],
                         xerr=[ERROR_BAR_SE * s for _, s in ce],
                         yerr=[ERROR_BAR_SE * s for _, s in ys], fmt="o-", color="C0",
                         ecolor="C0", capsize=3, markersize=5)
    for d, (c, _), (y, _) in zip(shared, ce, ys):
        ax.annotate("no pretraining" if d == 0 else token_text(d), (c, y), fontsize=FONT["note"],
                    textcoords="offset points", xytext=(5, -5), va="top")
    ax.invert_xaxis()  # better to the right: lower cross-entropy
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(nbins=5))
        axis.set_major_formatter(ScalarFormatter(useOffset=False))
    ax.tick_params(labelsize=FONT["tick"])
    ax.set_xlabel(UNITS["cross_entropy"] + ", decreasing", fontsize=FONT["label"])
    ax.set_ylabel(UNITS.get(metric, metric), fontsize=FONT["label"])
    ax.set_title(wrap([f"{task}, D_f = {d_f:,}: {NAMES.get(metric, metric)} vs downstream "
                       f"cross-entropy"], WIDTH_IN - 1.0, FONT["title"]), fontsize=FONT["title"])
    ax.grid(True, alpha=0.3)
    panel_legend(ax, [handle], [f"checkpoints in order of D_p (bars: ±{ERROR_BAR_SE:g} SE, "
                                f"both ways)"])
    warning = no_signal_note(metric, {d: values[d] for d in shared})
    arrange(fig, [[ax]], _LAW_PANEL_IN, notes=notes_text(fig, [], _NOTES_IN, warning=warning))
    return fig


def save_figure(path, fig) -> None:
    fig.savefig(path)  # not held by pyplot (see figures.parts.figure): nothing to close
