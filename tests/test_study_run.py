"""A study in one job: two candidate mixtures pretrained side by side in one local Ray, their
checkpoints finetuned by one watcher's Tune experiment, the no-pretraining baseline once, every
law fitted per candidate by one fitter, and the candidates compared on the study's page; a rerun
resumes with nothing to do.

Real parts: `run_sweep` with its own local Ray, DeepSpeed pretraining (two Ray Train runs at
once), Tune trials, an embedded MLflow; the tiny model of tests/conftest.py."""

from __future__ import annotations

import copy
from collections import Counter

import pytest
from conftest import TINY_SPEC

pytestmark = pytest.mark.slow

CANDIDATES = {"en-de": ["synthetic:en", "synthetic:de"],
              "fr-ro": ["synthetic:fr", "synthetic:ro"]}


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    import ray
    import yaml

    from raysweep.spec_loader import load_spec
    from raysweep.sweep import run_sweep
    from raysweep.tracking import Tracker

    base = tmp_path_factory.mktemp("study")
    data = copy.deepcopy(TINY_SPEC)
    data["name"] = "study"
    data["pretrain"].pop("mixture")
    data["candidates"] = [{"name": name, "mixture": [{"source": s, "weight": 0.5}
                                                     for s in sources]}
                          for name, sources in CANDIDATES.items()]
    # One D_f, one lr, one seed: the study's plumbing, not its statistics.
    data["tasks"][0].update(finetune_tokens=[1000], lrs=[0.003])
    (base / "study.yaml").write_text(yaml.safe_dump(data))
    spec = load_spec(base / "study.yaml")
    lines: list[str] = []
    try:
        first = run_sweep(spec, echo=lines.append, poll_seconds=1.0)
        rerun = run_sweep(spec, echo=lines.append, poll_seconds=1.0)  # resumes: nothing to do
    finally:
        ray.shutdown()
    return spec, first, rerun, lines, Tracker.for_spec(spec)


def test_the_study_ran_every_candidate_and_the_baseline_once(finished_study):
    from raysweep.plan import plan_keys

    spec, first, rerun, _, tracker = finished_study
    assert first.ok, first.errors
    assert rerun.ok and rerun.progress["done"] == 0  # nothing left to do on resume
    keys = Counter(r.data.tags["raysweep.trial_key"]
                   for r in tracker.find_runs({"raysweep.kind": "trial"}, "FINISHED"))
    planned = [str(k) for k in plan_keys(spec, 0)] + [
        str(k) for unit in spec.candidate_specs() for d_p in unit.published_tokens()
        for k in plan_keys(unit, d_p)]
    assert sorted(keys) == sorted(planned) and set(keys.values()) == {1}
    assert sum(k.startswith("en-de:") for k in keys) == sum(k.startswith("fr-ro:") for k in keys)
    assert sum(":" not in k for k in keys) == len(plan_keys(spec, 0))  # the baseline, once


def test_each_candidate_pretrained_in_its_own_run_and_folder(finished_study):
    from raysweep.checkpoints import published

    spec, _, _, _, tracker = finished_study
    runs = {r.data.tags["raysweep.candidate"]: r
            for r in tracker.find_runs({"raysweep.kind": "candidate"})}
    assert set(runs) == set(CANDIDATES)
    for name, run in runs.items():
        unit = spec.candidate_spec(name)
        assert run.info.status == "FINISHED"
        assert sorted(published(unit)) == unit.published_tokens()
        assert run.data.params["mixture"].count("synthetic:") == 2
        assert CANDIDATES[name][0] in run.data.params["mixture"]


def test_the_laws_are_fitted_per_candidate_and_the_page_leads_with_the_comparison(
        finished_study):
    spec, first, _, lines, tracker = finished_study
    laws = {(law["candidate"], law["metric"]) for law in first.laws}
    assert laws == {(c, m) for c in CANDIDATES for m in spec.fit.metrics}
    baseline = {law["candidate"]: law["baseline"]["y"] for law in first.laws
                if law["metric"] == "bleu"}
    assert baseline["en-de"] == baseline["fr-ro"]  # one baseline, shared
    (study,) = tracker.find_runs({"raysweep.kind": "sweep"})
    page = study.data.tags["mlflow.note.content"]
    assert page.startswith("# study: which pretraining data serves each task best")
    assert "## en-de" in page and "### fr-ro" in page and "P(best)" in page


def test_status_shows_each_candidate(finished_study):
    from raysweep.report import status_text, sweep_status

    spec = finished_study[0]
    text = status_text(spec, sweep_status(spec))
    assert text.startswith("study 'study': FINISHED")
    for name in CANDIDATES:
        assert f"pretraining {name}: FINISHED" in text
        assert f"checkpoints {name}: 3/3 published" in text
