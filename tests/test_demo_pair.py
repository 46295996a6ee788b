"""The demo's story, shortened, as one study (jobs/study-demo.yaml): the same en->de task after
pretraining on the aligned mixture (en + de) and on the misaligned one (fr + ro), side by side in
one job through the real path (Ray, two DeepSpeed pretraining runs at once, one Tune experiment,
MLflow), with five checkpoints from 51k up to 287k tokens, one finetune size, two seeds and 300
test sentences. Cross-entropy must read "aligned" after aligned pretraining, and BLEU rise above
no pretraining beyond its interval; BLEU must never read "aligned" after misaligned pretraining;
in the shared tokenizer's units, the aligned mixture must lower cross-entropy more than the
misaligned one (Isik et al.'s central finding, offline); and the study must name en + de best
for BLEU with its probability, and stop fr + ro (its stop policy) with the reason on the page.
What the full demo study prints is in the README."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_study(tmp_path_factory):
    import ray
    import yaml

    from raysweep.spec_loader import load_spec, read_spec_data
    from raysweep.sweep import run_sweep
    from raysweep.tracking import Tracker

    storage = tmp_path_factory.mktemp("demo-study")
    data = read_spec_data(ROOT / "jobs" / "study-demo.yaml")  # `extends` merged
    data["storage"] = str(storage)
    data["candidates"] = [c for c in data["candidates"] if c["name"] in ("en-de", "fr-ro")]
    # 280 steps instead of 640: the checkpoints 51k, 78k, 120k, 186k and 287k tokens.
    data["pretrain"].update(tokens=286720, checkpoints={"first": 51200, "count": 5})
    data["tasks"][0].update(finetune_tokens=[4000], seeds=2, test_examples=300)
    path = storage / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = load_spec(path)
    try:
        outcome = run_sweep(spec, echo=lambda line: None, poll_seconds=1.0)
    finally:
        ray.shutdown()
    return spec, outcome, Tracker.for_spec(spec)


def law(outcome, candidate: str, metric: str) -> dict:
    (found,) = [f for f in outcome.laws
                if (f.get("candidate"), f["d_f"], f["metric"]) == (candidate, 4000, metric)]
    return found


def test_aligned_pretraining_reads_aligned_and_misaligned_never_does(demo_study):
    _, outcome, _ = demo_study
    assert outcome.ok, outcome.errors
    ce = law(outcome, "en-de", "cross_entropy")
    assert ce["verdict"] == "aligned", ce["reason"]
    assert ce["gain"]["high"] < 0  # below no pretraining beyond the interval
    bleu = law(outcome, "fr-ro", "bleu")
    assert bleu["verdict"] != "aligned", bleu["reason"]
    assert (law(outcome, "en-de", "cross_entropy")["gain"]["value"]
            < law(outcome, "fr-ro", "cross_entropy")["gain"]["value"] - 0.1)
    # BLEU itself: above no pretraining beyond its interval after aligned pretraining, never
    # above it after misaligned pretraining.
    assert law(outcome, "en-de", "bleu")["gain"]["low"] > 0, law(outcome, "en-de", "bleu")
    assert law(outcome, "fr-ro", "bleu")["gain"]["value"] < 0, law(outcome, "fr-ro", "bleu")


def test_the_study_names_the_aligned_candidate_best_and_stops_the_misaligned_one(demo_study):
    from raysweep.study.answer import study_comparisons
    from raysweep.study.stopping import stopped

    spec, outcome, tracker = demo_study
    (bleu,) = [c for _, d_f, c in study_comparisons(spec, outcome.groups)
               if c.metric == "bleu" and d_f == 4000]
    assert bleu.best == "en-de", bleu.decision
    assert bleu.p_best["en-de"] >= 0.95
    assert list(stopped(spec)) == ["fr-ro"]
    assert "en-de is better with P" in stopped(spec)["fr-ro"]["reason"]
    (study,) = tracker.find_runs({"raysweep.kind": "sweep"})
    page = study.data.tags["mlflow.note.content"]
    assert "**Best for en-de: en-de**" in page
    assert "**fr-ro stopped** at" in page
