"""Finetuning choices: the learning rate is chosen on the dev set by fit.lr_choice, and early
stopping (tasks[].eval_every + patience) keeps the weights of the best dev check."""

from __future__ import annotations

import re

import pytest

from raysweep.laws.points import best_lr_runs, law_points
from raysweep.plan import TrialKey, TrialResult
from raysweep.spec_loader import spec_from_dict


def result(d_p: int, lr: float, **metrics) -> TrialResult:
    return TrialResult(TrialKey("en-de", d_p, 1000, lr, 0), metrics, f"run-{d_p}-{lr}")


RESULTS = [result(0, 0.001, dev_cross_entropy=2.0, dev_bleu=5.0, bleu=6.0),
           result(0, 0.003, dev_cross_entropy=2.5, dev_bleu=7.0, bleu=8.0),
           result(2048, 0.001, dev_cross_entropy=1.5, dev_bleu=9.0, bleu=10.0),
           result(2048, 0.003, dev_cross_entropy=1.2, dev_bleu=8.0, bleu=9.5)]


def test_the_best_lr_is_lowest_dev_cross_entropy_or_highest_dev_bleu():
    by_ce = best_lr_runs(RESULTS, "en-de", 1000, "dev_cross_entropy")
    assert {d_p: runs[0].key.lr for d_p, runs in by_ce.items()} == {0: 0.001, 2048: 0.003}
    points, _ = law_points(RESULTS, "en-de", 1000, "bleu")
    assert {d_p: p["y"] for d_p, p in points.items()} == {0: 6.0, 2048: 9.5}
    by_bleu, _ = law_points(RESULTS, "en-de", 1000, "bleu", lr_choice="dev_bleu")
    # The test metric never chooses: dev BLEU does.
    assert {d_p: p["y"] for d_p, p in by_bleu.items()} == {0: 8.0, 2048: 10.0}


def test_seeds_plan_replicates_that_shuffle_the_batches_differently(tiny_spec_dict):
    from raysweep.plan import plan_keys

    tiny_spec_dict["tasks"][0]["seeds"] = 3
    spec = spec_from_dict(tiny_spec_dict)
    keys = plan_keys(spec, 2048)
    assert sorted({k.seed for k in keys}) == [0, 1, 2] and len(keys) == 2 * 2 * 3
    assert spec.num_trials() == len(spec.checkpoint_tokens()) * len(keys)


def test_early_stopping_keeps_the_weights_of_the_best_dev_check(tiny_spec_dict, tmp_path):
    import torch

    from raysweep.data.collators import finetune_prefix
    from raysweep.data.sources import parallel_splits
    from raysweep.data.synthetic import Family
    from raysweep.data.tokenizer import train_tokenizer
    from raysweep.evaluation.metrics import cross_entropy
    from raysweep.finetune import finetune
    from raysweep.model import build_model

    torch.set_num_threads(1)
    tiny_spec_dict["tasks"][0].update(steps=60, eval_every=3, patience=2)
    spec = spec_from_dict(tiny_spec_dict, base_dir=str(tmp_path))
    task = spec.tasks[0]
    tokenizer = train_tokenizer(spec)
    splits = parallel_splits(task, Family.of(spec), spec.source_file, "task", spec.base_dir)
    train, _ = finetune_prefix(splits.train, tokenizer, task.max_length, 3000)
    torch.manual_seed(0)
    model = build_model(spec, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    # a high lr: dev turns worse
    trained = finetune(model, train, task, 0.05, tokenizer, splits.dev)

    steps = [s for s, _ in trained["dev_checks"]]
    values = [v for _, v in trained["dev_checks"]]
    assert steps == list(range(3, trained["steps_run"] + 1, 3))
    assert trained["steps_run"] < task.steps  # it stopped early...
    assert min(values[-2:]) >= min(values)  # ...after two checks without a better dev score
    assert (cross_entropy(model, splits.dev, tokenizer, task.max_length)
            == pytest.approx(min(values)))


@pytest.mark.parametrize("change, field", [
    ({"patience": 2}, "tasks[0].patience"),
    ({"eval_every": -1}, "tasks[0].eval_every"),
])
def test_bad_early_stopping_options_name_the_field(tiny_spec_dict, change, field):
    from raysweep.spec import SpecError

    tiny_spec_dict["tasks"][0].update(change)
    with pytest.raises(SpecError, match=re.escape(f"`{field}`")):
        spec_from_dict(tiny_spec_dict)


def test_an_unknown_lr_choice_is_a_clear_error(tiny_spec_dict):
    from raysweep.spec import SpecError

    tiny_spec_dict["fit"]["lr_choice"] = "test_bleu"
    with pytest.raises(SpecError, match="`fit.lr_choice`.*dev_cross_entropy, dev_bleu, dev_chrf"):
        spec_from_dict(tiny_spec_dict)
