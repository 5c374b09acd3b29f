"""The dashboard's controls and layout, built once; :class:`DefuseDashboard` renders them.

Every message has a tab: the status line under the progress bar shows the
message of the tab on display, so the correction's "Selected λ=…" never shows
while you are on the identification tab.
"""
from __future__ import annotations

import contextlib
import html

import ipywidgets as W
import traitlets

from defuse_widgets.widgets._dashboard_tabs import rerun_warning

__all__ = ["STAGES", "TITLES", "StageLine", "build_view", "busy"]

#: The dashboard's tabs: the paper's stages in pipeline order, then label review (optional;
#: its answers feed the next sweep's ``review`` arm).
STAGES = ("identification", "distillation", "labeling", "correction", "label_review")
TITLES = ("1 · Identification", "2 · Distillation", "3 · Labeling", "4 · Correction",
          "5 · Label review")


class busy:
    """Show that a button's synchronous work runs: label "…ing", disabled, CSS ``defuse-busy``.

    ipykernel sends the change before the work starts, so the browser shows it
    while the kernel is busy; everything is restored afterwards, errors included.
    """

    def __init__(self, button: W.Button, text: str):
        self.button, self.text = button, text

    def __enter__(self):
        b = self.button
        self._saved = (b.description, b.icon, b.disabled)
        b.description, b.icon, b.disabled = self.text, "spinner", True
        b.add_class("defuse-busy")
        return self

    def __exit__(self, *exc):
        b = self.button
        b.description, b.icon, b.disabled = self._saved
        b.remove_class("defuse-busy")
        return False


class StageLine(W.HBox):
    """A progress bar, Stop and the messages of one stage, for a notebook cell that waits.

    It follows the stage that runs next after it is made (or the one running
    now), and only that stage: a cell keeps showing its own stage's last
    message, not the correction's that a later cell starts.
    """

    def __init__(self, stop):
        self.stage = None
        self._bar = W.IntProgress(min=0, max=100, layout=W.Layout(width="200px",
                                                                   flex="0 0 auto"))
        self._stop = W.Button(description="Stop", icon="stop", button_style="warning",
                              layout=W.Layout(width="auto", flex="0 0 auto"))
        self._stop.on_click(lambda _: stop())
        self._text = W.HTML(_dom_classes=["defuse-status"])
        super().__init__([self._bar, self._stop, self._text],
                         layout=W.Layout(align_items="center"))

    def show(self, running: str, progress: float, said: dict) -> None:
        """Draw the line from the dashboard's ``running`` stage, ``progress`` and messages."""
        if self.stage is None and running:
            self.stage = running
        mine = bool(running) and running == self.stage
        self._bar.value = round(100 * progress) if mine else 0
        self._bar.layout.visibility = "visible" if mine else "hidden"
        self._stop.disabled = not mine
        self._text.value = said.get(self.stage, "") if self.stage else ""


def build_view(dash) -> None:
    """Create the dashboard's controls, tabs and status line on ``dash`` (a DefuseDashboard)."""
    def control(cls, name, desc, width="150px", **kw):
        c = cls(description=desc, layout=W.Layout(width=width),
                style={"description_width": "initial"}, **kw)
        traitlets.link((dash, name), (c, "value"))
        return c

    def button(desc, action, stage=None, busy_text=None, **kw):   # a rerun that archives
        b = W.Button(description=desc, layout=W.Layout(width="auto"), **kw)   # asks first

        def run():
            with busy(b, busy_text) if busy_text else contextlib.nullcontext():
                action()
        b.on_click(lambda _: dash._confirmed(stage, lambda: stage and rerun_warning(
            dash.session, stage), run))
        return b

    dash._run_id = button("Run identification", dash.run_identification, "identification",
                          icon="play", button_style="success")
    dash._run_distill = button("Run distillation", dash.run_distillation, "distillation",
                               icon="play", button_style="success")
    dash._build_button = button("Build failure data", lambda: dash.build_correction(),
                                busy_text="Building failure data…", icon="wrench")
    dash._report_button = button("HTML report", lambda: dash.write_report(), icon="file",
                                 busy_text="Writing report…",
                                 tooltip="write report.html: one file to share")
    dash._stop = button("Stop", dash.stop, icon="stop", button_style="warning")
    dash._stop.layout.flex = "0 0 auto"   # never squeezed by a long status line
    dash._bar = W.IntProgress(min=0, max=100, layout=W.Layout(width="200px", flex="0 0 auto"))
    dash._status, dash._decisions, dash._report_link = W.HTML(), W.HTML(), W.HTML()
    dash._log = W.Output(layout=W.Layout(max_height="160px", overflow="auto"))
    dash._boxes = [W.VBox() for _ in STAGES]
    dash._tabs = W.Tab(children=[
        W.VBox([W.HBox([control(W.IntText, "Q", "Q"), control(W.FloatText, "a", "a"),
                        control(W.FloatText, "b", "b"),
                        control(W.Checkbox, "centered", "centered noise", "170px"),
                        dash._run_id]), dash._boxes[0]]),
        W.VBox([W.HBox([control(W.IntText, "n_components", "K"),
                        control(W.FloatText, "eps", "ε", step=0.005),
                        dash._run_distill]), dash._boxes[1]]),
        dash._boxes[2],
        W.VBox([W.HBox([dash._build_button,
                        control(W.Checkbox, "baseline", "baseline sweep", "170px"),
                        dash._report_button, dash._report_link]),
                dash._decisions, dash._boxes[3]]), dash._boxes[4]], titles=TITLES,
        selected_index=0)
    traitlets.link((dash, "stage"), (dash._tabs, "selected_index"),
                   transform=(STAGES.index, lambda i: STAGES[i or 0]))
    for tab, stage in zip(dash._tabs.children, STAGES):   # CSS hooks for browser tests
        tab.add_class(f"defuse-{stage}")
    dash._status.add_class("defuse-status")
    dash.add_class("defuse-dashboard")
    dash.children = [
        W.HTML(f"<b>Defuse</b> · session <code>{html.escape(str(dash._path))}</code>"),
        W.HBox([dash._bar, dash._stop, dash._status], layout=W.Layout(align_items="center")),
        dash._tabs, dash._log]
