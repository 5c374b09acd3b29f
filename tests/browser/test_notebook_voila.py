"""Notebook 7 and Voila render every stage's widget of the quickstart, and hear its keys.

They resume the session the JupyterLab test computed (see browser_support.COMPUTED).
"""

import pytest
from browser_support import (
    COMPUTED,
    SESSION,
    SLOW,
    browsing,
    run_all,
    wait_for_kernel,
    wait_votes,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.mark.parametrize("app", ["notebook", "voila"])
def test_every_stage_renders_in_notebook7_and_voila(serve, artifacts, app):
    from playwright.sync_api import expect, sync_playwright

    server = serve(app)
    with sync_playwright() as pw:
        with browsing(pw, artifacts, app, server, f"{app}.log") as b:
            page = b.page
            page.goto(server["page"], timeout=SLOW)
            if app == "notebook":
                page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
                wait_for_kernel(server)
                run_all(page)
            gallery = page.locator(".defuse-distillation img").first
            expect(gallery).to_be_attached(timeout=SLOW)
            page.get_by_role("tab", name="2 · Distillation").click()
            expect(gallery).to_be_visible(timeout=SLOW)
            b.shot("gallery")
            page.get_by_role("tab", name="1 · Identification").click()
            scatter = page.locator(".defuse-identification .js-plotly-plot")
            expect(scatter.locator(".legendtext").first).to_be_visible(timeout=SLOW)   # drawn
            b.shot("latent-map")
            page.get_by_role("tab", name="3 · Labeling").click()
            panel = page.locator(".defuse-labeling")
            expect(panel.get_by_role("button", name="None of the above")).to_be_visible()
            keys = panel.locator(".defuse-keys")
            keys.click()
            keys.press("n")      # the kernel hears the key box in this front end too
            votes = wait_votes(server["root"] / SESSION / "annotations.sqlite", 1)
            assert [(v.region, v.sample, v.label) for v in votes] == [(0, 0, -1)]
            page.get_by_role("tab", name="4 · Correction").click()
            expect(page.locator(".defuse-correction").get_by_role(
                "button", name="Build failure data")).to_be_visible()
            b.shot("labeling")


def test_voila_draws_the_quickstarts_saved_sweep(serve, artifacts):
    """Issue 27: the quickstart in Voila on a session with a finished sweep draws it in tab 4
    (a page that asks for a figure's state after the notebook ran used to get it empty).
    """
    from playwright.sync_api import expect, sync_playwright

    if "session" not in COMPUTED:
        pytest.skip("needs the session the JupyterLab test finished (run the browser folder)")
    server = serve("voila", session=COMPUTED["session"])
    with sync_playwright() as pw:
        with browsing(pw, artifacts, "voila-sweep", server, "voila-sweep.log") as b:
            page = b.page
            page.goto(server["page"], timeout=SLOW)
            tab = page.get_by_role("tab", name="4 · Correction")
            expect(tab).to_be_visible(timeout=SLOW)
            tab.click()
            plot = page.locator(".defuse-correction .js-plotly-plot")
            expect(plot.locator(".scatterlayer .trace .point").first).to_be_visible(
                timeout=SLOW)
            assert plot.locator(".scatterlayer .trace .point").count() >= 3
            expect(page.locator(".defuse-correction")).to_contain_text("Saved sweep")
            b.shot("saved-sweep")
