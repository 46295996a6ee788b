"""Scaling-curve figures: a metric against D_p (log axis) with its fitted law, interval band and the
no-pretraining baseline. Pure matplotlib (Agg backend: no display needed), one figure per law.

The figures are read by people deciding whether to trust a law, so they show the noise (error
bars, the baseline's band) and keep the axes on what was measured: a law extrapolated from noisy
points can swing arbitrarily far, and must neither flatten the data into a line nor be hidden.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np

from raysweep.laws.group import LawGroup

UNITS = {"bleu": "BLEU", "chrf": "chrF", "rougeL": "ROUGE-L F1", "comet": "COMET",
         "cross_entropy": "cross-entropy (nats/token)"}

ERROR_BAR_SE = 1.0
"""Error bars span +-this many standard errors (said in each legend)."""
BAND_REACH = 3.0
"""The fit's band and predictions may widen the y range by at most this many times the span of the
data (points with their error bars, the baseline): beyond it they are clipped at the axes."""
_LAW_FIGURE_IN = (9.6, 4.4)  # width, and height without the caption (room for the legend beside)
_CAPTION_FONT = 7.0
_CHAR_WIDTH_EM = 0.6  # a generous average glyph width (DejaVu Sans), so wrapped lines always fit


def band_points(points: dict, target_tokens: int | None) -> list[float]:
    """Where to draw the fitted curve: from the smallest D_p to the target (or 10x the largest).
    `points`: {D_p: value} or {D_p: {"y", "se", ...}} (only the D_p are used)."""
    pretrained = [d for d in points if d > 0]
    if not pretrained:
        return []
    high = max(max(pretrained) * 10, target_tokens or 0)
    return list(np.logspace(math.log10(min(pretrained)), math.log10(high), 40))


def _number(value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def _value(point) -> tuple[float, float]:
    """(value, standard error) of a point given as a bare number or as {"y", "se", ...}: callers
    pass either. The error is nan where unknown (or not a usable error)."""
    if isinstance(point, dict):
        value, se = _number(point.get("y")), _number(point.get("se"))
    else:
        value, se = _number(point), math.nan
    return value, (se if se >= 0 else math.nan)


def _measured(points: dict, analysis) -> tuple[list[dict], tuple[float, float] | None]:
    """The checkpoints to draw ({"x", "y", "se", "fitted"}) and the baseline (value, se) or None.
    A point's error is the caller's measured one, else the one the analysis judged it with;
    points the fit left out (zero, negative, not finite) are kept, marked as not fitted."""
    judged = {p["x"]: p for p in (analysis.points if analysis is not None else [])}
    rows = {x: {"x": x, "y": p["y"], "se": _number(p.get("se")), "fitted": True}
            for x, p in judged.items()}
    for d, point in points.items():
        value, se = _value(point)
        if d <= 0 or not math.isfinite(value):
            continue
        # The same checkpoint, though its D_p may have been rounded to an int on the way
        # (checkpoints lie a factor ~2 apart, so 0.1% cannot confuse two of them).
        x = next((x for x in judged if math.isclose(x, d, rel_tol=1e-3)), float(d))
        known = rows.get(x, {"se": math.nan})
        rows[x] = {"x": x, "y": value, "se": se if math.isfinite(se) else known["se"],
                   "fitted": x in judged or not judged}
    baseline = _value(points[0]) if 0 in points else None
    if baseline is not None and not math.isfinite(baseline[0]):
        baseline = None
    return sorted(rows.values(), key=lambda r: r["x"]), baseline


def _data_extent(rows: list[dict], baseline) -> list[float]:
    """What must show on the y axis: each point with its error bar, the baseline with its band."""
    values = []
    for y, se in [(r["y"], r["se"]) for r in rows] + ([baseline] if baseline else []):
        half = ERROR_BAR_SE * se if math.isfinite(se) else 0.0
        values += [y - half, y + half]
    return [v for v in values if math.isfinite(v)]


def _fit_extent(analysis) -> list[float]:
    """The latest fit's curve, band and prediction intervals: they may widen the y range, within
    BAND_REACH (earlier fits never do: they are history, not the claim)."""
    if analysis is None:
        return []
    rows = list(analysis.band) + list(analysis.predictions)
    return [v for r in rows for v in (_number(r.get(k)) for k in ("value", "low", "high"))
            if math.isfinite(v)]


def _y_limits(data: list[float], extra: list[float]) -> tuple[float, float]:
    """y limits covering `data`, widened by `extra` only up to BAND_REACH spans of the data."""
    data = [v for v in data if math.isfinite(v)]
    extra = [v for v in extra if math.isfinite(v)]
    if not data:  # nothing measured to anchor on: the fit alone (cannot happen with a fit)
        data, extra = extra or [0.0, 1.0], []
    low, high = min(data), max(data)
    span = high - low or 0.1 * abs(high) or 1.0
    reach = (low - BAND_REACH * span, high + BAND_REACH * span)
    for v in extra:
        v = min(max(v, reach[0]), reach[1])
        low, high = min(low, v), max(high, v)
    pad = 0.06 * (high - low) if high > low else span / 2  # never identical limits
    return low - pad, high + pad


def _x_limits(xs) -> tuple[float, float]:
    """Log-axis x limits covering every positive, finite x, with a margin for markers."""
    xs = [x for x in xs if math.isfinite(x) and x > 0] or [1.0, 10.0]
    return min(xs) / 1.5, max(xs) * 1.5


def _figure(**options):
    """A matplotlib Figure on an Agg canvas, made with the object API as matplotlib advises for
    library code, not pyplot: drawing one never switches the caller's backend (a notebook's
    inline one) nor registers it with pyplot's open figures."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**options)
    FigureCanvasAgg(fig)
    return fig


def _draw_points(ax, rows: list[dict], color: str, label: str | None) -> None:
    """The checkpoints with their error bars; the ones the fit could not use, hollow."""
    for fitted, marker_face, suffix in ((True, color, ""), (False, "white", ", not fitted")):
        chosen = [r for r in rows if r["fitted"] == fitted]
        if not chosen:
            continue
        known = any(math.isfinite(r["se"]) for r in chosen)
        bars = f"bars: ±{ERROR_BAR_SE:g} SE" if known else "SE not known: no bars"
        ax.errorbar([r["x"] for r in chosen], [r["y"] for r in chosen],
                    yerr=[ERROR_BAR_SE * r["se"] for r in chosen], fmt="o", color=color,
                    markerfacecolor=marker_face, ecolor=color, elinewidth=1.2, capsize=3,
                    markersize=5, zorder=4,
                    label=None if label is None else f"{label}{suffix} ({bars})")


def _draw_baseline(ax, baseline, color: str, label: str | None, linewidth: float = 1.2) -> None:
    """No pretraining: a dashed line, with a shaded +-SE band when its error is known."""
    if baseline is None:
        return
    value, se = baseline
    ax.axhline(value, color=color, linestyle="--", linewidth=linewidth, zorder=2, label=label)
    if math.isfinite(se) and se > 0:
        ax.axhspan(value - ERROR_BAR_SE * se, value + ERROR_BAR_SE * se, color=color, alpha=0.12,
                   linewidth=0, zorder=1,
                   label=None if label is None else f"no pretraining ±{ERROR_BAR_SE:g} SE")


def _draw_law(ax, analysis, color: str, alpha: float, label: str | None = None,
              band_label: str | None = None) -> None:
    """A fitted law's curve and its interval band (gaps where a bootstrap bound is not finite).
    Values far off the axes are drawn as they are: the axes clip them."""
    if not analysis.band:
        return
    xs = np.array([_number(b["x"]) for b in analysis.band])
    values, low, high = (np.array([_number(b[k]) for b in analysis.band])
                         for k in ("value", "low", "high"))
    ax.plot(xs, values, "-", color=color, linewidth=1.6, zorder=3, label=label)
    finite = np.isfinite(low) & np.isfinite(high)
    if finite.any():
        ax.fill_between(xs, low, high, where=finite, color=color, alpha=alpha, linewidth=0,
                        zorder=2, label=band_label)


def _draw_history(ax, history, ylim, xlim) -> None:
    """Earlier fits, faint, oldest faintest. They never decide the axes and never spike: values
    that are not finite, or lie beyond a quarter of the axes' height outside them, become gaps
    (a jump from the data to 1e20 between two grid points would otherwise draw a vertical line).
    Each is labelled with its number of checkpoints where it last shows inside the axes."""
    low, high = ylim
    margin = 0.25 * (high - low)
    for i, (num_points, xs, values) in enumerate(history):
        n = min(len(xs), len(values))
        xs = np.array([_number(x) for x in xs[:n]])
        ys = np.array([_number(v) for v in values[:n]])
        ys[~np.isfinite(xs) | (xs <= 0) | (ys < low - margin) | (ys > high + margin)] = np.nan
        ax.plot(xs, ys, "-", color="0.55", linewidth=0.8, zorder=1, gid="earlier-fit",
                alpha=0.3 + 0.4 * (i + 1) / len(history),
                label="earlier fits (fewer checkpoints; label: how many)" if i == 0 else None)
        inside = np.flatnonzero((ys >= low) & (ys <= high) & (xs >= xlim[0]) & (xs <= xlim[1]))
        if inside.size:
            j = inside[-1]
            # Left of the curve's end: the end is often the target, where the prediction stands.
            ax.annotate(f"{num_points}", (xs[j], ys[j]), fontsize=6, color="0.45", ha="right",
                        textcoords="offset points", xytext=(-4, 3), annotation_clip=True)


def _draw_predictions(ax, analysis, ylim) -> None:
    """Each prediction at the target with its interval (a percentile interval need not contain the
    estimate, so a vertical bar, not a symmetric error bar); the legend gives the numbers, and says
    when they run off the axes."""
    pct = f"{analysis.level:.0%}"
    for p in analysis.predictions:
        value, low, high = (_number(p.get(k)) for k in ("value", "low", "high"))
        label = f"prediction at D_p = {p['x']:.3g}: {value:.3g}"
        if math.isfinite(low) and math.isfinite(high):
            ax.vlines(p["x"], low, high, color="C3", linewidth=2.2, zorder=5)
            label += f"\n  {pct} interval [{low:.3g}, {high:.3g}]"
        label += f", {_number(p.get('extrapolation')):.3g}x the largest checkpoint"
        if any(math.isfinite(v) and not ylim[0] <= v <= ylim[1] for v in (value, low, high)):
            label += "\n  (runs off the axes)"
        ax.plot([p["x"]], [value], "D", color="C3", markersize=6, zorder=6, label=label)


def _shade_extrapolation(ax, start: float, xlim, label: str | None) -> None:
    """A light region beyond the largest checkpoint: the law there is extrapolated, not measured."""
    if math.isfinite(start) and start < xlim[1]:
        ax.axvspan(start, xlim[1], color="tab:purple", alpha=0.07, linewidth=0, zorder=0,
                   label=label)


def _gain_label(analysis) -> str | None:
    gain = analysis.gain if analysis is not None else None
    if not gain:
        return None
    return (f"gain over no pretraining (checkpoint at D_p = {gain['x']:.3g}\n  minus baseline): "
            f"{gain['value']:+.3g} ± {gain['se']:.2g} SE, {analysis.level:.0%} interval "
            f"[{gain['low']:.3g}, {gain['high']:.3g}]")


def _legend(ax, **kwargs) -> None:
    """The legend with the measured points first (matplotlib lists error bars last)."""
    from matplotlib.container import ErrorbarContainer

    handles, labels = ax.get_legend_handles_labels()
    first = [i for i, h in enumerate(handles) if isinstance(h, ErrorbarContainer)]
    order = first + [i for i in range(len(handles)) if i not in first]
    ax.legend([handles[i] for i in order], [labels[i] for i in order], **kwargs)


def _grid(ax) -> None:
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", alpha=0.08)


def _verdict_title(analysis) -> str:
    verdict = getattr(analysis, "verdict", None) or "not fitted"
    return f"verdict: {verdict}" + (" (PROVISIONAL)" if getattr(analysis, "provisional", False)
                                    else "")


def _wrap(paragraphs: list[str], width_in: float, fontsize: float = _CAPTION_FONT) -> str:
    """Paragraphs wrapped to the figure width (all words kept), one block of text."""
    chars = max(30, int(width_in * 72 / (fontsize * _CHAR_WIDTH_EM)))
    # No-break spaces keep "+10.3 +- 0.61" on one line (textwrap splits on ASCII spaces only).
    return "\n".join(textwrap.fill(p.replace(" +- ", "\u00a0+-\u00a0"), chars,
                                   break_on_hyphens=False) for p in paragraphs if p)


def _figure_with_caption(width_in: float, plot_height_in: float, caption: str):
    """A figure whose bottom strip holds `caption` (its height from the number of lines), and
    the fraction of the height the caption takes (for tight_layout's rect)."""
    caption_in = (caption.count("\n") + 1) * _CAPTION_FONT * 1.45 / 72 + 0.15 if caption else 0.0
    fig = _figure(figsize=(width_in, plot_height_in + caption_in), dpi=110)
    if caption:
        fig.text(0.012, 0.06 / (plot_height_in + caption_in), caption, fontsize=_CAPTION_FONT,
                 ha="left", va="bottom", color="0.2", linespacing=1.3)
    return fig, caption_in / (plot_height_in + caption_in)


def law_figure(task: str, d_f: int, metric: str, points: dict, analysis,
               history: list[tuple[int, list, list]] = ()):
    """The figure for one (task, D_f, metric) law. `points`: {D_p: value} or {D_p: {"y", "se",
    ...}}, D_p = 0 the no-pretraining baseline. `history`: earlier fits as (points fitted, xs,
    values), drawn faint under the latest, so the figure shows how the law moved."""
    rows, baseline = _measured(points, analysis)
    errors = (f"Error bars: ±{ERROR_BAR_SE:g} standard error"
              + (f", {analysis.noise_source}." if analysis.noise_source else ".")
              if any(math.isfinite(r["se"]) for r in rows)
              else "No error bars: the points' standard errors are not known.")
    caption = _wrap([f"Why: {analysis.reason}" if analysis.reason else "", errors],
                    _LAW_FIGURE_IN[0])
    fig, bottom = _figure_with_caption(*_LAW_FIGURE_IN, caption)
    ax = fig.add_subplot()
    ylim = _y_limits(_data_extent(rows, baseline), _fit_extent(analysis))
    xlim = _x_limits([r["x"] for r in rows] + [_number(b["x"]) for b in analysis.band]
                     + [_number(p["x"]) for p in analysis.predictions])
    _draw_points(ax, rows, "C0", "finetuned checkpoints")
    _draw_baseline(ax, baseline, "0.35", "no pretraining (D_p = 0)")
    _draw_law(ax, analysis, "C1", 0.2,
              label=f"{analysis.law} fit, latest ({analysis.num_points} checkpoints)",
              band_label=f"{analysis.level:.0%} bootstrap interval of the fit")
    _draw_predictions(ax, analysis, ylim)
    if _gain_label(analysis):
        ax.plot([], [], " ", label=_gain_label(analysis))
    fitted = [r["x"] for r in rows if r["fitted"]]
    _shade_extrapolation(ax, max(fitted) if analysis.band and fitted else math.inf, xlim,
                         "extrapolation (beyond the largest checkpoint)")
    _draw_history(ax, history, ylim, xlim)
    ax.set_xscale("log")
    ax.set_xlim(*xlim)  # after every artist, so nothing autoscales them away again
    ax.set_ylim(*ylim)
    ax.set_xlabel("pretraining tokens D_p (log scale)")
    ax.set_ylabel(UNITS.get(metric, metric))
    ax.set_title(f"{task}, D_f = {d_f:,} tokens: {metric}\n{_verdict_title(analysis)}", fontsize=9)
    _grid(ax)
    # Outside the axes: a legend inside would cover points or the band wherever they happen to be.
    _legend(ax, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


def save_law_figure(path, *args, **kwargs) -> None:
    save_figure(path, law_figure(*args, **kwargs))


def metric_vs_cross_entropy_figure(task: str, d_f: int, metric: str, cross_entropy: dict,
                                   values: dict):
    """A task metric against downstream cross-entropy, one point per D_p (the best lr of each):
    does lower cross-entropy mean better translations here? (The paper finds it need not.)
    Both dicts: {D_p: value} or {D_p: {"y", "se", ...}}; errors, where known, as bars both ways."""
    fig = _figure(figsize=(6.4, 4.4), dpi=110)
    ax = fig.subplots()
    shared = sorted(d for d in set(cross_entropy) & set(values)
                    if all(math.isfinite(_value(p[d])[0]) for p in (cross_entropy, values)))
    ce = [_value(cross_entropy[d]) for d in shared]
    ys = [_value(values[d]) for d in shared]
    ax.errorbar([c for c, _ in ce], [y for y, _ in ys],
                xerr=[ERROR_BAR_SE * s for _, s in ce], yerr=[ERROR_BAR_SE * s for _, s in ys],
                fmt="o-", color="C0", ecolor="C0", capsize=3, markersize=5,
                label=f"checkpoints, in order of D_p (bars: ±{ERROR_BAR_SE:g} SE)")
    for d, (c, _), (y, _) in zip(shared, ce, ys):
        ax.annotate("no pretraining" if d == 0 else f"D_p {d:.2g}", (c, y),
                    fontsize=6.5, textcoords="offset points", xytext=(5, -5), va="top")
    ax.invert_xaxis()  # better to the right: lower cross-entropy
    ax.set_xlabel(UNITS["cross_entropy"] + ", decreasing")
    ax.set_ylabel(UNITS.get(metric, metric))
    ax.set_title(f"{task}, D_f = {d_f:,} tokens: {metric} vs downstream cross-entropy", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def law_panel(ax, metric: str, entries: list[tuple[LawGroup, str, str]],
              shared_baseline: bool = False) -> None:
    """One metric's panel: each entry's (law, colour, name) points, law and baseline in its
    colour, on axes chosen by the same rule as law_figure (data first, bands within BAND_REACH).
    task_figure draws a panel's D_f this way, a study's figure its candidates (whose baseline is
    one, `shared_baseline`: drawn once, grey)."""
    drawn, data, extra, xs = [], [], [], []
    groups = [g for g, _, _ in entries]
    for g in groups:
        rows, baseline = _measured(g.points, g.analysis)
        drawn.append((g, rows, baseline))
        data += _data_extent(rows, baseline)
        extra += _fit_extent(g.analysis)
        xs += [r["x"] for r in rows] + [_number(b["x"]) for b in g.analysis.band]
    ylim, xlim = _y_limits(data, extra), _x_limits(xs)
    largest = max((r["x"] for _, rows, _ in drawn for r in rows if r["fitted"]), default=math.inf)
    if any(g.analysis.band for g in groups):  # no law drawn, nothing extrapolated
        _shade_extrapolation(ax, largest, xlim, None)
    if shared_baseline and drawn:
        _draw_baseline(ax, drawn[0][2], "0.3", "no pretraining (shared)", linewidth=0.9)
    for (g, rows, baseline), (_, color, name) in zip(drawn, entries):
        analysis = g.analysis
        if not shared_baseline:
            _draw_baseline(ax, baseline, color, None, linewidth=0.9)
        _draw_law(ax, analysis, color, 0.15)
        _draw_points(ax, rows, color, None)
        ax.plot([], [], "o-", color=color, label=f"{name}: {analysis.verdict}"
                + (" (provisional)" if analysis.provisional else ""))
    ax.set_xscale("log")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("pretraining tokens D_p (log scale)")
    ax.set_ylabel(UNITS.get(metric, metric))
    ax.set_title(metric, fontsize=9)
    _grid(ax)
    # Under the panel, not over it: a legend inside would cover points.
    ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=1)


def task_figure(task: str, groups: list[LawGroup]):
    """The paper's view of one task: a panel per metric, each finetune size D_f in its own colour
    (points with error bars, fitted law, interval band; its no-pretraining baseline dashed, with
    its +-SE band). `groups`: analyse_sweep's entries of this task ({"d_f", "metric", "points",
    "analysis"})."""
    metrics = list(dict.fromkeys(g.metric for g in groups))
    sizes = sorted({g.d_f for g in groups})
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    legend_in = 0.14 * len(sizes)
    # Constrained layout makes room for the legends under the panels (tight_layout over-reserves).
    fig = _figure(figsize=(4.6 * cols, (3.4 + legend_in) * rows), dpi=110, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        law_panel(ax, metric, [(g, f"C{sizes.index(g.d_f)}", f"D_f = {g.d_f:,}")
                               for g in groups if g.metric == metric])
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    level = groups[0].analysis.level if groups else 0.9
    fig.suptitle(_wrap([f"{task}: fitted laws per finetune size. Points: ±{ERROR_BAR_SE:g} SE; "
                        f"dashed: no pretraining (shaded ±{ERROR_BAR_SE:g} SE); bands: "
                        f"{level:.0%} bootstrap intervals; shaded right of the largest checkpoint: "
                        f"extrapolation"],
                       4.6 * cols, 9), fontsize=9)
    return fig


def save_figure(path, fig) -> None:
    fig.savefig(path)  # not held by pyplot (see _figure): nothing to close
