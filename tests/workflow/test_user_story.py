"""The realistic flow on one session folder, through every entry point.

CLI identify and distill; two annotator processes vote through the dashboard's
labeling panel at the same time; CLI correct; the dashboard reopens the
session with every vote, setting and result. The same folder, copied, is
opened in a second dashboard: its settings, D_f and baseline set must equal
the CLI's, and its sweep runs through the same ``Session.correct`` (whose
saved result the dashboard tests compare with the plot). Finally the folder is
moved and renamed and resumes through the CLI and the dashboard.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from defuse_widgets.workflow import DefuseConfig, Session

pytestmark = pytest.mark.slow

FLAGS = ["--quick", "-Q", "2", "--K", "6", "--max-samples", "800", "--lams", "1",
         "--epochs", "1", "--map-size", "200", "--tsne-iter", "50", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TIMEOUT = 600   # guards against a hang only

ANNOTATOR = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from defuse_widgets.widgets import DefuseDashboard
    dash = DefuseDashboard.embedded(sys.argv[1], annotator=sys.argv[2])
    panel = dash.labeling_panel
    for region in (0, 1):
        panel.goto(region, 0)
        wrong = min(set(range(10)) - set(panel.store.review_predictions(region).tolist()))
        for _ in range(panel.review_size):
            assert panel.handle_key(str(wrong))
    print(len(panel.store.votes(annotator=sys.argv[2])), flush=True)
    dash.explorer.wait(600)   # let the latent map's t-SNE thread finish before exiting
    dash.close()
""")


def _cli(*args):
    out = subprocess.run([sys.executable, "-m", "defuse_widgets.cli", *args], env=ENV,
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout


def _dashboard(path, **kw):
    from defuse_widgets.widgets import DefuseDashboard

    return DefuseDashboard.embedded(path, **kw)


def test_cli_panel_cli_dashboard_on_one_folder(tmp_path):
    folder = tmp_path / "session"
    _cli("identify", "--session", str(folder), *FLAGS)
    _cli("distill", "--session", str(folder))
    config = Session.saved_config(folder)
    assert config == DefuseConfig.quick(Q=2, n_components=6, max_samples=800,
                                        lams=(1.0,), epochs=1, map_size=200, tsne_iter=50)

    # Two annotators vote through the dashboard's panel, in two processes at once.
    procs = [subprocess.Popen([sys.executable, "-c", ANNOTATOR, str(folder), name], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("ada", "bo")]
    for p in procs:
        out, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, err
        assert out.split()[-1] == "20"

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    status = _cli("status", "--session", str(folder))
    assert "votes: ada 20, bo 20" in status
    _cli("correct", "--session", str(folder), "--no-progress")
    cli_result = json.loads((folder / "correction.json").read_text())

    # The dashboard reopens the session with every vote, setting and result.
    torch.set_num_threads(1)
    dash = _dashboard(folder)
    try:
        assert dash.config == config and dash.Q == 2 and dash.n_components == 6
        assert "40 votes" in dash.status and "selected λ" in dash.status
        assert len(dash.session.open_store().votes()) == 40
        lam = cli_result["defuse"]["results"][cli_result["defuse"]["best_index"]]["lam"]
        assert dash.session.load_correction()["defuse"]["best"]["lam"] == lam
    finally:
        dash.close()

    # The dashboard builds the same correction inputs: D_f, eval sets and baseline set.
    dash = _dashboard(copy)
    try:
        plot = dash.build_correction()
        saved = Session(folder).folder.load("failure_data.npz")
        assert torch.equal(plot.X_f, torch.from_numpy(saved["X_f"]))
        assert torch.equal(plot.y_f, torch.from_numpy(saved["y_f"]))
        base = Session(folder).baseline_set(len(plot.y_f))
        assert torch.equal(plot.X_adv, base[0]) and torch.equal(plot.y_adv, base[1])
        assert plot.runner is not None   # the sweep is Session.correct, as in the CLI
    finally:
        dash.close()

    # Moved and renamed, the folder resumes through the CLI and the dashboard.
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    folder.rename(moved)
    assert "votes: ada 20, bo 20" in _cli("status", "--session", str(moved) + "/")
    assert "Defuse" in _cli("report", "--session", str(moved))
    dash = _dashboard(moved)
    try:
        assert "40 votes" in dash.status and dash.config == config
    finally:
        dash.close()
