"""MLflow as deployed, under load: concurrent writers shaped like trials and the fitter against a
real `mlflow server`, on PostgreSQL (cluster.yaml's store) and on SQLite side by side.

    .venv/bin/python bench/bench_mlflow_load.py [--writers 16] [--seconds 60]
        [--backends postgresql,sqlite]

Each writer is a process running raysweep's own Tracker (its retries included) in a loop, as a
trial does: find-or-create its run, start the attempt, log params, a dev metric during training,
the tags, the replicates artifact (~20 KB), the result numbers in one batch, end the run. One more
process writes as the fitter does: search the finished trial runs, log a few hundred law numbers
in a batch at a new step, and the laws table as an artifact. Servers and writers are on 127.0.0.1
only, for --seconds each backend.

Prints, per backend: operations, operations/s, p50/p95/max latency of each kind of write, writes
that failed after raysweep's retries, and writes lost: acknowledged to the writer, then not found
when every run is read back at the end (target 0).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # a line per ended run

from _common import refuse  # noqa: E402
from _servers import (  # noqa: E402
    Postgres,
    ServerDidNotStart,
    free_port,
    postgres_bin,
    start_mlflow,
    stop_process_group,
)

EXPERIMENT = "load"
NUMBERS = ("bleu", "chrf", "rougeL", "comet", "cross_entropy", "dev_cross_entropy", "train_loss")
REPLICATES = 1000  # paired bootstrap replicates per metric, as a real trial logs
LAW_NUMBERS = 300  # a refit's numbers: 45 laws x gain, prediction, trend and their bounds


def timed(latencies: dict, kind: str, call, *args):
    started = time.perf_counter()
    result = call(*args)
    latencies[kind].append(time.perf_counter() - started)
    return result


def trial_writer(uri: str, writer: int, until: float, queue) -> None:
    """Trial-shaped runs until `until`; puts (latencies, acknowledged runs, failures)."""
    from raysweep.tracking import Tracker

    tracker, latencies, acknowledged, failures = Tracker(uri, EXPERIMENT), defaultdict(list), [], 0
    n = 0
    while time.time() < until:
        key = f"w{writer:03d}/n{n:05d}"
        try:
            run_id = timed(latencies, "find or create run", tracker.get_or_create_run,
                           {"load.key": key, "load.kind": "trial"}, key)
            timed(latencies, "start attempt", tracker.start_attempt, run_id)
            timed(latencies, "params", tracker.log_params, run_id,
                  {name: n for name in ("task", "d_p", "d_f", "lr", "seed", "steps")})
            timed(latencies, "metric during training", tracker.log_metrics, run_id,
                  {"dev_cross_entropy_during": 1.0 / (n + 1)}, 10)
            timed(latencies, "tags", tracker.set_tags, run_id, {"load.signature": "x" * 200})
            timed(latencies, "replicates artifact", tracker.log_dict, run_id,
                  {name: [round(0.001 * i, 6) for i in range(REPLICATES)] for name in NUMBERS[:2]},
                  "test_bootstrap.json")
            numbers = {name: writer + n / 1000 for name in NUMBERS}
            timed(latencies, "result numbers", tracker.log_metrics, run_id, numbers)
            timed(latencies, "end run", tracker.end_run, run_id, "FINISHED")
            acknowledged.append((run_id, numbers))
        except Exception:  # raysweep's retries gave up: a failed write, counted
            failures += 1
        n += 1
    queue.put((dict(latencies), {"trials": acknowledged}, failures))


def fitter_writer(uri: str, until: float, queue) -> None:
    """The fitter's pattern: search the finished trials, log a refit's numbers at a new step."""
    from raysweep.tracking import Tracker

    tracker, latencies, failures = Tracker(uri, EXPERIMENT), defaultdict(list), 0
    run_id = tracker.get_or_create_run({"load.kind": "laws"}, "laws")
    refits = []
    while time.time() < until:
        step = len(refits) + 1
        try:
            found = timed(latencies, "search finished trials", tracker.find_runs,
                          {"load.kind": "trial"}, "FINISHED")
            numbers = {f"law_{i:03d}": len(found) + i / 1000 for i in range(LAW_NUMBERS)}
            timed(latencies, "law numbers", tracker.log_metrics, run_id, numbers, step)
            timed(latencies, "laws table artifact", tracker.log_dict, run_id,
                  {"laws": [{"law": i, "found": len(found)} for i in range(45)]}, "laws.json")
            refits.append(step)
        except Exception:
            failures += 1
        time.sleep(0.5)  # the fitter refits when results have arrived, not in a busy loop
    queue.put((dict(latencies), {"laws": (run_id, refits)}, failures))


def lost_writes(uri: str, acknowledged: dict) -> int:
    """Acknowledged writes not found when read back: a trial run not FINISHED, a result number
    missing or different, the replicates artifact absent; a refit step missing."""
    from raysweep.tracking import Tracker

    tracker, lost = Tracker(uri, EXPERIMENT), 0
    for run_id, numbers in acknowledged["trials"]:
        run = tracker.client.get_run(run_id)
        lost += run.info.status != "FINISHED"
        lost += sum(abs(run.data.metrics.get(k, float("nan")) - v) > 1e-9 or k not in
                    run.data.metrics for k, v in numbers.items())
        lost += "test_bootstrap.json" not in {a.path for a in tracker.client.list_artifacts(run_id)}
    for run_id, refits in acknowledged["laws"]:
        steps = {m.step for m in tracker.client.get_metric_history(run_id, "law_000")}
        lost += len(set(refits) - steps)
    return lost


def load(uri: str, writers: int, seconds: float) -> dict:
    """Run the writers against the server at `uri`; their latencies, failures and losses."""
    from raysweep.tracking import Tracker

    Tracker(uri, EXPERIMENT).ensure_experiment()
    context, queue = (multiprocessing.get_context("fork"),
                      multiprocessing.get_context("fork").Queue())
    until = time.time() + seconds
    processes = [context.Process(target=trial_writer, args=(uri, i, until, queue))
                 for i in range(writers)]
    processes.append(context.Process(target=fitter_writer, args=(uri, until, queue)))
    for process in processes:
        process.start()
    latencies, acknowledged, failures = defaultdict(list), {"trials": [], "laws": []}, 0
    for _ in processes:  # before join: a child exits only once its queue item is taken
        their_latencies, their_acks, their_failures = queue.get(timeout=seconds + 600)
        for kind, values in their_latencies.items():
            latencies[kind].extend(values)
        acknowledged["trials"].extend(their_acks.get("trials", []))
        if "laws" in their_acks:
            acknowledged["laws"].append(their_acks["laws"])
        failures += their_failures
    for process in processes:
        process.join()
    return {"latencies": latencies, "failures": failures, "lost": lost_writes(uri, acknowledged),
            "trial runs": len(acknowledged["trials"])}


def start_store(backend: str, folder: Path):
    """(backend store URI, the database server or None) for one backend."""
    if backend == "sqlite":
        return f"sqlite:///{folder}/mlflow.db", None
    postgres = Postgres(free_port(), folder / "postgres.log")
    return postgres.uri, postgres


def print_backend(backend: str, outcome: dict, seconds: float) -> None:
    operations = sum(len(v) for v in outcome["latencies"].values())
    print(f"{backend}: {operations} writes in {seconds:.0f} s ({operations / seconds:.1f}/s), "
          f"{outcome['trial runs']} trial runs, failed after retries {outcome['failures']}, "
          f"lost {outcome['lost']}")
    every = [v for values in outcome["latencies"].values() for v in values]
    for kind, values in [*sorted(outcome["latencies"].items()), ("every write", every)]:
        ms = sorted(1000 * v for v in values)
        p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
        print(f"  {kind:<24} n={len(ms):<6} p50 {statistics.median(ms):8.1f} ms  "
              f"p95 {p95:8.1f} ms  max {ms[-1]:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writers", type=int, default=16, help="trial-shaped writer processes")
    parser.add_argument("--seconds", type=float, default=60.0, help="load time per backend")
    parser.add_argument("--backends", default="postgresql,sqlite")
    args = parser.parse_args()
    backends = args.backends.split(",")
    if unknown := set(backends) - {"postgresql", "sqlite"}:
        refuse(f"--backends: unknown {sorted(unknown)}; choose from postgresql, sqlite")
    if "postgresql" in backends and postgres_bin() is None:
        refuse("--backends postgresql: PostgreSQL is not installed (Debian: apt install "
               "postgresql); or pass --backends sqlite")
    if args.writers < 1 or args.seconds <= 0:
        refuse("--writers must be at least 1 and --seconds positive")
    print(f"{args.writers} trial writers + 1 fitter writer, {args.seconds:.0f} s per backend, "
          f"mlflow server on 127.0.0.1 (artifacts proxied)")
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix=f"mlflow-load-{backend}-") as folder:
            store, database = start_store(backend, Path(folder))
            port = free_port()
            try:
                server = start_mlflow("server", store, port, Path(folder) / "server.log",
                                      "--artifacts-destination", f"{folder}/artifacts")
            except ServerDidNotStart:
                if database:
                    database.stop()
                raise
            try:
                outcome = load(f"http://127.0.0.1:{port}", args.writers, args.seconds)
            finally:
                stop_process_group(server)
                if database:
                    database.stop()
            print_backend(backend, outcome, args.seconds)


if __name__ == "__main__":
    main()
