"""Binder launches the quickstart with CPU torch, and the README's badges point there."""
import configparser
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_binder_files_install_cpu_torch_and_the_package():
    req = (ROOT / "binder" / "requirements.txt").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in req
    assert re.search(r"^torch\b", req, re.M) and re.search(r"^torchvision\b", req, re.M)
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.1[0-9]", runtime)
    post = ROOT / "binder" / "postBuild"
    assert post.stat().st_mode & 0o111, "postBuild must be executable"
    subprocess.run(["bash", "-n", str(post)], check=True)   # it parses
    text = post.read_text()
    assert "pip install --no-cache-dir -e ." in text
    assert "notebooks/01_quickstart.ipynb" in text


def test_readme_binder_badges_open_existing_notebooks():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    repo = cfg["metadata"]["url"].removeprefix("https://github.com/")
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"https://mybinder\.org/v2/gh/([^/]+/[^/]+)/HEAD\?urlpath=([^)\s]+)",
                       readme)
    assert links, "README.md must carry a Binder badge"
    assert {r for r, _ in links} == {repo}
    paths = {p for _, p in links}
    assert "lab/tree/notebooks/01_quickstart.ipynb" in paths
    for path in paths:
        notebook = re.sub(r"^(lab/tree|voila/render)/", "", path)
        assert (ROOT / notebook).exists(), path
