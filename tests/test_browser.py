"""Real-browser tests: the quickstart's dashboard renders and reacts in JupyterLab 4,
Notebook 7 and Voila.

Each front end runs on 127.0.0.1 without a token in a temporary folder that
holds the quickstart; headless Chromium (``/usr/bin/chromium``, driven by
Playwright) opens it. In JupyterLab the test goes through all four stages with
mouse and keyboard: it runs all cells, checks the latent map, moves the τ
slider and checks that the gallery changed, votes with label keys and checks
the votes in the SQLite store, builds the failure data and runs the λ sweep to
its end. Notebook 7 and Voila must render every stage's widget. Screenshots go
to ``$BROWSER_ARTIFACTS`` (default ``tests/artifacts/``). Nothing is installed
here: see ``.ci/browser_setup.sh``. Without Chromium, Playwright or the front
ends the tests are skipped, or fail when the ``CI`` environment variable is set.
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

from defuse_widgets.storage.annotations import AnnotationStore

pytestmark = [pytest.mark.browser, pytest.mark.slow]

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
        ("notebook>=7 (pip install notebook)", importlib.util.find_spec("notebook")),
        ("voila (pip install voila)", importlib.util.find_spec("voila")),
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


_APPS = {   # front end -> (command, the quickstart's page)
    "lab": (["-m", "jupyterlab", "--LabApp.news_url=None",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            "lab/tree/{nb}"),
    "notebook": (["-m", "notebook"], "notebooks/{nb}"),
    "voila": (["-m", "voila", "{nb}", "--Voila.ip=127.0.0.1", "--token="], ""),
}


#: The identification, distillation and t-SNE results of the first front end's run,
#: reused by the next ones (their dashboards resume them) to keep the suite short.
_COMPUTED: dict = {}
_REUSED = ("adversarial.npz", "regions.npz", "session.json", "latent_map.npz",
           "manifest.json")


@pytest.fixture
def serve(tmp_path, request):
    """``serve(app)`` starts a token-less front end on a temporary folder holding the quickstart."""
    _require_tools()

    def start(app: str) -> dict:
        root, home = tmp_path / app / "root", tmp_path / app / "home"
        root.mkdir(parents=True)
        shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
        if app != "lab" and "session" in _COMPUTED:   # never for the four-stage test
            (root / SESSION).mkdir()
            for name in _REUSED:
                if (_COMPUTED["session"] / name).exists():
                    shutil.copy(_COMPUTED["session"] / name, root / SESSION / name)
            # Without the votes and the correction: the manifest lists only what was copied.
            manifest = json.loads((root / SESSION / "manifest.json").read_text())
            manifest["files"] = {k: v for k, v in manifest["files"].items() if k in _REUSED}
            (root / SESSION / "manifest.json").write_text(json.dumps(manifest))
        news = home / "settings" / "@jupyterlab" / "apputils-extension"
        news.mkdir(parents=True)   # no "Would you like to get notified about news?" toast
        (news / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"),
               "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "IPYTHONDIR": str(home / "ipython"),
               "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
               "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
        port = _free_port()
        command, page = _APPS[app]
        command = [a.format(nb=NOTEBOOK.name) for a in command]
        if app == "voila":
            command += ["--no-browser", f"--port={port}"]
        else:
            command += ["--no-browser", "--ServerApp.ip=127.0.0.1", f"--port={port}",
                        "--ServerApp.port_retries=0", "--ServerApp.token=",
                        "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
                        f"--ServerApp.root_dir={root}"]
        if os.geteuid() == 0 and app != "voila":
            command.append("--allow-root")
        log_path = tmp_path / f"{app}.log"
        log = open(log_path, "wb")
        server = subprocess.Popen([sys.executable, *command], cwd=root, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        kernels: list = []
        request.addfinalizer(lambda: (_stop(server, kernels), log.close()))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:   # Voila runs the notebook on every page load: probe the port only
            with contextlib.suppress(OSError):
                if app == "voila":
                    socket.create_connection(("127.0.0.1", port), timeout=2).close()
                    break
                with urllib.request.urlopen(f"{url}/api/status", timeout=2):
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{app} did not start:\n{log_path.read_text()}")
            time.sleep(0.5)
        return dict(url=url, page=f"{url}/{page.format(nb=NOTEBOOK.name)}", root=root,
                    pid=server.pid, kernels=kernels, log=log_path, app=app)

    return start


def _wait_for_kernel(lab: dict, timeout: float = 120) -> None:
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


class _Browser:
    """A Chromium page with numbered screenshots and collected page errors."""

    def __init__(self, pw, artifacts: Path, prefix: str):
        self.browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        self.page = self.browser.new_page(viewport={"width": 1400, "height": 1000})
        self.artifacts, self.prefix, self.n, self.errors = artifacts, prefix, 0, []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def shot(self, name: str) -> None:
        self.n += 1
        self.page.screenshot(path=str(self.artifacts / f"{self.prefix}-{self.n:02d}-{name}.png"),
                             full_page=True)

    def close(self) -> None:
        (self.artifacts / f"{self.prefix}-page-errors.txt").write_text("\n".join(self.errors))
        self.browser.close()


def _run_all(page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).click()


def _wait_votes(store: Path, n: int) -> list:
    deadline = time.monotonic() + 60
    while len(_votes(store)) < n and time.monotonic() < deadline:
        time.sleep(0.5)
    return _votes(store)


def test_jupyterlab_all_four_stages_with_mouse_and_keyboard(serve, artifacts):
    from playwright.sync_api import expect, sync_playwright

    lab = serve("lab")
    with sync_playwright() as pw:
        b = _Browser(pw, artifacts, "lab")
        page = b.page
        try:
            page.goto(lab["page"])
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            _wait_for_kernel(lab)
            expect(page.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
                "data-status", "idle", timeout=60_000)
            b.shot("opened")
            _run_all(page)

            # 2 · Distillation: the gallery, and the τ slider changes it
            dash = page.locator(".defuse-distillation")   # present once cell 2 has run
            gallery = dash.locator("img").first
            expect(gallery).to_be_attached(timeout=SLOW)
            page.get_by_role("tab", name="2 · Distillation").click()
            expect(gallery).to_be_visible(timeout=SLOW)
            before = gallery.get_attribute("src")
            assert before
            b.shot("gallery")
            handle = dash.locator(".noUi-handle").first   # the τ slider
            handle.focus()
            for _ in range(10):
                handle.press("ArrowRight")
            expect(gallery).not_to_have_attribute("src", before, timeout=60_000)
            b.shot("gallery-after-tau")

            # 1 · Identification: the latent map; a click shows a decode
            page.get_by_role("tab", name="1 · Identification").click()
            scatter = page.locator(".defuse-identification .js-plotly-plot")
            expect(scatter).to_be_visible(timeout=SLOW)
            legend = scatter.locator(".legendtext").first
            expect(legend).to_be_visible()   # class names
            legend.scroll_into_view_if_needed()
            b.shot("latent-map")

            # 3 · Labeling: buttons, and keys that JupyterLab's shortcuts never see
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
            votes = _wait_votes(store, 2)
            b.shot("after-vote")
            assert [(v.region, v.sample, v.label) for v in votes] == [(0, 0, 0), (0, 1, 0)]
            expect(page.locator(".jp-Dialog")).to_have_count(0)   # no "Restart kernel?"
            panel.get_by_title("key 0").click()   # and one vote by mouse
            assert [v.sample for v in _wait_votes(store, 3)] == [0, 1, 2]

            # 4 · Correction: failure data from the votes, then the λ sweep, live
            page.get_by_role("tab", name="4 · Correction").click()
            tab = page.locator(".defuse-correction")
            tab.get_by_role("button", name="Build failure data").click()
            plot = tab.locator(".js-plotly-plot")
            expect(plot).to_be_visible(timeout=SLOW)
            tab.get_by_role("button", name="Start").click()
            expect(tab.get_by_text("Selected λ=")).to_be_visible(timeout=SLOW)
            assert plot.locator(".scatterlayer .trace .point").count() >= 3
            b.shot("tradeoff")
            _COMPUTED["session"] = lab["root"] / SESSION
        except Exception:
            with contextlib.suppress(Exception):
                b.shot("failure")
            shutil.copy(lab["log"], artifacts / "jupyterlab.log")
            raise
        finally:
            b.close()


@pytest.mark.parametrize("app", ["notebook", "voila"])
def test_every_stage_renders_in_notebook7_and_voila(serve, artifacts, app):
    from playwright.sync_api import expect, sync_playwright

    server = serve(app)
    with sync_playwright() as pw:
        b = _Browser(pw, artifacts, app)
        page = b.page
        try:
            page.goto(server["page"], timeout=SLOW)
            if app == "notebook":
                page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
                _wait_for_kernel(server)
                _run_all(page)
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
            votes = _wait_votes(server["root"] / SESSION / "annotations.sqlite", 1)
            assert [(v.region, v.sample, v.label) for v in votes] == [(0, 0, -1)]
            page.get_by_role("tab", name="4 · Correction").click()
            expect(page.locator(".defuse-correction").get_by_role(
                "button", name="Build failure data")).to_be_visible()
            b.shot("labeling")
        except Exception:
            with contextlib.suppress(Exception):
                b.shot("failure")
            shutil.copy(server["log"], artifacts / f"{app}.log")
            raise
        finally:
            b.close()
