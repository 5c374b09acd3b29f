"""Shared pieces of the real-browser tests: servers, a Chromium page, helpers.

Each front end (JupyterLab 4, Notebook 7, Voila) runs on 127.0.0.1 without a
token in a temporary folder that holds a notebook; headless Chromium
(``/usr/bin/chromium``, driven by Playwright) opens it. Screenshots go to
``$BROWSER_ARTIFACTS`` (default ``tests/artifacts/``). Nothing is installed
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
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from defuse_widgets.storage.annotations import AnnotationStore

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parent.parent.parent
NOTEBOOK = REPO / "notebooks" / "01_quickstart.ipynb"
SESSION = "quickstart-session"   # the session folder the quickstart opens, next to it
SLOW = 420_000                   # ms: identification, distillation and t-SNE on a busy CPU


def require_tools() -> None:
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def artifacts_folder() -> Path:
    folder = Path(os.environ.get("BROWSER_ARTIFACTS") or REPO / "tests" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    if "BROWSER_ARTIFACTS" not in os.environ:
        (folder / ".gitignore").write_text("*\n")
    return folder


def stop_server(server: subprocess.Popen, kernels: list) -> None:
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


APPS = {   # front end -> (command, the quickstart's page)
    "lab": (["-m", "jupyterlab", "--LabApp.news_url=None",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            "lab/tree/{nb}"),
    "notebook": (["-m", "notebook"], "notebooks/{nb}"),
    "voila": (["-m", "voila", "{nb}", "--Voila.ip=127.0.0.1", "--token="], ""),
}


#: The identification, distillation and t-SNE results of the first front end's run,
#: reused by the next ones (their dashboards resume them) to keep the suite short.
COMPUTED: dict = {}
REUSED = ("adversarial.npz", "regions.npz", "session.json", "latent_map.npz",
           "manifest.json")


def server_factory(tmp_path: Path, request):
    """``start(app, notebook=NOTEBOOK, session=None)`` starts a token-less front end on a
    temporary folder holding ``notebook`` (a path, or a (name, nbformat node) pair written
    there) and, when given, a copy of the session folder ``session`` as the quickstart's.
    """
    require_tools()

    def start(app: str, notebook=NOTEBOOK, session: Path | None = None) -> dict:
        root, home = tmp_path / app / "root", tmp_path / app / "home"
        root.mkdir(parents=True)
        if isinstance(notebook, tuple):   # (name, node): a notebook made by the test
            name = notebook[0]
            nbformat.write(notebook[1], root / name)
        else:
            name = Path(notebook).name
            shutil.copy(notebook, root / name)
        if session is not None:
            shutil.copytree(session, root / SESSION)
        elif notebook == NOTEBOOK and app != "lab" and "session" in COMPUTED:   # not for lab
            (root / SESSION).mkdir()
            for file in REUSED:
                if (COMPUTED["session"] / file).exists():
                    shutil.copy(COMPUTED["session"] / file, root / SESSION / file)
            # Without the votes and the correction: the manifest lists only what was copied.
            manifest = json.loads((root / SESSION / "manifest.json").read_text())
            manifest["files"] = {k: v for k, v in manifest["files"].items() if k in REUSED}
            (root / SESSION / "manifest.json").write_text(json.dumps(manifest))
        log_path = tmp_path / f"{app}.log"
        try:
            server = start_front_end(app, root, home, name, log_path)
        except RuntimeError as exc:
            pytest.fail(str(exc))
        request.addfinalizer(lambda: server["close"]())
        return server

    return start


def start_front_end(app: str, root: Path, home: Path, name: str, log_path: Path) -> dict:
    """Start a token-less ``app`` ("lab", "notebook" or "voila") on ``root``, which holds the
    notebook ``name``; settings under ``home``, output to ``log_path``. A dict with ``url``,
    ``page`` (the notebook's), ``root``, ``pid``, ``kernels``, ``log``, ``app`` and ``close``
    (stops the server and its kernels). Raises RuntimeError if it does not start in 120 s.
    """
    news = home / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)   # no "Would you like to get notified about news?" toast
    (news / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "IPYTHONDIR": str(home / "ipython"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
    port = free_port()
    command, page = APPS[app]
    command = [a.format(nb=name) for a in command]
    if app == "voila":
        command += ["--no-browser", f"--port={port}"]
    else:
        command += ["--no-browser", "--ServerApp.ip=127.0.0.1", f"--port={port}",
                    "--ServerApp.port_retries=0", "--ServerApp.token=",
                    "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
                    f"--ServerApp.root_dir={root}"]
    if os.geteuid() == 0 and app != "voila":
        command.append("--allow-root")
    log = open(log_path, "wb")
    server = subprocess.Popen([sys.executable, *command], cwd=root, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    kernels: list = []
    closed = []

    def close() -> None:
        if not closed:
            closed.append(True)
            stop_server(server, kernels)
            log.close()

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
            close()
            raise RuntimeError(f"{app} did not start:\n{log_path.read_text()}")
        time.sleep(0.5)
    return dict(url=url, page=f"{url}/{page.format(nb=name)}", root=root,
                pid=server.pid, kernels=kernels, log=log_path, app=app, close=close)


def wait_for_kernel(lab: dict, timeout: float = 120) -> None:
    """Wait until the notebook's kernel is idle; remember its PID (it has its own session)."""
    import psutil

    deadline, kernels = time.monotonic() + timeout, []
    while True:
        # jupyter_server answers 500 while a kernel starts (its last_activity is still
        # None, "KeyError: 'last_activity'" in its log): ask again
        with contextlib.suppress(urllib.error.HTTPError):
            with urllib.request.urlopen(f"{lab['url']}/api/kernels", timeout=5) as r:
                kernels = json.load(r)
        if any(k["execution_state"] == "idle" for k in kernels):
            break
        assert time.monotonic() < deadline, f"the notebook's kernel did not start: {kernels}"
        time.sleep(0.5)
    lab["kernels"] += [p.pid for p in psutil.Process(lab["pid"]).children(recursive=True)]


def votes(path: Path) -> list:
    if not path.exists():
        return []
    with AnnotationStore(path) as store:
        return store.votes()


class Browser:
    """A Chromium page with numbered screenshots and collected page errors."""

    def __init__(self, pw, artifacts: Path, prefix: str, *, height: int = 1000):
        self.browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        self.page = self.browser.new_page(viewport={"width": 1400, "height": height})
        self.artifacts, self.prefix, self.n, self.errors = artifacts, prefix, 0, []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def shot(self, name: str) -> None:
        self.n += 1
        self.page.screenshot(path=str(self.artifacts / f"{self.prefix}-{self.n:02d}-{name}.png"),
                             full_page=True)

    def close(self) -> None:
        (self.artifacts / f"{self.prefix}-page-errors.txt").write_text("\n".join(self.errors))
        self.browser.close()


@contextlib.contextmanager
def browsing(pw, artifacts: Path, prefix: str, server: dict, log_name: str, **kw):
    """A :class:`Browser` that, when the test fails, takes a ``failure`` screenshot and keeps
    the server's log as ``artifacts / log_name``; closed in any case.
    """
    b = Browser(pw, artifacts, prefix, **kw)
    try:
        yield b
    except Exception:
        with contextlib.suppress(Exception):
            b.shot("failure")
        shutil.copy(server["log"], artifacts / log_name)
        raise
    finally:
        b.close()


def run_all(page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).click()


def wait_votes(store: Path, n: int) -> list:
    deadline = time.monotonic() + 60
    while len(votes(store)) < n and time.monotonic() < deadline:
        time.sleep(0.5)
    return votes(store)


