"""The quickstart kernel's memory (issue 27): peak through Run All and a sweep, and its floor.

Binder gives 1–2 GB per user, so what a kernel holds decides whether a second
notebook fits. Two measurements, each in fresh processes:

* **The quickstart kernel.** ``notebooks/01_quickstart.ipynb`` runs in a real
  Jupyter kernel (nbclient) on a new session folder, then one more cell casts
  the simulated annotator's votes, builds the correction and runs the sweep,
  as a user pressing *Build failure data* and *Start* would. The kernel reports
  its own peak resident memory (``VmHWM``) and, after a garbage collection and
  ``malloc_trim``, its steady resident memory (``VmRSS``).
* **What holds the floor.** A fresh Python process imports and loads one thing
  at a time (torch, the package, the widgets, the data, the models, a dashboard
  on the finished session) and reports ``VmRSS`` after each step.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.run --only kernel_memory
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "01_quickstart.ipynb"
#: Targets of issue 27: the quickstart kernel's peak and steady resident memory.
PEAK_TARGET_MB, STEADY_TARGET_MB = 1024, 800

_READ = """
import gc, ctypes, json
def _mem():
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    s = dict(l.split(":", 1) for l in open("/proc/self/status") if l.startswith("Vm"))
    return {k: int(s[k].split()[0]) / 1024 for k in ("VmHWM", "VmRSS")}
"""

_SWEEP_CELL = """
if dash.session.open_store().votes() == []:
    dash.session.label_simulated()
plot = dash.build_correction()
plot.start(); plot.join()
print("sweep", len(plot.results), "λ")
"""

#: One step per line of the floor's breakdown: (what, code run in one process, in order).
FLOOR_STEPS = (
    ("python", "pass"),
    ("import torch", "import torch"),
    ("import defuse_widgets", "import defuse_widgets"),
    ("import defuse_widgets.widgets (ipywidgets, plotly)", "import defuse_widgets.widgets"),
    ("MNIST-5k loaded", "data = defuse_widgets.load_mnist5k()"),
    ("shipped models loaded", "models = defuse_widgets.load_pretrained()"),
    ("dashboard on the finished session", "from defuse_widgets.widgets import DefuseDashboard\n"
     "dash = DefuseDashboard.open(SESSION)\n"
     "dash.explorer is None or dash.explorer.wait(600)"),
)


def quickstart_kernel(folder: Path, timeout: int = 1800) -> dict:
    """Run the quickstart and a sweep in a kernel; its peak, steady memory and wall times."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells += [nbformat.v4.new_code_cell(_READ + "print(json.dumps(_mem()))"),
                 nbformat.v4.new_code_cell(_SWEEP_CELL),
                 nbformat.v4.new_code_cell("print(json.dumps(_mem()))")]
    t = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute()
    wall = time.perf_counter() - t

    def read(cell):
        return json.loads(next(o["text"] for o in cell.outputs if o.get("name") == "stdout"
                               ).strip().splitlines()[-1])
    after_run_all, after_sweep = read(nb.cells[-3]), read(nb.cells[-1])
    return {"run_all": after_run_all, "sweep": after_sweep, "wall_s": wall,
            "session": str(folder / "quickstart-session")}


def floor(session: str) -> list:
    """VmRSS after each of FLOOR_STEPS, in one fresh process."""
    code = [_READ, f"SESSION = {session!r}", "import json", "out = []"]
    for what, step in FLOOR_STEPS:
        code += [step, f"out.append(({what!r}, _mem()['VmRSS']))"]
    code.append("print(json.dumps(out))")
    proc = subprocess.run([sys.executable, "-c", "\n".join(code)], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list:
    """The section's rows: the kernel's peak and steady memory, then the floor, step by step."""
    with tempfile.TemporaryDirectory() as tmp:
        k = quickstart_kernel(Path(tmp))
        steps = floor(k["session"])
    peak, steady = k["sweep"]["VmHWM"], k["sweep"]["VmRSS"]
    rows = [
        {"what": "quickstart kernel: peak resident memory (VmHWM), Run All then a sweep",
         "value": f"{peak:.0f} MB", "target": f"≤ {PEAK_TARGET_MB} MB",
         "met": peak <= PEAK_TARGET_MB, "peak_mb": peak,
         "note": f"after Run All {k['run_all']['VmHWM']:.0f} MB; {k['wall_s']:.0f} s in all"},
        {"what": "quickstart kernel: steady resident memory after the sweep (VmRSS, after gc)",
         "value": f"{steady:.0f} MB", "target": f"≤ {STEADY_TARGET_MB} MB",
         "met": steady <= STEADY_TARGET_MB, "steady_mb": steady,
         "note": f"after Run All {k['run_all']['VmRSS']:.0f} MB"},
    ]
    last = 0.0
    for what, rss in steps:
        rows.append({"what": f"kernel floor: {what}", "value": f"{rss:.0f} MB",
                     "note": f"+{rss - last:.0f} MB"})
        last = rss
    return rows


if __name__ == "__main__":
    for row in run():
        print(f"{row['what']}: {row['value']}  {row.get('target', '')}  {row.get('note', '')}")
