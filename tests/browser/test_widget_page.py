"""Widgets outside the dashboard in JupyterLab: the ambiguity matrix renders its cells, and
plotly.js crosses the kernel connection once however many figures a page shows.
"""

import nbformat
import pytest
from browser_support import SLOW, browsing, run_all, wait_for_kernel

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CELLS = [
    """import numpy as np
from defuse_widgets.bayes_trex.level_sets import LevelSetSampler, Target
from defuse_widgets.models.pretrained import load_pretrained
from defuse_widgets.widgets import AmbiguityMatrix

clf, vae, _ = load_pretrained()
sampler = LevelSetSampler(targets=[Target.ambiguous(1, 7), Target.ambiguous(0, 9)], n_chains=4,
                          n_warmup=60, n_samples=20, n_init=512, device="cpu").fit(clf, vae)
matrix = AmbiguityMatrix(sampler, n_show=8)
matrix""",
    """from defuse_widgets.widgets._plotly_shared import SharedFigureWidget
SharedFigureWidget(data=[dict(type="bar", x=["a", "b"], y=[1, 2])])""",
]
BUNDLE = 4_900_000   # bytes of plotly's widget bundle: sent once, not once per figure


def test_ambiguity_matrix_cells_render_and_plotly_js_is_sent_once(serve, artifacts):
    from playwright.sync_api import expect, sync_playwright

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    lab = serve("lab", notebook=("widgets.ipynb", nb))
    received = []
    with sync_playwright() as pw:
        with browsing(pw, artifacts, "widgets", lab, "widgets-jupyterlab.log") as b:
            page = b.page
            page.on("websocket", lambda ws: ws.on(
                "framereceived", lambda payload: received.append(len(payload))))
            page.goto(lab["page"])
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            wait_for_kernel(lab)
            run_all(page)
            plots = page.locator(".js-plotly-plot")
            expect(plots).to_have_count(2, timeout=SLOW)
            heat = plots.first.locator(".heatmaplayer image")   # the matrix's cells
            expect(heat).to_have_count(1, timeout=60_000)
            assert (heat.get_attribute("href") or "").startswith("data:image")
            expect(plots.nth(1).locator(".bars .point")).to_have_count(2)
            b.shot("ambiguity-matrix")
            # a click on the 1-7 cell shows that pair's draws
            box = plots.first.locator(".nsewdrag").bounding_box()
            page.mouse.click(box["x"] + box["width"] * 7.5 / 10,
                             box["y"] + box["height"] * 1.5 / 10)
            expect(page.get_by_text("Mean confidence", exact=False)).to_contain_text(
                "1 vs 7", timeout=60_000)
            pair = page.locator(".widget-image").last   # that pair's draws, decoded
            expect(pair).to_be_visible()
            assert pair.evaluate("img => img.naturalWidth") > 0
            b.shot("ambiguity-pair")
            total = sum(received)
            assert BUNDLE < total < 2 * BUNDLE, f"{total} bytes for two figures"
            assert not [e for e in b.errors if "schema" not in e], b.errors
