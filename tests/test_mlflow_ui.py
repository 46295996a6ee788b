"""The MLflow UI on a finished sweep, in a real browser: `mlflow ui` as the README runs it, headless
Chromium (Debian's package; .ci/run installs it) driven by Playwright. Walks the path a user takes:
the experiment, the sweep run's page with the answer, the sweep's runs under their parent, the
laws run, its scaling-curve plot."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest
from conftest import free_port, start_mlflow, stop_process_group

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Headless as root, with nothing reaching out to Google's services (the test machine has no
# network).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def mlflow_ui(finished_sweep, tmp_path_factory):
    """`mlflow ui` on the sweep's store, bound to 127.0.0.1 (the README's command); its URL."""
    spec = finished_sweep[0]
    port = free_port()
    log = tmp_path_factory.mktemp("mlflow-ui") / "ui.log"
    server = start_mlflow("ui", spec.resolved_tracking_uri(), port, log)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(server)


def png_size(path: Path) -> tuple[int, int]:
    return struct.unpack(">II", path.read_bytes()[16:24])  # the IHDR chunk: width, height


def test_the_ui_shows_the_sweeps_runs_and_the_laws_plot(finished_sweep, mlflow_ui, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("RAYSWEEP_CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's package")
        pytest.skip("needs Debian's chromium (apt-get install chromium); .ci/run installs it")
    from playwright.sync_api import expect, sync_playwright

    spec, _, _, _, tracker = finished_sweep
    (laws_run,) = tracker.find_runs({"raysweep.kind": "laws"})
    plot = "plots/en-de/df_1000/cross_entropy.png"
    local = Path(tracker.client.download_artifacts(laws_run.info.run_id, plot, str(tmp_path)))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(60_000)
        try:
            page.goto(mlflow_ui)
            page.get_by_text("Model training", exact=True).click()  # MLflow 3 opens on GenAI pages
            page.get_by_role("link", name=spec.name, exact=True).first.click()
            # The answer first: the sweep run's Overview holds it, in its description.
            (sweep_run,) = tracker.find_runs({"raysweep.kind": "sweep"})
            page.locator(f"a[href*='/runs/{sweep_run.info.run_id}']").first.click()
            expect(page).to_have_url(f"{mlflow_ui}/#/experiments/{sweep_run.info.experiment_id}"
                                     f"/runs/{sweep_run.info.run_id}")
            heading = "tiny: what this pretraining data does for the task"
            expect(page.get_by_text(heading).first).to_be_visible()
            expect(page.get_by_text("gain over no pretraining", exact=True).first).to_be_visible()
            if os.environ.get("RAYSWEEP_SCREENSHOTS"):  # to look at the page (README, reviews)
                page.screenshot(path=os.path.join(os.environ["RAYSWEEP_SCREENSHOTS"],
                                                  "sweep_run_answer.png"), full_page=True)
            page.go_back()
            # The sweep run, then its children: pretraining, the laws and every trial.
            expect(page.get_by_role("link", name=spec.name, exact=True).last).to_be_visible()
            page.locator("button[data-component-id*=runnamecellrenderer]").first.click()
            for name in ("pretrain", "laws", "en-de/dp=8192/df=3000/lr=0.003/seed=0",
                         "en-fr/dp=0/df=1000/lr=0.003/seed=0"):
                expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
            page.get_by_role("link", name="laws", exact=True).click()
            expect(page).to_have_url(f"{mlflow_ui}/#/experiments/{laws_run.info.experiment_id}"
                                     f"/runs/{laws_run.info.run_id}")
            page.get_by_role("tab", name="Artifacts").click()
            for part in plot.split("/"):
                page.get_by_text(part, exact=True).first.click()
            expect(page.get_by_text(plot, exact=True)).to_be_visible()
            # The plot itself is shown: an image as large as the PNG the fitter logged.
            image = page.locator("img[src^='blob:']").first
            expect(image).to_be_visible()
            page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                                   arg=image.element_handle())
            shown = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            assert tuple(shown) == png_size(local)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))
            raise
        finally:
            browser.close()
