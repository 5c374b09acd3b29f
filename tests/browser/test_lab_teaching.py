"""Notebook 05 in JupyterLab 4 after Run All: the identification cell shows the latent map.

The notebook runs through its distillation cell (the labeling and the sweep are left out
to keep the suite short).

Issue 27 found the cell's ``dash.explorer`` output hidden and empty after Run All (the
dashboard made a new explorer when distillation finished and closed the one on show);
the map appeared only when the cell was run again.
"""
import nbformat
import pytest
from browser_support import REPO, SLOW, browsing, run_all, wait_for_kernel

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_teaching_notebook_shows_the_map_after_run_all(serve, artifacts):
    from playwright.sync_api import expect, sync_playwright

    nb = nbformat.read(REPO / "notebooks" / "05_teaching.ipynb", as_version=4)
    last = next(i for i, c in enumerate(nb.cells) if "run_distillation" in c.source)
    nb.cells = nb.cells[:last + 1]   # through distillation, when the map was lost; no sweep
    lab = serve("lab", notebook=("05_teaching.ipynb", nb))
    with sync_playwright() as pw:
        with browsing(pw, artifacts, "teaching", lab, "teaching-lab.log", height=1200) as b:
            page = b.page
            page.goto(lab["page"])
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            wait_for_kernel(lab)
            run_all(page)
            status = page.locator(".jp-Notebook-ExecutionIndicator")
            expect(status).to_have_attribute("data-status", "busy", timeout=60_000)
            expect(status).to_have_attribute("data-status", "idle", timeout=SLOW)
            plot = page.locator(".jp-OutputArea .js-plotly-plot", has_text="t-SNE").first
            plot.scroll_into_view_if_needed(timeout=SLOW)
            expect(plot).to_be_visible(timeout=60_000)
            expect(plot.locator(".legendtext").first).to_be_visible()   # drawn, with its key
            b.shot("map-after-run-all")
