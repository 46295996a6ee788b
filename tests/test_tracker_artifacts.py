"""The tracker's answer artifacts against a real MLflow (SQLite): a table the fitter refreshes on
every update holds the latest rows only and MLflow's load_table reads it, a JSON artifact reads
back, and a long description is cut at a line."""

from __future__ import annotations

import json

import mlflow

from raysweep.tracking import MAX_DESCRIPTION, Tracker


def make_run(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "tables", str(tmp_path / "artifacts"))
    tracker.ensure_experiment()
    return tracker, tracker.get_or_create_run({"raysweep.kind": "laws"}, "laws")


def test_a_table_logged_again_is_replaced_not_appended(tmp_path, monkeypatch):
    tracker, run_id = make_run(tmp_path)
    tracker.log_table(run_id, {"d_p": [1, 2], "value": [0.5, 0.25]}, "tables/points.json")
    tracker.log_table(run_id, {"d_p": [1, 2, 4], "value": [0.5, 0.25, 0.125]}, "tables/points.json")
    table = json.loads(open(tracker.client.download_artifacts(run_id, "tables/points.json")).read())
    assert table == {"columns": ["d_p", "value"], "data": [[1, 0.5], [2, 0.25], [4, 0.125]]}
    # MLflow's own reader finds it, as a user calls it: it looks runs up by their
    # mlflow.loggedArtifacts tag, through the global tracking URI and the active experiment.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracker.tracking_uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tables")
    frame = mlflow.load_table("tables/points.json", run_ids=[run_id])
    assert frame.to_dict("list") == {"d_p": [1, 2, 4], "value": [0.5, 0.25, 0.125]}


def test_a_long_description_is_cut_at_a_line(tmp_path):
    tracker, run_id = make_run(tmp_path)
    lines = [f"| row {i} | {'x' * 60} |" for i in range(200)]
    tracker.set_description(run_id, "\n".join(lines))
    note = tracker.client.get_run(run_id).data.tags["mlflow.note.content"]
    assert len(note) <= MAX_DESCRIPTION and note.endswith("(cut here)")
    kept = note.split("\n\n(cut here)")[0].split("\n")
    assert kept == lines[:len(kept)] and len(kept) > 50


def test_a_json_artifact_reads_back_and_a_missing_one_is_none(tmp_path):
    tracker, run_id = make_run(tmp_path)
    tracker.log_dict(run_id, {"bleu": [1.5, 2.25]}, "test_bootstrap.json")
    tracker.log_dict(run_id, {"deep": True}, "sub/folder/x.json")
    assert tracker.load_dict(run_id, "test_bootstrap.json") == {"bleu": [1.5, 2.25]}
    assert tracker.load_dict(run_id, "sub/folder/x.json") == {"deep": True}
    assert tracker.load_dict(run_id, "absent.json") is None
    assert tracker.load_dict(run_id, "sub/absent.json") is None
