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

from defuse_widgets.widgets.dashboard.tabs import rerun_warning

__all__ = ["STAGES", "TITLES", "DashboardView", "StageLine", "busy"]

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


class DashboardView:
    """The dashboard's controls, tabs and status line; the dashboard fills and renders them.

    Parameters
    ----------
    dash : DefuseDashboard
        Its settings traits are linked to the setting boxes, and the buttons call its
        public actions.
    confirm : callable(key, warning, action)
        Runs ``action`` unless ``warning()`` has something to say (then a second click
        does); buttons that archive results ask through it.
    path : str or path-like
        The session folder, shown in the title.

    Attributes
    ----------
    identify_button, distill_button, build_button, report_button, stop_button : Button
    bar : IntProgress
        The running stage's progress.
    status, decisions, report_link : HTML
        The status line, tab 4's decisions and the written report's link.
    log : Output
        Tracebacks of background work.
    boxes : list of VBox
        One box per stage in :data:`STAGES`, for that tab's widgets.
    tabs : Tab
    children : list of Widget
        What the dashboard shows, top to bottom.
    """

    def __init__(self, dash, confirm, path):
        self._dash, self._confirm = dash, confirm
        self.identify_button = self._button(
            "Run identification", dash.run_identification, "identification", icon="play",
            button_style="success")
        self.distill_button = self._button(
            "Run distillation", dash.run_distillation, "distillation", icon="play",
            button_style="success")
        self.build_button = self._button(
            "Build failure data", lambda: dash.build_correction(),
            busy_text="Building failure data…", icon="wrench")
        self.report_button = self._button(
            "HTML report", lambda: dash.write_report(), icon="file", busy_text="Writing report…",
            tooltip="write report.html: one file to share")
        self.stop_button = self._button("Stop", dash.stop, icon="stop", button_style="warning")
        self.stop_button.layout.flex = "0 0 auto"   # never squeezed by a long status line
        self.bar = W.IntProgress(min=0, max=100, layout=W.Layout(width="200px",
                                                                 flex="0 0 auto"))
        self.status = W.HTML(_dom_classes=["defuse-status"])
        self.decisions, self.report_link = W.HTML(), W.HTML()
        self.log = W.Output(layout=W.Layout(max_height="160px", overflow="auto"))
        self.boxes = [W.VBox() for _ in STAGES]
        self.tabs = self._tabs()
        self.children = [
            W.HTML(f"<b>Defuse</b> · session <code>{html.escape(str(path))}</code>"),
            W.HBox([self.bar, self.stop_button, self.status],
                   layout=W.Layout(align_items="center")),
            self.tabs, self.log]

    @property
    def buttons(self) -> tuple:
        """Every stage button and Stop."""
        return (self.identify_button, self.distill_button, self.build_button,
                self.report_button, self.stop_button)

    def _control(self, cls, name, desc, width="150px", **kw) -> W.Widget:
        """A setting box linked both ways to the dashboard's trait ``name``."""
        c = cls(description=desc, layout=W.Layout(width=width),
                style={"description_width": "initial"}, **kw)
        traitlets.link((self._dash, name), (c, "value"))
        return c

    def _button(self, desc, action, stage=None, busy_text=None, **kw) -> W.Button:
        """A button running ``action``; one that reruns ``stage`` asks first when that
        archives results, and one with ``busy_text`` shows it while it works.
        """
        b = W.Button(description=desc, layout=W.Layout(width="auto"), **kw)

        def run():
            with busy(b, busy_text) if busy_text else contextlib.nullcontext():
                action()
        b.on_click(lambda _: self._confirm(stage, lambda: stage and rerun_warning(
            self._dash.session, stage), run))
        return b

    def _tabs(self) -> W.Tab:
        c = self._control
        tabs = W.Tab(children=[
            W.VBox([W.HBox([c(W.IntText, "Q", "Q"), c(W.FloatText, "a", "a"),
                            c(W.FloatText, "b", "b"),
                            c(W.Checkbox, "centered", "centered noise", "170px"),
                            self.identify_button]), self.boxes[0]]),
            W.VBox([W.HBox([c(W.IntText, "n_components", "K"),
                            c(W.FloatText, "eps", "ε", step=0.005),
                            self.distill_button]), self.boxes[1]]),
            self.boxes[2],
            W.VBox([W.HBox([self.build_button,
                            c(W.Checkbox, "baseline", "baseline sweep", "170px"),
                            self.report_button, self.report_link]),
                    self.decisions, self.boxes[3]]), self.boxes[4]], titles=TITLES,
            selected_index=0)
        traitlets.link((self._dash, "stage"), (tabs, "selected_index"),
                       transform=(STAGES.index, lambda i: STAGES[i or 0]))
        for tab, stage in zip(tabs.children, STAGES):   # CSS hooks for browser tests
            tab.add_class(f"defuse-{stage}")
        return tabs
