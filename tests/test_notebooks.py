"""Execute the shipped notebooks top to bottom with a real kernel.

Besides running without errors, every notebook must read well: no output
shows ``nan`` or a raw ``<... object at 0x...>`` repr, and a cell that runs
longer than 10 s shows a sign of life (an output or a widget update) within
its first 10 s (15 s allowed for a busy CI machine) and never stays silent for a minute.
"""
import re
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = [pytest.mark.notebook, pytest.mark.slow]

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("0*.ipynb"))
WIDGET = "application/vnd.jupyter.widget-view+json"
FIRST = 15   # s: the first sign of life (10 s on an idle machine, with room for a busy one)
RAW = re.compile(r"\bnan\b|object at 0x[0-9a-f]+", re.IGNORECASE)


class TimedClient(NotebookClient):
    """Records, per cell, when it started and when each output or widget message arrived."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events: dict = {}
        self.closed: set = set()   # comm ids of widgets the kernel closed
        self.on_cell_execute = lambda cell, cell_index: self.events.setdefault(
            cell_index, []).append(("start", time.monotonic()))
        self.on_cell_executed = lambda cell, cell_index, execute_reply: self.events[
            cell_index].append(("end", time.monotonic()))

    def output(self, outs, msg, display_id, cell_index):
        kind = ("widget shown" if WIDGET in msg.get("content", {}).get("data", {})
                else "output")
        self.events.setdefault(cell_index, []).append((kind, time.monotonic()))
        return super().output(outs, msg, display_id, cell_index)

    def handle_comm_msg(self, outs, msg, cell_index):
        if msg["msg_type"] == "comm_close":
            self.closed.add(msg["content"]["comm_id"])
        # a widget update is a sign of life only once a widget is on the page (the
        # quickstart's dashboard, shown in one cell, reports the next cell's progress)
        if any(kind == "widget shown" for events in self.events.values() for kind, _ in events):
            self.events.setdefault(cell_index, []).append(("widget", time.monotonic()))
        return super().handle_comm_msg(outs, msg, cell_index)


def _texts(nb):
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            text = out.get("text") or out.get("data", {}).get("text/plain", "")
            yield i, "".join(text) if isinstance(text, list) else text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    client = TimedClient(nb, timeout=600, kernel_name="python3",
                         resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert not errors
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    raw = [(i, m.group(0), text[max(0, m.start() - 60):m.end() + 20])
           for i, text in _texts(nb) for m in RAW.finditer(text)]
    assert not raw, f"cells show nan or a raw repr: {raw}"
    shown = [(i, o["data"][WIDGET]["model_id"]) for i, c in enumerate(nb.cells)
             if c.cell_type == "code" for o in c.get("outputs", []) if WIDGET in o.get("data", {})]
    dead = [(i, m) for i, m in shown if m in client.closed]
    assert not dead, f"cells show a widget the kernel closed (an empty output): {dead}"
    for i, events in client.events.items():
        times = [t for _, t in events]
        if times[-1] - times[0] <= 10:
            continue
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert gaps[0] <= FIRST, (f"cell {i} ran {times[-1] - times[0]:.0f} s, "
                                  f"silent for {gaps[0]:.0f} s")
        assert max(gaps) <= 60, f"cell {i} went silent for {max(gaps):.0f} s"
