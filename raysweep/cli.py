"""Command line: `raysweep validate|run|stop|status|report|fit|compare`.

Each command imports its own modules when it runs: `raysweep fit --csv` needs numpy and scipy,
not Ray, torch, transformers and MLflow (seconds at every start), and `raysweep validate` no Ray.

Exit status: 0 success, 1 the sweep ran but failed, 2 bad input (nothing was written), 143
stopped by SIGTERM (`ray job stop`) or 130 by Ctrl-C (unfinished runs marked KILLED; a rerun
resumes).
"""

from __future__ import annotations

import argparse
import os
import sys

from raysweep.fit_commands import cmd_compare, cmd_fit
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
    from raysweep.study.answer import study_table
    from raysweep.sweep import SweepStopped, run_sweep

    spec = load_spec(args.spec)
    try:
        outcome = run_sweep(spec)
    except SweepStopped as stopped:  # the runs are marked KILLED; a rerun resumes
        return 128 + stopped.signum
    print()
    print((study_table if spec.candidates else answer_table)(spec, outcome.groups))
    if outcome.progress.get("cancelled"):
        print(f"\n{outcome.progress['cancelled']} trial(s) of stopped candidates were cancelled "
              f"(the study's stop policy: see the study's page)")
    print()
    print(f"MLflow: {spec.resolved_tracking_uri()}  (experiment {spec.name!r}); open the UI with\n"
          f"  mlflow ui --backend-store-uri {spec.resolved_tracking_uri()}")
    if outcome.ok:
        print(f"sweep {spec.name!r} finished in {outcome.wall_seconds:.0f} s")
        return 0
    print(f"sweep {spec.name!r} FAILED after {outcome.wall_seconds:.0f} s:", file=sys.stderr)
    planned = checkpoint_source(spec).final_trials()
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
    _table_options(fit)
    fit.add_argument("--predict-at", type=float, action="append",
                     help="D to predict at (repeatable)")
    fit.add_argument("--target", type=float, help="metric value to reach: prints the D needed")
    fit.add_argument("--backtest-k", type=int, default=4,
                     help="fit on the k smallest D (default 4)")
    fit.add_argument("--resamples", type=int,
                     help="bootstrap resamples (default: 1000 for --csv, the spec's for a sweep)")
    fit.add_argument("--level", type=float, default=0.9, help="interval level (default 0.9)")
    fit.add_argument("--holdout-last", type=int, metavar="K",
                     help="extrapolation check: fit on all but the K largest D (every law of a "
                     "sweep, or the table), predict those, and print each one's relative error "
                     "and whether the interval held it")
    fit.add_argument("--json", action="store_true",
                     help="print one JSON object (with --holdout-last: a list, one per law)")
    fit.set_defaults(func=cmd_fit)
    compare = sub.add_parser("compare", help="compare candidate pretraining data from a CSV "
                                             "table: which is best at a size, and how sure")
    compare.add_argument("--csv", required=True,
                         help="a table with one row per candidate and checkpoint")
    compare.add_argument("--by", required=True, help="column naming each row's candidate")
    _table_options(compare)
    compare.add_argument("--at", type=float, help="the D_p to decide at (default: the largest "
                         "every candidate measured; beyond it, each law's prediction)")
    compare.add_argument("--confidence", type=float, default=0.95,
                         help="P(best) needed to name a candidate best (default 0.95)")
    compare.add_argument("--resamples", type=int, help="bootstrap resamples (default 1000)")
    compare.add_argument("--level", type=float, default=0.9, help="interval level (default 0.9)")
    compare.add_argument("--json", action="store_true",
                         help="print one JSON object: best (or null), p_best, the comparison "
                         "and each candidate's analysis")
    compare.set_defaults(func=cmd_compare)
    for command in (validate, run, stop, status, report, fit, compare):
        command.add_argument("--log-level", choices=LEVELS, type=str.upper,
                             help=f"raysweep's log level (default: ${LEVEL_VARIABLE}, else INFO; "
                                  f"the libraries log at WARNING)")
    return parser


def _table_options(command) -> None:
    """The options `fit` and `compare` share: a table's columns, the baseline, the law."""
    command.add_argument("--x", help="column of the pretraining size D_p (tokens)")
    command.add_argument("--y", help="column of the metric")
    command.add_argument("--se", help="column of each point's standard error (default: estimated "
                         "from the scatter of the points)")
    command.add_argument("--baseline", type=float, help="the metric without pretraining: the gain "
                         "over it is measured and judged")
    command.add_argument("--baseline-se", type=float, help="the baseline's standard error")
    command.add_argument("--min-effect", type=float,
                         help="smallest change worth telling from none, in y's units "
                         "(default: 2%% of the baseline, or of the first point)")
    command.add_argument("--law", default="log_law",
                         help="log_law (task metrics), power_law (cross-entropy), gordon "
                         "(BLEU vs cross-entropy) or a registered law")
    command.add_argument("--law-module", help="a Python module to import first (it registers "
                         "custom laws with raysweep.laws.register_law)")
    command.add_argument("--direction", choices=("rising", "falling"),
                         help="the expected direction of y with x (which way is better) "
                         "(default: rising for log_law, falling for the other laws)")
    command.add_argument("--huber-delta", type=float,
                         help="default: 0.1 (log_law), 1e-3 (power_law)")


if __name__ == "__main__":
    sys.exit(main())
