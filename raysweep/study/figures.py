"""A study's figure per (task, D_f): a panel per metric, each candidate's points, law and band in
its own colour over the shared no-pretraining baseline, and the decision of each metric in the
panel's title. Each candidate's law figures are raysweep.figures.law's, as for a sweep; the
panels and their layout (two columns, readable ~600 px wide) are raysweep.figures.panels'."""

from __future__ import annotations

from matplotlib.lines import Line2D

from raysweep.figures.layout import panel_legend
from raysweep.figures.panels import encoding_note, law_panel, panels_figure
from raysweep.figures.parts import ERROR_BAR_SE, FONT, UNITS, no_signal, no_signal_note, wrap
from raysweep.laws.group import LawGroup
from raysweep.study.compare import Comparison
from raysweep.text import tokens


def study_figure(task: str, d_f: int, groups: list[LawGroup], candidates: list[str],
                 decisions: dict[str, Comparison], target_tokens: float | None = None):
    """`groups`: the laws of this (task, D_f), every candidate's; `candidates`: their order (and
    colours); `decisions`: metric -> its comparison, where there is one; `target_tokens`: where
    the laws stop (fit.target_tokens; by default each law's prediction)."""
    metrics = [m for m in dict.fromkeys(g.metric for g in groups)
               if any(g.analysis.points for g in groups if g.metric == m)]

    def draw(ax, metric, width):
        entries = [(g, f"C{candidates.index(g.candidate)}", g.candidate)
                   for g in groups if g.metric == metric and g.candidate in candidates]
        law_panel(ax, metric, entries, shared_baseline=True, target_tokens=target_tokens,
                  width_in=width)
        c = decisions.get(metric)
        if c is not None:
            verdict = (f"best: {c.best}, P(best) {c.p_best[c.best]:.2f}" if c.best
                       else "no decision yet")
            ax.set_title(wrap([f"{metric}: {verdict} at {tokens(c.at)} tokens ({c.basis})"],
                              width, FONT["title"]), fontsize=FONT["title"])

    warnings = [no_signal_note(m, next(g.points for g in groups if g.metric == m))
                for m in metrics if all(no_signal(g.points) for g in groups if g.metric == m)]
    baseline = "grey dashed: no pretraining (shared)"
    return panels_figure(f"{task}, D_f = {d_f:,}: the candidates' laws", metrics, draw,
                         [encoding_note(groups, target_tokens, baseline)], warnings)


def alignment_figure(task: str, groups: list[LawGroup], scores: dict[str, float | None]):
    """The paper's view of a study: each candidate's gain over no pretraining (at its largest
    checkpoint, ±1 SE) against its mixture's alignment score with the task, a panel per metric,
    each D_f in its own colour, each point named by its candidate. `groups`: the task's laws,
    every candidate's; `scores`: candidate -> alignment score (None: a source's language is not
    known, left out and said so)."""
    metrics = [m for m in dict.fromkeys(g.metric for g in groups)
               if any(g.analysis.gain for g in groups if g.metric == m)]
    sizes = sorted({g.d_f for g in groups})

    def draw(ax, metric, width):
        named = set()
        for g in groups:
            gain, score = g.analysis.gain, scores.get(g.candidate)
            if g.metric != metric or not gain or score is None:
                continue
            i = sizes.index(g.d_f)
            shift = 0.015 * (i - (len(sizes) - 1) / 2)  # each D_f beside the others, not on them
            ax.errorbar([score + shift], [gain["value"]], yerr=[ERROR_BAR_SE * gain["se"]],
                        fmt="o", color=f"C{i}", capsize=3, markersize=5)
            if g.candidate not in named:
                named.add(g.candidate)
                ax.annotate(g.candidate, (score, gain["value"]), fontsize=FONT["note"],
                            textcoords="offset points", xytext=(7, 3))
        ax.axhline(0.0, color="0.4", linewidth=0.9, linestyle="--")
        ax.set_xlabel("alignment score", fontsize=FONT["label"])
        ax.set_ylabel("gain over no pretraining", fontsize=FONT["label"])
        ax.tick_params(labelsize=FONT["tick"])
        ax.set_title(UNITS.get(metric, metric), fontsize=FONT["title"])
        ax.grid(True, alpha=0.3)
        handles = [Line2D([], [], marker="o", linestyle="", color=f"C{i}")
                   for i in range(len(sizes))]
        panel_legend(ax, handles, [f"D_f = {d:,}" for d in sizes])

    unknown = sorted(name for name, score in scores.items() if score is None)
    notes = [f"Points: each candidate's largest checkpoint minus no pretraining, "
             f"±{ERROR_BAR_SE:g} SE; dashed: no gain. The paper's finding: the better the "
             f"pretraining data align with the task (score 1: half each task language; 0: "
             f"neither), the more they give."
             + (" Cross-entropy: lower is better, so a gain below zero helps." if
                "cross_entropy" in metrics else "")]
    if unknown:
        notes.append(f"Left out (a source's language is not known): {', '.join(unknown)}.")
    return panels_figure(f"{task}: what each candidate gives, by how well it aligns", metrics,
                         draw, notes, [])
