"""One real-browser test: the quickstart's dashboard renders and reacts in JupyterLab.

JupyterLab runs on 127.0.0.1 without a token in a temporary folder; headless
Chromium (``/usr/bin/chromium``, driven by Playwright) opens the quickstart,
runs all cells and checks that the latent map, the region gallery and the
labeling buttons render, that the τ slider changes the gallery, and that a
label key reaches the SQLite store. Screenshots go to ``$BROWSER_ARTIFACTS``
(default ``tests/artifacts/``). Nothing is installed here: see
``.ci/browser_setup.sh``. Without Chromium, Playwright or JupyterLab the test
is skipped, or fails when the ``CI`` environment variable is set.
"""
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from defuse_widgets.annotations import AnnotationStore

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "01_quickstart.ipynb"
SESSION = "quickstart-session"   # the session folder the quickstart opens, next to it
SLOW = 420_000                   # ms: identification, distillation and t-SNE on a busy CPU


def _require_tools() -> None:
    missing = [what for what, ok in [
        (f"{CHROMIUM} (apt-get install chromium)", CHROMIUM.exists()),
        ("playwright (pip install playwright)", importlib.util.find_spec("playwright")),
        ("jupyterlab>=4 (pip install jupyterlab)", importlib.util.find_spec("jupyterlab")),
    ] if not ok]
    if missing:
        reason = "browser test needs " + ", ".join(missing) + "; run .ci/browser_setup.sh"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def artifacts():
    folder = Path(os.environ.get("BROWSER_ARTIFACTS") or REPO / "tests" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    if "BROWSER_ARTIFACTS" not in os.environ:
        (folder / ".gitignore").write_text("*\n")
    return folder


def _stop(server: subprocess.Popen, kernels: list) -> None:
    """Terminate the kernels and the server's process group by PID, then kill stragglers."""
    import psutil

    with contextlib.suppress(psutil.Error):
        kernels += [c.pid for c in psutil.Process(server.pid).children(recursive=True)]
    procs = []
    for pid in dict.fromkeys(kernels):
        with contextlib.suppress(psutil.Error):
            procs.append(psutil.Process(pid))
            procs[-1].terminate()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(15)
    _, alive = psutil.wait_procs(procs, timeout=10)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait(10)


@pytest.fixture
def lab(tmp_path, request):
    """A token-less JupyterLab serving a temporary folder that holds the quickstart."""
    _require_tools()
    root, home = tmp_path / "root", tmp_path / "home"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    news = home / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)   # no "Would you like to get notified about news?" toast
    (news / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "IPYTHONDIR": str(home / "ipython"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
    port = _free_port()
    log = open(tmp_path / "jupyter.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--port={port}", "--ServerApp.port_retries=0", "--ServerApp.token=",
         "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
         f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    kernels: list = []
    request.addfinalizer(lambda: (_stop(server, kernels), log.close()))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/api/status", timeout=2):
                break
        if server.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"JupyterLab did not start:\n{(tmp_path / 'jupyter.log').read_text()}")
        time.sleep(0.5)
    yield dict(url=url, root=root, pid=server.pid, kernels=kernels, log=tmp_path / "jupyter.log")


def _wait_for_kernel(lab, timeout: float = 120) -> None:
    """Wait until the notebook's kernel is idle; remember its PID (it has its own session)."""
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"{lab['url']}/api/kernels", timeout=5) as r:
            kernels = json.load(r)
        if any(k["execution_state"] == "idle" for k in kernels):
            break
        assert time.monotonic() < deadline, f"the notebook's kernel did not start: {kernels}"
        time.sleep(0.5)
    lab["kernels"] += [p.pid for p in psutil.Process(lab["pid"]).children(recursive=True)]


def _votes(path: Path) -> list:
    if not path.exists():
        return []
    with AnnotationStore(path) as store:
        return store.votes()


def test_quickstart_dashboard_renders_and_reacts(lab, artifacts):
    from playwright.sync_api import expect, sync_playwright

    shots = iter(range(1, 100))

    def shot(page, name):
        page.screenshot(path=str(artifacts / f"{next(shots):02d}-{name}.png"), full_page=True)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            page.goto(f"{lab['url']}/lab/tree/{NOTEBOOK.name}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            _wait_for_kernel(lab)
            expect(page.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
                "data-status", "idle", timeout=60_000)
            shot(page, "opened")
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).click()

            dash = page.locator(".defuse-distillation")   # present once cell 2 has run
            gallery = dash.locator("img").first
            expect(gallery).to_be_attached(timeout=SLOW)
            page.get_by_role("tab", name="2 · Distillation").click()
            expect(gallery).to_be_visible(timeout=SLOW)
            before = gallery.get_attribute("src")
            assert before
            shot(page, "gallery")

            handle = dash.locator(".noUi-handle").first   # the τ slider
            handle.focus()
            for _ in range(10):
                handle.press("ArrowRight")
            expect(gallery).not_to_have_attribute("src", before, timeout=60_000)
            shot(page, "gallery-after-tau")

            page.get_by_role("tab", name="1 · Identification").click()
            scatter = page.locator(".defuse-identification .js-plotly-plot")
            expect(scatter).to_be_visible(timeout=SLOW)
            shot(page, "latent-map")

            page.get_by_role("tab", name="3 · Labeling").click()
            panel = page.locator(".defuse-labeling")
            for name in ["None of the above", *map(str, range(10))]:
                expect(panel.get_by_role("button", name=name, exact=True)).to_be_visible()
            store = lab["root"] / SESSION / "annotations.sqlite"
            assert _votes(store) == []   # a fresh session
            keys = panel.locator(".defuse-keys")
            keys.click()
            # "0 0" would restart the kernel in command mode; here it casts two votes
            for key in ["7", "ArrowLeft", "0", "0"]:
                keys.press(key)
            deadline = time.monotonic() + 60
            while len(_votes(store)) < 2 and time.monotonic() < deadline:
                time.sleep(0.5)
            shot(page, "after-vote")
            assert [(v.region, v.sample, v.label) for v in _votes(store)] == [(0, 0, 0),
                                                                              (0, 1, 0)]
            expect(page.locator(".jp-Dialog")).to_have_count(0)   # no "Restart kernel?"
        except Exception:
            with contextlib.suppress(Exception):
                shot(page, "failure")
            shutil.copy(lab["log"], artifacts / "jupyter.log")
            raise
        finally:
            (artifacts / "page-errors.txt").write_text("\n".join(errors))
            browser.close()
