"""What the fault tests count, and how they report it for docs/reliability.md.

`audit` compares what landed in storage and MLflow with what the spec planned: a result is lost
when a planned trial key has no finished run holding every metric, or a scheduled checkpoint is
not published (or its publication is missing from the pretraining run). A result is duplicated
when a key has more than one run of any lifecycle (a deleted twin counts), when one of its runs
logged a result metric more than once (computed twice, even into the same run), or when a
checkpoint was published more than once. `record` appends one
row per fault to the file named by RAYSWEEP_RELIABILITY_LOG (set by bench/reliability.py, which
writes the table); without it, recording does nothing and the tests only assert.
"""

from __future__ import annotations

import json
import os
from collections import Counter

# Every finished trial run holds these (the laws are fitted on them).
RESULT_METRICS = ("bleu", "chrf", "rougeL", "comet", "cross_entropy", "dev_cross_entropy")


def audit(spec, tracker, expected_failures: set[str] = frozenset(),
          starting_points: list[int] | None = None) -> dict:
    """Lost and duplicated results of a sweep. `expected_failures`: keys meant to fail (and be
    recorded as failed), not counted as lost. `starting_points`: only the trials of these D_p,
    and no checkpoint checks (a test without pretraining); default: the whole sweep."""
    from raysweep.plan import plan_keys

    points = spec.checkpoint_tokens() if starting_points is None else starting_points
    planned = {str(k) for d_p in points for k in plan_keys(spec, d_p)}
    runs = [r for r in every_trial_run(tracker) if r.data.tags["raysweep.trial_key"] in planned]
    active = [r for r in runs if r.info.lifecycle_stage == "active"]
    complete = {r.data.tags["raysweep.trial_key"] for r in active
                if r.info.status == "FINISHED" and all(m in r.data.metrics for m in RESULT_METRICS)}
    failed_as_recorded = {r.data.tags["raysweep.trial_key"] for r in active
                          if r.info.status == "FAILED" and r.data.tags.get("raysweep.failure")}
    missing_keys = sorted(planned - complete - (set(expected_failures) & failed_as_recorded))
    # Each result beyond the first of a key: an extra run, or an extra logging of its results.
    extra = Counter({key: n - 1 for key, n in
                     Counter(r.data.tags["raysweep.trial_key"] for r in runs).items() if n > 1})
    for run in runs:
        extra[run.data.tags["raysweep.trial_key"]] += max(results_logged(tracker, run) - 1, 0)
    duplicated_keys = sorted(key for key, n in extra.items() if n > 0)
    checkpoints = {"lost": 0, "duplicated": 0}
    if starting_points is None:
        (pretrain,) = tracker.find_runs({"raysweep.kind": "pretrain"})
        checkpoints = audit_pretraining(spec, tracker, pretrain.info.run_id)
    return {"planned": len(planned), "runs": len(runs), "missing_keys": missing_keys,
            "duplicated_keys": duplicated_keys, "checkpoints": checkpoints,
            "lost": len(missing_keys) + checkpoints["lost"],
            "duplicated": sum(extra.values()) + checkpoints["duplicated"]}


def every_trial_run(tracker) -> list:
    """The sweep's trial runs, deleted ones included (Tracker.find_runs sees active runs only)."""
    from mlflow.entities import ViewType

    runs, token = [], None
    while True:
        page = tracker.client.search_runs([tracker.experiment_id], "tags.`raysweep.kind` = 'trial'",
                                          run_view_type=ViewType.ALL, max_results=1000,
                                          page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def results_logged(tracker, run) -> int:
    """How many times the run logged its results: the most points any result metric holds."""
    return max((len(tracker.client.get_metric_history(run.info.run_id, name))
                for name in RESULT_METRICS if name in run.data.metrics), default=0)


def audit_pretraining(spec, tracker, run_id: str) -> dict:
    """Scheduled checkpoints not published (on storage and in the pretraining run's
    `published_tokens`), and publications logged more than once."""
    from raysweep.checkpoints import published

    schedule, on_storage = spec.pretrain.published_tokens(), set(published(spec))
    publications = Counter(m.value
                           for m in tracker.client.get_metric_history(run_id, "published_tokens"))
    missing = sorted(t for t in schedule if t not in on_storage or not publications[t])
    republished = sorted(t for t, n in publications.items() if n > 1)
    return {"missing": missing, "republished": republished, "lost": len(missing),
            "duplicated": sum(publications[t] - 1 for t in republished)}


def record(fault: str, injected: int, survived: bool, lost: int | None, duplicated: int | None,
           note: str = "") -> None:
    """One row of the reliability table (lost/duplicated None: not a question for this fault)."""
    path = os.environ.get("RAYSWEEP_RELIABILITY_LOG")
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps({"fault": fault, "injected": injected, "survived": bool(survived),
                            "lost": lost, "duplicated": duplicated, "note": note}) + "\n")


def record_cases(fault: str, outcomes: dict[str, int]) -> None:
    """The row of a fuzzing test: its examples, counted by outcome."""
    total = sum(outcomes.values())
    record(fault, total, total > 0, None, None,
           ", ".join(f"{n} {outcome}" for outcome, n in outcomes.items()) + ", no other exception")
