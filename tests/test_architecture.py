"""The package's shape: the core never imports UI code, modules stay small, one import line."""
import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import defuse_widgets

ROOT = Path(defuse_widgets.__file__).parent
CORE = sorted(m.name for m in pkgutil.walk_packages(defuse_widgets.__path__, "defuse_widgets.")
              if ".widgets" not in m.name)


def test_core_imports_no_ui():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in CORE) +
            "bad = [m for m in sys.modules if m.split('.')[0] in ('ipywidgets', 'plotly', "
            "'anywidget')]\nprint(bad)\nassert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "defuse_widgets.workflow.session" in CORE
    assert "defuse_widgets.stages.identification" in CORE


def test_no_module_is_very_long():
    # A guard against very long files (STYLE.md), not a size to split to: modules
    # are split by what they do. 400 lines forced splits by size (issue 29).
    long = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long


def test_the_folders_name_the_pipeline():
    for stage in ("identification", "distillation", "labeling", "correction"):
        assert (ROOT / "stages" / f"{stage}.py").exists(), stage
    for folder in ("stages", "storage", "workflow", "bayes_trex", "evaluation", "models",
                   "data", "widgets"):
        assert (ROOT / folder / "__init__.py").exists(), folder


def test_no_private_names_are_imported_across_modules():
    bad = []
    for p in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "defuse_widgets"):
                bad += [f"{p.relative_to(ROOT)}: {a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, bad


def test_one_import_line_reaches_the_main_api():
    import defuse_widgets as dw

    for name in ("identify", "Distiller", "Corrector", "Session", "run_defuse", "DefuseConfig",
                 "AnnotationStore", "decide", "load_mnist5k", "load_pretrained"):
        assert callable(getattr(dw, name)), name
    assert set(dw.__all__) <= set(dir(dw))
