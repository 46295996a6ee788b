"""The driver of one sweep: prepare, start the actors, produce the checkpoints, wait, summarise.

    prepare (tokenizer, data checks, the checkpoint source, COMET model, MLflow runs)
      -> LawFitter actor, CheckpointWatcher actor (hosts the Tune experiment)
      -> the checkpoint source (raysweep.checkpoint_source: pretraining with Ray Train +
         DeepSpeed, or a series imported) in a driver thread, publishing checkpoints
      -> progress lines until the watcher's experiment ends -> law table

A rerun of the same spec with the same storage resumes: published checkpoints are not redone
(the source is skipped once the last one exists) and finished trial keys are not rerun.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field

import ray

from raysweep import checkpoints
from raysweep.checkpoint_source import checkpoint_source
from raysweep.cluster import check_resources, live_node_types
from raysweep.data.mixture import mixture_params
from raysweep.data.tokenizer import save_tokenizer
from raysweep.evaluation.comet_model import load_comet
from raysweep.evaluation.scorer import stop_scorers
from raysweep.fitter import LawFitter
from raysweep.logs import LEVEL_VARIABLE, configure_worker
from raysweep.plan import FITTER_NAME, WATCHER_NAME, units
from raysweep.preflight import check
from raysweep.spec import SweepSpec
from raysweep.tracking import COORDINATOR_RUN, KIND, KINDS, Tracker, sweep_params
from raysweep.watcher import CheckpointWatcher

NAMESPACE = "raysweep"
RESOLVED_SPEC_FILE = "spec.resolved.yaml"


@dataclass
class SweepOutcome:
    ok: bool
    progress: dict
    laws: list[dict]
    """laws.json's entries: per (task, D_f, metric), the points and the analysis as a dict."""
    errors: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    groups: list[dict] = field(default_factory=list)
    """The same laws with their Analysis objects: the input of raysweep.answer."""


def _connect_ray(spec: SweepSpec) -> str | None:
    """Connect to the cluster (RAY_ADDRESS) or start a local Ray; returns the dashboard's address
    when this call started Ray (Ray binds it to 127.0.0.1 unless told otherwise)."""
    if ray.is_initialized():
        return None
    # Each worker process configures logging as the driver did (raysweep.logs).
    runtime_env = {"env_vars": worker_env(), "worker_process_setup_hook": configure_worker}
    if os.environ.get("RAY_ADDRESS"):  # inside `ray job submit`, or pointed at a cluster
        context = ray.init(namespace=NAMESPACE, runtime_env=runtime_env)
    else:  # a local Ray for this sweep; oversubscribed CPUs let pretraining and trials overlap
        # Worker logs stay in Ray's session logs (set RAYSWEEP_WORKER_LOGS=1 to stream them here):
        # the driver prints one progress line per change instead.
        context = ray.init(num_cpus=spec.resources.local_cpus, namespace=NAMESPACE,
                           runtime_env=runtime_env,
                           log_to_driver=os.environ.get("RAYSWEEP_WORKER_LOGS") == "1",
                           logging_level=logging.WARNING)
    return context.dashboard_url or None


def worker_env() -> dict[str, str]:
    """Environment for every Ray worker process of a sweep."""
    env = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.update({k: os.environ[k] for k in ("TORCH_EXTENSIONS_DIR", "HF_HUB_OFFLINE", LEVEL_VARIABLE)
                if k in os.environ})
    return env


def format_progress(progress: dict, total_checkpoints: int, total_trials: int) -> str:
    finished = progress["done"] + progress["skipped"]
    return (f"checkpoints {progress['checkpoints']}/{total_checkpoints} published | trials "
            f"{finished}/{total_trials} done, {progress['running']} running, "
            f"{progress['queued']} queued, {progress['failed']} failed"
            + (f" | {len(progress['rejected'])} checkpoint(s) skipped as unusable"
               if progress.get("rejected") else "")
            + (f" | {progress['cancelled']} cancelled (stopped candidates)"
               if progress.get("cancelled") else ""))


class SweepStopped(Exception):
    """The driver was told to stop: SIGTERM (`ray job stop`, a scheduler's kill) or Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _StopSignals:
    """SIGTERM interrupts the driver the way Ctrl-C does, so that both leave MLflow and the
    cluster tidy. Raised as KeyboardInterrupt because Ray turns that, and only that, into a clean
    interruption of a blocking ray.wait/ray.get (another exception raised there surfaces as a
    SystemError). `arm` again once Ray is up: ray.init installs its own SIGTERM handler, which
    prints a stack and ends the process. Python runs signal handlers in the main thread only:
    elsewhere (a test's driver thread) nothing changes."""

    def __init__(self):
        self.received = signal.SIGINT
        self.main = threading.current_thread() is threading.main_thread()
        self.previous = signal.getsignal(signal.SIGTERM) if self.main else None

    def arm(self) -> None:
        if self.main:
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame):
        self.received = signum
        raise KeyboardInterrupt

    def disarm(self) -> None:
        if self.main:
            signal.signal(signal.SIGTERM, self.previous)


def run_sweep(spec: SweepSpec, echo=print, poll_seconds: float = 5.0, *, source=None,
              measure=None) -> SweepOutcome:
    """Run (or resume) the sweep to its end. SIGTERM or Ctrl-C stops it: the runs it leaves
    unfinished are marked KILLED, its actors and COMET scorers stopped, and SweepStopped raised;
    a rerun resumes. `source` (default: the spec's checkpoint source) and `measure` (what a
    trial does: raysweep.finetune.run_trial) are for benchmarks of the coordinators alone
    (bench/bench_control_plane.py)."""
    source = source or checkpoint_source(spec)
    started, stops, actors = time.time(), _StopSignals(), ()
    stops.arm()
    try:
        runs = _prepare(spec, source, echo)
        stops.arm()  # again, over Ray's own handler (ray.init in _prepare)
        actors = _start_coordinators(spec, runs, measure)
        return _follow(spec, source, runs, actors, echo, poll_seconds, started)
    except KeyboardInterrupt:
        name = signal.Signals(stops.received).name
        echo(f"[raysweep] stopping ({name}): marking unfinished runs KILLED")
        for handle in actors:
            ray.kill(handle)
        tracker = Tracker.of_existing_sweep(spec)
        if tracker is not None:
            _mark_unfinished_runs_killed(tracker)
        if ray.is_initialized():
            stop_scorers(spec, with_stats=False)
        echo(f"[raysweep] stopped; `raysweep run {spec.source_file or 'SPEC'}` resumes")
        raise SweepStopped(stops.received) from None
    finally:
        stops.disarm()


def _prepare(spec: SweepSpec, source, echo) -> dict[str, str]:
    """Preflight, Ray, the tokenizer, the checkpoint source, the COMET model, then the MLflow
    runs (_open_runs)."""
    tokenizer, _ = check(spec)  # raises SpecError before anything is written
    dashboard = _connect_ray(spec)
    check_resources(spec, live_node_types(), "this Ray cluster")  # ditto
    if dashboard:
        echo(f"[raysweep] Ray dashboard: http://{dashboard}")
    spec.root.mkdir(parents=True, exist_ok=True)
    save_tokenizer(spec, tokenizer)
    source.prepare()
    echo(f"[raysweep] preparing COMET model {spec.evaluation.comet_model!r}")
    load_comet(spec.evaluation.comet_model, spec.root)  # built/downloaded once, before trials race
    return _open_runs(spec, source)


def _open_runs(spec: SweepSpec, source) -> dict[str, str]:
    """The experiment and the sweep's own runs (MLflow run ids by name: sweep, pretrain, laws),
    marked running, with what the sweep runs with."""
    tracker = Tracker.for_spec(spec)
    tracker.ensure_experiment()
    sweep_run = tracker.get_or_create_run({KIND: "sweep"}, spec.name)
    runs = {"sweep": sweep_run,
            "pretrain": tracker.get_or_create_run({KIND: "pretrain"},
                                                  COORDINATOR_RUN.format("pretrain"), sweep_run),
            "laws": tracker.get_or_create_run({KIND: "laws"}, COORDINATOR_RUN.format("laws"),
                                              sweep_run)}
    for run_id in runs.values():
        tracker.set_running(run_id)
    if spec.source_file and os.path.isfile(spec.source_file):
        tracker.log_artifact(sweep_run, spec.source_file)
    # What the sweep runs with, whatever files it was built from (`extends`), and the settings
    # that tell sweeps apart as params.
    tracker.log_dict(sweep_run, spec.as_dict(), RESOLVED_SPEC_FILE)
    tracker.log_params(sweep_run, {**sweep_params(spec, source.settings()),
                                   "num_trials": spec.num_trials(),
                                   "checkpoints": ",".join(map(str, spec.published_tokens()))})
    # The translation alignment score of the mixture for every task: the paper's predictor of
    # whether a law will hold. On the sweep run (compare sweeps) and the pretraining run (a
    # study's candidates: on each one's own pretraining run, raysweep.study.source).
    if not spec.candidates:
        for run_id in (sweep_run, runs["pretrain"]):
            tracker.log_params(run_id, mixture_params(spec))
    return runs


def _start_coordinators(spec: SweepSpec, runs: dict[str, str], measure=None) -> tuple:
    """The fitter and the watcher actors. They come back if their process dies (a lost node, an
    OOM kill): Ray restarts them from the spec, their __init__ rebuilds their state from storage
    and MLflow, and the calls in flight (the watcher's `run` included) are retried."""
    coordinators = {"resources": spec.resources.coordinator_resources,
                    "max_restarts": -1, "max_task_retries": -1}
    fitter = LawFitter.options(name=FITTER_NAME.format(spec.name),
                               **coordinators).remote(spec, runs["laws"])
    watcher = CheckpointWatcher.options(name=WATCHER_NAME.format(spec.name),
                                        **coordinators).remote(spec, runs["sweep"], measure)
    return watcher, fitter


def _produce_in_background(spec: SweepSpec, source, runs: dict[str, str], watcher,
                           echo) -> tuple:
    """The checkpoint source in a driver thread (Ray Train drives its workers from here); returns
    the thread and the list its error lands in."""
    errors, tracker = [], Tracker.for_spec(spec)

    def in_thread() -> None:
        try:
            # The watcher verifies each checkpoint's weights; here a manifest is enough.
            if (set(spec.published_tokens())
                    <= set(checkpoints.published(spec, verify_weights=False))):
                echo(f"[raysweep] {source.stage}: every scheduled checkpoint is already published")
            else:
                source.produce(runs["pretrain"], echo)
            tracker.end_run(runs["pretrain"], "FINISHED")
        except Exception as err:  # reported by the driver; the watcher still finishes what exists
            errors.append(f"{source.stage} failed: {type(err).__name__}: {err}")
            tracker.end_run(runs["pretrain"], "FAILED")
        finally:
            watcher.pretraining_finished.remote()

    thread = threading.Thread(target=in_thread, name="checkpoints", daemon=True)
    thread.start()
    return thread, errors


def _follow(spec: SweepSpec, source, runs: dict[str, str], actors: tuple, echo,
            poll_seconds: float, started: float) -> SweepOutcome:
    """Produce the checkpoints, print progress until the watcher's experiment ends, then the
    final laws."""
    watcher, fitter = actors
    experiment = watcher.run.remote()
    thread, pretrain_errors = _produce_in_background(spec, source, runs, watcher, echo)
    # Every unit's: the sweep's, or each study candidate's
    total_checkpoints, last = sum(len(u.published_tokens()) for u in units(spec)), None
    while True:
        done, _ = ray.wait([experiment], timeout=poll_seconds)
        if not thread.is_alive():  # again each time: a restarted watcher starts without it
            watcher.pretraining_finished.remote()
        line = format_progress(ray.get(watcher.progress.remote()), total_checkpoints,
                               spec.num_trials())
        if line != last:
            latest_fit = ray.get(fitter.latest.remote())
            echo(f"[raysweep] {time.time() - started:6.0f}s  {line}"
                 + (f"\n[raysweep]          latest fit: {latest_fit}" if latest_fit else ""))
            last = line
        if done:
            break
    thread.join()
    final = ray.get(experiment)
    # Results whose trial died between its MLflow run and handing it over (its watcher was killed)
    # are in MLflow only: the fitter takes them in before the last summary.
    late = ray.get(fitter.sync.remote())
    if late:
        echo(f"[raysweep] the fitter took in {late} finished trial(s) it had not been handed")
    laws, groups = ray.get([fitter.summary.remote(), fitter.answer_groups.remote()])
    errors = pretrain_errors + final.pop("errors")
    finished = final["done"] + final["skipped"]
    ok = not errors and finished == source.final_trials()
    tracker = Tracker.for_spec(spec)
    tracker.end_run(runs["laws"], "FINISHED")
    tracker.end_run(runs["sweep"], "FINISHED" if ok else "FAILED")
    for handle in actors:
        ray.kill(handle)
    final["comet_scorers"] = stop_scorers(spec)
    return SweepOutcome(ok, final, laws, errors, time.time() - started, groups)


def _mark_unfinished_runs_killed(tracker) -> None:
    """Every RUNNING run of the sweep (its own, pretraining, laws, trials) ends KILLED: the
    MLflow UI then shows a stopped sweep as stopped. A rerun marks them RUNNING again."""
    for kind in KINDS:
        for run in tracker.find_runs({KIND: kind}, "RUNNING"):
            tracker.end_run(run.info.run_id, "KILLED")
