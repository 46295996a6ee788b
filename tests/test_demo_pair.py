"""The demo's story, shortened: the same en->de task after pretraining on the aligned mixture
(jobs/demo.yaml, en + de) and on the misaligned one (jobs/demo-misaligned.yaml, fr + ro), each
run as a whole sweep through the real path (Ray, DeepSpeed, Tune, MLflow), with four checkpoints
from 51k up to 287k tokens, one finetune size, two seeds and 300 test sentences. Cross-entropy
must read "aligned" after aligned pretraining, and BLEU rise above no pretraining beyond its
interval; BLEU must never read "aligned" after misaligned pretraining; and, in the shared
tokenizer's units, the aligned mixture must lower cross-entropy more than the misaligned one
(Isik et al.'s central finding, offline). What the full demo pair prints is in the README."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def shortened(job: str, storage: Path):
    import yaml

    from raysweep.spec_loader import load_spec, read_spec_data

    data = read_spec_data(ROOT / "jobs" / job)  # `extends` merged
    data["storage"] = str(storage)
    # 280 steps instead of 640: the checkpoints 51k, 91k, 161k and 287k tokens.
    data["pretrain"].update(tokens=286720, checkpoints={"first": 51200, "count": 4})
    data["tasks"][0].update(finetune_tokens=[4000], seeds=2, test_examples=300)
    path = storage / job
    path.write_text(yaml.safe_dump(data))
    return load_spec(path)


def law(outcome, metric: str) -> dict:
    (found,) = [f for f in outcome.laws if (f["d_f"], f["metric"]) == (4000, metric)]
    return found


def test_aligned_pretraining_reads_aligned_and_misaligned_never_does(tmp_path):
    import ray

    from raysweep.sweep import run_sweep

    outcomes = {}
    for job in ("demo.yaml", "demo-misaligned.yaml"):
        spec = shortened(job, tmp_path)
        try:
            outcomes[job] = run_sweep(spec, echo=lambda line: None, poll_seconds=1.0)
        finally:
            ray.shutdown()
        assert outcomes[job].ok, outcomes[job].errors
    aligned, misaligned = outcomes["demo.yaml"], outcomes["demo-misaligned.yaml"]
    # Both sweeps score in the same units: one tokenizer, trained on all four languages (the
    # same pieces; their scores agree to float rounding, the trainer's sums are not ordered).
    vocabularies = [json.loads((tmp_path / name / "tokenizer" / "tokenizer.json").read_text())
                    ["model"]["vocab"] for name in ("demo", "demo-misaligned")]
    assert [piece for piece, _ in vocabularies[0]] == [piece for piece, _ in vocabularies[1]]
    assert [score for _, score in vocabularies[0]] == pytest.approx(
        [score for _, score in vocabularies[1]], rel=1e-9)
    ce = law(aligned, "cross_entropy")
    assert ce["verdict"] == "aligned", ce["reason"]
    assert ce["gain"]["high"] < 0  # below no pretraining beyond the interval
    assert law(misaligned, "bleu")["verdict"] != "aligned", law(misaligned, "bleu")["reason"]
    assert (law(aligned, "cross_entropy")["gain"]["value"]
            < law(misaligned, "cross_entropy")["gain"]["value"] - 0.1)
    assert law(aligned, "bleu")["gain"]["value"] > law(misaligned, "bleu")["gain"]["value"]
    # BLEU itself: above no pretraining beyond its interval after aligned pretraining, never
    # above it after misaligned pretraining.
    assert law(aligned, "bleu")["gain"]["low"] > 0, law(aligned, "bleu")["reason"]
    assert law(misaligned, "bleu")["gain"]["value"] < 0, law(misaligned, "bleu")["reason"]
