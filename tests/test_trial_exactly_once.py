"""A trial's result is measured and logged once even when its attempt is killed between writes.
run_trial writes the numbers last, in one batch, then marks the run FINISHED; a retry that finds
the numbers ends the run without measuring again, and a retry that does not measures again.
Found by the chaos test's audit on CI (a result logged twice after a kill between the numbers and
the end). Real parts: MLflow on SQLite, run_trial's own writes; `measure` is the work of a trial,
counted here instead of finetuning."""

from __future__ import annotations

import pytest

from raysweep.finetune import Measurement, run_trial
from raysweep.plan import REPLICATES_FILE, plan_keys
from raysweep.spec_loader import spec_from_dict
from raysweep.tracking import Tracker, trial_tags

NUMBERS = {"bleu": 12.5, "chrf": 30.0, "rougeL": 0.3, "comet": 0.1, "cross_entropy": 4.0,
           "dev_cross_entropy": 4.1}


@pytest.fixture
def setup(tmp_path, tiny_spec_dict):
    spec = spec_from_dict(tiny_spec_dict, base_dir=str(tmp_path))
    tracker = Tracker.for_spec(spec)
    tracker.ensure_experiment()
    key = plan_keys(spec, 0)[0]
    calls = []

    def measure(spec, key, tracker, run_id):
        calls.append(run_id)
        return Measurement(dict(NUMBERS), {}, [], {"bleu": [12.0, 13.0]})

    return spec, tracker, key, measure, calls


def killed_attempt(tracker, key, log_numbers: bool) -> str:
    """A run left RUNNING by an attempt killed after its replicates (and its numbers, if asked)."""
    run_id = tracker.get_or_create_run(trial_tags(key), str(key), reuse_finished=False)
    tracker.start_attempt(run_id)
    tracker.log_dict(run_id, {"bleu": [11.0, 14.0]}, REPLICATES_FILE)
    if log_numbers:
        tracker.log_metrics(run_id, {**NUMBERS, "trial_seconds": 3.0})
    return run_id


def history_lengths(tracker, run_id) -> set[int]:
    return {len(tracker.client.get_metric_history(run_id, name)) for name in NUMBERS}


def test_a_retry_after_the_numbers_were_logged_ends_the_run_without_measuring_again(setup):
    spec, tracker, key, measure, calls = setup
    run_id = killed_attempt(tracker, key, log_numbers=True)
    result = run_trial(spec, key, None, measure)
    assert calls == []
    assert result.run_id == run_id and result.metrics["bleu"] == NUMBERS["bleu"]
    assert result.replicates == {"bleu": [11.0, 14.0]}  # the killed attempt's, for the fitter
    assert tracker.client.get_run(run_id).info.status == "FINISHED"
    assert history_lengths(tracker, run_id) == {1}
    assert run_trial(spec, key, None, measure) is None  # and from then on the key is done


def test_a_retry_before_the_numbers_measures_again_and_logs_them_once(setup):
    spec, tracker, key, measure, calls = setup
    run_id = killed_attempt(tracker, key, log_numbers=False)
    result = run_trial(spec, key, None, measure)
    assert calls == [run_id]  # measured again, in the same run
    assert result.replicates == {"bleu": [12.0, 13.0]}
    assert tracker.client.get_run(run_id).info.status == "FINISHED"
    assert history_lengths(tracker, run_id) == {1}
    assert tracker.load_dict(run_id, REPLICATES_FILE) == {"bleu": [12.0, 13.0]}


@pytest.mark.parametrize("interruption", [SystemExit(1), KeyboardInterrupt()])
def test_a_stopped_trial_ends_killed_not_failed_and_a_rerun_measures_it_in_the_same_run(
        setup, interruption):
    """Ray ends a trial's actor with SystemExit when the sweep is stopped (its owner, the
    watcher, killed); that is a stop, not a failure of the trial."""
    spec, tracker, key, measure, calls = setup

    def stopped(*args):
        raise interruption

    with pytest.raises(type(interruption)):
        run_trial(spec, key, None, stopped)
    (run,) = tracker.find_runs({"raysweep.trial_key": str(key)})
    assert run.info.status == "KILLED"
    assert "raysweep.failure" not in run.data.tags
    result = run_trial(spec, key, None, measure)
    assert calls == [run.info.run_id] and result.run_id == run.info.run_id
    assert tracker.client.get_run(run.info.run_id).info.status == "FINISHED"
