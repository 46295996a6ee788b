"""A tiny decoder-only sweep (`model.family: causal`) through the real path: local Ray, Ray
Train + DeepSpeed (CPU) pretraining by next-token prediction, Tune trials finetuning on
`source </s> target </s>`, MLflow on SQLite, the fitter actor. Asserts on what lands in storage
and MLflow: the same things as for the T5 sweep, in their decoder-only form."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from conftest import CAUSAL_TINY

from raysweep.laws.analysis import VERDICTS, identifiable
from raysweep.plan import TrialResult, plan_keys
from raysweep.tracking import trial_key_from_tags

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def causal_sweep(tmp_path_factory):
    import ray
    from conftest import TINY_SPEC

    from raysweep.spec_loader import spec_from_dict
    from raysweep.sweep import run_sweep
    from raysweep.tracking import Tracker

    data = {**TINY_SPEC, "name": "tiny-causal", "model": CAUSAL_TINY,
            "tasks": [{**TINY_SPEC["tasks"][0], "lrs": [0.003]}]}
    spec = spec_from_dict(data, base_dir=str(tmp_path_factory.mktemp("causal")))
    try:
        outcome = run_sweep(spec, echo=lambda line: None, poll_seconds=1.0)
    finally:
        ray.shutdown()
    return spec, outcome, Tracker.for_spec(spec)


def test_every_trial_of_the_causal_sweep_finished_with_its_metrics(causal_sweep):
    spec, outcome, tracker = causal_sweep
    assert outcome.ok, outcome.errors
    planned = sorted(str(k) for d_p in spec.checkpoint_tokens() for k in plan_keys(spec, d_p))
    runs = tracker.find_runs({"raysweep.kind": "trial"})
    assert sorted(r.data.tags["raysweep.trial_key"] for r in runs) == planned and len(planned) == 8
    for run in runs:
        m = run.data.metrics
        assert run.info.status == "FINISHED"
        assert 0 <= m["bleu"] <= 100 and 0 <= m["chrf"] <= 100 and 0 <= m["rougeL"] <= 1
        assert (0 < m["cross_entropy"] < 20 and m["cross_entropy_se"] > 0
                and math.isfinite(m["comet"]))
        assert m["steps_run"] == spec.tasks[0].steps


def test_checkpoints_are_decoder_only_models_plain_transformers_loads(causal_sweep):
    from transformers import AutoModelForCausalLM

    from raysweep.checkpoints import checkpoint_dir, published

    spec, _, _ = causal_sweep
    manifests = published(spec)
    assert sorted(manifests) == [2048, 4096, 8192]
    assert {m["model_config"]["model_type"] for m in manifests.values()} == {"llama"}
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint_dir(spec, 8192)),
                                                 use_safetensors=True)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 2


def test_causal_pretraining_learned_and_logged_its_throughput(causal_sweep):
    spec, _, tracker = causal_sweep
    (run,) = tracker.find_runs({"raysweep.kind": "pretrain"})
    loss = tracker.client.get_metric_history(run.info.run_id, "loss")
    assert len(loss) >= 3 and loss[-1].value < 0.8 * loss[0].value  # next-token loss fell
    assert run.data.metrics["tokens_seen"] == 8192
    assert run.data.metrics["model_tflops_per_second"] > 0 and 0 < run.data.metrics["mfu"] < 1
    (sweep,) = tracker.find_runs({"raysweep.kind": "sweep"})
    assert sweep.data.params["model"].startswith("custom (causal): d_model 32")


def test_causal_pretraining_improves_the_tasks_cross_entropy_and_the_law_is_fitted(causal_sweep):
    from raysweep.laws.points import law_points

    _, outcome, tracker = causal_sweep
    results = [TrialResult(trial_key_from_tags(r.data.tags), r.data.metrics)
               for r in tracker.find_runs({"raysweep.kind": "trial"})]
    points, _ = law_points(results, "en-de", 3000, "cross_entropy")
    assert points[8192]["y"] < points[0]["y"]
    (laws,) = tracker.find_runs({"raysweep.kind": "laws"})
    for d_f in (1000, 3000):
        law = next(f for f in outcome.laws
                   if (f["task"], f["d_f"], f["metric"]) == ("en-de", d_f, "cross_entropy"))
        # The power law's parameters where the points pin them down, and only there.
        logged = {f"params/en-de/df_{d_f}/cross_entropy/{p}" for p in ("E", "A", "alpha")}
        assert (logged <= set(laws.data.metrics)) == identifiable(SimpleNamespace(**law)), law
        assert logged <= set(laws.data.metrics) or not logged & set(laws.data.metrics)
        assert laws.data.tags[f"verdict.cross_entropy.en-de.df_{d_f}"] in VERDICTS
    assert any(f["metric"] == "cross_entropy" and f["num_points"] == 3 for f in outcome.laws)
