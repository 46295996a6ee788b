"""notebooks/analysis.ipynb runs top to bottom on a finished sweep (a real Jupyter kernel, through
nbclient) and shows the numbers of MLflow, so the notebook never rots."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "analysis.ipynb"


def test_the_analysis_notebook_runs_on_a_sweep_and_shows_the_laws_of_mlflow(
        finished_sweep, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    spec, *_, tracker = finished_sweep
    monkeypatch.setenv("RAYSWEEP_SPEC", spec.source_file)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # Raises CellExecutionError on any failing cell, including the notebook's own check that its
    # refit equals the laws run in MLflow.
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "trials: 20/20 finished" in text  # the status of the sweep
    (laws_run,) = tracker.find_runs({"raysweep.kind": "laws"})
    html = "\n".join(o.get("data", {}).get("text/html", "") for o in outputs)
    # pandas shows each parameter MLflow holds (those the points pin down) beside the refit.
    params = {key: value for key, value in laws_run.data.metrics.items()
              if key.startswith("params/") and not key.endswith(("_low", "_high"))}
    assert all(f"{value:.6f}" in html for value in params.values()), params
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    # 2 task figures + per (task, D_f): the cross-entropy law and a metric vs cross-entropy.
    assert len(images) == 2 + 2 * 3
    assert all(len(o["data"]["image/png"]) > 20_000 for o in images)
