"""The MLflow UI on a finished sweep, in a real browser: `mlflow ui` as the README runs it, headless
Chromium (Debian's package; .ci/run installs it) driven by Playwright. Walks the path a user takes
from MLflow's start page: the experiment, the sweep's runs, the sweep run's page with the answer,
its overview figure, the laws run and its scaling-curve plot; screenshots of each step are kept
with the test's files (and in $RAYSWEEP_SCREENSHOTS where set)."""

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


def shot(page, tmp_path: Path, name: str, full_page: bool = False) -> None:
    """A screenshot of what the user sees, kept with the test's files; also under
    $RAYSWEEP_SCREENSHOTS where it is set (to look at the pages: README, reviews)."""
    page.screenshot(path=str(tmp_path / name), full_page=full_page)
    if os.environ.get("RAYSWEEP_SCREENSHOTS"):
        shutil.copy(tmp_path / name, os.environ["RAYSWEEP_SCREENSHOTS"])


def close_assistant(page) -> None:
    """Close MLflow's Assistant panel where the UI opens it (MLflow 3.17): it takes a third of a
    1440 px window, and the run page then stacks its boxes into one column, the description
    after the run's details. Closed, the description (the answer) leads the page."""
    from playwright.sync_api import TimeoutError as Timeout

    close = page.get_by_role("button", name="Close", exact=True).first  # the panel's only one
    try:
        close.wait_for(state="visible", timeout=5_000)
    except Timeout:  # an MLflow without it, or closed already
        return
    close.click()
    close.wait_for(state="hidden")


def visible_text(link) -> str:
    """The part of a link's text the UI shows: runs-list names are cut with an ellipsis at the
    column's width (the share of the text that fits, by its rendered width)."""
    text, shown, whole = link.evaluate(
        "a => [a.textContent, a.getBoundingClientRect().width, a.scrollWidth]")
    parent = link.evaluate("a => a.parentElement.getBoundingClientRect().width")
    return text[:int(len(text) * min(1.0, min(shown, parent) / max(whole, 1)))]


def test_the_ui_leads_with_the_answer_from_the_start_page_to_the_laws_plot(
        finished_sweep, mlflow_ui, tmp_path):
    """The path a researcher takes, checked on what they see: the answer on the experiment (its
    folded description) and on the sweep run (folded and unfolded), with what more data gives;
    trial names whose visible part shows D_f and D_p; the task's overview figure beside the
    answer; the laws run and its plot."""
    if CHROMIUM is None:
        if os.environ.get("RAYSWEEP_CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's package")
        pytest.skip("needs Debian's chromium (apt-get install chromium); .ci/run installs it")
    from playwright.sync_api import expect, sync_playwright

    spec, _, _, _, tracker = finished_sweep
    (laws_run,) = tracker.find_runs({"raysweep.kind": "laws"})
    (sweep_run,) = tracker.find_runs({"raysweep.kind": "sweep"})
    plot = "plots/en-de/df_1000/cross_entropy.png"
    local = Path(tracker.client.download_artifacts(laws_run.info.run_id, plot, str(tmp_path)))
    first_line = tracker.client.get_experiment(sweep_run.info.experiment_id).tags[
        "mlflow.note.content"].split(" · ")[0]  # "en-de: yes, this data helps (BLEU ...)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(60_000)
        try:
            page.goto(mlflow_ui)
            page.get_by_text("Model training", exact=True).click()  # MLflow 3 opens on GenAI pages
            # The start page lists the experiment with its description: the answer, first.
            expect(page.get_by_role("link", name=spec.name, exact=True).first).to_be_visible()
            expect(page.get_by_text(first_line).first).to_be_visible()
            shot(page, tmp_path, "experiments.png")
            # 1 click: the experiment. Its description, folded to one line, is the answer.
            page.get_by_role("link", name=spec.name, exact=True).first.click()
            close_assistant(page)
            expect(page.get_by_text(first_line).first).to_be_visible()
            assert first_line.startswith("en-de: ") and "(BLEU " in first_line
            shot(page, tmp_path, "experiment.png")
            # The runs list: the trial names show D_f and D_p where the column cuts them.
            page.locator("button[data-component-id*=runnamecellrenderer]").first.click()
            for name in ("(pretrain)", "(laws)", "df3k dp8.19k s0 lr3e-3 en-de",
                         "df1k dp0 s0 lr3e-3 en-fr"):
                expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
            seen = visible_text(page.get_by_role("link", name="df3k dp8.19k s0 lr3e-3 en-de"))
            assert seen.startswith("df3k dp8"), seen
            shot(page, tmp_path, "runs.png")
            # 2 clicks: the sweep run. The answer leads its folded description, both halves.
            page.get_by_role("link", name=spec.name, exact=True).last.click()  # the runs table
            expect(page).to_have_url(f"{mlflow_ui}/#/experiments/{sweep_run.info.experiment_id}"
                                     f"/runs/{sweep_run.info.run_id}")
            expect(page.get_by_text("Answer").first).to_be_visible()
            expect(page.get_by_text("more data, to 100k: BLEU").first).to_be_visible()
            shot(page, tmp_path, "sweep_run.png")
            page.get_by_text("Show more").first.click()
            expect(page.get_by_text("more data, to 100k", exact=True).first).to_be_visible()
            expect(page.get_by_text("gain over none", exact=True).first).to_be_visible()
            shot(page, tmp_path, "sweep_run_unfolded.png", full_page=True)
            # Beside the answer, the overview figure of each task.
            page.get_by_role("tab", name="Artifacts").click()
            page.get_by_text("overview", exact=True).first.click()
            page.get_by_text("en-de.png", exact=True).first.click()
            image = page.locator("img[src^='blob:']").first
            expect(image).to_be_visible()
            shot(page, tmp_path, "overview.png")
            # The laws run, linked from the answer, and its plot.
            page.get_by_role("tab", name="Overview").click()
            link = page.get_by_role("link", name="laws run: plots and tables").first
            assert link.get_attribute("href").endswith(f"/runs/{laws_run.info.run_id}")
            if link.get_attribute("target") == "_blank":  # MLflow opens a description's links
                with page.context.expect_page() as opened:  # in a new tab
                    link.click()
                page = opened.value
            else:
                link.click()
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
