"""Finetune trials at sweep scale: Tune's overhead, and how fast a published checkpoint gets trials.

    .venv/bin/python bench/bench_finetune.py [--spec jobs/demo.yaml] [--trials 5] [--steps 1200]
                                             [--publications 5]

Measured side by side in one run, on the demo model and task:
  1. overhead: the same finetune trials (same keys, seeds and work), first called directly in this
     process (`raysweep.finetune.run_trial`, after one warm-up trial), then run one at a time
     inside the watcher's Tune experiment on a local Ray (Ray already started; Tune's trial actor
     start, the shared COMET scorer and reporting included). Both timed as the wall seconds each
     trial adds; prints each arm's median with its min-max and the ratio of the medians (target:
     at most 1.1 for a demo trial of 70-85 s), and the first Tune trial apart (it starts the actor).
  2. latency: with the watcher's experiment running and idle (the trials of every earlier
     checkpoint finished), checkpoints are published one by one as pretraining publishes them (a
     real export of the model, manifest last, then the watcher told); for each, the delay from
     the manifest's publication time to the start of its first trial's MLflow run. Prints the
     median and each (target: under 2 s).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from _common import load_bench_spec  # noqa: E402


def prepare(spec, name: str, storage: str, **task_changes):
    """A copy of the spec under its own storage (own MLflow), tokenizer saved, runs created."""
    from raysweep.data.tokenizer import save_tokenizer, train_tokenizer
    from raysweep.evaluation.comet_model import load_comet
    from raysweep.tracking import Tracker

    task = dataclasses.replace(spec.tasks[0], **task_changes)
    spec = dataclasses.replace(spec, name=name, storage=storage, tracking_uri=None, tasks=(task,))
    save_tokenizer(spec, train_tokenizer(spec))
    load_comet(spec.evaluation.comet_model, spec.root)
    tracker = Tracker.for_spec(spec)
    tracker.ensure_experiment()
    return spec, tracker, tracker.get_or_create_run({"raysweep.kind": "sweep"}, name)


def direct_seconds(spec, keys) -> list[float]:
    """Wall seconds of each trial called directly, after one warm-up trial."""
    from raysweep.finetune import run_trial
    from raysweep.plan import TrialKey

    # warm-up: imports, caches
    run_trial(spec, TrialKey(keys[0].task, 0, keys[0].d_f, 0.0123, 0), None)
    seconds = []
    for key in keys:
        started = time.perf_counter()
        run_trial(spec, key, None)
        seconds.append(time.perf_counter() - started)
    return seconds


def tune_seconds(spec, run_id) -> list[float]:
    """Wall seconds each trial of the watcher's experiment added, one at a time: the first from
    the experiment's start to its run's end (it pays once for the trial actor's process and the
    node's COMET scorer), each next one from the previous run's end to its own."""
    import ray

    from raysweep.plan import plan_keys
    from raysweep.tracking import Tracker
    from raysweep.watcher import CheckpointWatcher

    watcher = CheckpointWatcher.remote(spec, run_id)
    watcher.pretraining_finished.remote()  # nothing published: the D_p = 0 trials only
    started = time.time()
    outcome = ray.get(watcher.run.remote())
    ended = time.time()
    assert outcome["done"] == len(plan_keys(spec, 0)), outcome  # every trial ran, none failed
    ray.kill(watcher)
    ends = sorted(r.info.end_time / 1000 for r in Tracker.for_spec(spec).find_runs(
        {"raysweep.kind": "trial"}))
    assert ends[-1] <= ended + 1, "a trial ended after the experiment"
    return [b - a for a, b in zip([started, *ends[:-1]], ends)]


def spread(values: list[float]) -> str:
    return (f"{statistics.median(values):6.1f} s per trial [{min(values):.1f}-{max(values):.1f}] "
            f"over {len(values)}")


def publication_delays(spec, run_id, publications: int) -> list[float]:
    """For each publication, from the manifest's publication time to the start of its first
    trial's MLflow run, with the experiment idle (every earlier trial finished): the delay the
    watcher and Tune add, not a wait for a free trial slot."""
    import ray

    from raysweep import checkpoints
    from raysweep.data.tokenizer import load_tokenizer, tokenizer_dir
    from raysweep.model import build_model
    from raysweep.plan import WATCHER_NAME, tell_watcher
    from raysweep.tracking import Tracker
    from raysweep.watcher import CheckpointWatcher

    tokenizer = load_tokenizer(tokenizer_dir(spec))
    model = build_model(spec, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    tracker = Tracker.for_spec(spec)

    def trials(d_p: int, status: str | None = None) -> list:
        return tracker.find_runs({"raysweep.kind": "trial", "raysweep.d_p": str(d_p)}, status)

    def wait_until(condition, what: str) -> None:
        deadline = time.time() + 300
        while not condition():
            if time.time() > deadline:
                raise SystemExit(f"bench_finetune: no {what} within 300 s")
            time.sleep(0.05)

    watcher = CheckpointWatcher.options(name=WATCHER_NAME.format(spec.name)).remote(spec, run_id)
    experiment = watcher.run.remote()
    delays = []
    for i in range(publications + 1):  # 0: the baseline, no publication to time
        if i:
            checkpoints.publish(spec, model, 1000 * i, i, {})
            tell_watcher(spec)  # as pretraining does after each publication
            published_at = checkpoints.published(spec)[1000 * i]["published_at"]
        wait_until(lambda i=i: trials(1000 * i), "trial start")
        if i:
            delays.append(min(r.info.start_time for r in trials(1000 * i)) / 1000 - published_at)
        planned = len(spec.tasks[0].lrs) * spec.tasks[0].seeds
        wait_until(lambda i=i: len(trials(1000 * i, "FINISHED")) == planned, "finished trials")
        time.sleep(1.0)  # Tune has taken in the results: the experiment is idle
    watcher.pretraining_finished.remote()
    ray.get(experiment)
    ray.kill(watcher)
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="jobs/demo.yaml")
    parser.add_argument("--trials", type=int, default=5,
                        help="trials per arm of the overhead test (at least 2)")
    parser.add_argument("--steps", type=int, default=1200,
                        help="finetune steps (a trial: 70-85 s on the demo model and task)")
    parser.add_argument("--publications", type=int, default=5)
    args = parser.parse_args()

    import ray

    from raysweep.plan import TrialKey
    from raysweep.sweep import worker_env

    base = load_bench_spec(args.spec)
    base = dataclasses.replace(base, resources=dataclasses.replace(base.resources,
                                                                   max_concurrent_trials=1))
    lrs = tuple(0.001 * (i + 1) for i in range(args.trials))
    d_f = base.tasks[0].finetune_tokens[-1]
    with tempfile.TemporaryDirectory() as storage:
        # One seed: Tune runs exactly the keys the direct arm calls (the demo has two seeds).
        direct_spec, _, _ = prepare(base, "direct", storage, lrs=lrs, finetune_tokens=(d_f,),
                                    steps=args.steps, seeds=1)
        tune_spec, _, tune_run = prepare(base, "tune", storage, lrs=lrs, finetune_tokens=(d_f,),
                                         steps=args.steps, seeds=1)
        keys = [TrialKey(base.tasks[0].name, 0, d_f, lr, base.seed) for lr in lrs]
        print(f"{len(keys)} trials of {args.steps} finetune steps at D_f {d_f:,} "
              f"(then decoding, BLEU/chrF/ROUGE-L, cross-entropy, COMET), one at a time")
        direct = direct_seconds(direct_spec, keys)
        print(f"direct call:      {spread(direct)}")
        ray.init(num_cpus=base.resources.local_cpus, namespace="raysweep",
                 runtime_env={"env_vars": worker_env()}, log_to_driver=False)
        try:
            tuned = tune_seconds(tune_spec, tune_run)
            ratio = statistics.median(tuned) / statistics.median(direct)
            print(f"inside Tune:      {spread(tuned)} -> ratio of medians {ratio:.2f} "
                  f"(target <= 1.1); the first trial, which starts the trial actor and the COMET "
                  f"scorer, {tuned[0]:.1f} s")
            latency_spec, _, latency_run = prepare(
                dataclasses.replace(base, resources=dataclasses.replace(
                    base.resources, max_concurrent_trials=2)),
                "latency", storage, lrs=(0.001,), finetune_tokens=(d_f,), steps=5, seeds=1)
            delays = publication_delays(latency_spec, latency_run, args.publications)
        finally:
            ray.shutdown()
        print(f"publication -> first trial start: median {statistics.median(delays):.2f} s "
              f"(target < 2 s); each: {', '.join(f'{d:.2f}' for d in delays)}")


if __name__ == "__main__":
    main()
