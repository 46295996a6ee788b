"""What every figure of raysweep shares: sizes and fonts chosen for a ~600 px wide preview (MLflow's
artifact view), the points as they are drawn, the axes' ranges and tick labels, and the notes
read off the data (a metric with no signal, a law's parameters where they are identifiable).

Sizes: a figure is WIDTH_IN inches wide, saved at DPI (1200 px); shown 600 px wide, one point of
font is 600 / (72 * WIDTH_IN) = 1.39 px, so the smallest text (MIN_FONT) stays above 11 px.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np

from raysweep.laws.analysis import identifiable

UNITS = {"bleu": "BLEU", "chrf": "chrF", "rougeL": "ROUGE-L F1", "comet": "COMET",
         "cross_entropy": "cross-entropy (nats/token)"}
NAMES = {"bleu": "BLEU", "chrf": "chrF", "rougeL": "ROUGE-L", "comet": "COMET",
         "cross_entropy": "cross-entropy"}
LAW_NAMES = {"log_law": "log-law f(D_p) = (log(A·D_p^α))^β",
             "power_law": "power law L(D_p) = E + A/D_p^α"}
PARAM_NAMES = {"alpha": "α", "beta": "β"}

ERROR_BAR_SE = 1.0
"""Error bars span +-this many standard errors (said in each legend)."""
BAND_REACH = 3.0
"""The fit's band and predictions may widen the y range by at most this many times the span of the
data (points with their error bars, the baseline): beyond it they are clipped at the axes."""
NO_SIGNAL_SPREAD = 1e-3
"""A metric whose checkpoints all lie within this fraction of their mean carries no signal (the
offline COMET stand-in scores every translation the same): its figures say so."""
FLAT_SPAN = 0.1
"""A metric with no signal is drawn on a y range of at least this fraction of its value, so its
points read as the flat line they are, not as noise magnified to fill the axes."""
WIDTH_IN = 6.0
DPI = 200
MIN_FONT = 8.5
FONT = {"tick": 9.0, "label": 9.5, "legend": MIN_FONT, "note": MIN_FONT, "title": 10.5,
        "figure_title": 11.5}
_CHAR_WIDTH_EM = 0.6  # a generous average glyph width (DejaVu Sans), so wrapped lines always fit
_TICK_LABEL_IN = 0.45  # room for one x tick label ("200k" at 9 pt, with its gap)


def number_or_nan(value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def value_se(point) -> tuple[float, float]:
    """(value, standard error) of a point given as a bare number or as {"y", "se", ...}: callers
    pass either. The error is nan where unknown (or not a usable error)."""
    if isinstance(point, dict):
        value, se = number_or_nan(point.get("y")), number_or_nan(point.get("se"))
    else:
        value, se = number_or_nan(point), math.nan
    return value, (se if se >= 0 else math.nan)


def token_text(value: float) -> str:
    """A D_p as a researcher reads it: 20k, 655k, 1M, 1.5M (two digits below 100 of a unit)."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size * (1 - 1e-9):
            scaled = value / size
            return f"{scaled:.0f}{unit}" if scaled >= 99.5 else f"{scaled:.2g}{unit}"
    return f"{value:.0f}" if value >= 1 else f"{value:.2g}"


def measured(points: dict, analysis) -> tuple[list[dict], tuple[float, float] | None]:
    """The checkpoints to draw ({"x", "y", "se", "fitted"}) and the baseline (value, se) or None.
    A point's error is the caller's measured one, else the one the analysis judged it with;
    points the fit left out (zero, negative, not finite) are kept, marked as not fitted."""
    judged = {p["x"]: p for p in (analysis.points if analysis is not None else [])}
    rows = {x: {"x": x, "y": p["y"], "se": number_or_nan(p.get("se")), "fitted": True}
            for x, p in judged.items()}
    for d, point in points.items():
        value, se = value_se(point)
        if d <= 0 or not math.isfinite(value):
            continue
        # The same checkpoint, though its D_p may have been rounded to an int on the way
        # (checkpoints lie a factor ~2 apart, so 0.1% cannot confuse two of them).
        x = next((x for x in judged if math.isclose(x, d, rel_tol=1e-3)), float(d))
        known = rows.get(x, {"se": math.nan})
        rows[x] = {"x": x, "y": value, "se": se if math.isfinite(se) else known["se"],
                   "fitted": x in judged or not judged}
    baseline = value_se(points[0]) if 0 in points else None
    if baseline is not None and not math.isfinite(baseline[0]):
        baseline = None
    return sorted(rows.values(), key=lambda r: r["x"]), baseline


def data_extent(rows: list[dict], baseline) -> list[float]:
    """What must show on the y axis: each point with its error bar, the baseline with its band."""
    values = []
    for y, se in [(r["y"], r["se"]) for r in rows] + ([baseline] if baseline else []):
        half = ERROR_BAR_SE * se if math.isfinite(se) else 0.0
        values += [y - half, y + half]
    return [v for v in values if math.isfinite(v)]


def curve_end(rows: list[dict], analysis, target_tokens: float | None) -> float:
    """Where a law's curve and band stop: at the target D_p the researcher asked about (else the
    analysis's prediction), never before the largest checkpoint, never beyond."""
    largest = max((r["x"] for r in rows), default=0.0)
    asked = target_tokens or max((number_or_nan(p["x"]) for p in analysis.predictions
                                  if math.isfinite(number_or_nan(p["x"]))), default=0.0)
    return max(largest, asked) or math.inf


def shown_band(analysis, end: float) -> list[dict]:
    """The law's band up to `end`, the last row interpolated (in log D_p) at `end` itself: a band
    computed further out (before the curve stopped at the target) is cut there."""
    band = sorted((b for b in analysis.band if number_or_nan(b["x"]) > 0), key=lambda b: b["x"])
    inside = [b for b in band if b["x"] <= end * (1 + 1e-9)]
    beyond = [b for b in band if b["x"] > end * (1 + 1e-9)]
    if inside and beyond and inside[-1]["x"] < end:
        a, b = inside[-1], beyond[0]
        t = math.log(end / a["x"]) / math.log(b["x"] / a["x"])
        inside.append({"x": end, **{k: number_or_nan(a.get(k)) * (1 - t)
                                    + number_or_nan(b.get(k)) * t
                                    for k in ("value", "low", "high")}})
    return inside


def fit_extent(analysis, end: float = math.inf, predictions: bool = True) -> list[float]:
    """The latest fit's curve, band and (where drawn) prediction intervals up to `end`: they may
    widen the y range, within BAND_REACH (earlier fits never do: they are history, not the
    claim)."""
    if analysis is None:
        return []
    rows = shown_band(analysis, end) + (list(analysis.predictions) if predictions else [])
    return [v for r in rows for v in (number_or_nan(r.get(k)) for k in ("value", "low", "high"))
            if math.isfinite(v)]


def y_limits(data: list[float], extra: list[float], min_span: float = 0.0) -> tuple[float, float]:
    """y limits covering `data` (at least `min_span` wide, centred on it), widened by `extra`
    only up to BAND_REACH spans of the data."""
    data = [v for v in data if math.isfinite(v)]
    extra = [v for v in extra if math.isfinite(v)]
    if not data:  # nothing measured to anchor on: the fit alone (cannot happen with a fit)
        data, extra = extra or [0.0, 1.0], []
    low, high = min(data), max(data)
    if high - low < min_span:
        middle = (low + high) / 2
        low, high = middle - min_span / 2, middle + min_span / 2
    span = high - low or 0.1 * abs(high) or 1.0
    reach = (low - BAND_REACH * span, high + BAND_REACH * span)
    for v in extra:
        v = min(max(v, reach[0]), reach[1])
        low, high = min(low, v), max(high, v)
    pad = 0.06 * (high - low) if high > low else span / 2  # never identical limits
    return low - pad, high + pad


def x_limits(xs) -> tuple[float, float]:
    """Log-axis x limits covering every positive, finite x, with a margin for markers."""
    xs = [x for x in xs if math.isfinite(x) and x > 0] or [1.0, 10.0]
    return min(xs) / 1.4, max(xs) * 1.4


def _log_ticks(xlim, subs) -> list[float]:
    first, last = math.floor(math.log10(xlim[0])), math.ceil(math.log10(xlim[1]))
    return [s * 10.0 ** e for e in range(first, last + 1) for s in subs
            if xlim[0] <= s * 10.0 ** e <= xlim[1]]


def _d_p_ticks(xlim, width_in: float) -> list[float]:
    """Ticks at 1-2-5, else 1-3, else 1 per decade: the first of them whose labels fit
    `width_in`; within a decade, as many of 1..9 as fit."""
    room = max(2, int(width_in / _TICK_LABEL_IN))
    for subs in ((1, 2, 5), (1, 3), (1,)):
        ticks = _log_ticks(xlim, subs)
        if len(ticks) <= room:
            break
    if len(ticks) < 2:
        every = _log_ticks(xlim, range(1, 10))
        ticks = every[::-(-len(every) // room)] or ticks
    return ticks


def style_axes(ax, metric: str, xlim, ylim, width_in: float) -> None:
    """Log D_p axis ticked 20k, 50k, 100k, ... (as many as fit `width_in`), plain y numbers (no
    offset), the readable fonts, a light grid. After every artist: nothing autoscales again."""
    from matplotlib.ticker import (
        FixedLocator,
        FuncFormatter,
        LogLocator,
        MaxNLocator,
        NullFormatter,
        ScalarFormatter,
    )

    ax.set_xscale("log")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.xaxis.set_major_locator(FixedLocator(_d_p_ticks(xlim, width_in)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: token_text(x)))
    ax.xaxis.set_minor_locator(LogLocator(subs=np.arange(2, 10)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))
    ax.tick_params(labelsize=FONT["tick"])
    ax.set_xlabel("pretraining tokens D_p (log scale)", fontsize=FONT["label"])
    ax.set_ylabel(UNITS.get(metric, metric), fontsize=FONT["label"])
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", alpha=0.08)


def no_signal(points: dict) -> tuple[float, float] | None:
    """(lowest, highest) of the checkpoints' values where they are (nearly) all the same (within
    NO_SIGNAL_SPREAD of their size): such a metric carries no signal. None where they vary (or
    fewer than two checkpoints have a value)."""
    values = [v for d, p in points.items() if d > 0 for v in [value_se(p)[0]]
              if math.isfinite(v)]
    if len(values) < 2:
        return None
    low, high = min(values), max(values)
    size = max(abs(low), abs(high))
    return (low, high) if high - low <= NO_SIGNAL_SPREAD * size else None


def no_signal_note(metric: str, points: dict) -> str:
    """The note a figure of a metric with no signal carries (empty where the metric varies)."""
    flat = no_signal(points)
    if flat is None:
        return ""
    middle, half = (flat[0] + flat[1]) / 2, (flat[1] - flat[0]) / 2
    values = f"{middle:.4g}" + (f" ± {half:.1g}" if half else "")
    return (f"No signal: {NAMES.get(metric, metric)} does not vary across checkpoints (all "
            f"{values}): this metric carries no signal here (e.g. the offline COMET stand-in); "
            f"read nothing into its law or verdict.")


def flat_span(points: dict) -> float:
    """The least y span for a metric with no signal (0 for one that varies): see FLAT_SPAN."""
    flat = no_signal(points)
    return 0.0 if flat is None else FLAT_SPAN * (max(map(abs, flat)) or 1.0)


def parameter_note(analysis) -> str:
    """The law's parameters with their intervals where identifiable; else why none are shown."""
    if identifiable(analysis):
        pct = f"{analysis.level:.0%}"
        law = LAW_NAMES.get(analysis.law, analysis.law)
        return (f"Parameters of the {law} ({pct} intervals): " + ", ".join(
            f"{PARAM_NAMES.get(k, k)} = {v:.3g} [{analysis.intervals[k][0]:.3g}, "
            f"{analysis.intervals[k][1]:.3g}]" for k, v in analysis.params.items()) + ".")
    if analysis is not None and analysis.band and analysis.law_holds:
        return ("Parameters not shown: these points do not pin them down (read the curve and "
                "its prediction).")
    return ""


def wrap(paragraphs: list[str], width_in: float, fontsize: float = FONT["note"]) -> str:
    """Paragraphs wrapped to `width_in` inches (all words kept), one block of text."""
    chars = max(20, int(width_in * 72 / (fontsize * _CHAR_WIDTH_EM)))
    # No-break spaces keep "+10.3 +- 0.61" on one line (textwrap splits on ASCII spaces only).
    return "\n".join(textwrap.fill(p.replace(" +- ", "\u00a0+-\u00a0"), chars,
                                   break_on_hyphens=False) for p in paragraphs if p)


def figure(width_in: float = WIDTH_IN, height_in: float = 4.0):
    """A matplotlib Figure on an Agg canvas, made with the object API as matplotlib advises for
    library code, not pyplot: drawing one never switches the caller's backend (a notebook's
    inline one) nor registers it with pyplot's open figures."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig
