"""The documentation site builds without a warning and reads offline in a real browser.

Sphinx builds ``docs/`` into a temporary folder with ``-W`` (the command
``.ci/run`` runs); headless Chromium (``/usr/bin/chromium``, driven by
Playwright) opens the pages from ``file://`` with every other request blocked,
and checks the API reference, a notebook page and the screenshots. Without
Chromium, Playwright or the ``docs`` extra the test is skipped, or fails when
the ``CI`` environment variable is set.
"""
import importlib.util
import os
import subprocess
import sys

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DOCS_PACKAGES = ("sphinx", "myst_nb", "pydata_sphinx_theme", "numpydoc", "playwright")


def require_docs_tools() -> None:
    missing = [name for name in DOCS_PACKAGES if not importlib.util.find_spec(name)]
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if missing:
        reason = ("the docs site test needs " + ", ".join(missing)
                  + '; pip install -e ".[docs]" and run .ci/browser_setup.sh')
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built from ``docs/`` into a temporary folder, warnings as errors."""
    require_docs_tools()
    out = tmp_path_factory.mktemp("docs")
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html",
         "-d", str(out / "doctrees"), str(REPO / "docs"), str(out / "html")],
        capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-6000:]
    return out / "html"


@pytest.fixture(scope="module")
def browser():
    require_docs_tools()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    """A page that may read only ``file:`` and ``data:`` URLs; what else it asked for,
    and every script error, are kept on ``page.outside`` and ``page.errors``.
    """
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.outside, page.errors = [], []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)

    def block(route):
        page.outside.append(route.request.url)
        route.abort()
    page.route(lambda url: not url.startswith(("file:", "data:")), block)
    yield page
    page.close()


def test_the_api_reference_lists_session_and_links_to_its_documentation(site, page):
    page.goto((site / "api" / "index.html").as_uri(), wait_until="load")
    link = page.get_by_role("link", name="Session", exact=True).first
    assert link.is_visible()
    link.click()
    page.wait_for_load_state("load")
    documented = page.locator("dt.sig[id$='.Session']")
    assert documented.count() == 1
    assert "Session" in documented.inner_text()
    assert page.locator("dt.sig[id$='.Session.identify']").count() == 1
    # The widgets' package page reaches the dashboard's documentation too.
    page.goto((site / "api" / "index.html").as_uri(), wait_until="load")
    page.get_by_role("link", name="defuse_widgets.widgets", exact=True).first.click()
    page.wait_for_load_state("load")
    page.get_by_role("link", name="DefuseDashboard", exact=True).first.click()
    page.wait_for_load_state("load")
    assert page.locator("dt.sig[id$='.DefuseDashboard']").count() == 1
    assert not page.errors, page.errors
    assert not page.outside, page.outside


def test_a_notebook_renders_as_a_page(site, page):
    page.goto((site / "notebooks" / "01_quickstart.html").as_uri(), wait_until="load")
    assert "Quickstart" in page.locator("h1").first.inner_text()
    cells = page.locator("div.cell_input")
    assert cells.count() >= 1
    assert "DefuseDashboard" in cells.first.inner_text()
    # It is reachable from the notebooks page.
    page.goto((site / "notebooks.html").as_uri(), wait_until="load")
    assert page.locator("a[href$='notebooks/01_quickstart.html']").count() >= 1
    assert not page.errors, page.errors
    assert not page.outside, page.outside


def test_the_widgets_page_shows_its_screenshots(site, page):
    page.goto((site / "widgets.html").as_uri(), wait_until="load")
    images = page.evaluate("""Array.from(document.querySelectorAll('article img'),
        i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0}))""")
    shots = [i for i in images if "labeling.png" in i["src"] or "tradeoff.png" in i["src"]]
    assert len(shots) == 2, images
    assert all(i["ok"] for i in images), images
    assert not page.errors, page.errors
    assert not page.outside, page.outside
