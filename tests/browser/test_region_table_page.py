"""The region table in JupyterLab 4, Notebook 7 and Voila, by mouse and keyboard: it renders
its rows, a header click sorts, the filter hides rows, and a click on a row or Enter on a
focused row (reached with ArrowDown) reaches the kernel's ``on_select``.
"""

import nbformat
import pytest
from browser_support import SLOW, browsing, run_all, wait_for_kernel

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CELL = """import ipywidgets as W
import numpy as np
from defuse_widgets.stages.region_summary import region_rows
from defuse_widgets.stages.regions import Regions
from defuse_widgets.storage.annotations import AnnotationStore
from defuse_widgets.widgets import RegionTable

regions = Regions(means=np.zeros((3, 2)), covariances=np.stack([np.eye(2)] * 3),
                  weights=np.array([0.5, 0.3, 0.2]), component=np.arange(3),
                  assignment=np.array([0] * 6 + [1] * 3 + [2] * 2),
                  source_label=np.array([4] * 6 + [2] * 3 + [7] * 2),
                  predicted_label=np.array([9] * 6 + [7] * 3 + [1] * 2), n_classes=10)
store = AnnotationStore("votes.sqlite", n_classes=10)
store.set_review_set(1, [7, 7])
store.cast_votes([("ada", 1, 0, 2), ("ada", 1, 1, 2)])
table = RegionTable(region_rows(regions, store=store))
shown = W.HTML("selected: none")
table.on_select(lambda k: setattr(shown, "value", f"selected: region {k}"))
W.VBox([table, shown])"""


def _notebook():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    return nb


def _open(page, server) -> None:
    page.goto(server["page"], timeout=SLOW)
    if server["app"] != "voila":
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
        wait_for_kernel(server)
        run_all(page)


@pytest.mark.parametrize("app", ["lab", "notebook", "voila"])
def test_the_region_table_sorts_filters_and_selects(serve, artifacts, app):
    from playwright.sync_api import expect, sync_playwright

    server = serve(app, notebook=("table.ipynb", _notebook()))
    with sync_playwright() as pw:
        with browsing(pw, artifacts, f"table-{app}", server, f"table-{app}.log") as b:
            page = b.page
            _open(page, server)
            table = page.locator(".defuse-region-table")
            rows = table.locator("tbody tr[data-region]")
            expect(rows).to_have_count(3, timeout=SLOW)
            expect(rows.first).to_contain_text("4 → 9 (100 %)")
            expect(table.locator("tr[data-region='1']")).to_contain_text("accepted, label 2")
            b.shot("rendered")

            weight = table.get_by_role("button", name="Weight π")
            weight.click()                         # ascending: the lightest first
            expect(rows.first).to_have_attribute("data-region", "2")
            weight.click()                         # again: flipped
            expect(rows.first).to_have_attribute("data-region", "0")
            expect(table.locator("th[data-key='weight']")).to_have_attribute(
                "aria-sort", "descending")

            search = table.get_by_role("searchbox")
            search.fill("→ 7")
            expect(rows).to_have_count(1)
            expect(rows.first).to_have_attribute("data-region", "1")
            expect(table.locator(".defuse-rt-count")).to_have_text("1 of 3 regions")
            search.fill("")
            expect(rows).to_have_count(3)

            shown = page.locator(".widget-html-content", has_text="selected:")
            table.locator("tr[data-region='2']").click()
            expect(shown).to_have_text("selected: region 2")
            expect(table.locator("tr[data-region='2']")).to_have_attribute("aria-selected", "true")
            table.locator("tr[data-region='0']").focus()
            page.keyboard.press("Enter")
            expect(shown).to_have_text("selected: region 0")
            page.keyboard.press("ArrowDown")       # region 1 is next in the weight order
            page.keyboard.press("Enter")
            expect(shown).to_have_text("selected: region 1")
            b.shot("selected")
            assert not [e for e in b.errors if "schema" not in e], b.errors
