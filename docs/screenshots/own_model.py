"""Take ``docs/screenshots/own-model.png``: notebook 07's session, reopened in the dashboard.

Runs ``notebooks/07_your_own_model.ipynb`` (its images, its plain-torch
classifier, ``train-vae``, identification and distillation), then opens the
session folder it wrote with ``DefuseDashboard.open`` in Voila and takes a
full-page screenshot in headless Chromium at 1600 px wide. Needs
``.ci/browser_setup.sh``. Run from the repository root::

    .venv/bin/python docs/screenshots/own_model.py
"""
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def _session_of_notebook_07(tmp: Path) -> Path:
    nb = nbformat.read(REPO / "notebooks" / "07_your_own_model.ipynb", as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp)}}).execute()
    text = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    return Path(text.split("working in ")[1].split()[0]) / "session"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="own-model-shot-"))
    session = _session_of_notebook_07(tmp)
    cell = ("from defuse_widgets.widgets import DefuseDashboard\n"
            f"DefuseDashboard.open({str(session)!r}, annotator='you')")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)]),
                   tmp / "own.ipynb")
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "voila", "own.ipynb", "--no-browser",
                               "--Voila.ip=127.0.0.1", "--token=", f"--port={port}"], cwd=tmp,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/", timeout=300_000)
            page.get_by_text("adversarial examples", exact=False).first.wait_for(timeout=300_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=300_000)
            time.sleep(20)   # the latent map's t-SNE finishes in the background
            out = REPO / "docs" / "screenshots" / "own-model.png"
            page.screenshot(path=str(out), full_page=True)
            browser.close()
        print(f"wrote {out}")
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
