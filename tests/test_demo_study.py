"""The demo's story as one study (jobs/study-demo.yaml), shortened: the same en->de task after
pretraining on the aligned mixture (en + de) and on the misaligned one (fr + ro), side by side in
one job through the real path (Ray, two DeepSpeed pretraining runs at once, one Tune experiment,
MLflow), with the demo's six checkpoints, one finetune size (of two) and two seeds.
Cross-entropy must read "aligned" after aligned pretraining, and BLEU rise above no pretraining
beyond its interval; BLEU must never read "aligned" after misaligned pretraining; in the shared
tokenizer's units, the aligned mixture must lower cross-entropy more than the misaligned one
(Isik et al.'s central finding, offline); and the study must name en + de best for BLEU with its
probability, and stop fr + ro (its stop policy) with the reason on the page. The same study
shows the plumbing: the baseline finetuned once, a pretraining run and a folder per candidate,
laws per candidate, `raysweep status`, and a rerun that finds nothing to do. What the full demo
study prints is in the README."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from raysweep.plan import plan_keys, stopped
from raysweep.study.answer import study_comparisons

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = {"en-de": ["synthetic:en", "synthetic:de"],
              "fr-ro": ["synthetic:fr", "synthetic:ro"]}


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
    data["candidates"] = [c for c in data["candidates"] if c["name"] in CANDIDATES]
    data["tasks"][0].update(finetune_tokens=[4000])
    path = storage / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = load_spec(path)
    try:
        outcome = run_sweep(spec, echo=lambda line: None, poll_seconds=1.0)
        rerun = run_sweep(spec, echo=lambda line: None, poll_seconds=1.0)  # nothing to do
    finally:
        ray.shutdown()
    return spec, outcome, Tracker.for_spec(spec), rerun


def law(outcome, candidate: str, metric: str) -> dict:
    (found,) = [f for f in outcome.laws
                if (f.get("candidate"), f["d_f"], f["metric"]) == (candidate, 4000, metric)]
    return found


def test_aligned_pretraining_reads_aligned_and_misaligned_never_does(demo_study):
    outcome = demo_study[1]
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
    spec, outcome, tracker, _ = demo_study
    (bleu,) = [c for _, d_f, c in study_comparisons(spec, outcome.groups)
               if c.metric == "bleu" and d_f == 4000]
    assert bleu.best == "en-de", bleu.decision
    assert bleu.p_best["en-de"] >= 0.95
    assert list(stopped(spec)) == ["fr-ro"]
    assert "en-de is better with P" in stopped(spec)["fr-ro"]["reason"]
    (study,) = tracker.find_runs({"raysweep.kind": "sweep"})
    page = study.data.tags["mlflow.note.content"]
    assert "**Best for en-de: en-de**" in page
    assert "**fr-ro stopped** after its checkpoint at" in page
    # What the stop saved: the trials of fr-ro that never ran, and their time.
    runs = tracker.find_runs({"raysweep.kind": "trial", "raysweep.candidate": "fr-ro"})
    planned = sum(len(plan_keys(spec.candidate_spec("fr-ro"), d))
                  for d in spec.candidate_spec("fr-ro").published_tokens())
    finished = sum(r.info.status == "FINISHED" for r in runs)
    assert f"{planned - finished} of its {planned} trials not run (about " in page


def test_the_study_ran_every_candidate_and_the_baseline_once(demo_study):

    spec, first, tracker, rerun = demo_study
    assert rerun.ok and rerun.progress["done"] == 0  # nothing left to do on resume
    keys = Counter(r.data.tags["raysweep.trial_key"]
                   for r in tracker.find_runs({"raysweep.kind": "trial"}, "FINISHED"))
    planned = [str(k) for k in plan_keys(spec, 0)] + [
        str(k) for unit in spec.candidate_specs() for d_p in unit.published_tokens()
        for k in plan_keys(unit, d_p)]
    # fr-ro was stopped: its later checkpoints' trials were cancelled, and no key ran twice.
    assert set(keys) <= set(planned) and set(keys.values()) == {1}
    assert all(k in keys for k in planned if not k.startswith("fr-ro:"))
    assert sum(":" not in k for k in keys) == len(plan_keys(spec, 0))  # the baseline, once
    assert any(k.startswith("fr-ro:") for k in keys)


def test_each_candidate_pretrained_in_its_own_run_and_folder(demo_study):
    from raysweep.checkpoints import published

    spec, _, tracker, _ = demo_study
    runs = {r.data.tags["raysweep.candidate"]: r
            for r in tracker.find_runs({"raysweep.kind": "candidate"})}
    assert set(runs) == set(CANDIDATES)
    for name, run in runs.items():
        unit = spec.candidate_spec(name)
        assert run.info.status == "FINISHED"
        # fr-ro may have been stopped before its last checkpoints
        assert set(published(unit)) <= set(unit.published_tokens()) and published(unit)
        assert run.data.params["mixture"].count("synthetic:") == 2
        assert CANDIDATES[name][0] in run.data.params["mixture"]


def test_the_laws_are_fitted_per_candidate_and_the_page_leads_with_the_comparison(
        demo_study):
    spec, first, tracker, _ = demo_study
    laws = {(law["candidate"], law["metric"]) for law in first.laws}
    assert laws == {(c, m) for c in CANDIDATES for m in spec.fit.metrics}
    baseline = {law["candidate"]: law["baseline"]["y"] for law in first.laws
                if law["metric"] == "bleu"}
    assert baseline["en-de"] == baseline["fr-ro"]  # one baseline, shared
    (study,) = tracker.find_runs({"raysweep.kind": "sweep"})
    page = study.data.tags["mlflow.note.content"]
    # The decision in a line per task first (what MLflow shows of the folded description).
    assert page.startswith("**Answer** (final):\n- **en-de**: **Best: en-de** (BLEU at D_f = ")
    assert "# study-demo: which pretraining data serves each task best" in page
    assert "## en-de" in page and "### fr-ro" in page and "P(best)" in page
    assert "| more data, to " in page  # each candidate's marginal value, as a sweep's page
    # The candidates side by side, as a figure on the laws run, and beside the answer with the
    # paper's gain-against-alignment figure.
    (laws,) = tracker.find_runs({"raysweep.kind": "laws"})
    figures = [a.path for a in tracker.client.list_artifacts(laws.info.run_id, "plots/study/en-de")]
    assert figures == ["plots/study/en-de/df_4000.png"]
    overview = {a.path for a in tracker.client.list_artifacts(study.info.run_id, "overview")}
    assert overview == {"overview/en-de_df_4000.png", "overview/en-de_gain_vs_alignment.png"}
    rankings = tracker.load_dict(laws.info.run_id, "tables/rankings.json")
    rows = [dict(zip(rankings["columns"], row)) for row in rankings["data"]]
    assert {(r["rank"], r["candidate"], r["best"]) for r in rows if r["metric"] == "bleu"} == {
        (1, "en-de", "en-de"), (2, "fr-ro", "en-de")}


def test_status_shows_each_candidate(demo_study):
    from raysweep.report import status_text, sweep_status

    spec = demo_study[0]
    text = status_text(spec, sweep_status(spec))
    assert text.startswith("study 'study-demo': FINISHED")
    for name in CANDIDATES:
        assert f"pretraining {name}: FINISHED" in text
    assert "checkpoints en-de: 6/6 published" in text


def test_the_analysis_notebook_shows_the_study(demo_study, monkeypatch):
    """notebooks/analysis.ipynb on a study: the comparison page, the candidates side by side and
    the gain-against-alignment figure, then one candidate's laws (its refit equal to MLflow's)."""
    import nbformat
    from nbclient import NotebookClient

    spec, *_ = demo_study
    monkeypatch.setenv("RAYSWEEP_SPEC", spec.source_file)
    notebook = nbformat.read(ROOT / "notebooks" / "analysis.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    shown = "\n".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "# study-demo: which pretraining data serves each task best" in shown
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    # The study's figure (one D_f), the gain against alignment, the first candidate's task figure,
    # then its cross-entropy law and a metric against cross-entropy.
    assert len(images) == 3 + 2, len(images)
