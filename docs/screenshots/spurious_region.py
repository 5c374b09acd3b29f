"""Take ``docs/screenshots/spurious-region.png``: a colour-bug region from a real benchmark run.

Opens the session that ``python -m benchmarks.spurious --seed 0 --rho 0.99``
left in ``benchmarks/results/spurious/.sessions/`` read-only, writes its HTML
report to a temporary file (the session is not touched), and takes a
screenshot of the card of the largest accepted region that is all one class's
shape decoded on another class's colour and that the annotators labelled with
that class, in headless Chromium at 1600 px wide. Needs
``.ci/browser_setup.sh``. Run from the repository root::

    .venv/bin/python docs/screenshots/spurious_region.py [rho] [seed]
"""
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main(rho: str = "0.99", seed: str = "0") -> Path:
    from playwright.sync_api import sync_playwright

    from defuse_widgets.workflow import Session
    from defuse_widgets.workflow.html_report import report_html

    result = json.loads((REPO / "benchmarks" / "results" / "spurious" /
                         f"rho{rho}-s{seed}.json").read_text())
    session = Session(REPO / "benchmarks" / "results" / "spurious" / ".sessions" /
                      f"rho{rho}-s{seed}", read_only=True)
    label = {d.region: d.label for d in session.load_decisions()}
    # the largest found region whose annotators read the digit right (its shape class)
    found = sorted(result["defuse"]["regions"], key=lambda r: (
        label[r["region"]] != r["shape_class"], -r["conflicting_share"], -r["members"]))
    region = found[0]["region"]
    page_file = Path(tempfile.mkdtemp(prefix="spurious-shot-")) / "report.html"
    page_file.write_text(report_html(session))
    session.close()
    out = REPO / "docs" / "screenshots" / "spurious-region.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(page_file.as_uri())
        page.locator(f"#region-{region}").screenshot(path=str(out))
        browser.close()
    print(f"region {region} ({found[0]}) -> {out}")
    return out


if __name__ == "__main__":
    main(*sys.argv[1:])
