"""Finetune trials: one trial key = (task, D_p, D_f, lr, seed) -> one finished MLflow run.

A trial loads its starting point (a published checkpoint, or fresh weights for the D_p = 0
baseline), finetunes on the first D_f tokens of the task's shuffled training split, scores the dev
set (for the learning-rate choice) and the test set (for the laws), logs one MLflow run and hands
the result to the fitter. The test set is never used for a choice.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from dataclasses import dataclass

import ray
import torch
from ray import tune

from raysweep import checkpoints
from raysweep.checkpoint_source import checkpoint_source
from raysweep.data.collators import finetune_prefix
from raysweep.data.sources import parallel_splits
from raysweep.data.synthetic import Family
from raysweep.data.tokenizer import fetch_tokenizer, load_tokenizer
from raysweep.evaluation.comet_model import comet_scores, load_comet
from raysweep.evaluation.metrics import bleu_chrf, cross_entropy, evaluate_translation, translate
from raysweep.evaluation.scorer import scorer_for_this_node
from raysweep.model import for_model, on_device
from raysweep.plan import FITTER_NAME, REPLICATES_FILE, TrialKey, TrialResult
from raysweep.spec import SweepSpec
from raysweep.tracking import (
    COMET_SCORER,
    FAILURE,
    SIGNATURE,
    TRIAL_KEY,
    Tracker,
    trial_run_name,
    trial_tags,
)

logger = logging.getLogger(__name__)


def finetune_trial(config: dict, spec: SweepSpec, measure=None) -> None:
    """The Tune trainable (function API). `config["key"]` is a TrialKey as a dict; `measure`:
    see run_trial."""
    key = TrialKey(**config["key"])
    result = run_trial(spec, key, config.get("parent_run_id"), measure)
    if result is not None:  # None: this key already had a finished run (exactly-once)
        try:
            fitter = ray.get_actor(FITTER_NAME.format(spec.name))
            ray.get(fitter.add_result.remote(result))
        except Exception as err:  # the result is safe in MLflow; the fitter rebuilds from there
            logger.warning("could not hand %s to the fitter: %s: %s", key, type(err).__name__, err)
    # The trial's metrics in Tune's results too (ResultGrid, result.json), for Tune's own tools.
    tune.report({"done": 1, "skipped": int(result is None),
                 **(result.metrics if result is not None else {})})


_PROCESS_CACHE: dict[tuple, object] = {}


def _cached(key: tuple, build):
    """Per-process cache: Tune reuses trial actors, so the tokenizer, the task's splits, its D_f
    prefixes and the COMET model are built once per actor instead of once per trial."""
    if key not in _PROCESS_CACHE:
        _PROCESS_CACHE[key] = build()
    return _PROCESS_CACHE[key]


def finetune(model, train: list[tuple[str, str]], task, lr: float, tokenizer,
             dev: list[tuple[str, str]] | None = None, seed: int | None = None) -> dict:
    """Full-weight finetuning at a constant learning rate (the paper's protocol), cycling over the
    D_f pairs for `task.steps` steps, in their fixed shuffled order, or with `seed`, in an order
    shuffled by it (finetune replicates: with dropout off, the batch order is what varies). With
    task.eval_every, the dev cross-entropy is checked every that many steps; with task.patience
    too, training stops after that many checks without improvement and the best weights are kept
    (early stopping).
    Returns train_loss, steps_run and the dev checks [(step, dev cross-entropy)]."""


    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    if seed is not None:
        train = random.Random(f"raysweep-finetune-{seed}").sample(train, len(train))
    batches = itertools.cycle([train[i:i + task.batch_size]
                               for i in range(0, len(train), task.batch_size)])
    checks: list[tuple[int, float]] = []
    best_ce, best_weights, since_best = math.inf, None, 0
    model.train()
    for step in range(1, task.steps + 1):
        batch = for_model(model).pair_batch(next(batches), tokenizer, task.max_length)
        loss = model(**on_device(batch, model)).loss
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"finetune loss became {loss.item()} at step {step}")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if task.eval_every and dev and step % task.eval_every == 0:
            dev_ce = cross_entropy(model, dev, tokenizer, task.max_length)
            model.train()
            checks.append((step, dev_ce))
            if dev_ce < best_ce:
                best_ce, since_best = dev_ce, 0
                if task.patience:
                    best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                since_best += 1
            if task.patience and since_best >= task.patience:
                break
    if best_weights is not None:
        model.load_state_dict(best_weights)
    return {"train_loss": loss.item(), "steps_run": step, "dev_checks": checks}


def comet_scorer(spec: SweepSpec, tracker, run_id: str):
    """score(sources, hypotheses, references) -> COMET (segment scores, system score); the
    segments give the score's standard error. Inside Ray, the node's shared
    scorer actor (loaded once per node, recorded on the trial run); outside, a model loaded once
    per process. Called when a trial starts, so a scorer that is starting loads while the trial
    finetunes."""
    batch = spec.evaluation.comet_batch_size
    if ray.is_initialized():
        scorer = scorer_for_this_node(spec)

        def score(sources, hypotheses, references) -> tuple[list[float], float]:
            stats = ray.get(scorer.stats.remote())
            tracker.set_tags(run_id, {COMET_SCORER: f"node {stats['node_id'][:16]} "
                                                               f"pid {stats['pid']}"})
            return ray.get(scorer.score.remote(sources, hypotheses, references, batch))

        return score

    model = _cached((str(spec.root), "comet", spec.evaluation.comet_model),
                    lambda: load_comet(spec.evaluation.comet_model, spec.root))
    return lambda src, hyp, ref: comet_scores(model, src, hyp, ref, batch)


def _dev_scores(spec: SweepSpec, task, model, tokenizer, dev_pairs) -> dict[str, float]:
    """What the lr is chosen on: dev cross-entropy, and dev BLEU and chrF where the spec chooses
    on translations (fit.lr_choice)."""
    dev = {"dev_cross_entropy": cross_entropy(model, dev_pairs, tokenizer, task.max_length)}
    if spec.fit.lr_choice in ("dev_bleu", "dev_chrf"):
        ev = spec.evaluation
        hypotheses = translate(model, [s for s, _ in dev_pairs], tokenizer, task.max_length,
                               ev.max_new_tokens, ev.num_beams)
        scores = bleu_chrf(hypotheses, [t for _, t in dev_pairs], ev.bleu_tokenize)
        dev.update(dev_bleu=scores["bleu"], dev_chrf=scores["chrf"])
    return dev


def run_trial(spec: SweepSpec, key: TrialKey, parent_run_id: str | None,
              measure=None) -> TrialResult | None:
    """One trial key's MLflow run, exactly once: None if the key already has a finished run.
    `measure(spec, key, tracker, run_id)` does the work and returns the trial's Measurement
    (default: finetune_and_score; bench/bench_control_plane.py passes one that returns simulated
    metrics at once, to load the coordinators with a paper-sized sweep)."""


    torch.set_num_threads(1)  # trials share the machine with pretraining
    tracker = Tracker.for_spec(spec)
    runs = tracker.find_runs({TRIAL_KEY: str(key)})  # the tag that names the key's runs
    if any(run.info.status == "FINISHED" for run in runs):
        return None
    run_id = tracker.get_or_create_run(trial_tags(key), trial_run_name(key), parent_run_id,
                                       reuse_finished=False, found=runs)
    logged = _logged_before(tracker, key, next((r for r in runs if r.info.run_id == run_id), None))
    if logged is not None:  # an attempt killed after its results, before its end: end it
        tracker.end_run(run_id, "FINISHED")
        return logged
    if tracker.start_attempt(run_id) == 1:  # a retry reuses the failed attempt's run
        task = next(t for t in spec.tasks if t.name == key.task)
        tracker.log_finetune_data(run_id, key.task, key.d_f, task.data)
    started = time.time()
    try:
        measured = (measure or finetune_and_score)(spec, key, tracker, run_id)
        numbers = {**measured.metrics, "trial_seconds": time.time() - started}
        tracker.set_tags(run_id, measured.tags)
        tracker.log_dict(run_id, measured.examples, "examples.json")
        replicates = {name: [round(float(v), 6) for v in values]
                      for name, values in measured.replicates.items()}
        tracker.log_dict(run_id, replicates, REPLICATES_FILE)
        # The numbers last, in one batch: a run that holds them holds every result (see
        # _logged_before), so a retry after a kill here does not measure and log them again.
        tracker.log_metrics(run_id, numbers)
        tracker.end_run(run_id, "FINISHED")
    except (KeyboardInterrupt, SystemExit):
        # Stopped, not failed: Ray ends a trial's actor this way when its sweep is stopped
        # (`ray job stop` kills the watcher that owns it). KILLED, as the driver marks the rest;
        # measured: as FAILED ("SystemExit: 1") it read as a defect of the trial.
        tracker.end_run(run_id, "KILLED")
        raise
    except BaseException as err:
        tracker.set_tags(run_id, {FAILURE: f"{type(err).__name__}: {err}"[:5000]})
        tracker.end_run(run_id, "FAILED")
        raise
    return TrialResult(key, numbers, run_id, replicates)


def _logged_before(tracker, key: TrialKey, run) -> TrialResult | None:
    """The result an earlier attempt of this run logged in full (trial_seconds, in the last
    batch of numbers, is there) before it was killed, or None."""
    if run is None or "trial_seconds" not in run.data.metrics:
        return None
    return TrialResult(key, dict(run.data.metrics), run.info.run_id,
                       tracker.load_dict(run.info.run_id, REPLICATES_FILE))


@dataclass
class Measurement:
    """What a trial measured, for its MLflow run and the fitter."""
    metrics: dict[str, float]
    """Test metrics, dev metrics (the lr choice), train_loss, steps_run."""
    tags: dict[str, str]
    """The metrics' signatures (sacrebleu's), as run tags."""
    examples: list
    """Some test translations with their references (examples.json)."""
    replicates: dict[str, list]
    """Paired bootstrap replicates of each test metric (REPLICATES_FILE)."""


def finetune_and_score(spec: SweepSpec, key: TrialKey, tracker, run_id: str) -> Measurement:
    """Load the starting point (fresh weights for D_p = 0), finetune on the first D_f tokens,
    score the dev set (the lr choice) and the test set (the laws)."""


    task = next(t for t in spec.tasks if t.name == key.task)
    root = str(spec.root)
    tokenizer = _cached((root, "tokenizer"), lambda: load_tokenizer(fetch_tokenizer(spec)))
    splits = _cached((root, "splits", task), lambda: parallel_splits(
        task, Family.of(spec), spec.source_file, f"task {task.name} data", spec.base_dir))
    train, d_f_exact = _cached((root, "prefix", task, key.d_f), lambda: finetune_prefix(
        splits.train, tokenizer, task.max_length, key.d_f))

    torch.manual_seed(key.seed)
    if key.d_p == 0:
        model = checkpoint_source(spec).baseline_model(tokenizer)
    else:
        # A study's checkpoints are its candidates': each in the candidate's folder.
        unit = spec.candidate_spec(key.candidate) if key.candidate else spec
        model = checkpoints.load_model(unit, key.d_p)
    # The trial's GPU where it has one (resources.use_gpu gives each trial one); batches follow
    # the model (raysweep.model.on_device).
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    tracker.log_params(run_id, {**({"candidate": key.candidate} if key.candidate else {}),
                                "task": key.task, "d_p": key.d_p, "d_f": key.d_f,
                                "d_f_exact": d_f_exact, "lr": key.lr, "seed": key.seed,
                                "steps": task.steps, "batch_size": task.batch_size,
                                "train_pairs": len(train)})

    score_comet = comet_scorer(spec, tracker, run_id)
    trained = finetune(model, train, task, key.lr, tokenizer, splits.dev, key.seed)
    for step, value in trained["dev_checks"]:
        tracker.log_metrics(run_id, {"dev_cross_entropy_during": value}, step=step)
    dev = _dev_scores(spec, task, model, tokenizer, splits.dev)
    metrics = evaluate_translation(model, tokenizer, splits.test, spec, task, score_comet)
    numbers = {k: v for k, v in metrics.items() if isinstance(v, float)}
    numbers.update(dev, train_loss=trained["train_loss"], steps_run=trained["steps_run"])
    return Measurement(numbers, {SIGNATURE.format(name): metrics[f"{name}_signature"]
                                 for name in ("bleu", "chrf")},
                       metrics["examples"], metrics["replicates"])
