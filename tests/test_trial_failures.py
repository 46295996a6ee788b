"""A finetune trial that fails is retried (resources.trial_retries) and then recorded as failed
with its reason; the other trials finish and a rerun does not redo them. Real parts: the watcher's
Tune experiment on a local Ray, MLflow on SQLite; the failure is a real divergence (a learning
rate so large that the finetune loss becomes NaN)."""

from __future__ import annotations

import copy

import pytest
from reliability import audit, record

from raysweep.spec_loader import spec_from_dict

pytestmark = [pytest.mark.slow, pytest.mark.fault]

DIVERGING_LR = 1e9


@pytest.fixture(scope="module")
def finetune_only(tmp_path_factory):
    """The watcher's experiment with pretraining already over and nothing published: only the
    D_p = 0 baseline trials run, one at a sane lr and one at a diverging lr."""
    import ray
    from conftest import TINY_SPEC

    from raysweep.data.tokenizer import save_tokenizer, train_tokenizer
    from raysweep.evaluation.comet_model import load_comet
    from raysweep.plan import plan_keys
    from raysweep.sweep import _connect_ray
    from raysweep.tracking import Tracker
    from raysweep.watcher import CheckpointWatcher

    data = copy.deepcopy(TINY_SPEC)
    data["tasks"][0].update(finetune_tokens=[1000], lrs=[0.003, DIVERGING_LR])
    data["resources"]["trial_retries"] = 1
    spec = spec_from_dict(data, base_dir=str(tmp_path_factory.mktemp("failures")))
    save_tokenizer(spec, train_tokenizer(spec))
    load_comet(spec.evaluation.comet_model, spec.root)
    tracker = Tracker.for_spec(spec)
    tracker.ensure_experiment()
    sweep_run = tracker.get_or_create_run({"raysweep.kind": "sweep"}, spec.name)
    _connect_ray(spec)
    outcomes, failed_after_first = [], None
    try:
        for _ in range(2):  # the second time is a rerun of the same spec
            watcher = CheckpointWatcher.remote(spec, sweep_run)
            watcher.pretraining_finished.remote()
            outcomes.append(ray.get(watcher.run.remote(), timeout=600))
            ray.kill(watcher)
            failed_after_first = failed_after_first or trial_runs(tracker, DIVERGING_LR)
    finally:
        ray.shutdown()
    (diverging,) = [str(k) for k in plan_keys(spec, 0) if k.lr == DIVERGING_LR]
    counts = audit(spec, tracker, expected_failures={diverging}, starting_points=[0])
    record("finetune loss becomes NaN", 1, outcomes[0]["done"] == 1, counts["lost"],
           counts["duplicated"], "recorded FAILED with its reason, after its retry")
    return spec, tracker, outcomes, failed_after_first


def trial_runs(tracker, lr: float) -> list:
    return [r for r in tracker.find_runs({"raysweep.kind": "trial"})
            if float(r.data.tags["raysweep.lr"]) == lr]


def test_a_failing_trial_is_retried_then_recorded_as_failed_with_its_reason(finetune_only):
    _, tracker, (first, _), failed_after_first = finetune_only
    assert first["done"] == 1 and first["failed"] == 1
    (failed,) = failed_after_first  # retries reuse the run: one run per key
    assert failed.info.status == "FAILED"
    assert failed.data.tags["raysweep.attempts"] == "2"  # the first run and one retry
    assert "FloatingPointError" in failed.data.tags["raysweep.failure"]
    assert "FloatingPointError" in failed.data.tags["raysweep.previous_failure"]
    assert any("FloatingPointError" in e for e in first["errors"])


def test_the_other_trial_finishes_once_and_a_rerun_does_not_redo_it(finetune_only):
    _, tracker, (_, rerun), _ = finetune_only
    (finished,) = trial_runs(tracker, 0.003)
    assert finished.info.status == "FINISHED" and finished.data.tags["raysweep.attempts"] == "1"
    assert "raysweep.failure" not in finished.data.tags
    assert rerun["skipped"] == 1 and rerun["done"] == 0  # only the missing result is tried again
    assert rerun["failed"] == 1
    assert len(trial_runs(tracker, 0.003)) == 1
    (failed,) = trial_runs(tracker, DIVERGING_LR)  # the rerun tried it again, in the same run
    assert failed.data.tags["raysweep.attempts"] == "4" and failed.info.status == "FAILED"


def test_the_failed_trial_is_left_out_of_the_fits(finetune_only):
    from raysweep.refit import analyse_sweep, finished_results

    spec, *_ = finetune_only
    assert {r.key.lr for r in finished_results(spec).values()} == {0.003}
    for group in analyse_sweep(spec, resamples=10):  # the baseline point is the sane lr's
        run = [r for r in finished_results(spec).values() if r.key.d_f == group.d_f]
        assert {d_p: p["y"] for d_p, p in group.points.items()} == {
            0: run[0].metrics[group.metric]}
