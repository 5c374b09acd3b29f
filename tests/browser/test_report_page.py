"""The HTML report of a session opens in a real browser with its images and its tradeoff plot.

A tiny session (the 8x8 digits, the tiny models, an oracle that always
disagrees so every region is a bug) runs all four stages and writes its
report; headless Chromium (``/usr/bin/chromium``, driven by Playwright) opens
it from ``file://`` with the network cut off. A full-page screenshot goes to
``$BROWSER_ARTIFACTS`` (default ``tests/artifacts/report.png``). Without
Chromium or Playwright the test is skipped, or fails when ``CI`` is set.
"""

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, require_tools

from defuse_widgets.workflow import DefuseConfig, run_defuse

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def report_file(tmp_path, digits, tiny_models, contrarian):
    clf, vae = tiny_models
    config = DefuseConfig(dataset="digits", Q=6, a=4, b=4, centered=True, max_per_instance=3,
                          n_components=4, max_samples=500, lams=(0.0, 0.5, 1.0, 5.0),
                          epochs=1, n_finetune=64, n_region_test=32, batch_size=128,
                          selection="balanced", tolerance=1.0)
    run_defuse(config, out=tmp_path / "s", classifier=clf, vae=vae, oracle=contrarian,
               data=digits, progress=False, log=lambda *a: None)
    from defuse_widgets.workflow import Session

    session = Session(tmp_path / "s", classifier=clf, vae=vae, data=digits)
    try:
        path = session.write_html_report()
        n_images = len(session.load_regions()) * session.config.review_size
    finally:
        session.close()
    return path, n_images


def test_the_html_report_opens_in_the_browser_with_its_images(report_file, artifacts):
    require_tools()
    from playwright.sync_api import sync_playwright

    path, n_images = report_file
    errors, outside = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

            def block(route):   # one file to share: nothing may be fetched from elsewhere
                outside.append(route.request.url)
                route.abort()
            page.route(lambda url: not url.startswith(("file:", "data:")), block)
            page.goto(path.resolve().as_uri(), wait_until="load")
            widths = page.evaluate("Array.from(document.images, i => i.complete && "
                                   "i.naturalWidth)")
            plot = page.evaluate("""() => {
                const svg = document.querySelector('#tradeoff svg.plot');
                if (!svg) return null;
                const box = svg.getBoundingClientRect();
                return {width: box.width, height: box.height,
                        points: svg.querySelectorAll('circle[r="5"]').length,
                        drawn: Array.from(svg.querySelectorAll('polyline'),
                                          p => p.getBBox().height).filter(h => h > 0).length};
            }""")
            regions = page.locator("article.region").count()
            page.screenshot(path=str(artifacts / "report.png"), full_page=True)
        finally:
            browser.close()
    assert len(widths) == n_images > 0
    assert all(w and w > 0 for w in widths), widths
    assert plot is not None and plot["width"] > 300 and plot["height"] > 150, plot
    assert plot["points"] == 2 * 4 and plot["drawn"] == 2   # 4 λs, Defuse and the baseline
    assert regions == n_images // 10
    assert not errors, errors
    assert not outside, outside
