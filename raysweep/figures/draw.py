"""The marks of raysweep's scaling figures: checkpoints with their error bars, the no-pretraining
baseline with its band, a law's curve and interval band (up to where it was asked about), earlier
fits, the prediction with its interval, the extrapolated region. Each returns what its legend
entry shows, so a figure builds a compact legend of its own."""

from __future__ import annotations

import math

import numpy as np

from raysweep.figures.parts import ERROR_BAR_SE, MIN_FONT, number_or_nan, shown_band


def draw_points(ax, rows: list[dict], color: str, label: str | None) -> list[tuple]:
    """The checkpoints with their error bars; the ones the fit could not use, hollow.
    Returns (handle, label) per kind drawn."""
    entries = []
    for fitted, marker_face, suffix in ((True, color, ""), (False, "white", ", not fitted")):
        chosen = [r for r in rows if r["fitted"] == fitted]
        if not chosen:
            continue
        known = any(math.isfinite(r["se"]) for r in chosen)
        bars = f"±{ERROR_BAR_SE:g} SE" if known else "SE not known: no bars"
        text = None if label is None else f"{label}{suffix} ({bars})"
        handle = ax.errorbar([r["x"] for r in chosen], [r["y"] for r in chosen],
                             yerr=[ERROR_BAR_SE * r["se"] for r in chosen], fmt="o", color=color,
                             markerfacecolor=marker_face, ecolor=color, elinewidth=1.2,
                             capsize=3, markersize=5, zorder=4, label=text)
        entries.append((handle, text))
    return entries


def draw_baseline(ax, baseline, color: str, label: str | None,
                  linewidth: float = 1.2) -> tuple | None:
    """No pretraining: a dashed line, with a shaded +-SE band when its error is known.
    Returns the legend entry (line and band overlaid) or None."""
    if baseline is None:
        return None
    value, se = baseline
    line = ax.axhline(value, color=color, linestyle="--", linewidth=linewidth, zorder=2,
                      label=label)
    if math.isfinite(se) and se > 0:
        band = ax.axhspan(value - ERROR_BAR_SE * se, value + ERROR_BAR_SE * se, color=color,
                          alpha=0.12, linewidth=0, zorder=1,
                          label=None if label is None else f"no pretraining ±{ERROR_BAR_SE:g} SE")
        return (band, line), f"{label} ±{ERROR_BAR_SE:g} SE"
    return line, label


def draw_law(ax, analysis, end: float, color: str, alpha: float) -> tuple | None:
    """A fitted law's curve and its interval band up to `end` (gaps where a bootstrap bound is not
    finite). Values far off the axes are drawn as they are: the axes clip them. Returns the
    handle for a legend (curve and band overlaid), or None where no law is drawn."""
    band = shown_band(analysis, end)
    if not band:
        return None
    xs = np.array([b["x"] for b in band])
    values, low, high = (np.array([number_or_nan(b[k]) for b in band])
                         for k in ("value", "low", "high"))
    (line,) = ax.plot(xs, values, "-", color=color, linewidth=1.6, zorder=3, gid="law")
    finite = np.isfinite(low) & np.isfinite(high)
    if not finite.any():
        return line
    fill = ax.fill_between(xs, low, high, where=finite, color=color, alpha=alpha, linewidth=0,
                           zorder=2, gid="band")
    return fill, line


def draw_history(ax, history, ylim, xlim, end: float) -> tuple | None:
    """Earlier fits, faint, oldest faintest, up to `end` like the latest. They never decide the
    axes and never spike: values that are not finite, or lie beyond a quarter of the axes'
    height outside them, become gaps (a jump from the data to 1e20 between two grid points would
    otherwise draw a vertical line). Each is labelled with its number of checkpoints where it
    last shows inside the axes."""
    low, high = ylim
    margin = 0.25 * (high - low)
    handle = None
    for i, (num_points, xs, values) in enumerate(history):
        n = min(len(xs), len(values))
        xs = np.array([number_or_nan(x) for x in xs[:n]])
        ys = np.array([number_or_nan(v) for v in values[:n]])
        keep = ~(xs > end * (1 + 1e-9))
        xs, ys = xs[keep], ys[keep]
        ys[~np.isfinite(xs) | (xs <= 0) | (ys < low - margin) | (ys > high + margin)] = np.nan
        (handle,) = ax.plot(xs, ys, "-", color="0.55", linewidth=0.8, zorder=1,
                            gid="earlier-fit", alpha=0.3 + 0.4 * (i + 1) / len(history))
        inside = np.flatnonzero((ys >= low) & (ys <= high) & (xs >= xlim[0]) & (xs <= xlim[1]))
        if inside.size:
            j = inside[-1]
            # Left of the curve's end: the end is often the target, where the prediction stands.
            ax.annotate(f"{num_points}", (xs[j], ys[j]), fontsize=MIN_FONT, color="0.4", ha="right",
                        textcoords="offset points", xytext=(-4, 3), annotation_clip=True)
    return handle


def draw_predictions(ax, analysis, color: str = "C3") -> tuple | None:
    """Each prediction at the target with its interval (a percentile interval need not contain the
    estimate, so a vertical bar, not a symmetric error bar). Returns the legend handle."""
    handle = None
    for p in analysis.predictions:
        value, low, high = (number_or_nan(p.get(k)) for k in ("value", "low", "high"))
        if math.isfinite(low) and math.isfinite(high):
            ax.vlines(p["x"], low, high, color=color, linewidth=2.2, zorder=5)
        (handle,) = ax.plot([p["x"]], [value], "D", color=color, markersize=6, zorder=6,
                            gid="prediction")
    return handle


def shade_extrapolation(ax, start: float, xlim):
    """A light region beyond the largest checkpoint: the law there is extrapolated, not measured."""
    if math.isfinite(start) and start < xlim[1]:
        return ax.axvspan(start, xlim[1], color="tab:purple", alpha=0.07, linewidth=0, zorder=0)
    return None
