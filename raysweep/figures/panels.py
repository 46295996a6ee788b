"""Figures of several laws at once: a panel per metric, each law (a finetune size D_f, or a study's
candidate) in its own colour: its points with error bars, its law and band up to the target D_p,
its no-pretraining baseline. task_figure is the overview of a task, every metric at once; a
study's figure (raysweep.study.figures) uses the same panels. Two columns, the legends and notes
under the panels: readable ~600 px wide, like every figure of raysweep.figures.law."""

from __future__ import annotations

import math

from raysweep.figures.draw import draw_baseline, draw_law, draw_points, shade_extrapolation
from raysweep.figures.layout import arrange, notes_text, panel_legend, title_text
from raysweep.figures.parts import (
    ERROR_BAR_SE,
    FONT,
    NAMES,
    WIDTH_IN,
    curve_end,
    data_extent,
    figure,
    fit_extent,
    flat_span,
    measured,
    no_signal,
    no_signal_note,
    style_axes,
    token_text,
    wrap,
    x_limits,
    y_limits,
)
from raysweep.laws.group import LawGroup

PANEL_IN = 1.9  # a panel's height, two to a row
_ONE_PANEL_IN = 2.6  # a figure's only panel: as wide as the figure
_NOTES_IN = WIDTH_IN - 0.2


def panel_width(columns: int) -> float:
    """About how wide each of `columns` panels is (inches): their tick labels are chosen for it."""
    return (WIDTH_IN - 0.2) / columns - 0.75


def panel_grid(fig, count: int) -> list[list]:
    """Axes for `count` panels, two to a row (one where there is one): rows of Axes, None in an
    empty cell (placed by figures.layout.arrange)."""
    cols = 1 if count <= 1 else 2
    axes = [fig.add_axes((0.1, 0.1, 0.8, 0.8)) for _ in range(max(1, count))]
    return [[axes[i] if i < len(axes) else None for i in range(r, r + cols)]
            for r in range(0, len(axes), cols)]


def law_panel(ax, metric: str, entries: list[tuple[LawGroup, str, str]],
              shared_baseline: bool = False, target_tokens: float | None = None,
              width_in: float | None = None) -> None:
    """One metric's panel: each entry's (law, colour, name) points, law and baseline in its
    colour, on axes chosen by the same rule as law_figure (data first, bands within BAND_REACH),
    the laws drawn up to `target_tokens` (else their predictions). Its legend, to go under it,
    names each entry with its verdict. task_figure draws a panel's D_f this way, a study's
    figure its candidates (whose baseline is one, `shared_baseline`: drawn once, grey).
    `width_in`: the panel's width, for its tick labels."""
    drawn, data, extra, xs, flat = [], [], [], [], 0.0
    for g, _, _ in entries:
        rows, baseline = measured(g.points, g.analysis)
        end = curve_end(rows, g.analysis, target_tokens)
        drawn.append((g, rows, baseline, end))
        data += data_extent(rows, baseline)
        extra += fit_extent(g.analysis, end, predictions=False)  # not drawn here
        xs += [r["x"] for r in rows] + ([end] if g.analysis.band else [])
        flat = max(flat, flat_span(g.points))
    ylim, xlim = y_limits(data, extra, flat), x_limits(xs)
    width = width_in or panel_width(2)
    largest = max((r["x"] for _, rows, _, _ in drawn for r in rows if r["fitted"]),
                  default=math.inf)
    if any(g.analysis.band for g, _, _ in entries):  # no law drawn, nothing extrapolated
        shade_extrapolation(ax, largest, xlim)
    handles, labels = [], []
    if shared_baseline and drawn:
        draw_baseline(ax, drawn[0][2], "0.3", None, linewidth=0.9)
    for (g, rows, baseline, end), (_, color, name) in zip(drawn, entries):
        if not shared_baseline:
            draw_baseline(ax, baseline, color, None, linewidth=0.9)
        draw_law(ax, g.analysis, end, color, 0.15)
        draw_points(ax, rows, color, None)
        label = f"{name}: {g.analysis.verdict}" + (" (provisional)" if g.analysis.provisional
                                                   else "")
        (proxy,) = ax.plot([], [], "o-", color=color,
                           label=wrap([label], width + 0.6, FONT["legend"]))
        handles.append(proxy)
        labels.append(proxy.get_label())
    if shared_baseline and drawn:
        (proxy,) = ax.plot([], [], "--", color="0.3", label="no pretraining (shared)")
        handles.append(proxy)
        labels.append(proxy.get_label())
    style_axes(ax, metric, xlim, ylim, width)
    quiet = all(no_signal(g.points) for g, _, _ in entries) and entries
    ax.set_title(NAMES.get(metric, metric) + (": NO SIGNAL (see below)" if quiet else ""),
                 fontsize=FONT["title"], color="#b00000" if quiet else "black")
    panel_legend(ax, handles, labels)


def task_verdict(task: str, groups: list[LawGroup]) -> str:
    """The task's answer in its lead metric (the first task metric with a law and a signal, BLEU
    in the paper), the verdict per D_f: the overview's title."""
    lead = next((g.metric for g in groups if g.metric != "cross_entropy"
                 and g.analysis.verdict != "not fitted" and not no_signal(g.points)), None)
    if lead is None:
        return f"{task}: no task metric with a signal has a law yet"
    mine = sorted((g for g in groups if g.metric == lead), key=lambda g: g.d_f)
    verdicts = list(dict.fromkeys(g.analysis.verdict for g in mine))
    parts = [f"{v} at D_f = " + ", ".join(f"{g.d_f:,}" for g in mine if g.analysis.verdict == v)
             for v in verdicts]
    provisional = any(g.analysis.provisional for g in groups)
    return (f"{task}: {NAMES.get(lead, lead)} {'; '.join(parts)}"
            + (" (provisional)" if provisional else ""))


def encoding_note(groups: list[LawGroup], target_tokens: float | None, baseline: str) -> str:
    """What the marks of a panel figure mean, in one sentence."""
    level = groups[0].analysis.level if groups else 0.9
    reach = (f"up to the target D_p = {token_text(target_tokens)}" if target_tokens
             else "up to each law's prediction")
    laws = (f"; lines: the fitted laws, {reach}, with their {level:.0%} bootstrap bands; shaded "
            f"right of the largest checkpoint: extrapolation" if any(g.analysis.band
                                                                     for g in groups) else "")
    return f"Points: ±{ERROR_BAR_SE:g} SE; {baseline}{laws}."


def panels_figure(title: str, metrics: list[str], draw, notes: list[str], warnings: list[str]):
    """A figure of one panel per metric, two columns: `draw(ax, metric, width_in)` fills each;
    the title above, the notes (warnings first, in red) under them."""
    fig = figure()
    grid = panel_grid(fig, len(metrics))
    width = panel_width(len(grid[0]))
    for ax, metric in zip([a for row in grid for a in row if a is not None], metrics):
        draw(ax, metric, width)
    texts = notes_text(fig, notes, _NOTES_IN, warning=" ".join(warnings))
    arrange(fig, grid, PANEL_IN if len(metrics) > 1 else _ONE_PANEL_IN,
            title=title_text(fig, title, _NOTES_IN), notes=texts)
    return fig


def task_figure(task: str, groups: list[LawGroup], target_tokens: float | None = None):
    """The paper's view of one task, every metric at once: a panel per metric, each finetune size
    D_f in its own colour (points with error bars, fitted law and interval band up to the target
    D_p; its no-pretraining baseline dashed, with its +-SE band), each D_f's verdict in the
    panel's legend, the task's answer in the title. `groups`: analyse_sweep's entries of this
    task ({"d_f", "metric", "points", "analysis"}); `target_tokens`: fit.target_tokens."""
    metrics = list(dict.fromkeys(g.metric for g in groups))
    sizes = sorted({g.d_f for g in groups})

    def draw(ax, metric, width):
        law_panel(ax, metric, [(g, f"C{sizes.index(g.d_f)}", f"D_f = {g.d_f:,}")
                               for g in groups if g.metric == metric],
                  target_tokens=target_tokens, width_in=width)

    baseline = f"dashed: no pretraining (shaded ±{ERROR_BAR_SE:g} SE), in its D_f's colour"
    warnings = [no_signal_note(m, next(g.points for g in groups if g.metric == m))
                for m in metrics if all(no_signal(g.points) for g in groups if g.metric == m)]
    return panels_figure(task_verdict(task, groups), metrics, draw,
                         [encoding_note(groups, target_tokens, baseline)], warnings)
