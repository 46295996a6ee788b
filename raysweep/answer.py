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
from raysweep.laws.evidence import MISALIGNED, NO_EFFECT
from raysweep.laws.group import LawGroup
from raysweep.spec import SweepSpec
from raysweep.text import interval, number, tokens, with_error

NAMES = {"bleu": "BLEU", "chrf": "chrF", "rougeL": "ROUGE-L", "comet": "COMET",
         "cross_entropy": "cross-entropy"}


def short_verdict(analysis) -> str:
    """What a tag or a table cell shows: the verdict, marked while checkpoints are missing."""
    return ("provisional: " if analysis.provisional else "") + analysis.verdict


LOWER_IS_BETTER = {"cross_entropy"}
"""Metrics whose improvement is a fall: their changes are written as reductions."""


def with_interval(entry: dict | None, signed: bool = False) -> str:
    if not entry:
        return "-"
    return interval(entry["value"], entry["low"], entry["high"], sign=signed)


def change_text(metric: str, entry: dict | None) -> str:
    """A change with its interval, read as an improvement whichever way the metric runs: a
    cross-entropy that falls is a "reduction 0.89 [0.80, 0.95] nats", one that rises an
    "increase ... (worse)"; a change whose interval holds zero is said to be nothing."""
    if not entry:
        return "-"
    value, low, high = entry["value"], entry["low"], entry["high"]
    if metric not in LOWER_IS_BETTER:
        text = interval(value, low, high, sign=True)
    elif high < 0:
        text = f"reduction {interval(-value, -high, -low)} nats"
    elif low > 0:
        text = f"increase {interval(value, low, high)} nats (worse)"
    else:
        text = f"{interval(value, low, high, sign=True)} nats"
    return text + (": not distinguishable from nothing" if low <= 0 <= high else "")


def _now(analysis) -> str:
    """The largest checkpoint as measured: "13.0 ± 0.5 at 655k"."""
    if not analysis.points:
        return "-"
    last = analysis.points[-1]
    return f"{with_error(last['y'], last['se'])} at {tokens(last['x'])}"


def _more(metric: str, analysis, how: bool = True) -> str:
    """What pretraining on to the target gives, by the law, from the largest checkpoint; how:
    say so, and how much more data that is (the table's header and note say it instead)."""
    if analysis.verdict == MISALIGNED:
        return "nothing expected: this data does not help the metric"
    if analysis.verdict == NO_EFFECT:
        return "nothing measurable expected: more of this data made no difference"
    if analysis.law_holds is False:
        return "not predicted: the law does not hold"
    for p in analysis.predictions:
        if p.get("more"):
            return change_text(metric, p["more"]) + (
                f" (by the law, from {p['extrapolation']:.2g}x the data)" if how else "")
    return "-"


def answer_rows(spec: SweepSpec, groups: list[LawGroup]) -> list[dict]:
    """One row per (task, D_f, metric), in the words of the table: the verdict, the gain over no
    pretraining, the largest checkpoint as measured ("now"), the prediction at the target and
    what going on to it gives ("more"), the D_p needed for fit.target_score where one is set."""
    rows = []
    for g in groups:
        a = g.analysis
        # The second question, whether the law holds: no prediction is read from one that does not.
        prediction = "none: the law does not hold" if a.law_holds is False else "-"
        for p in a.predictions:
            prediction = with_interval(p)
        target = spec.fit.target_score.get(g.metric)
        needed = "-"
        if target is not None and a.params and a.law_holds is not False:
            needed = (f"{tokens(a.required_x)} for {number(target)}" if a.required_x is not None
                      else f"not reached ({number(target)})")
        rows.append({"task": g.task, "d_f": g.d_f, "metric": g.metric,
                     "points": a.num_points, "gain": change_text(g.metric, a.gain),
                     "now": _now(a), "prediction": prediction,
                     "more": _more(g.metric, a, how=False),
                     "needed": needed, "verdict": short_verdict(a), "reason": a.reason})
    return rows


def _finding(mine: list[LawGroup]) -> tuple[str, str, str] | None:
    """What the task's lead metric (its first task metric: BLEU in the paper) says: (verdict,
    the metric's name, the D_f with that verdict); None where no task metric has a law."""
    quality = [g for g in mine
               if g.metric != "cross_entropy" and g.analysis.verdict != "not fitted"]
    if not quality:
        return None
    lead = quality[0].metric
    verdicts = {g.d_f: g.analysis.verdict for g in quality if g.metric == lead}
    verdict = next((v for v in ("aligned", "misaligned", "no effect") if v in verdicts.values()),
                   "inconclusive")
    sizes = ", ".join(f"{d:,}" for d, w in sorted(verdicts.items()) if w == verdict)
    return verdict, NAMES.get(lead, lead), sizes


def _headline(task: str, mine: list[LawGroup]) -> str:
    """The task's answer in one sentence, led by its first task metric."""
    found = _finding(mine)
    if found is None:
        return f"No task metric has a law for {task} yet."
    verdict, name, sizes = found
    if verdict == "aligned":
        return (f"**Yes: this pretraining data helps {task}.** {name} improves with more "
                f"pretraining and follows the law at D_f = {sizes} tokens.")
    if verdict == "misaligned":
        return (f"**No: this pretraining data does not help {task}** ({name} misaligned at D_f = "
                f"{sizes}): do not extrapolate; try a better-aligned mixture.")
    if verdict == "no effect":
        return (f"**More of this pretraining data makes no measurable difference to {task}** at "
                f"D_f = {sizes} (the paper's flattening at large D_f).")
    # Inconclusive in the lead metric: say which other laws did tell (often cross-entropy), so
    # the page does not read as "nothing is known".
    told = [f"{NAMES.get(g.metric, g.metric)} at D_f = {g.d_f:,}" for g in mine
            if NAMES.get(g.metric, g.metric) != name and g.analysis.verdict == "aligned"]
    return (f"**Not enough evidence yet for {task} in {name}:** its noise is larger than the "
            f"effect" + (f"; these improve with more pretraining beyond their noise: "
                         f"{', '.join(told)}" if told else "")
            + "; the reasons below say what would resolve it.")


SHORT = {"aligned": "yes, this data helps", "misaligned": "no, this data does not help",
         "no effect": "more of this data makes no measurable difference",
         "inconclusive": "not enough evidence yet"}


def _short_headline(task: str, mine: list[LawGroup]) -> str:
    found = _finding(mine)
    if found is None:
        return f"**{task}**: no task metric has a law yet"
    verdict, name, sizes = found
    return f"**{task}: {SHORT[verdict]}** ({name} {verdict} at D_f {sizes})"


def _more_headline(spec: SweepSpec, mine: list[LawGroup], short: bool = False) -> str:
    """The second half of the answer in a sentence: what pretraining on to the target gives the
    lead task metric, per D_f. short: for the one-line answer."""
    if not spec.fit.target_tokens:
        return "" if short else ("Set fit.target_tokens to see what more of this pretraining "
                                 "data would give.")
    quality = [g for g in mine
               if g.metric != "cross_entropy" and g.analysis.verdict != "not fitted"]
    if not quality:
        return ""
    lead, target = quality[0].metric, tokens(spec.fit.target_tokens)
    parts = [f"{_more(lead, g.analysis)} at D_f = {g.d_f:,}" for g in quality
             if g.metric == lead]
    if short:
        return f"more data, to {target}: {NAMES.get(lead, lead)} " + "; ".join(parts)
    return (f"**More of it:** {NAMES.get(lead, lead)} at {target} pretraining tokens against "
            f"the largest checkpoint: " + "; ".join(parts) + ".")


def answer_headlines(spec: SweepSpec, groups: list[LawGroup]) -> list[str]:
    """Each task's verdict in a few words: what a folded description shows."""
    return [_short_headline(t.name, [g for g in groups if g.task == t.name]) for t in spec.tasks]


def answer_lines(spec: SweepSpec, groups: list[LawGroup]) -> list[str]:
    """The answer in a line per task, both halves (does it help; what more gives): what the
    experiment's description and the top of the sweep run's page show."""
    lines = []
    for task in spec.tasks:
        mine = [g for g in groups if g.task == task.name]
        more = _more_headline(spec, mine, short=True)
        lines.append(f"- {_short_headline(task.name, mine)}" + (f" · {more}" if more else ""))
    return lines


def page_head(spec: SweepSpec, title: str, answer: list[str], scheduled: int,
              checkpoints_in: int | None, laws_link: str, extra: str) -> list[str]:
    """The top of an answer page (a sweep's or a study's): the answer in a line per task first
    (what MLflow shows of a folded description), then the title and a line saying whether the
    answer is final, when it was written and where the laws are (linked where laws_link is
    given: the laws run's page)."""
    status = ("final" if checkpoints_in is None or checkpoints_in >= scheduled else
              f"provisional: {checkpoints_in} of {scheduled} checkpoints in")
    laws = "laws run: plots and tables"
    laws = f"[{laws}]({laws_link})" if laws_link else laws
    return [f"**Answer** ({status}):", *answer, "", f"# {spec.name}: {title}",
            f"_{status} · updated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · "
            f"intervals {spec.fit.interval_level:.0%} · {extra}{laws} · "
            f"figures: Artifacts, overview/_", ""]


def answer_markdown(spec: SweepSpec, groups: list[LawGroup],
                    checkpoints_in: int | None = None, laws_link: str = "") -> str:
    """The page: the answer in a line per task first (what MLflow shows of a folded
    description), then a headline and a table per task, the reasons under it. laws_link: the
    laws run's page, linked where the page sends the reader for plots and tables."""

    lines = page_head(spec, "what this pretraining data does for the task",
                      answer_lines(spec, groups), len(spec.published_tokens()), checkpoints_in,
                      laws_link, "")
    rows = answer_rows(spec, groups)
    target = tokens(spec.fit.target_tokens)
    needed = bool(spec.fit.target_score)  # the column only where a target score is set
    for task in spec.tasks:
        mine = [g for g in groups if g.task == task.name]
        score = alignment_text(spec.pretrain.mixture, task)
        lines += [f"## {task.name} (alignment score of the mixture {score})", "",
                  _headline(task.name, mine), "", _more_headline(spec, mine), "",
                  f"| D_f | metric | verdict | gain over none | largest checkpoint | at {target} "
                  f"(law) | more data, to {target} |" + (" D_p needed |" if needed else ""),
                  "|---:|---|---|---|---|---|---|" + ("---|" if needed else "")]
        mine_rows = [r for r in rows if r["task"] == task.name]
        for r in mine_rows:
            lines.append(f"| {r['d_f']:,} | {NAMES.get(r['metric'], r['metric'])} | "
                         f"**{r['verdict']}** | {r['gain']} | {r['now']} | {r['prediction']} | "
                         f"{r['more']} |" + (f" {r['needed']} |" if needed else ""))
        if spec.fit.target_tokens:
            lines += ["", f"_Gain over none: the largest checkpoint minus no pretraining. More "
                          f"data: the law's value at {target} minus its value at the largest "
                          f"checkpoint, from the same bootstrap resamples (the measured point "
                          f"has noise of its own, so the columns before it need not differ by "
                          f"this). Intervals {spec.fit.interval_level:.0%}; ± one standard "
                          f"error._"]
        lines += ["", "Why:"] + [f"- D_f {r['d_f']:,}, {NAMES.get(r['metric'], r['metric'])}: "
                                 f"{r['reason']}" for r in mine_rows] + [""]
    return "\n".join(lines)


def answer_table(spec: SweepSpec, groups: list[LawGroup]) -> str:
    """The law table printed at the end of `raysweep run` (plain text): a row per law, what more
    data gives and the reason under it."""
    target = f"at {tokens(spec.fit.target_tokens)}" if spec.fit.target_tokens else "prediction"
    level = f" [{spec.fit.interval_level:.0%}]"
    header = (f"{'task':8} {'D_f':>8} {'metric':14} {'points':>6}  {'verdict':24} "
              f"{'gain over none' + level:30} {'largest checkpoint':22} {target + level:20}")
    lines = [header, "-" * len(header)]
    for r in answer_rows(spec, groups):
        lines.append(f"{r['task']:8} {r['d_f']:>8,} {r['metric']:14} {r['points']:>6}  "
                     f"{r['verdict']:24} {r['gain']:30} {r['now']:22} {r['prediction']:20}"
                     + (f" D_p needed: {r['needed']}" if r["needed"] != "-" else ""))
        if r["more"] != "-":
            lines.append(f"{'':10}more data: {r['more']}")
        lines.append(f"{'':10}{r['reason']}")
    return "\n".join(lines)
