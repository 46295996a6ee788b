"""The answer a sweep exists for, on one page: does this pretraining data help the task, and what
will more of it give? Built from the fitted laws (raysweep.fitter's groups), in words and a small
table per task: per D_f and metric, the gain over no pretraining, the prediction at
fit.target_tokens, the verdict and the D_p needed for fit.target_score.

Used online (the sweep run's description in MLflow, rewritten after every refit), at the end of
`raysweep run` (the law table) and by `raysweep report`.
"""

from __future__ import annotations

import time

from raysweep.data.mixture import alignment_text
from raysweep.laws.group import LawGroup
from raysweep.spec import SweepSpec
from raysweep.text import number, tokens

NAMES = {"bleu": "BLEU", "chrf": "chrF", "rougeL": "ROUGE-L", "comet": "COMET",
         "cross_entropy": "cross-entropy"}


def short_verdict(analysis) -> str:
    """What a tag or a table cell shows: the verdict, marked while checkpoints are missing."""
    return ("provisional: " if analysis.provisional else "") + analysis.verdict


def with_interval(entry: dict | None, signed: bool = False) -> str:
    if not entry:
        return "-"
    value = f"{entry['value']:+.3g}" if signed else number(entry["value"])
    return f"{value} [{number(entry['low'])}, {number(entry['high'])}]"


def answer_rows(spec: SweepSpec, groups: list[LawGroup]) -> list[dict]:
    """One row per (task, D_f, metric), in the words of the table."""
    rows = []
    for g in groups:
        a = g.analysis
        # The second question, whether the law holds: no prediction is read from one that does not.
        prediction = "none: the law does not hold" if a.law_holds is False else "-"
        for p in a.predictions:
            prediction = with_interval(p) + (f" ({p['extrapolation']:.2g}x past the data)"
                                              if p.get("extrapolation", 1) > 1 else "")
        target = spec.fit.target_score.get(g.metric)
        needed = "-"
        if target is not None and a.params and a.law_holds is not False:
            needed = (f"{tokens(a.required_x)} for {number(target)}" if a.required_x is not None
                      else f"not reached ({number(target)})")
        rows.append({"task": g.task, "d_f": g.d_f, "metric": g.metric,
                     "points": a.num_points, "gain": with_interval(a.gain, signed=True),
                     "prediction": prediction, "needed": needed, "verdict": short_verdict(a),
                     "reason": a.reason})
    return rows


def _headline(task: str, mine: list[LawGroup]) -> str:
    """The task's answer in one sentence, led by its first task metric (BLEU in the paper)."""
    quality = [g for g in mine
               if g.metric != "cross_entropy" and g.analysis.verdict != "not fitted"]
    if not quality:
        return f"No task metric has a law for {task} yet."
    lead = quality[0].metric
    verdicts = {g.d_f: g.analysis.verdict for g in quality if g.metric == lead}
    sizes = lambda v: ", ".join(f"{d:,}" for d, w in sorted(verdicts.items()) if w == v)  # noqa: E731
    name = NAMES.get(lead, lead)
    if "aligned" in verdicts.values():
        return (f"**Yes: this pretraining data helps {task}.** {name} improves with more "
                f"pretraining and follows the law at D_f = {sizes('aligned')} tokens.")
    if "misaligned" in verdicts.values():
        return (f"**No: this pretraining data does not help {task}** ({name} misaligned at D_f = "
                f"{sizes('misaligned')}): do not extrapolate; try a better-aligned mixture.")
    if "no effect" in verdicts.values():
        return (f"**More of this pretraining data makes no measurable difference to {task}** at "
                f"D_f = {sizes('no effect')} (the paper's flattening at large D_f).")
    # Inconclusive in the lead metric: say which other laws did tell (often cross-entropy), so
    # the page does not read as "nothing is known".
    told = [f"{NAMES.get(g.metric, g.metric)} at D_f = {g.d_f:,}" for g in mine
            if g.metric != lead and g.analysis.verdict == "aligned"]
    return (f"**Not enough evidence yet for {task} in {name}:** its noise is larger than the "
            f"effect" + (f"; these improve with more pretraining beyond their noise: "
                         f"{', '.join(told)}" if told else "")
            + "; the reasons below say what would resolve it.")


def answer_markdown(spec: SweepSpec, groups: list[LawGroup],
                    checkpoints_in: int | None = None) -> str:
    """The page: a headline and a table per task, the reasons under it."""

    scheduled = len(spec.published_tokens())
    status = ("final" if checkpoints_in is None or checkpoints_in >= scheduled else
              f"provisional: {checkpoints_in} of {scheduled} checkpoints in")
    lines = [f"# {spec.name}: what this pretraining data does for the task",
             f"_{status} · updated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · "
             f"intervals {spec.fit.interval_level:.0%} · laws run: plots and tables_", ""]
    rows = answer_rows(spec, groups)
    target = (f"at {tokens(spec.fit.target_tokens)} tokens" if spec.fit.target_tokens
              else "prediction")
    for task in spec.tasks:
        mine = [g for g in groups if g.task == task.name]
        score = alignment_text(spec.pretrain.mixture, task)
        lines += [f"## {task.name} (alignment score of the mixture {score})", "",
                  _headline(task.name, mine), "",
                  f"| D_f | metric | verdict | gain over no pretraining | {target} | D_p needed |",
                  "|---:|---|---|---|---|---|"]
        mine_rows = [r for r in rows if r["task"] == task.name]
        for r in mine_rows:
            lines.append(f"| {r['d_f']:,} | {NAMES.get(r['metric'], r['metric'])} | "
                         f"**{r['verdict']}** | {r['gain']} | {r['prediction']} | {r['needed']} |")
        lines += ["", "Why:"] + [f"- D_f {r['d_f']:,}, {NAMES.get(r['metric'], r['metric'])}: "
                                 f"{r['reason']}" for r in mine_rows] + [""]
    return "\n".join(lines)


def answer_table(spec: SweepSpec, groups: list[LawGroup]) -> str:
    """The law table printed at the end of `raysweep run` (plain text, a reason under each row)."""
    target = f"at {tokens(spec.fit.target_tokens)}" if spec.fit.target_tokens else "prediction"
    level = f" [{spec.fit.interval_level:.0%}]"
    header = (f"{'task':8} {'D_f':>8} {'metric':14} {'points':>6}  {'verdict':24} "
              f"{'gain over none' + level:26} {target + level:36}")
    lines = [header, "-" * len(header)]
    for r in answer_rows(spec, groups):
        lines.append(f"{r['task']:8} {r['d_f']:>8,} {r['metric']:14} {r['points']:>6}  "
                     f"{r['verdict']:24} {r['gain']:26} {r['prediction']:36}"
                     + (f" D_p needed: {r['needed']}" if r["needed"] != "-" else ""))
        lines.append(f"{'':10}{r['reason']}")
    return "\n".join(lines)
