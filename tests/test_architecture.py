"""The core never imports UI code, and modules stay small."""
import pkgutil
import subprocess
import sys
from pathlib import Path

import defuse_widgets

CORE = sorted(m.name for m in pkgutil.walk_packages(defuse_widgets.__path__, "defuse_widgets.")
              if ".widgets" not in m.name)


def test_core_imports_no_ui():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in CORE) +
            "bad = [m for m in sys.modules if m.split('.')[0] in ('ipywidgets', 'plotly', "
            "'anywidget')]\nprint(bad)\nassert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "defuse_widgets.workflow.pipeline" in CORE and "defuse_widgets.stages.identification" in CORE


def test_modules_stay_under_about_400_lines():
    root = Path(defuse_widgets.__file__).parent
    long = {str(p.relative_to(root)): n for p in root.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 430}
    assert not long, long
