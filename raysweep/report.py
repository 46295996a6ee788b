"""What a sweep has done and found, from MLflow and storage (no Ray): `raysweep status` and
`raysweep report`.

The laws in the report are refitted from the finished trial runs the way the online fitter fits
them (raysweep.fitter.analyse_sweep: same points, same seeded bootstrap), so the report shows
the numbers of the laws run in MLflow.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

from raysweep.spec import SpecError, SweepSpec


def sweep_status(spec: SweepSpec) -> dict:
    """Progress of a running or finished sweep."""
    from raysweep import checkpoints
    from raysweep.tracking import FAILURE, Tracker

    tracker = Tracker.of_existing_sweep(spec)
    if tracker is None:
        return {"started": False}
    sweep = tracker.find_runs({"raysweep.kind": "sweep"})
    pretrain = tracker.find_runs({"raysweep.kind": "pretrain"})
    laws = tracker.find_runs({"raysweep.kind": "laws"})
    trials = tracker.find_runs({"raysweep.kind": "trial"})
    by_status: dict[str, int] = {}
    for run in trials:
        by_status[run.info.status] = by_status.get(run.info.status, 0) + 1
    pretrain_metrics = pretrain[0].data.metrics if pretrain else {}
    sweep_tags = sweep[0].data.tags if sweep else {}
    return {
        "started": True,
        "sweep_status": sweep[0].info.status if sweep else "?",
        "checkpoints": sorted(checkpoints.published(spec, verify_weights=False)),
        "scheduled": spec.pretrain.published_tokens(),
        "pretrain": {k: pretrain_metrics[k] for k in ("tokens_seen", "loss", "tokens_per_second",
                                                      "mfu") if k in pretrain_metrics},
        "pretrain_status": pretrain[0].info.status if pretrain else "?",
        "trials": by_status,
        "planned": spec.num_trials(),
        "failures": {r.data.tags["raysweep.trial_key"]: r.data.tags.get(FAILURE, "?")
                     for r in trials if r.info.status == "FAILED"},
        "rejected": {k.split(".", 2)[2]: v for k, v in sweep_tags.items()
                     if k.startswith("raysweep.rejected_checkpoint.")},
        "verdicts": {k[len("raysweep.verdict."):]: v for k, v in (laws[0].data.tags if laws else {}).items()
                     if k.startswith("raysweep.verdict.")},
    }


def status_text(spec: SweepSpec, status: dict) -> str:
    if not status["started"]:
        return (f"sweep {spec.name!r}: nothing in MLflow yet ({spec.resolved_tracking_uri()}); "
                f"start it with `raysweep run {spec.source_file or 'SPEC'}`")
    pre = status["pretrain"]
    lines = [f"sweep {spec.name!r}: {status['sweep_status']}",
             f"  pretraining: {status['pretrain_status']}, {pre.get('tokens_seen', 0):,.0f} of "
             f"{status['scheduled'][-1]:,} tokens"
             + (f", loss {pre['loss']:.3f}" if "loss" in pre else "")
             + (f", {pre['tokens_per_second']:,.0f} tokens/s" if "tokens_per_second" in pre else "")
             + (f", MFU {pre['mfu']:.1%}" if "mfu" in pre else ""),
             f"  checkpoints: {len(status['checkpoints'])}/{len(status['scheduled'])} published"]
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


def law_rows(groups: list[dict]) -> list[dict]:
    """One row per (task, D_f, metric): what the report's table shows."""
    rows = []
    for g in groups:
        a = g["analysis"]
        params = ", ".join(
            f"{k} = {_number(v)} [{_number(a.intervals.get(k, (math.nan,) * 2)[0])}, "
            f"{_number(a.intervals.get(k, (math.nan,) * 2)[1])}]" for k, v in a.params.items())
        prediction = "; ".join(f"{_number(p['value'])} [{_number(p['low'])}, {_number(p['high'])}] "
                               f"at {p['x']:.3g}"
                               + ("" if p["low"] <= p["value"] <= p["high"] else " (unreliable)")
                               for p in a.predictions)
        rows.append({"task": g["task"], "d_f": g["d_f"], "metric": g["metric"], "law": a.law,
                     "points": a.num_points, "params": params or "-", "prediction": prediction or "-",
                     "backtest": (_number(a.backtest["max_relative_error"]) if a.backtest else "-"),
                     "verdict": a.verdict, "reason": a.reason})
    return rows


def verdict_in_words(spec: SweepSpec, groups: list[dict]) -> list[str]:
    """A paragraph per task, in the paper's terms: does this pretraining data help the task, and
    what does more of it buy?"""
    from raysweep.data.mixture import alignment_score

    paragraphs = []
    for task in spec.tasks:
        mine = [g for g in groups if g["task"] == task.name]
        aligned = [g for g in mine if g["analysis"].verdict == "aligned"]
        judged = [g for g in mine if g["analysis"].verdict in ("aligned", "misaligned")]
        score = alignment_score(spec.pretrain.mixture, task)
        text = (f"**{task.name}** (translation alignment score of the mixture {score:.2f}). ")
        if not judged:
            text += "Too few checkpoints have results to judge any law yet."
        elif len(aligned) == len(judged):
            text += ("Every law holds and predicts its held-out checkpoints: the pretraining data "
                     "are aligned with this task, and the predictions below are usable to decide "
                     "how much more pretraining is worth.")
        elif not aligned:
            text += ("No law holds: by the paper's guide the pretraining data are not aligned with "
                     "this task (or the measurements are too noisy to tell); do not extrapolate, "
                     "and consider a better-aligned mixture.")
        else:
            good = ", ".join(sorted({g["metric"] for g in aligned}))
            text += (f"The laws hold for {good} (at some finetune sizes) but not for every metric: "
                     f"trust the predictions of the laws marked aligned only; cross-entropy can "
                     f"keep improving while translation quality does not (the paper's warning).")
        for g in aligned:
            for p in g["analysis"].predictions:
                text += (f" At D_f = {g['d_f']:,}, {g['metric']} is predicted to reach "
                         f"{_number(p['value'])} [{_number(p['low'])}, {_number(p['high'])}] with "
                         f"{p['x']:,.0f} pretraining tokens.")
        paragraphs.append(text)
    return paragraphs


def write_report(spec: SweepSpec, out: str | Path, resamples: int | None = None) -> Path:
    """report.md (figures beside it, in figures/) and report.html (one file, figures inlined)."""
    from raysweep.fitter import analyse_sweep
    from raysweep.plots import save_figure, save_law_figure, task_figure

    status = sweep_status(spec)
    if not status["started"]:
        raise SpecError(status_text(spec, status) + "; there is nothing to report yet.")
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    groups = analyse_sweep(spec, resamples=resamples)
    figures = []
    for task in spec.tasks:  # the paper's view first: a panel per metric, a curve per D_f
        fitted = [g for g in groups if g["task"] == task.name and g["analysis"].params]
        if fitted:
            name = f"figures/{task.name}.png"
            save_figure(out / name, task_figure(task.name, fitted))
            figures.append(({"task": task.name, "d_f": "all", "metric": "all metrics"}, name))
    for g in groups:
        if not g["analysis"].params:
            continue
        name = f"figures/{g['task']}_df{g['d_f']}_{g['metric']}.png"
        save_law_figure(out / name, g["task"], g["d_f"], g["metric"], g["points"], g["analysis"])
        figures.append((g, name))
    rows = law_rows(groups)
    words = verdict_in_words(spec, groups)
    columns = ("task", "d_f", "metric", "law", "points", "params", "prediction", "backtest", "verdict")
    headers = ("task", "D_f", "metric", "law", "points", "parameters [90% interval]",
               "prediction [interval] at D_p", "backtest max rel. error", "verdict")

    progress = status_text(spec, status)
    md = [f"# raysweep report: {spec.name}", "",
          "```", progress, "```", "", "## Verdict", ""]
    md += [p + "\n" for p in words]
    md += ["## Laws", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    md += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    md += ["", "## Figures", ""]
    md += [f"![{g['task']} D_f={g['d_f']} {g['metric']}]({name})\n" for g, name in figures]
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")

    def inline(name: str) -> str:
        data = base64.b64encode((out / name).read_bytes()).decode()
        return f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'

    page = [f"<!doctype html><html><head><meta charset='utf-8'><title>raysweep report: "
            f"{html.escape(spec.name)}</title><style>body{{font-family:sans-serif;max-width:70em;"
            f"margin:auto}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;"
            f"padding:3px 6px;font-size:0.85em}}</style></head><body>",
            f"<h1>raysweep report: {html.escape(spec.name)}</h1>",
            f"<pre>{html.escape(progress)}</pre><h2>Verdict</h2>"]
    page += [f"<p>{html.escape(p).replace('**', '')}</p>" for p in words]
    page.append("<h2>Laws</h2><table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers)
                + "</tr>")
    page += ["<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in columns) + "</tr>"
             for r in rows]
    page.append("</table><h2>Figures</h2>")
    page += [inline(name) for _, name in figures]
    page.append("</body></html>")
    (out / "report.html").write_text("\n".join(page), encoding="utf-8")
    return out / "report.md"
