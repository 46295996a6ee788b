"""A study's answer: per task, which candidate serves it best and how sure that is, then each
candidate's own answer (raysweep.answer, as for a sweep).

Built from the fitter's laws (LawGroup, one per candidate, task, D_f and metric): each
(task, D_f, metric) compares the candidates (raysweep.study.compare) at fit.target_tokens, or at
the largest D_p they all have. Used online (the study run's description in MLflow, rewritten
after every refit), at the end of `raysweep run` and by `raysweep report`.
"""

from __future__ import annotations

from raysweep import checkpoints
from raysweep.answer import NAMES, answer_rows, answer_table, page_head
from raysweep.data.mixture import alignment_text
from raysweep.laws.group import LawGroup
from raysweep.plan import plan_keys, stopped
from raysweep.spec import SweepSpec
from raysweep.study.compare import Comparison, describe_comparison, study_comparisons
from raysweep.text import interval, tokens


def _headline(task: str, mine: list[tuple[str, int, Comparison]], named: bool = True) -> str:
    """The task's decision in one sentence, led by its first task metric (BLEU in the paper);
    named: say the task's name (not where the line starts with it)."""
    of = f" for {task}" if named else ""
    quality = [(d_f, c) for _, d_f, c in mine if c.metric != "cross_entropy"]
    if not quality:
        return f"No comparison{of} yet: the candidates have no checkpoint in common."
    lead = quality[0][1].metric
    decided = {d_f: c for d_f, c in quality if c.metric == lead and c.best}
    name = NAMES.get(lead, lead)
    if decided and len({c.best for c in decided.values()}) == 1:
        best = next(iter(decided.values())).best
        p = min(c.p_best[best] for c in decided.values())
        sizes = ", ".join(f"{d:,}" for d in sorted(decided))
        return (f"**Best{of}: {best}** ({name} at D_f = {sizes} tokens, P(best) at least "
                f"{p:.2f}).")
    if decided:
        picks = "; ".join(f"{c.best} at D_f = {d:,}" for d, c in sorted(decided.items()))
        return f"**The best{of} depends on the finetuning size** ({name}: {picks})."
    return (f"**No decision yet{of}** in {name}: the candidates' differences are within "
            f"their noise; the rows below say what would resolve it.")


def study_lines(spec: SweepSpec, groups: list[LawGroup]) -> list[str]:
    """The decision in a line per task: what the experiment's description and the top of the
    study run's page show."""
    found = study_comparisons(spec, groups)
    return [f"- **{task.name}**: " + _headline(
        task.name, [f for f in found if f[0] == task.name], named=False) for task in spec.tasks]


def _agreement(mine: list[tuple[str, int, Comparison]]) -> list[str]:
    """Whether cross-entropy ranks the candidates as the task metrics do (the paper: it can
    improve where BLEU does not), per D_f."""
    lines = []
    for d_f in sorted({d for _, d, _ in mine}):
        at = {c.metric: [r["name"] for r in c.ranking] for _, d, c in mine if d == d_f}
        ce = at.pop("cross_entropy", None)
        if ce is None or not at:
            continue
        metric, order = next(iter(at.items()))
        same = "alike" if ce == order else (
            f"differently (cross-entropy: {', '.join(ce)}; {NAMES.get(metric, metric)}: "
            f"{', '.join(order)}): decide on the task metric")
        lines.append(f"- D_f {d_f:,}: cross-entropy and {NAMES.get(metric, metric)} rank the "
                     f"candidates {same}")
    return lines


def study_markdown(spec: SweepSpec, groups: list[LawGroup],
                   checkpoints_in: int | None = None, laws_link: str = "",
                   trials: tuple[dict[str, int], float] | None = None) -> str:
    """The study's page: the decision in a line per task first (what MLflow shows of a folded
    description), then per task the decision, a table of comparisons, then each candidate's own
    answer table. laws_link: the laws run's page (the figures and tables). trials: (finished
    trials per candidate, a trial's median seconds), where known: what a stop saved in trials."""
    found, done = study_comparisons(spec, groups), stopped(spec)
    # A stopped candidate's schedule ends where it was stopped.
    scheduled = sum(len([d for d in u.published_tokens()
                         if u.candidate not in done or d <= done[u.candidate]["at_tokens"]])
                    for u in spec.candidate_specs())
    lines = page_head(spec, "which pretraining data serves each task best",
                      study_lines(spec, groups), scheduled, checkpoints_in, laws_link,
                      f"candidates: {', '.join(c.name for c in spec.candidates)} · ")
    lines += _stops(spec, trials)
    for task in spec.tasks:
        mine = [item for item in found if item[0] == task.name]
        lines += [f"## {task.name}", "", _headline(task.name, mine), "",
                  "| D_f | metric | decision | ranking: value [interval], P(best) |",
                  "|---:|---|---|---|"]
        for _, d_f, c in mine:
            ranking = "; ".join(f"{r['name']} {interval(r['value'], r['low'], r['high'])} "
                                f"{r['p_best']:.2f}" for r in c.ranking)
            decision = f"**{c.best}**" if c.best else "no decision yet"
            lines.append(f"| {d_f:,} | {NAMES.get(c.metric, c.metric)} at {tokens(c.at)} "
                         f"({c.basis}) | {decision} | {ranking} |")
        lines += [""] + _agreement(mine) + ["", "Why:"]
        lines += [f"- D_f {d_f:,}, {NAMES.get(c.metric, c.metric)}: {c.decision}"
                  + (f" ({c.note})" if c.note else "") for _, d_f, c in mine] + [""]
    lines += _candidate_sections(spec, groups)
    return "\n".join(lines)


def _stops(spec: SweepSpec, trials: tuple[dict[str, int], float] | None) -> list[str]:
    """The candidates stopped as losers (the study's `stop` policy): when, why, and what it
    saved: the pretraining tokens not spent (none where its pretraining had already reached its
    budget: on a small machine the trials lag behind it, and the stop then saves trials only)
    and, where `trials` tells, the trials not run and their time at a trial's median."""
    lines = []
    for name, stop in stopped(spec).items():
        unit = spec.candidate_spec(name)
        budget = unit.published_tokens()[-1]
        made = max(checkpoints.published(unit, verify_weights=False), default=0)
        saved = (f"{tokens(budget - made)} pretraining tokens not spent ({1 - made / budget:.0%}"
                 f" of its budget; it stopped at {tokens(made)})" if made < budget else
                 "no pretraining (it had reached its budget)")
        if trials is not None:
            finished, seconds = trials
            planned = sum(len(plan_keys(unit, d)) for d in unit.published_tokens())
            not_run = max(planned - finished.get(name, 0), 0)
            saved += (f"; {not_run} of its {planned} trials not run (about "
                      f"{not_run * seconds:,.0f} trial-seconds at their median)")
        lines.append(f"- **{name} stopped** after its checkpoint at {tokens(stop['at_tokens'])} "
                     f"tokens ({stop['time']}): {stop['reason']}. Saved: {saved}; its queued "
                     f"trials were cancelled, its finished ones kept.")
    return (["Stopped early (the study's stop policy):", ""] + lines + [""]) if lines else []


def _candidate_sections(spec: SweepSpec, groups: list[LawGroup]) -> list[str]:
    """Each candidate's laws as a sweep's answer shows them: verdict, gain, the largest
    checkpoint, the prediction at the target and what more data gives."""
    lines, target = ["## Each candidate", ""], tokens(spec.fit.target_tokens)
    for unit in spec.candidate_specs():
        mine = [g for g in groups if g.candidate == unit.candidate]
        scores = ", ".join(f"{t.name} {alignment_text(unit.pretrain.mixture, t)}"
                           for t in spec.tasks)
        lines += [f"### {unit.candidate} (alignment score {scores})", "",
                  f"| task | D_f | metric | verdict | gain over none | largest checkpoint | at "
                  f"{target} (law) | more data, to {target} |",
                  "|---|---:|---|---|---|---|---|---|"]
        lines += [f"| {r['task']} | {r['d_f']:,} | {NAMES.get(r['metric'], r['metric'])} | "
                  f"**{r['verdict']}** | {r['gain']} | {r['now']} | {r['prediction']} | "
                  f"{r['more']} |" for r in answer_rows(unit, mine)] + [""]
    return lines


def study_table(spec: SweepSpec, groups: list[LawGroup]) -> str:
    """What `raysweep run` prints at the end of a study: each comparison, then each candidate's
    law table."""
    lines = []
    for task, d_f, c in study_comparisons(spec, groups):
        lines += [f"== {task}, D_f = {d_f:,} tokens, {NAMES.get(c.metric, c.metric)}",
                  describe_comparison(c, {g.candidate: g.analysis.verdict for g in groups
                                          if (g.task, g.d_f, g.metric) == (task, d_f, c.metric)}),
                  ""]
    for unit in spec.candidate_specs():
        lines += [f"== candidate {unit.candidate}",
                  answer_table(unit, [g for g in groups if g.candidate == unit.candidate]), ""]
    return "\n".join(lines)


def rankings_table(spec: SweepSpec, groups: list[LawGroup]) -> dict[str, list]:
    """Every comparison's ranking as table columns (an MLflow table artifact): per (task, D_f,
    metric) and candidate, its rank, value, interval, P(best), how it was read, the decision."""
    rows = [{"task": task, "d_f": d_f, "metric": c.metric, "at_tokens": c.at, "basis": c.basis,
             "rank": rank, "candidate": r["name"], "value": r["value"], "low": r["low"],
             "high": r["high"], "p_best": r["p_best"], "read": r["read"],
             "best": c.best or "no decision yet"}
            for task, d_f, c in study_comparisons(spec, groups)
            for rank, r in enumerate(c.ranking, start=1)]
    return {name: [r[name] for r in rows] for name in (rows[0] if rows else [])}
