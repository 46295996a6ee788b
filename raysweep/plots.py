"""Scaling-curve figures: a metric against D_p (log axis) with its fitted law, interval band and the
no-pretraining baseline. Pure matplotlib (Agg backend: no display needed), one figure per law.
"""

from __future__ import annotations

import math

import numpy as np

UNITS = {"bleu": "BLEU", "chrf": "chrF", "rougeL": "ROUGE-L F1", "comet": "COMET",
         "cross_entropy": "cross-entropy (nats/token)"}


def band_points(points: dict[int, float], target_tokens: int | None) -> list[float]:
    """Where to draw the fitted curve: from the smallest D_p to the target (or 10x the largest)."""
    pretrained = [d for d in points if d > 0]
    if not pretrained:
        return []
    high = max(max(pretrained) * 10, target_tokens or 0)
    return list(np.logspace(math.log10(min(pretrained)), math.log10(high), 40))


def _draw_law(ax, analysis, color: str, alpha: float, label: str | None = None,
              band_label: str | None = None) -> None:
    """A fitted law's curve and, where its bootstrap bounds are finite, its interval band."""
    if not analysis.band:
        return
    xs = [b["x"] for b in analysis.band]
    ax.plot(xs, [b["value"] for b in analysis.band], "-", color=color, label=label)
    low, high = [b["low"] for b in analysis.band], [b["high"] for b in analysis.band]
    if all(math.isfinite(v) for v in low + high):
        ax.fill_between(xs, low, high, color=color, alpha=alpha, label=band_label)


def _scale_y_to(ax, values) -> None:
    """Scale the y axis to what was measured (and predicted), not to the band: a law extrapolated
    from noisy points can swing far, and must not flatten the data into a line."""
    shown = [v for v in values if math.isfinite(v)]
    if shown:
        low, high = min(shown), max(shown)
        pad = 0.3 * (high - low) or 0.1 * abs(high) or 1.0
        ax.set_ylim(low - pad, high + pad)


def law_figure(task: str, d_f: int, metric: str, points: dict[int, float], analysis,
               history: list[tuple[int, list, list]] = ()):
    """The figure for one (task, D_f, metric) law. `history`: earlier fits as (points fitted,
    xs, values), drawn faint under the latest, so the figure shows how the law moved."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for i, (num_points, xs, values) in enumerate(history):
        ax.plot(xs, values, "-", color="0.6", linewidth=0.8, alpha=0.3 + 0.5 * (i + 1) / len(history),
                label="earlier fits (fewer checkpoints)" if i == 0 else None)
        ax.annotate(f"{num_points}", (xs[-1], values[-1]), fontsize=6, color="0.5")
    pretrained = sorted(d for d in points if d > 0)
    ax.plot(pretrained, [points[d] for d in pretrained], "o", color="C0", label="finetuned checkpoints")
    _draw_law(ax, analysis, "C1", 0.2,
              label=f"{analysis.law} fit, latest ({analysis.num_points} checkpoints)",
              band_label=f"{analysis.level:.0%} bootstrap interval")
    for p in analysis.predictions:
        # A percentile interval need not contain the point estimate, so no symmetric error bar.
        if math.isfinite(p["low"]) and math.isfinite(p["high"]):
            ax.vlines(p["x"], p["low"], p["high"], color="C3", linewidth=2)
        ax.plot([p["x"]], [p["value"]], "D", color="C3", label=f"prediction at {p['x']:.3g} tokens")
    if 0 in points:
        ax.axhline(points[0], color="0.4", linestyle="--", label="no pretraining (D_p = 0)")
    _scale_y_to(ax, [*points.values(), *(p["value"] for p in analysis.predictions)])
    ax.set_xscale("log")
    ax.set_xlabel("pretraining tokens D_p (log scale)")
    ax.set_ylabel(UNITS.get(metric, metric))
    ax.set_title(f"{task}, D_f = {d_f:,} tokens: {metric}\n{analysis.verdict}: {analysis.reason}",
                 fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def save_law_figure(path, *args, **kwargs) -> None:
    save_figure(path, law_figure(*args, **kwargs))


def metric_vs_cross_entropy_figure(task: str, d_f: int, metric: str, cross_entropy: dict[int, float],
                                   values: dict[int, float]):
    """A task metric against downstream cross-entropy, one point per D_p (the best lr of each):
    does lower cross-entropy mean better translations here? (The paper finds it need not.)"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    shared = sorted(set(cross_entropy) & set(values))
    ax.plot([cross_entropy[d] for d in shared], [values[d] for d in shared], "o-", color="C0",
            label="checkpoints, in order of D_p")
    for d in shared:
        ax.annotate("no pretraining" if d == 0 else f"D_p {d:.2g}", (cross_entropy[d], values[d]),
                    fontsize=6, textcoords="offset points", xytext=(3, 3))
    ax.invert_xaxis()  # better to the right: lower cross-entropy
    ax.set_xlabel(UNITS["cross_entropy"] + " (decreasing)")
    ax.set_ylabel(UNITS.get(metric, metric))
    ax.set_title(f"{task}, D_f = {d_f:,} tokens: {metric} vs downstream cross-entropy", fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def task_figure(task: str, groups: list[dict]):
    """The paper's view of one task: a panel per metric, each finetune size D_f in its own colour
    (points, fitted law, interval band; its no-pretraining baseline as a dashed line).
    `groups`: analyse_sweep's entries of this task ({"d_f", "metric", "points", "analysis"})."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(g["metric"] for g in groups))
    sizes = sorted({g["d_f"] for g in groups})
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.4 * rows), dpi=110, squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for g in (g for g in groups if g["metric"] == metric):
            color = f"C{sizes.index(g['d_f'])}"
            points, analysis = g["points"], g["analysis"]
            pretrained = sorted(d for d in points if d > 0)
            ax.plot(pretrained, [points[d] for d in pretrained], "o", color=color,
                    label=f"D_f = {g['d_f']:,} ({analysis.verdict})")
            _draw_law(ax, analysis, color, 0.15)
            if 0 in points:
                ax.axhline(points[0], color=color, linestyle="--", linewidth=0.8)
        _scale_y_to(ax, [v for g in groups if g["metric"] == metric for v in g["points"].values()])
        ax.set_xscale("log")
        ax.set_xlabel("pretraining tokens D_p (log scale)")
        ax.set_ylabel(UNITS.get(metric, metric))
        ax.set_title(metric, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle(f"{task}: fitted laws per finetune size (dashed: no pretraining; "
                 f"bands: bootstrap intervals)", fontsize=9)
    fig.tight_layout()
    return fig


def save_figure(path, fig) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path)
    plt.close(fig)
