"""A tiny sweep through the real path: local Ray, Ray Train + DeepSpeed (CPU), one Tune experiment
fed by the watcher, MLflow on SQLite, the fitter actor. Asserts on what lands in storage and
MLflow."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from raysweep.laws.analysis import VERDICTS, identifiable
from raysweep.plan import TrialKey, TrialResult, plan_keys
from raysweep.tracking import trial_key_from_tags, trial_run_name

pytestmark = pytest.mark.slow


def test_every_planned_trial_key_has_exactly_one_finished_run(finished_sweep):
    spec, first, rerun, _, tracker = finished_sweep
    assert first.ok, first.errors
    planned = sorted(str(k) for d_p in spec.checkpoint_tokens() for k in plan_keys(spec, d_p))
    assert len(planned) == spec.num_trials() == 20  # en-de 4 x 2 x 2, en-fr 4 x 1 x 1
    runs = tracker.find_runs({"raysweep.kind": "trial"})
    assert sorted(r.data.tags["raysweep.trial_key"] for r in runs) == planned
    assert {r.info.status for r in runs} == {"FINISHED"}
    # Named for MLflow's runs list: task, D_f, D_p, seed and lr within the width it shows (the
    # run is found by its key's tag, not its name); the sweep's own runs sort first.
    assert {r.info.run_name for r in runs} == {
        trial_run_name(trial_key_from_tags(r.data.tags)) for r in runs}
    assert "df3k dp8.19k s0 lr3e-3 en-de" in {r.info.run_name for r in runs}
    # The task and D_f also in the Dataset column, where the names are cut short.
    full = tracker.client.get_run(runs[0].info.run_id)
    key = trial_key_from_tags(full.data.tags)
    assert [i.dataset.name for i in full.inputs.dataset_inputs] == [
        f"{key.task} (D_f {key.d_f // 1000}k)"]
    assert {r.info.run_name for kind in ("pretrain", "laws")
            for r in tracker.find_runs({"raysweep.kind": kind})} == {"(pretrain)", "(laws)"}
    # The rerun found every key finished and ran none of them again.
    assert rerun.ok and rerun.progress["skipped"] == 20 and rerun.progress["done"] == 0


def test_trial_metrics_are_within_their_ranges(finished_sweep):
    _, _, _, _, tracker = finished_sweep
    for run in tracker.find_runs({"raysweep.kind": "trial"}):
        m = run.data.metrics
        assert 0 <= m["bleu"] <= 100 and 0 <= m["chrf"] <= 100 and 0 <= m["rougeL"] <= 1
        assert 0 < m["cross_entropy"] < 20 and 0 < m["dev_cross_entropy"] < 20
        assert math.isfinite(m["comet"])
        # Every test metric carries its standard error, measured on the test set itself.
        assert m["test_sentences"] == 16
        assert all(m[f"{name}_se"] >= 0 for name in ("bleu", "chrf", "rougeL", "comet",
                                                      "cross_entropy"))
        assert m["cross_entropy_se"] > 0
        assert run.data.tags["raysweep.bleu_signature"].startswith("nrefs:1|")
        key = trial_key_from_tags(run.data.tags)
        assert run.data.tags[
            "mlflow.parentRunId"] == tracker.find_runs({"raysweep.kind": "sweep"})[0].info.run_id
        assert int(run.data.params["d_f_exact"]) <= key.d_f


def test_tunes_own_results_hold_each_trials_metrics(finished_sweep):
    """Tune's result files (what ResultGrid and Tune's tools read) carry the trial's metrics,
    the same as its MLflow run's."""
    import json

    spec, _, _, _, tracker = finished_sweep
    runs = {r.data.tags["raysweep.trial_key"]: r.data.metrics
            for r in tracker.find_runs({"raysweep.kind": "trial"}, "FINISHED")}
    rows = [json.loads(line) for path in (spec.root / "ray" / "finetune").glob("*/result.json")
            for line in path.read_text().splitlines() if line.strip()]
    scored = [row for row in rows if not row.get("skipped")]
    assert len(scored) == len(runs)
    for row in scored:
        metrics = runs[str(TrialKey(**row["config"]["key"]))]
        for name in ("bleu", "chrf", "rougeL", "cross_entropy", "bleu_se", "dev_cross_entropy"):
            assert row[name] == pytest.approx(metrics[name]), name


def test_pretraining_improves_cross_entropy_on_the_task(finished_sweep):
    # A real signal, not just numbers in range: pretraining on the aligned mixture lowers
    # downstream cross-entropy against the from-scratch baseline (same D_f, same best lr).
    from raysweep.laws.points import law_points

    spec, _, _, _, tracker = finished_sweep
    results = [TrialResult(trial_key_from_tags(r.data.tags), r.data.metrics)
               for r in tracker.find_runs({"raysweep.kind": "trial"})]
    points, noise = law_points(results, "en-de", 3000, "cross_entropy")
    assert set(points) == set(spec.checkpoint_tokens()) and noise.test_sentences == 16
    assert points[8192]["y"] < points[0]["y"] and points[0]["se"] > 0


def test_checkpoints_are_published_once_with_manifests(finished_sweep):
    from raysweep.checkpoints import checkpoints_dir, published, sha256

    spec, *_ = finished_sweep
    manifests = published(spec)
    assert sorted(manifests) == [2048, 4096, 8192]
    folders = sorted(p.name for p in checkpoints_dir(spec).iterdir())
    assert folders == ["dp_000000000002048", "dp_000000000004096", "dp_000000000008192"]
    for d_p, manifest in manifests.items():
        folder = checkpoints_dir(spec) / f"dp_{d_p:015d}"
        assert manifest["weights_sha256"] == sha256(folder / "model.safetensors")
        assert manifest["alignment"]["en-de"] == 1.0 > manifest["alignment"]["en-fr"]
        assert manifest["step"] * 256 == d_p


def test_pretraining_run_logged_loss_and_throughput(finished_sweep):
    _, _, _, _, tracker = finished_sweep
    (run,) = tracker.find_runs({"raysweep.kind": "pretrain"})
    history = tracker.client.get_metric_history(run.info.run_id, "loss")
    assert len(history) >= 3 and history[-1].value < history[0].value
    assert run.data.metrics["tokens_seen"] == 8192 and run.data.metrics["tokens_per_second"] > 0
    assert run.info.status == "FINISHED"


def test_law_parameters_are_logged(finished_sweep):
    _, first, _, _, tracker = finished_sweep
    (run,) = tracker.find_runs({"raysweep.kind": "laws"})
    metrics = run.data.metrics
    for d_f in (1000, 3000):
        law = next(f for f in first.laws
                   if (f["task"], f["d_f"], f["metric"]) == ("en-de", d_f, "cross_entropy"))
        # The parameters where the points pin them down, and only there (laws.json keeps them).
        logged = {f"params/en-de/df_{d_f}/cross_entropy/{p}" for p in ("E", "A", "alpha")}
        assert (logged <= set(metrics)) == identifiable(SimpleNamespace(**law)), law
        assert logged <= set(metrics) or not logged & set(metrics)
        # The answer's numbers (gain over no pretraining, prediction) come with their intervals.
        for name in ("gain", "prediction", "trend"):
            low, value, high = (metrics[f"en-de/df_{d_f}/cross_entropy/{name}{end}"]
                                for end in ("_low", "", "_high"))
            assert low <= value <= high
        # The tag holds the verdict alone, short enough for the UI.
        assert run.data.tags[f"verdict.cross_entropy.en-de.df_{d_f}"] in VERDICTS
        plots = [a.path
                 for a in tracker.client.list_artifacts(run.info.run_id, f"plots/en-de/df_{d_f}")]
        assert f"plots/en-de/df_{d_f}/cross_entropy.png" in plots
        assert f"plots/en-de/df_{d_f}/bleu_vs_cross_entropy.png" in plots
        kept = [a.path for a in tracker.client.list_artifacts(run.info.run_id,
                                                              f"plots/en-de/df_{d_f}/history")]
        assert f"plots/en-de/df_{d_f}/history/cross_entropy_3_checkpoints.png" in kept
    assert "laws.json" in [a.path for a in tracker.client.list_artifacts(run.info.run_id)]
    fitted = [f for f in first.laws if f["metric"] == "cross_entropy" and f["task"] == "en-de"]
    assert len(fitted) == 2 and all(f["num_points"] == 3 for f in fitted)
    assert all(f["params"] and f["baseline"]["y"] > 0 and f["baseline"]["se"] > 0 for f in fitted)
    for f in fitted:  # the interval brackets the estimate (bootstrap over the 3 points)
        low, high = f["intervals"]["alpha"]
        assert (low <= f["params"]["alpha"] * (1 + 1e-9)
                and f["params"]["alpha"] <= high * (1 + 1e-9))


def test_the_answer_is_on_the_sweep_runs_page_and_the_laws_are_tables(finished_sweep):
    spec, first, _, _, tracker = finished_sweep
    (sweep,) = tracker.find_runs({"raysweep.kind": "sweep"})
    page = sweep.data.tags["mlflow.note.content"]
    # The answer in a line per task first (what MLflow shows of the folded description), both
    # halves: does the data help, and what pretraining on to the target gives.
    head = page.split("\n\n")[0].splitlines()
    assert head[0] == "**Answer** (final):" and len(head) == 1 + len(spec.tasks)
    assert all(line.startswith(f"- **{task.name}: ") and "more data, to 100k: BLEU" in line
               for line, task in zip(head[1:], spec.tasks)), head
    assert "# tiny: what this pretraining data does for the task" in page
    for task in ("en-de", "en-fr"):
        assert f"## {task} (alignment score of the mixture" in page
    assert ("| D_f | metric | verdict | gain over none | largest checkpoint | at 100k (law) "
            "| more data, to 100k |\n" in page)
    (laws,) = tracker.find_runs({"raysweep.kind": "laws"})
    assert f"[laws run: plots and tables]({tracker.run_link(laws.info.run_id)})" in page
    # The experiment says it too, with a link to the sweep run.
    experiment = tracker.client.get_experiment(sweep.info.experiment_id)
    note = experiment.tags["mlflow.note.content"]
    assert f"]({tracker.run_link(sweep.info.run_id)})" in note and "\n".join(head[1:]) in note
    # Beside the answer, the overview of each task (every metric, every D_f).
    overview = {a.path for a in tracker.client.list_artifacts(sweep.info.run_id, "overview")}
    assert {f"overview/{task.name}.png" for task in spec.tasks} <= overview
    bleu = next(f for f in first.laws
                if (f["task"], f["d_f"], f["metric"]) == ("en-de", 1000, "bleu"))
    assert f"**{bleu['verdict']}**" in page and bleu["reason"] in page
    comet = next(f for f in first.laws if f["metric"] == "comet")
    assert comet["verdict"] == "not fitted" and "code-path stand-in" in comet["reason"]
    import json

    points = json.loads(open(tracker.client.download_artifacts(
        laws.info.run_id, "tables/law_points.json")).read())
    assert len(points["data"]) == sum(len(f["points"]) for f in first.laws)
    assert {"task", "d_f", "metric", "d_p", "value", "se", "seeds", "lr"} <= set(points["columns"])


def test_the_sweep_run_holds_the_resolved_spec_and_its_key_settings(finished_sweep):
    import yaml

    from raysweep.checkpoint_source import checkpoint_source
    from raysweep.sweep import RESOLVED_SPEC_FILE
    from raysweep.tracking.params import sweep_params

    spec, _, _, _, tracker = finished_sweep
    (sweep,) = tracker.find_runs({"raysweep.kind": "sweep"})
    logged = yaml.safe_load(open(tracker.client.download_artifacts(
        sweep.info.run_id, RESOLVED_SPEC_FILE)).read())
    assert logged == spec.as_dict()
    assert logged["model"]["d_model"] == spec.model.d_model and logged["storage"] == spec.storage
    assert (sweep.data.params["pretrain.batch"]
            == f"{spec.pretrain.batch_size} x {spec.pretrain.seq_len} tokens")
    assert set(sweep_params(spec, checkpoint_source(spec).settings())) <= set(sweep.data.params)


def test_the_best_lr_of_each_point_is_marked_by_dev_cross_entropy(finished_sweep):
    from collections import defaultdict

    _, _, _, _, tracker = finished_sweep
    groups = defaultdict(list)
    for run in tracker.find_runs({"raysweep.kind": "trial"}):
        key = trial_key_from_tags(run.data.tags)
        groups[(key.task, key.d_f, key.d_p)].append(run)
    for runs in groups.values():
        marked = [r for r in runs if r.data.tags["raysweep.best_lr"] == "true"]
        assert len(marked) == 1  # one per (task, D_f, D_p), the others tagged "false"
        assert marked[0].data.metrics["dev_cross_entropy"] == min(
            r.data.metrics["dev_cross_entropy"] for r in runs)


def test_the_second_task_is_fitted_from_the_same_pretraining_run(finished_sweep):
    _, first, _, _, tracker = finished_sweep
    (run,) = tracker.find_runs({"raysweep.kind": "laws"})
    assert any(key.startswith("en-fr/df_1000/cross_entropy/") for key in run.data.metrics)
    assert any(f["task"] == "en-fr" and f["num_points"] == 3 for f in first.laws)


def test_one_comet_scorer_per_node_loads_the_model_once(finished_sweep):
    _, first, rerun, _, tracker = finished_sweep
    (scorer,) = first.progress["comet_scorers"]  # one node, one scorer actor
    assert scorer["loads"] == 1 and scorer["calls"] == 20  # every trial scored by it
    trials = tracker.find_runs({"raysweep.kind": "trial"})
    assert {r.data.tags["raysweep.comet_scorer"] for r in trials} == {
        f"node {scorer['node_id'][:16]} pid {scorer['pid']}"}
    assert rerun.progress["comet_scorers"] == []  # nothing to score: never started


def test_progress_was_shown(finished_sweep):
    *_, lines, _ = finished_sweep
    assert any("checkpoints 3/3 published" in line and "trials 20/20 done" in line
               for line in lines)


def test_refit_from_mlflow_matches_the_online_fitter(finished_sweep):
    # The fitter's state is derived from MLflow: refitting offline gives the same laws.
    from raysweep.refit import analyse_sweep

    spec, first, *_ = finished_sweep
    online = {(f["task"], f["d_f"], f["metric"]): f for f in first.laws}
    for group in analyse_sweep(spec):
        offline = group.analysis.to_dict()
        expected = online[(group.task, group.d_f, group.metric)]
        assert offline["params"] == expected["params"]
        assert offline["verdict"] == expected["verdict"]


def test_a_refit_from_the_command_line_prints_the_laws_without_progress_bars(
        finished_sweep, capsys):
    from raysweep.cli import main

    spec, *_ = finished_sweep
    assert main(["fit", spec.source_file]) == 0
    captured = capsys.readouterr()
    assert "== task en-de, D_f = 1,000 tokens, bleu" in captured.out and "verdict: " in captured.out
    # MLflow's bar for each trial's artifacts buried the laws (one per trial).
    assert "Downloading artifacts" not in captured.out + captured.err


def test_status_shows_progress_failures_and_latest_laws(finished_sweep, tmp_path, capsys):
    from raysweep.cli import main

    spec, *_ = finished_sweep
    assert main(["status", spec.source_file]) == 0
    out = capsys.readouterr().out
    assert ("checkpoints: 3/3 published" in out
            and "trials: 20/20 finished, 0 running, 0 failed" in out)
    assert "8,192 of 8,192 tokens" in out and "MFU" in out
    assert "cross_entropy.en-fr.df_1000:" in out  # the latest verdict of every law


def test_report_leads_with_the_answer_and_has_the_laws_of_mlflow_and_figures(
        finished_sweep, tmp_path):
    import math
    import re

    from raysweep.cli import main

    spec, first, _, _, tracker = finished_sweep
    out = tmp_path / "report"
    assert main(["report", spec.source_file, "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    # The same answer as the sweep run's page in MLflow, first.
    (sweep,) = tracker.find_runs({"raysweep.kind": "sweep"})
    page = sweep.data.tags["mlflow.note.content"]
    assert markdown.startswith(page.splitlines()[0])
    rows = [line for line in page.splitlines() if line.startswith("| 1,000 |")]
    assert len(rows) == 2 * len(spec.fit.metrics)  # per task, a row per metric
    assert [line for line in markdown.splitlines() if line.startswith("| 1,000 |")] == rows
    figures = re.findall(r"\]\((figures/[^)]+\.png)\)", markdown)
    assert ({"figures/en-de.png", "figures/en-fr.png", "figures/en-de_df1000_cross_entropy.png"}
            <= set(figures))
    assert all((out / f).stat().st_size > 10_000 for f in figures)
    # The same numbers as the laws run in MLflow.
    (laws_run,) = tracker.find_runs({"raysweep.kind": "laws"})
    row = next(line for line in markdown.splitlines()
               if line.startswith("| en-de | 1000 | cross_entropy |"))
    alpha = laws_run.data.metrics.get("params/en-de/df_1000/cross_entropy/alpha")
    if alpha is None:  # not identifiable: neither place shows it
        assert "not shown: the points do not pin them down" in row
    else:
        assert f"alpha = {alpha:.3g}" in row and not math.isnan(alpha)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(figures)  # one file, figures inlined
    assert "<table>" in html and "<b>" in html and "**" not in html
