"""`raysweep fit` and `raysweep compare`: laws fitted to a table made elsewhere (or refitted from a
sweep's MLflow runs), their extrapolation checked on held-out checkpoints, and candidate data
compared. Tables need numpy and scipy only: nothing here loads Ray, torch or MLflow unless a
sweep spec is given (the sweep's modules are imported then, inside _fit_sweep)."""

from __future__ import annotations

import csv
import importlib
import json
import math

from raysweep.laws import DEFAULT_HUBER_DELTA, REGISTERED_LAWS
from raysweep.laws.analysis import analyse, describe
from raysweep.laws.holdout import (
    MIN_FITTED,
    Holdout,
    describe_holdout,
    holdout,
    holdout_problem,
    summarise,
    summary_line,
)
from raysweep.spec import SpecError
from raysweep.spec_loader import load_spec
from raysweep.study.compare import compare, describe_comparison
from raysweep.study.tables import table_candidates


def _read_csv_columns(path: str, *names: str, by: str | None = None) -> dict:
    """Numeric columns of a CSV file, {group: [column values, ...]} with the rows grouped by the
    text column `by` (in the order groups first appear), or {None: [...]} for the whole table;
    SpecError (exit 2) naming the file, line and column."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise SpecError(f"{path}: CSV file not found. Pass a table with one row "
                        f"per point.") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise SpecError(f"{path}: not a readable UTF-8 CSV file ({err}).") from None
    columns = list(rows[0].keys()) if rows else []
    for name in (*names, *([by] if by else [])):
        if name not in columns:
            raise SpecError(f"{path}: no column {name!r}; the columns are {columns}. "
                            f"Pass --x, --y (and --se{', --by' if by else ''}) with column names "
                            f"from the header row.")
    groups: dict = {}
    for line, row in enumerate(rows, start=2):
        values = groups.setdefault(row[by].strip() if by else None, [[] for _ in names])
        for column, name in zip(values, names):
            try:
                column.append(float(row[name]))
            except (TypeError, ValueError):
                raise SpecError(f"{path}, line {line}: column {name!r} holds {row[name]!r}, "
                                f"expected a number.") from None
    return groups or {None: [[] for _ in names]}


def _law_settings(args) -> tuple:
    """(law, Huber delta, expected direction) of a table command's --law, --law-module,
    --huber-delta and --direction; SpecError for a law that is not known."""
    if args.law_module:
        # A user's module that declares laws and calls register_law on import: the only way a
        # command-line run can see laws that are not built in.
        try:
            importlib.import_module(args.law_module)
        except ImportError as err:
            raise SpecError(f"raysweep {args.command}: --law-module {args.law_module!r} could not "
                            f"be imported ({err}); pass a module importable from here.") from None
    if args.law not in REGISTERED_LAWS:
        raise SpecError(f"raysweep {args.command}: --law {args.law!r} is not a known law; expected "
                        f"one of {', '.join(sorted(REGISTERED_LAWS))}.")
    law = REGISTERED_LAWS[args.law]
    if law.num_inputs != 1:
        raise SpecError(f"raysweep {args.command}: --law {args.law} takes {law.num_inputs} "
                        f"variables; table commands fit laws of one --x column (use "
                        f"raysweep.laws.fit_law).")
    delta = args.huber_delta or (DEFAULT_HUBER_DELTA["cross_entropy"] if args.law == "power_law"
                                 else DEFAULT_HUBER_DELTA["bleu"])
    return law, delta, {"rising": True, "falling": False, None: None}[args.direction]


def cmd_fit(args) -> int:
    if args.spec:
        return _fit_sweep(args)
    if not (args.csv and args.x and args.y):
        raise SpecError("raysweep fit: pass a sweep spec (refit from MLflow), or --csv FILE "
                        "--x COLUMN --y COLUMN --law NAME to fit a table.")
    law, delta, increasing = _law_settings(args)
    ((x, y, *se),) = _read_csv_columns(args.csv, args.x, args.y,
                                       *([args.se] if args.se else [])).values()
    settings = dict(se=se[0] if se else None, baseline=args.baseline,
                    baseline_se=args.baseline_se, increasing=increasing, k=args.backtest_k,
                    resamples=args.resamples or 1000, level=args.level,
                    min_effect=args.min_effect)
    if args.holdout_last is not None:
        count = int(sum(math.isfinite(a) and a > 0 and math.isfinite(b) for a, b in zip(x, y)))
        _check_holdout(args.holdout_last, count, f"{args.csv} has {count} usable points "
                       f"(a finite {args.x} > 0 and a finite {args.y})")
        result = holdout(law, x, y, args.holdout_last, delta, **settings)
        return _print_holdouts([({"x": args.x, "y": args.y}, result)], args.json, args.x, args.y)
    analysis = analyse(law, x, y, delta, predict_at=args.predict_at or (),
                       target_y=args.target, **settings)
    if args.json:
        print(json.dumps(analysis.to_dict(), indent=2, default=float))
    else:
        print(describe(analysis, args.x, args.y))
    return 0


def _check_holdout(last: int, count: int | None, what: str = "") -> None:
    """SpecError (exit 2) for a --holdout-last that holds out nothing or leaves too few points
    (count: the usable points, None where not known yet; what: where they come from)."""
    problem = holdout_problem(count if count is not None else last + MIN_FITTED, last)
    if problem:
        allowed = ("" if count is None else f": {what}, so K from 1 to {count - MIN_FITTED}"
                   if count > MIN_FITTED else f": {what}, too few to hold any out")
        raise SpecError(f"raysweep fit: --holdout-last {last}: {problem}. Expected a whole number "
                        f"K >= 1 of the largest-D points to hold out, leaving at least "
                        f"{MIN_FITTED} to fit{allowed}.")


def _print_holdouts(results: list[tuple[dict, Holdout | str]], as_json: bool, x_name: str,
                    y_name: str | None = None) -> int:
    """Each law's held-out points (or why it was skipped), then one summary line; or, with
    as_json, a list of objects: the law's keys with its Holdout (or "skipped": why)."""
    if as_json:
        print(json.dumps([{**keys, **(r.to_dict() if isinstance(r, Holdout) else {"skipped": r})}
                          for keys, r in results], indent=2, default=float))
        return 0
    for keys, result in results:
        if "task" in keys:
            print(f"== task {keys['task']}, D_f = {keys['d_f']:,} tokens, {keys['metric']}")
        if isinstance(result, Holdout):
            print(describe_holdout(result, x_name, y_name or keys.get("metric", "y")))
        else:
            print(f"  skipped: {result}")
        print()
    print(summary_line(summarise([r for _, r in results if isinstance(r, Holdout)])))
    return 0


def _fit_sweep(args) -> int:
    # this command's modules (see the module docstring)
    from raysweep.refit import analyse_sweep, holdout_group, not_fitted, sweep_laws
    from raysweep.tracking import Tracker

    if args.holdout_last is not None and args.holdout_last < 1:  # before reading MLflow
        _check_holdout(args.holdout_last, None)
    spec = load_spec(args.spec)
    if Tracker.of_existing_sweep(spec) is None:
        raise SpecError(f"{args.spec}: sweep {spec.name!r} has no results in MLflow "
                        f"({spec.resolved_tracking_uri()}); run it first with `raysweep run "
                        f"{args.spec}`.")
    if args.holdout_last is not None:
        laws = sweep_laws(spec)
        count = max((sum(d > 0 for d in points) for *_, points, _ in laws), default=0)
        _check_holdout(args.holdout_last, count, f"sweep {spec.name!r} has at most {count} "
                       f"checkpoints per law")
        results = []
        for unit, task, d_f, metric, points, noise in laws:
            keys = {**({"candidate": unit.candidate} if unit.candidate else {}),
                    "task": task, "d_f": d_f, "metric": metric}
            try:
                result = not_fitted(spec, metric) or holdout_group(
                    unit, points, metric, args.holdout_last, args.resamples, noise)
            except ValueError as err:  # this law has fewer checkpoints than the sweep's others
                result = str(err)
            results.append((keys, result))
        return _print_holdouts(results, args.json, "D_p")
    groups = analyse_sweep(spec, resamples=args.resamples)
    if args.json:
        print(json.dumps([{**({"candidate": g.candidate} if g.candidate else {}),
                           "task": g.task, "d_f": g.d_f, "metric": g.metric, "points": g.points,
                           "analysis": g.analysis.to_dict()} for g in groups], indent=2,
                         default=float))
        return 0
    for group in groups:
        print(f"== {f'candidate {group.candidate}, ' if group.candidate else ''}task "
              f"{group.task}, D_f = {group.d_f:,} tokens, {group.metric}")
        print(describe(group.analysis, "D_p", group.metric))
        print()
    return 0


def cmd_compare(args) -> int:
    """Candidates of a table made elsewhere (one row per candidate and checkpoint), each analysed
    as `raysweep fit --csv` would, then compared (raysweep.study.compare)."""
    law, delta, increasing = _law_settings(args)
    names = [args.x, args.y, *([args.se] if args.se else [])]
    groups = _read_csv_columns(args.csv, *names, by=args.by)
    if len(groups) < 2:
        raise SpecError(f"{args.csv}: column {args.by!r} names {len(groups)} candidate(s) "
                        f"({', '.join(map(str, groups))}); a comparison needs two or more.")
    columns = {name: (x, y, se[0] if se else None) for name, (x, y, *se) in groups.items()}
    increasing = (law.name == "log_law") if increasing is None else increasing
    try:
        candidates = table_candidates(columns, law, delta, increasing=increasing, at=args.at,
                                      baseline=args.baseline, baseline_se=args.baseline_se,
                                      resamples=args.resamples or 1000, level=args.level,
                                      min_effect=args.min_effect)
        comparison = compare(candidates, args.y, increasing=increasing, at=args.at,
                             confidence=args.confidence, level=args.level)
    except ValueError as err:
        raise SpecError(f"{args.csv}: {err}.") from None
    if args.json:
        print(json.dumps({"best": comparison.best, "p_best": comparison.p_best,
                          "comparison": comparison.to_dict(),
                          "candidates": {c.name: c.analysis.to_dict() for c in candidates}},
                         indent=2, default=float))
        return 0
    print(describe_comparison(comparison, {c.name: c.analysis.verdict for c in candidates}))
    for c in candidates:
        print(f"\n== {c.name}\n{describe(c.analysis, args.x, args.y)}")
    return 0
