"""Command line: `raysweep validate|run|stop|status|report|fit`.

Each command imports its own modules when it runs: `raysweep fit --csv` needs numpy and scipy,
not Ray, torch, transformers and MLflow (seconds at every start), and `raysweep validate` no Ray.

Exit status: 0 success, 1 the sweep ran but failed, 2 bad input (nothing was written), 143
stopped by SIGTERM (`ray job stop`) or 130 by Ctrl-C (unfinished runs marked KILLED; a rerun
resumes).
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import os
import sys

from raysweep.laws import DEFAULT_HUBER_DELTA, REGISTERED_LAWS
from raysweep.laws.analysis import analyse, describe
from raysweep.logs import LEVEL_VARIABLE, LEVELS
from raysweep.logs import configure as configure_logging
from raysweep.spec import SpecError
from raysweep.spec_loader import load_spec


def _quiet_environment() -> None:
    # Offline-friendly, quiet defaults; the user's own settings win.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def cmd_validate(args) -> int:
    # this command's modules (see the module docstring)
    from raysweep.cluster import check_resources, load_cluster_config
    from raysweep.preflight import check, plan_text

    spec = load_spec(args.spec)
    _, available = check(spec, offline=True)
    if args.cluster:
        check_resources(spec, load_cluster_config(args.cluster), args.cluster)
    print(plan_text(spec, available))
    print("spec is valid" + (f" and fits the node types of {args.cluster}" if args.cluster else ""))
    return 0


def cmd_run(args) -> int:
    # this command's modules (see the module docstring)
    from raysweep.answer import answer_table
    from raysweep.checkpoint_source import checkpoint_source
    from raysweep.plan import count_trials
    from raysweep.sweep import SweepStopped, run_sweep

    spec = load_spec(args.spec)
    try:
        outcome = run_sweep(spec)
    except SweepStopped as stopped:  # the runs are marked KILLED; a rerun resumes
        return 128 + stopped.signum
    print()
    print(answer_table(spec, outcome.groups))
    print()
    print(f"MLflow: {spec.resolved_tracking_uri()}  (experiment {spec.name!r}); open the UI with\n"
          f"  mlflow ui --backend-store-uri {spec.resolved_tracking_uri()}")
    if outcome.ok:
        print(f"sweep {spec.name!r} finished in {outcome.wall_seconds:.0f} s")
        return 0
    print(f"sweep {spec.name!r} FAILED after {outcome.wall_seconds:.0f} s:", file=sys.stderr)
    planned = count_trials(spec, checkpoint_source(spec).final_checkpoints())
    for error in outcome.errors or [f"only {outcome.progress} of {planned} trials finished"]:
        print(f"  {error}", file=sys.stderr)
    return 1


def cmd_stop(args) -> int:
    """Ask a sweep that follows a trainer's folder (series.attach) to take no more checkpoints:
    the trials of those it has are finished and their laws fitted, then it ends."""
    # this command's modules (see the module docstring)
    from raysweep.checkpoint_source import checkpoint_source

    spec = load_spec(args.spec)
    if not checkpoint_source(spec).request_stop():
        raise SpecError(f"{spec.source_file}: `raysweep stop` is for a sweep that follows a series "
                        f"being written (series.attach: true); stop any other with `ray job stop` "
                        f"or Ctrl-C (a rerun resumes it).")
    print(f"asked sweep {spec.name!r} to take no more checkpoints; it finishes the trials of "
          f"those it has, then ends")
    return 0


def cmd_status(args) -> int:
    # this command's modules (see the module docstring)
    from raysweep.report import status_text, sweep_status

    spec = load_spec(args.spec)
    print(status_text(spec, sweep_status(spec)))
    return 0


def cmd_report(args) -> int:
    # this command's modules (see the module docstring)
    from raysweep.report import write_report

    spec = load_spec(args.spec)
    path = write_report(spec, args.out, resamples=args.resamples)
    print(f"report written: {path} (figures in {path.parent / 'figures'}) and "
          f"{path.with_suffix('.html')} (one self-contained file)")
    return 0


def _read_csv_columns(path: str, *names: str) -> list[list[float]]:
    """Numeric columns of a CSV file; SpecError (exit 2) naming the file and column."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise SpecError(f"{path}: CSV file not found. Pass a table with one row "
                        f"per point.") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise SpecError(f"{path}: not a readable UTF-8 CSV file ({err}).") from None
    columns = list(rows[0].keys()) if rows else []
    values = {}
    for name in names:
        if name not in columns:
            raise SpecError(f"{path}: no column {name!r}; the columns are {columns}. "
                            f"Pass --x, --y (and --se) with column names from the header row.")
        parsed = []
        for line, row in enumerate(rows, start=2):
            try:
                parsed.append(float(row[name]))
            except (TypeError, ValueError):
                raise SpecError(f"{path}, line {line}: column {name!r} holds {row[name]!r}, "
                                f"expected a number.") from None
        values[name] = parsed
    return [values[name] for name in names]


def cmd_fit(args) -> int:
    if args.spec:
        return _fit_sweep(args)
    if not (args.csv and args.x and args.y):
        raise SpecError("raysweep fit: pass a sweep spec (refit from MLflow), or --csv FILE "
                        "--x COLUMN --y COLUMN --law NAME to fit a table.")
    if args.law_module:
        # A user's module that declares laws and calls register_law on import: the only way a
        # command-line run can see laws that are not built in.
        try:
            importlib.import_module(args.law_module)
        except ImportError as err:
            raise SpecError(f"raysweep fit: --law-module {args.law_module!r} could not be imported "
                            f"({err}); pass a module importable from here.") from None
    if args.law not in REGISTERED_LAWS:
        raise SpecError(f"raysweep fit: --law {args.law!r} is not a known law; expected one of "
                        f"{', '.join(sorted(REGISTERED_LAWS))}.")
    x, y, *se = _read_csv_columns(args.csv, args.x, args.y, *([args.se] if args.se else []))
    law = REGISTERED_LAWS[args.law]
    if law.num_inputs != 1:
        raise SpecError(f"raysweep fit: --law {args.law} takes {law.num_inputs} variables; the CSV "
                        f"command fits laws of one --x column (use raysweep.laws.fit_law).")
    delta = args.huber_delta or (DEFAULT_HUBER_DELTA["cross_entropy"] if args.law == "power_law"
                                 else DEFAULT_HUBER_DELTA["bleu"])
    increasing = {"rising": True, "falling": False, None: None}[args.direction]
    analysis = analyse(law, x, y, delta, se=se[0] if se else None, baseline=args.baseline,
                       baseline_se=args.baseline_se, increasing=increasing,
                       predict_at=args.predict_at or (), target_y=args.target,
                       k=args.backtest_k, resamples=args.resamples or 1000, level=args.level,
                       min_effect=args.min_effect)
    if args.json:
        print(json.dumps(analysis.to_dict(), indent=2, default=float))
    else:
        print(describe(analysis, args.x, args.y))
    return 0


def _fit_sweep(args) -> int:
    # this command's modules (see the module docstring)
    from raysweep.fitter import analyse_sweep
    from raysweep.tracking import Tracker

    spec = load_spec(args.spec)
    if Tracker.of_existing_sweep(spec) is None:
        raise SpecError(f"{args.spec}: sweep {spec.name!r} has no results in MLflow "
                        f"({spec.resolved_tracking_uri()}); run it first with `raysweep run "
                        f"{args.spec}`.")
    groups = analyse_sweep(spec, resamples=args.resamples)
    if args.json:
        print(json.dumps([{"task": g.task, "d_f": g.d_f, "metric": g.metric, "points": g.points,
                           "analysis": g.analysis.to_dict()} for g in groups], indent=2,
                         default=float))
        return 0
    for group in groups:
        print(f"== task {group.task}, D_f = {group.d_f:,} tokens, {group.metric}")
        print(describe(group.analysis, "D_p", group.metric))
        print()
    return 0


def main(argv: list[str] | None = None) -> int:
    _quiet_environment()
    args = _parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        return args.func(args)
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    """Every command and its options (long: one line or three per option, nothing else)."""
    parser = argparse.ArgumentParser(prog="raysweep", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="check a spec and print the plan")
    validate.add_argument("spec")
    validate.add_argument("--cluster", metavar="CLUSTER_YAML",
                          help="also check that every stage's resources fit a node type of this "
                               "Ray cluster launcher config (e.g. cluster.yaml)")
    validate.set_defaults(func=cmd_validate)
    run = sub.add_parser("run", help="run (or resume) a sweep")
    run.add_argument("spec")
    run.set_defaults(func=cmd_run)
    stop = sub.add_parser("stop", help="end a sweep that follows a series being written "
                                       "(series.attach) with the checkpoints it has")
    stop.add_argument("spec")
    stop.set_defaults(func=cmd_stop)
    status = sub.add_parser("status", help="progress and latest laws of a running or finished "
                                           "sweep")
    status.add_argument("spec")
    status.set_defaults(func=cmd_status)
    report = sub.add_parser("report", help="write a Markdown + HTML report with figures and laws")
    report.add_argument("spec")
    report.add_argument("--out", required=True, help="folder for report.md, report.html, figures/")
    report.add_argument("--resamples", type=int, help="bootstrap resamples (default: the spec's)")
    report.set_defaults(func=cmd_report)
    fit = sub.add_parser("fit", help="fit a scaling law to a CSV table, or refit a sweep from "
                                     "MLflow")
    fit.add_argument("spec", nargs="?", help="a sweep spec: refit every law from its MLflow runs")
    fit.add_argument("--csv", help="a table with one row per point")
    fit.add_argument("--x", help="column of the pretraining size D_p (tokens)")
    fit.add_argument("--y", help="column of the metric")
    fit.add_argument("--se", help="column of each point's standard error (default: estimated "
                     "from the scatter of the points)")
    fit.add_argument("--baseline", type=float, help="the metric without pretraining: the gain "
                     "over it is measured and judged")
    fit.add_argument("--baseline-se", type=float, help="the baseline's standard error")
    fit.add_argument("--min-effect", type=float,
                     help="smallest change worth telling from none, in y's units (default: 2%% of "
                     "the baseline, or of the first point)")
    fit.add_argument("--law", default="log_law",
                     help="log_law (task metrics), power_law (cross-entropy), gordon (BLEU vs "
                     "cross-entropy) or a registered law")
    fit.add_argument("--law-module", help="a Python module to import first (it registers custom "
                     "laws with raysweep.laws.register_law)")
    fit.add_argument("--direction", choices=("rising", "falling"),
                     help="the expected direction of y with x (which way is better) "
                     "(default: rising for log_law, falling for the other laws)")
    fit.add_argument("--huber-delta", type=float, help="default: 0.1 (log_law), 1e-3 (power_law)")
    fit.add_argument("--predict-at", type=float, action="append",
                     help="D to predict at (repeatable)")
    fit.add_argument("--target", type=float, help="metric value to reach: prints the D needed")
    fit.add_argument("--backtest-k", type=int, default=4,
                     help="fit on the k smallest D (default 4)")
    fit.add_argument("--resamples", type=int,
                     help="bootstrap resamples (default: 1000 for --csv, the spec's for a sweep)")
    fit.add_argument("--level", type=float, default=0.9, help="interval level (default 0.9)")
    fit.add_argument("--json", action="store_true", help="print one JSON object")
    fit.set_defaults(func=cmd_fit)
    for command in (validate, run, stop, status, report, fit):
        command.add_argument("--log-level", choices=LEVELS, type=str.upper,
                             help=f"raysweep's log level (default: ${LEVEL_VARIABLE}, else INFO; "
                                  f"the libraries log at WARNING)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
