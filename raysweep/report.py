"""What a sweep has done and found, from MLflow and storage (no Ray): `raysweep status` and
`raysweep report`.

The laws in the report are refitted from the finished trial runs the way the online fitter fits
them (raysweep.refit.analyse_sweep: same points, same seeded bootstrap), so the report shows
the numbers of the laws run in MLflow.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

from raysweep import checkpoints
from raysweep.answer import answer_markdown
from raysweep.checkpoint_source import checkpoint_source
from raysweep.data.mixture import alignment_score
from raysweep.figures.law import save_figure, save_law_figure, task_figure
from raysweep.laws.analysis import identifiable
from raysweep.laws.group import LawGroup
from raysweep.plan import units
from raysweep.refit import analyse_sweep
from raysweep.spec import SpecError, SweepSpec
from raysweep.study.answer import study_markdown
from raysweep.study.compare import study_comparisons
from raysweep.study.figures import alignment_figure, study_figure
from raysweep.tracking import (
    CANDIDATE,
    FAILURE,
    KIND,
    KINDS,
    REJECTED_PREFIX,
    TRIAL_KEY,
    VERDICT_PREFIX,
    Tracker,
)


def sweep_status(spec: SweepSpec) -> dict:
    """Progress of a running or finished sweep (a study: of each candidate's pretraining)."""

    tracker = Tracker.of_existing_sweep(spec)
    if tracker is None:
        return {"started": False}
    sweep, pretrain, laws, trials, candidates = (tracker.find_runs({KIND: kind})
                                                 for kind in KINDS)
    by_status: dict[str, int] = {}
    for run in trials:
        by_status[run.info.status] = by_status.get(run.info.status, 0) + 1
    sweep_tags = sweep[0].data.tags if sweep else {}
    runs = {r.data.tags.get(CANDIDATE, ""): r for r in (candidates if spec.candidates
                                                        else pretrain)}
    return {
        "started": True,
        "sweep_status": sweep[0].info.status if sweep else "?",
        "stages": [_stage(unit, runs.get(unit.candidate)) for unit in units(spec)],
        "trials": by_status,
        "planned": spec.num_trials(),
        "failures": {r.data.tags[TRIAL_KEY]: r.data.tags.get(FAILURE, "?")
                     for r in trials if r.info.status == "FAILED"},
        "rejected": {k.split(".", 2)[2]: v for k, v in sweep_tags.items()
                     if k.startswith(REJECTED_PREFIX)},
        "verdicts": {k[len(VERDICT_PREFIX):]: v
                     for k, v in (laws[0].data.tags if laws else {}).items()
                     if k.startswith(VERDICT_PREFIX)},
    }


def _stage(unit: SweepSpec, run) -> dict:
    """One checkpoint stage's progress: the sweep's, or a study candidate's."""
    metrics = run.data.metrics if run else {}
    return {"candidate": unit.candidate, "status": run.info.status if run else "?",
            "checkpoints": sorted(checkpoints.published(unit, verify_weights=False)),
            "scheduled": unit.published_tokens(),
            "pretrain": {k: metrics[k] for k in ("tokens_seen", "loss", "tokens_per_second",
                                                 "mfu") if k in metrics}}


def status_text(spec: SweepSpec, status: dict) -> str:
    if not status["started"]:
        return (f"sweep {spec.name!r}: nothing in MLflow yet ({spec.resolved_tracking_uri()}); "
                f"start it with `raysweep run {spec.source_file or 'SPEC'}`")
    stage_name = checkpoint_source(spec).stage
    lines = [f"{'study' if spec.candidates else 'sweep'} {spec.name!r}: {status['sweep_status']}"]
    for stage in status["stages"]:
        pre, name = stage["pretrain"], " ".join(filter(None, [stage_name, stage["candidate"]]))
        lines += [f"  {name}: {stage['status']}, {pre.get('tokens_seen', 0):,.0f} of "
                  f"{stage['scheduled'][-1]:,} tokens"
                  + (f", loss {pre['loss']:.3f}" if "loss" in pre else "")
                  + (f", {pre['tokens_per_second']:,.0f} tokens/s"
                     if "tokens_per_second" in pre else "")
                  + (f", MFU {pre['mfu']:.1%}" if "mfu" in pre else ""),
                  f"  checkpoints{' ' + stage['candidate'] if stage['candidate'] else ''}: "
                  f"{len(stage['checkpoints'])}/{len(stage['scheduled'])} published"]
    for name, reason in status["rejected"].items():
        lines.append(f"    skipped {name}: {reason}")
    trials = status["trials"]
    lines.append(f"  trials: {trials.get('FINISHED', 0)}/{status['planned']} finished, "
                 f"{trials.get('RUNNING', 0)} running, {trials.get('FAILED', 0)} failed")
    for key, reason in status["failures"].items():
        lines.append(f"    failed {key}: {reason}")
    if status["verdicts"]:
        lines.append("  latest laws:")
        for group, verdict in sorted(status["verdicts"].items()):
            lines.append(f"    {group}: {verdict}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# The report


def _number(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else "-"


def law_rows(groups: list[LawGroup]) -> list[dict]:
    """One row per (task, D_f, metric): the fitted law itself (supporting material)."""
    rows = []
    for g in groups:
        a = g.analysis
        params = ", ".join(
            f"{k} = {_number(v)} [{_number(a.intervals.get(k, (math.nan,) * 2)[0])}, "
            f"{_number(a.intervals.get(k, (math.nan,) * 2)[1])}]" for k, v in a.params.items())
        if a.params and not identifiable(a):  # as in the figures and on the laws run
            params = "not shown: the points do not pin them down"
        fit = (f"chi2 {a.chi2:.1f} / {a.dof} dof" + (f", p = {a.p_fit:.2g}" if a.p_fit is not None
                                                      else "") if a.chi2 is not None else "-")
        rows.append({"task": g.task, "d_f": g.d_f, "metric": g.metric, "law": a.law,
                     "points": a.num_points, "params": params or "-", "fit": fit,
                     "backtest": (_number(a.backtest["max_relative_error"]) if a.backtest else "-"),
                     "noise": a.noise_source or "-"})
    return rows


def markdown_to_html(markdown: str) -> str:
    """The little Markdown the answer page uses (headings, tables, bullets, **bold**, _italic_
    lines) as HTML, so report.html needs no Markdown library."""
    def inline(text: str) -> str:
        text = html.escape(text)
        return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)

    out, table = [], False
    for line in markdown.splitlines():
        if line.startswith("|") and set(line) <= set("|-: "):
            continue  # a table's separator row
        if line.startswith("|") != table:
            out.append("<table>" if not table else "</table>")
            table = not table
        if table:
            out.append("<tr>" + "".join(f"<td>{inline(c.strip())}</td>"
                                        for c in line.strip("|").split("|")) + "</tr>")
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level + 1}>{inline(line.lstrip('# '))}</h{level + 1}>")
        elif line.startswith("- "):
            out.append(f"<li>{inline(line[2:])}</li>")
        elif line.startswith("_") and line.endswith("_"):
            out.append(f"<p><i>{inline(line.strip('_'))}</i></p>")
        elif line:
            out.append(f"<p>{inline(line)}</p>")
    return "\n".join(out + (["</table>"] if table else []))


def _figures(spec: SweepSpec, groups: list[LawGroup], out: Path) -> list[tuple[str, str]]:
    """The paper's view first (a panel per metric, a curve per D_f), then one figure per law:
    (caption, file under `out`)."""
    figures = []
    if spec.candidates:  # a study: the candidates side by side first
        decisions = {(t, d, c.metric): c for t, d, c in study_comparisons(spec, groups)}
        for task in spec.tasks:
            for d_f in task.finetune_tokens:
                mine = [g for g in groups if (g.task, g.d_f) == (task.name, d_f)]
                name = f"figures/study_{task.name}_df{d_f}.png"
                save_figure(out / name, study_figure(
                    task.name, d_f, mine, [c.name for c in spec.candidates],
                    {m: c for (t, d, m), c in decisions.items() if (t, d) == (task.name, d_f)},
                    target_tokens=spec.fit.target_tokens))
                figures.append((f"{task.name} D_f={d_f}: the candidates", name))
            scores = {c.name: alignment_score(spec.candidate_spec(c.name).pretrain.mixture, task)
                      for c in spec.candidates}
            name = f"figures/study_{task.name}_gain_vs_alignment.png"
            save_figure(out / name, alignment_figure(
                task.name, [g for g in groups if g.task == task.name and g.candidate], scores))
            figures.append((f"{task.name}: each candidate's gain against its alignment", name))
    for task in spec.tasks:
        for candidate in [u.candidate for u in units(spec)]:
            fitted = [g for g in groups if (g.task, g.candidate) == (task.name, candidate)
                      and g.analysis.points]
            title = f"{task.name} after {candidate}" if candidate else task.name
            if fitted:
                name = f"figures/{candidate + '_' if candidate else ''}{task.name}.png"
                save_figure(out / name, task_figure(title, fitted,
                                                    target_tokens=spec.fit.target_tokens))
                figures.append((f"{title} D_f=all all metrics", name))
    for g in groups:
        if not g.analysis.points:  # not fitted (the COMET stand-in), too few points
            continue
        head = f"{g.candidate}_" if g.candidate else ""
        name = f"figures/{head}{g.task}_df{g.d_f}_{g.metric}.png"
        title = f"{g.task} after {g.candidate}" if g.candidate else g.task
        save_law_figure(out / name, title, g.d_f, g.metric, g.points, g.analysis,
                        target_tokens=spec.fit.target_tokens)
        figures.append((f"{title} D_f={g.d_f} {g.metric}", name))
    return figures


LAW_COLUMNS = (("task", "task"), ("d_f", "D_f"), ("metric", "metric"), ("law", "law"),
               ("points", "points"), ("params", "parameters [90% interval]"),
               ("fit", "goodness of fit"), ("backtest", "backtest max rel. error"),
               ("noise", "errors"))


def write_report(spec: SweepSpec, out: str | Path, resamples: int | None = None) -> Path:
    """report.md (figures beside it, in figures/) and report.html (one file, figures inlined):
    the answer first (as on the sweep run's MLflow page), then the figures, then the laws."""

    status = sweep_status(spec)
    if not status["started"]:
        raise SpecError(status_text(spec, status) + "; there is nothing to report yet.")
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    groups = analyse_sweep(spec, resamples=resamples)
    figures = _figures(spec, groups, out)
    published = sum(len(stage["checkpoints"]) for stage in status["stages"])
    answer = (study_markdown if spec.candidates else answer_markdown)(spec, groups, published)
    rows = law_rows(groups)
    progress = status_text(spec, status)
    laws = ["## The laws", "", "| " + " | ".join(h for _, h in LAW_COLUMNS) + " |",
            "|" + "---|" * len(LAW_COLUMNS)]
    laws += ["| " + " | ".join(str(r[c]) for c, _ in LAW_COLUMNS) + " |" for r in rows]
    md = [answer, "## Figures", ""]
    md += [f"![{caption}]({name})\n" for caption, name in figures]
    md += laws + ["", "## Progress", "", "```", progress, "```", ""]
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")

    def inline(name: str) -> str:
        data = base64.b64encode((out / name).read_bytes()).decode()
        return f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'

    page = [f"<!doctype html><html><head><meta charset='utf-8'><title>raysweep report: "
            f"{html.escape(spec.name)}</title><style>body{{font-family:sans-serif;max-width:70em;"
            f"margin:auto}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;"
            f"padding:3px 6px;font-size:0.85em}} img{{max-width:100%}}</style></head><body>",
            markdown_to_html(answer), "<h2>Figures</h2>"]
    page += [inline(name) for _, name in figures]
    page.append(markdown_to_html("\n".join(laws)))
    page.append(f"<h2>Progress</h2><pre>{html.escape(progress)}</pre></body></html>")
    (out / "report.html").write_text("\n".join(page), encoding="utf-8")
    return out / "report.md"
