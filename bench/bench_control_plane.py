"""The control plane at paper scale: the watcher, Tune, MLflow and the fitter under a sweep (or a
study) of thousands of trial keys, with the work taken out.

    .venv/bin/python bench/bench_control_plane.py [--tasks 3] [--checkpoints 30] [--sizes 3]
        [--lrs 3] [--seeds 3] [--concurrency 4] [--publish-every 0.5] [--candidates 0]

One sweep through the real driver (`run_sweep`): the real CheckpointWatcher hosting the Tune
experiment, real Tune trials with their exactly-once MLflow runs, the real LawFitter refitting
online, MLflow on SQLite. Two things are stand-ins, passed through run_sweep's `source` and
`measure`: pretraining publishes real (tiny) checkpoints on a schedule instead of training them,
and each trial returns simulated metrics at once (laws of D_p with seed noise, and paired
bootstrap replicates of the size real trials log) instead of finetuning. Defaults: 3 tasks x 31
starting points x 3 D_f x 3 lrs x 3 seeds = 2,511 trial keys.

With `--candidates N` (2 to 6) it is a study instead: N candidate mixtures of two synthetic
languages each (en+de, en+fr, en+ro, de+fr, fr+ro, de+ro), no stopping policy, driven by the real
StudySource (each candidate's stand-in publishing on its schedule in a thread of its own, side by
side) and the study's fitter (a law per candidate, the candidates compared). Each candidate's
simulated laws rise with their own slope (from its name); the shared no-pretraining baseline is
one set of trials. The issue's target: 5 candidates at the default grid, 1 + 5 x 30 starting
points x 81 = 12,231 trial keys, under the same two targets as a sweep.

Prints, as measured (and first the trial keys and the number of candidates, 0 for a sweep):
  - coordinator overhead per trial: the slot-seconds a trial costs when its work is free,
    (trial phase x concurrency) / trials (target < 0.5 s), and the median trial run in MLflow;
  - the fitter's lag: from the last trial's end to its last write of the laws (target < 10 s);
  - memory (RSS) of the watcher's process (it hosts Tune) and the fitter's, at each quarter of
    the trials (growth should be no worse than linear);
  - MLflow rows (runs, metrics, params, tags) and the database's size.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from _common import load_bench_spec, refuse  # noqa: E402

TASKS = [("en-de", "de"), ("en-fr", "fr"), ("en-ro", "ro")]
MIXTURES = [("en", "de"), ("en", "fr"), ("en", "ro"), ("de", "fr"), ("fr", "ro"), ("de", "ro")]
"""A study's candidates, in this order: each a 50/50 mixture of two synthetic languages."""


def paper_sized(spec, args, storage: str):
    """The spec with the grid asked for, its own storage and MLflow."""
    import dataclasses

    if not 1 <= args.tasks <= len(TASKS):
        refuse(f"--tasks must be 1 to {len(TASKS)} (the synthetic language pairs)")
    if args.checkpoints < 3 or min(args.sizes, args.lrs, args.seeds, args.concurrency) < 1:
        refuse("--checkpoints must be at least 3 (a law needs 3 points); --sizes, --lrs, "
               "--seeds and --concurrency at least 1")
    if args.candidates and not 2 <= args.candidates <= len(MIXTURES):
        refuse(f"--candidates must be 0 (a sweep) or 2 to {len(MIXTURES)} (a study: the pairs "
               f"of synthetic languages)")
    base = spec.tasks[0]
    tasks = tuple(dataclasses.replace(
        base, name=name, source_lang="en", target_lang=target, data=f"synthetic:en-{target}",
        finetune_tokens=[4000 * 4 ** i for i in range(args.sizes)],
        lrs=[0.0003 * 2 ** i for i in range(args.lrs)], seeds=args.seeds)
        for name, target in TASKS[:args.tasks])
    # Log-spaced D_p, 1.25x apart from 50 steps (nothing is trained: only the count matters).
    schedule = tuple(spec.pretrain.tokens_per_step() * round(50 * 1.25 ** i)
                     for i in range(args.checkpoints))
    pretrain = dataclasses.replace(spec.pretrain, tokens=schedule[-1], checkpoints=schedule)
    resources = dataclasses.replace(spec.resources, local_cpus=max(2, args.concurrency),
                                    max_concurrent_trials=args.concurrency, trial_cpus=1)
    evaluation = dataclasses.replace(spec.evaluation, comet_model="tiny-local")  # offline
    spec = dataclasses.replace(spec, name="control-plane", storage=storage, tracking_uri=None,
                               tasks=tasks, pretrain=pretrain, resources=resources,
                               evaluation=evaluation)
    return a_study(spec, args.candidates) if args.candidates else spec


def a_study(spec, n: int):
    """The sweep as a study of the first `n` MIXTURES, no stopping policy (the whole schedule
    for every candidate: the most trials a study of n candidates has)."""
    import dataclasses

    from raysweep.spec import CandidateSpec, MixtureComponent, SpecError

    candidates = tuple(CandidateSpec(f"{a}-{b}", mixture=(
        MixtureComponent(f"synthetic:{a}", 0.5), MixtureComponent(f"synthetic:{b}", 0.5)))
        for a, b in MIXTURES[:n])
    study = dataclasses.replace(spec, candidates=candidates, stop=None, series=None,
                                pretrain=dataclasses.replace(spec.pretrain, mixture=()))
    try:
        study.check()
    except SpecError as err:
        refuse(" ".join(str(err).split()))
    return study


def scheduled_source(spec, every: float):
    """The checkpoint source the bench drives: a sweep's stand-in, or for a study the real
    StudySource with a stand-in for each candidate (each publishing on its own schedule, in the
    study's threads)."""
    if not spec.candidates:
        return publish_on_a_schedule(spec, every)
    from raysweep.study.source import StudySource

    return StudySource(spec, source_of=lambda candidate: publish_on_a_schedule(candidate, every))


def publish_on_a_schedule(spec, every: float):
    """Stands in for pretraining: a checkpoint source that publishes every scheduled checkpoint
    (a real export of the untrained model, manifest last, the watcher told), one each `every`
    seconds; the rest (checks, baseline) is pretraining's."""
    from raysweep import checkpoints
    from raysweep.data.tokenizer import fetch_tokenizer, load_tokenizer
    from raysweep.plan import tell_watcher
    from raysweep.pretrain.source import PretrainingSource

    class OnASchedule(PretrainingSource):
        def produce(self, run_id: str, echo) -> None:
            tokenizer = load_tokenizer(fetch_tokenizer(spec))
            model = self.baseline_model(tokenizer)
            for tokens in spec.pretrain.published_tokens():
                checkpoints.publish(spec, model, tokens,
                                    tokens // spec.pretrain.tokens_per_step(), {})
                tell_watcher(spec)
                time.sleep(every)

    return OnASchedule(spec)


FLOOR = 1e3
"""The simulated laws' D_p below which pretraining is worth nothing (the baseline's, D_p = 0)."""


def effect(candidate: str) -> float:
    """What a candidate's pretraining data is worth: D_p tokens of it count as FLOOR x
    (D_p / FLOOR)^effect of the sweep's. 1 for a sweep and for the study's shared baseline (""),
    0.5 to 1.5 for a study's candidate, fixed by its name: each rises from the same baseline with
    a slope of its own, and all of them are aligned (better than no pretraining, and rising)."""
    return 1.0 if not candidate else 0.5 + zlib.crc32(candidate.encode()) % 1001 / 1000


def simulated_measure(spec, key, tracker, run_id: str):
    """Stands in for finetuning: metrics that follow laws of D_p (log-law for the task metrics,
    power law for cross-entropy), each candidate of a study its own (`effect`), the lr choosing
    on dev cross-entropy, seed noise, and paired bootstrap replicates of the size real trials
    log; returns at once."""
    import numpy as np

    from raysweep.evaluation.metrics import BOOTSTRAP_SAMPLES
    from raysweep.finetune import Measurement

    rng = np.random.default_rng(zlib.crc32(str(key).encode()))
    d_p = FLOOR * (max(key.d_p, FLOOR) / FLOOR) ** effect(key.candidate)
    lr_penalty = abs(math.log(key.lr / 0.0006))  # the middle lr is the best
    law = {"bleu": 5 + 2.0 * math.log(d_p) ** 0.9, "chrf": 20 + 3.0 * math.log(d_p) ** 0.9,
           "rougeL": 15 + 2.5 * math.log(d_p) ** 0.9, "comet": 0.0,
           "cross_entropy": 1.0 + 40.0 * d_p ** -0.3}
    metrics, replicates = {}, {}
    for name, value in law.items():
        value *= 1 + 0.02 * rng.standard_normal()
        se = max(abs(value) * 0.02, 1e-3)
        metrics[name], metrics[f"{name}_se"] = float(value), float(se)
        replicates[name] = (value + se * rng.standard_normal(BOOTSTRAP_SAMPLES)).tolist()
    metrics.update(dev_cross_entropy=metrics["cross_entropy"] * (1 + 0.1 * lr_penalty),
                   test_sentences=600.0, train_loss=1.0, steps_run=100.0)
    return Measurement(metrics, {}, [], replicates)


class Sampler:
    """Samples, once a second while the sweep runs, the trials finished so far and the RSS of the
    watcher's and the fitter's processes."""

    TITLES = {"watcher": "ray::CheckpointWatcher", "fitter": "ray::LawFitter"}

    def __init__(self, spec):
        self.spec, self.samples, self.stop = spec, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _rss(self) -> dict[str, float]:
        import psutil

        found = {}
        for p in psutil.process_iter(["cmdline", "memory_info"]):
            first = ((p.info["cmdline"] or [""])[:1] or [""])[0].strip()
            for name, title in self.TITLES.items():
                if first == title or first.startswith(title + "."):
                    found[name] = p.info["memory_info"].rss / 2 ** 20
        return found

    def _run(self) -> None:
        import ray

        from raysweep.plan import WATCHER_NAME

        while not self.stop.wait(1.0):
            try:
                progress = ray.get(ray.get_actor(WATCHER_NAME.format(self.spec.name))
                                   .progress.remote(), timeout=10)
            except Exception:  # not started yet, or ended
                continue
            self.samples.append((time.time(), progress["done"] + progress["skipped"], self._rss()))

    def at_quarters(self, total: int) -> list[tuple[int, float, dict]]:
        """At each quarter of the trials: (trials finished, trials/s over that quarter, RSS)."""
        self.stop.set()
        self.thread.join()
        rows, previous = [], None
        for quarter in (0.25, 0.5, 0.75, 1.0):
            reached = [s for s in self.samples if s[1] >= quarter * total] or self.samples[-1:]
            if not reached:
                break
            at, done, rss = reached[0]
            start = previous or next((s for s in self.samples if s[1] > 0), None)
            if start is None:  # sampled only before the first trial ended (a tiny run)
                break
            rate = (done - start[1]) / (at - start[0]) if at > start[0] else float("nan")
            rows.append((done, rate, rss))
            previous = reached[0]
        return rows


def mlflow_rows(spec) -> dict[str, int]:
    import sqlite3

    db = spec.root / "mlflow.db"
    with sqlite3.connect(db) as connection:
        counts = {table: connection.execute(f"select count(*) from {table}").fetchone()[0]
                  for table in ("runs", "metrics", "params", "tags")}
    return {**counts, "MB": round(db.stat().st_size / 2 ** 20, 1)}


def trial_phase(spec) -> dict:
    """From MLflow: the trial runs' start and end times and how many each candidate has ("" for
    a sweep's and the study's shared baseline), the fitter's last write of a law's numbers, and
    of a figure (the newest file among the laws run's artifacts)."""
    from urllib.parse import urlparse

    from raysweep.tracking import CANDIDATE, Tracker

    tracker = Tracker.for_spec(spec)
    trials = tracker.find_runs({"raysweep.kind": "trial"}, "FINISHED")
    (laws,) = tracker.find_runs({"raysweep.kind": "laws"})
    last_law_write = max(m.timestamp for name in laws.data.metrics
                         for m in tracker.client.get_metric_history(laws.info.run_id, name))
    artifacts = Path(urlparse(laws.info.artifact_uri).path)
    return {"trials": len(trials), "first_start": min(r.info.start_time for r in trials) / 1000,
            "last_end": max(r.info.end_time for r in trials) / 1000,
            "run_seconds": [(r.info.end_time - r.info.start_time) / 1000
                            for r in sorted(trials, key=lambda r: r.info.start_time)],
            "by_candidate": Counter(r.data.tags.get(CANDIDATE, "") for r in trials),
            "last_law_write": last_law_write / 1000,
            "last_figure": max(p.stat().st_mtime for p in artifacts.rglob("*.png"))}


def plan_line(spec, args) -> str:
    """The trial keys and where they come from, then the candidates (0: a sweep)."""
    grid = (f"{args.sizes} D_f x {args.lrs} lrs x {args.seeds} seeds; {args.concurrency} at "
            f"once")
    if not spec.candidates:
        return (f"{spec.num_trials():,} trial keys: {args.tasks} tasks x "
                f"{args.checkpoints + 1} starting points x {grid}\n0 candidates (a sweep)")
    n, each = len(spec.candidates), len(spec.candidate_specs()[0].published_tokens())
    return (f"{spec.num_trials():,} trial keys: {args.tasks} tasks x {1 + n * each} starting "
            f"points (the shared baseline + {n} candidates x {each} checkpoints) x {grid}\n"
            f"{n} candidates (no stopping policy), effect on D_p: " + ", ".join(
                f"{c.name} {effect(c.name):.2f}" for c in spec.candidates))


def sweep(spec, args):
    """Run it through the real driver; (its outcome, the Sampler's rows by quarter)."""
    import ray

    from raysweep.sweep import run_sweep

    sampler = None

    def echo(line: str) -> None:
        nonlocal sampler
        if sampler is None and ray.is_initialized():
            sampler = Sampler(spec)
        print(line, flush=True)

    try:
        outcome = run_sweep(spec, echo=echo, poll_seconds=10.0,
                            source=scheduled_source(spec, args.publish_every),
                            measure=simulated_measure)
        memory = sampler.at_quarters(spec.num_trials()) if sampler else []
    finally:
        ray.shutdown()
    return outcome, memory


def report(spec, args, phase: dict, memory: list, rows: dict, laws: list[dict]) -> None:
    """Print the figures (the module's docstring lists them)."""
    total, wall = spec.num_trials(), phase["last_end"] - phase["first_start"]
    quarter = max(1, phase["trials"] // 4)
    print(f"{phase['trials']:,} trials finished of {total:,} planned"
          + ("" if phase["trials"] == total else " (MISMATCH)"))
    if spec.candidates:
        counts = phase["by_candidate"]
        print("by candidate: the shared baseline " + ", ".join(
            [f"{counts['']:,}"] + [f"{c.name} {counts[c.name]:,}" for c in spec.candidates]))
    print(f"trial phase: {wall:.0f} s, {phase['trials'] / wall:.2f} trials/s")
    print(f"coordinator overhead per trial: {wall * args.concurrency / phase['trials']:.2f} "
          f"slot-seconds (target < 0.5); a trial's MLflow run: median "
          f"{statistics.median(phase['run_seconds']):.2f} s "
          f"[{min(phase['run_seconds']):.2f}-{max(phase['run_seconds']):.2f}]; in the first "
          f"quarter of the trials {statistics.median(phase['run_seconds'][:quarter]):.2f} s, in "
          f"the last {statistics.median(phase['run_seconds'][-quarter:]):.2f} s")
    print(f"fitter lag at the end: {phase['last_law_write'] - phase['last_end']:.1f} s from the "
          f"last trial's end to the last write of the laws (target < 10); the figures "
          f"{phase['last_figure'] - phase['last_end']:.1f} s")
    print("by quarter of the trials: trials/s over the quarter (flat: no slowdown as the sweep "
          "grows), memory (RSS, MiB)")
    for done, rate, rss in memory:
        print(f"  {done:>6,} trials: {rate:5.2f}/s, " + ", ".join(
            f"{k} {v:,.0f}" for k, v in sorted(rss.items())))
    print("MLflow: " + ", ".join(f"{k} {v:,}" for k, v in rows.items()))
    # The simulated truth is aligned for every fitted metric: anything else is a wrong answer.
    verdicts = Counter(law["verdict"] for law in laws)
    print("verdicts (the simulated laws are all aligned; comet is not fitted): "
          + ", ".join(f"{verdict} {n}" for verdict, n in verdicts.most_common()))
    if spec.candidates:
        by = Counter(law.get("candidate", "") for law in laws)
        print("laws by candidate: " + ", ".join(f"{c.name} {by[c.name]}"
                                                 for c in spec.candidates))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default="jobs/demo.yaml",
                        help="the base spec (model, task settings)")
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--checkpoints", type=int, default=30)
    parser.add_argument("--sizes", type=int, default=3, help="finetune sizes D_f per task")
    parser.add_argument("--lrs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4, help="trials at once")
    parser.add_argument("--publish-every", type=float, default=0.5,
                        help="seconds between checkpoints")
    parser.add_argument("--candidates", type=int, default=0,
                        help="0: a sweep; 2 to 6: a study of that many candidate mixtures")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-control-") as storage:
        spec = paper_sized(load_bench_spec(args.spec), args, storage)
        print(plan_line(spec, args), flush=True)
        started = time.time()
        outcome, memory = sweep(spec, args)
        print(f"\nsweep: {time.time() - started:.0f} s, ok={outcome.ok}"
              + (f"; errors: {outcome.errors[:3]}" if outcome.errors else ""))
        if not outcome.ok:
            refuse("the sweep failed; nothing to measure")
        phase, rows = trial_phase(spec), mlflow_rows(spec)
    report(spec, args, phase, memory, rows, outcome.laws)


if __name__ == "__main__":
    main()
