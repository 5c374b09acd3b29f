"""Voila draws what a figure became before the page opened (issue 27: tab 4 drew a saved
sweep as an empty plot). Voila runs the whole notebook first and the page asks for the
widgets' state afterwards, so every change made after a figure was created must be in it.
"""

import nbformat
import pytest
from browser_support import SLOW, browsing

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CELLS = [
    """import ipywidgets as W
from defuse_widgets.widgets._plotly_shared import SharedFigureWidget

fig = SharedFigureWidget(layout=dict(title="late points"))   # empty when made, as tab 4's
fig.add_scatter(name="Defuse", mode="lines+markers+text", texttemplate="λ=%{customdata}")
with fig.batch_update():   # what show_saved does with a saved sweep
    fig.data[0].x, fig.data[0].y = [0.9, 0.95, 0.97], [0.2, 0.6, 0.8]
    fig.data[0].customdata = [0.1, 1, 10]
W.VBox([W.HTML("a saved sweep"), fig])   # inside a box, as in the dashboard"""]


def test_voila_draws_a_figure_changed_before_the_page_opened(serve, artifacts):
    from playwright.sync_api import expect, sync_playwright

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    voila = serve("voila", notebook=("late.ipynb", nb))
    with sync_playwright() as pw:
        with browsing(pw, artifacts, "voila-late", voila, "voila-late.log") as b:
            page = b.page
            page.goto(voila["page"], timeout=SLOW)
            plot = page.locator(".js-plotly-plot")
            expect(plot).to_have_count(1, timeout=SLOW)
            expect(plot.locator(".scatterlayer .point")).to_have_count(3, timeout=SLOW)
            expect(plot.locator(".scatterlayer .textpoint")).to_have_count(3)
            expect(plot.locator(".textpoint").first).to_contain_text("λ=0.1")
            b.shot("late-points")
