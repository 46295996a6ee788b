"""A study's figure per (task, D_f): a panel per metric, each candidate's points, law and band in
its own colour over the shared no-pretraining baseline, and the decision of each metric in the
panel's title. The law figures of each candidate are raysweep.plots' as for a sweep."""

from __future__ import annotations

import math

from raysweep.laws.group import LawGroup
from raysweep.plots import _figure, _wrap, law_panel
from raysweep.study.compare import Comparison
from raysweep.text import tokens


def study_figure(task: str, d_f: int, groups: list[LawGroup], candidates: list[str],
                 decisions: dict[str, Comparison]):
    """`groups`: the laws of this (task, D_f), every candidate's; `candidates`: their order (and
    colours); `decisions`: metric -> its comparison, where there is one."""
    metrics = [m for m in dict.fromkeys(g.metric for g in groups)
               if any(g.analysis.points for g in groups if g.metric == m)]
    cols = min(3, max(1, len(metrics)))
    rows = max(1, math.ceil(len(metrics) / cols))
    legend_in = 0.14 * (len(candidates) + 1)
    fig = _figure(figsize=(4.6 * cols, (3.4 + legend_in) * rows), dpi=110, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        entries = [(g, f"C{candidates.index(g.candidate)}", g.candidate)
                   for g in groups if g.metric == metric and g.candidate in candidates]
        law_panel(ax, metric, entries, shared_baseline=True)
        c = decisions.get(metric)
        if c is not None:
            verdict = (f"best: {c.best}, P(best) {c.p_best[c.best]:.2f}" if c.best
                       else "no decision yet")
            ax.set_title(f"{metric}: {verdict}\nat {tokens(c.at)} tokens ({c.basis})", fontsize=8)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    level = groups[0].analysis.level if groups else 0.9
    fig.suptitle(_wrap([f"{task}, D_f = {d_f:,} tokens: the candidates' laws. Points: ±1 SE; grey "
                        f"dashed: no pretraining (shared); bands: {level:.0%} bootstrap intervals;"
                        f" shaded right of the largest checkpoint: extrapolation"],
                       4.6 * cols, 9), fontsize=9)
    return fig
