"""Command line: `raysweep validate SPEC`, `raysweep run SPEC`.

Exit status: 0 success, 1 the sweep ran but failed, 2 bad input (nothing was written).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from raysweep.spec import SpecError, load_spec


def _quiet_environment() -> None:
    # Offline-friendly, quiet defaults; the user's own settings win.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Creating initial MLflow tables..."


def cmd_validate(args) -> int:
    from raysweep.sweep import check, plan_text

    spec = load_spec(args.spec)
    _, available = check(spec)
    print(plan_text(spec, available))
    print("spec is valid")
    return 0


def cmd_run(args) -> int:
    from raysweep.sweep import laws_table, run_sweep

    spec = load_spec(args.spec)
    outcome = run_sweep(spec)
    print()
    print(laws_table(outcome.laws))
    print()
    print(f"MLflow: {spec.resolved_tracking_uri()}  (experiment {spec.name!r}); open the UI with\n"
          f"  mlflow ui --backend-store-uri {spec.resolved_tracking_uri()}")
    if outcome.ok:
        print(f"sweep {spec.name!r} finished in {outcome.wall_seconds:.0f} s")
        return 0
    print(f"sweep {spec.name!r} FAILED after {outcome.wall_seconds:.0f} s:", file=sys.stderr)
    for error in outcome.errors or [f"only {outcome.progress} of {spec.num_trials()} trials finished"]:
        print(f"  {error}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    _quiet_environment()
    parser = argparse.ArgumentParser(prog="raysweep", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="check a spec and print the plan")
    validate.add_argument("spec")
    validate.set_defaults(func=cmd_validate)
    run = sub.add_parser("run", help="run (or resume) a sweep")
    run.add_argument("spec")
    run.set_defaults(func=cmd_run)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
