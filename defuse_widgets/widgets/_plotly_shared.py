"""Send plotly.js to the browser once per kernel, not once per figure.

plotly's ``FigureWidget`` is an anywidget whose ES module is the whole
plotly.js widget bundle (about 5 MB). Each FigureWidget sends it again through
the kernel connection, so a resumed dashboard with three figures sent about
15 MB, which is slow on Binder. Here one hidden :class:`PlotlyBundle` widget
per kernel carries the bundle, and every :class:`SharedFigureWidget` sends a
few hundred bytes of ES module that waits for the page to have imported it.

The page keeps the imported bundle in ``globalThis.__defusePlotly``, a promise
that the first carrier to load resolves; a figure whose model arrives before
the carrier's simply waits. The carrier is recreated if it was closed (for
example by ``Widget.close_all()``), so a new page always gets the bundle.
"""
from __future__ import annotations

import copy
import json
import threading
from pathlib import Path

import anywidget
import plotly
import plotly.graph_objects as go
import traitlets

__all__ = ["PlotlyBundle", "SharedFigureWidget", "bundle_carrier", "state_bytes"]

_BUNDLE_PATH = Path(plotly.__file__).parent / "package_data" / "widgetbundle.js"

#: The page-wide promise of the imported plotly bundle, created by whichever
#: module runs first (the carrier's or a figure's).
_DEFERRED = """
const deferred = (globalThis.__defusePlotly ??= (() => {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve, loaded: false };
})());
"""

_CARRIER_ESM = _DEFERRED + """
export default {
  async initialize({ model }) {
    if (deferred.loaded) return;
    deferred.loaded = true;
    const url = URL.createObjectURL(
      new Blob([model.get("bundle")], { type: "text/javascript" }));
    deferred.resolve(await import(/* webpackIgnore: true */ url));
  },
  render({ el }) { el.style.display = "none"; },
};
"""

_FIGURE_ESM = _DEFERRED + """
export default async () => {
  const mod = await deferred.promise;
  return typeof mod.default === "function" ? await mod.default() : mod.default;
};
"""


class PlotlyBundle(anywidget.AnyWidget):
    """A hidden widget whose only state is plotly's widget bundle (about 5 MB).

    Its front-end module imports the bundle once per page; never displayed.
    """

    _esm = _CARRIER_ESM
    bundle = traitlets.Unicode("").tag(sync=True)
    version = traitlets.Unicode(plotly.__version__).tag(sync=True)


_CARRIER: dict = {}
_LOCK = threading.Lock()


def bundle_carrier() -> PlotlyBundle:
    """The kernel's :class:`PlotlyBundle`, created (or re-created after a close) on demand."""
    with _LOCK:
        carrier = _CARRIER.get("widget")
        if carrier is None or carrier.comm is None:
            carrier = PlotlyBundle(bundle=_BUNDLE_PATH.read_text(encoding="utf-8"))
            _CARRIER["widget"] = carrier
        return carrier


class SharedFigureWidget(go.FigureWidget):
    """A plotly ``FigureWidget`` that takes plotly.js from the kernel's :class:`PlotlyBundle`.

    Accepts exactly what ``go.FigureWidget`` accepts; only the ES module sent
    to the browser differs (a small loader instead of the bundle).
    """

    _esm = _FIGURE_ESM

    def __init__(self, *args, **kwargs):
        bundle_carrier()
        super().__init__(*args, **kwargs)

    @traitlets.observe("_js2py_pointsCallback")
    def _handler_js2py_pointsCallback(self, change):
        """The plotly handler, without echoing a box or lasso selection back to the page.

        plotly records the selection in each trace's ``selectedpoints`` and sends
        it back as one restyle message per trace, each of which plotly.js answers
        with a full redraw (about 0.2 s for a 3,500-point map on a 2-core CPU):
        two seconds before the page got the selection's tiles. The page drew the
        selection itself, so the record is kept here and not sent.
        """
        event = (change["new"] or {}).get("event_type")
        self._quiet_selection = event in ("plotly_selected", "plotly_deselect")
        try:
            super()._handler_js2py_pointsCallback(change)
        finally:
            self._quiet_selection = False

    def _send_restyle_msg(self, restyle_data, trace_indexes=None, source_view_id=None):
        if getattr(self, "_quiet_selection", False) and set(restyle_data) == {"selectedpoints"}:
            return
        super()._send_restyle_msg(restyle_data, trace_indexes=trace_indexes,
                                  source_view_id=source_view_id)

    def get_state(self, key=None, drop_defaults=False):
        """The widget state, with the figure's traces and layout as they are now.

        plotly sends each change after creation as a one-off message and keeps
        the synced ``_widget_data`` / ``_widget_layout`` of the moment it was
        created. A page that asks for the state later (Voila renders after the
        notebook ran; a reloaded JupyterLab tab) would draw the empty figure, so
        the state it gets is taken from the figure itself.
        """
        state = super().get_state(key=key, drop_defaults=drop_defaults)
        if not hasattr(self, "_layout_obj"):   # still in plotly's __init__
            return state
        for name, value in (("_widget_data", self._data),
                            ("_widget_layout", self._layout_obj._props)):
            if name in state:
                to_json = self.trait_metadata(name, "to_json", self._trait_to_json)
                state[name] = to_json(copy.deepcopy(value), self)
        return state


def state_bytes(items=None) -> int:
    """Bytes of widget state a front end receives when it opens these widgets.

    Parameters
    ----------
    items : iterable of ipywidgets.Widget, optional
        Defaults to every live widget of the kernel.

    Returns
    -------
    int
        JSON size of every widget's synced state plus its binary buffers.
    """
    if items is None:
        from ipywidgets.widgets.widget import _instances  # Widget.widgets is deprecated
        items = list(_instances.values())
    items = list(items)
    total = 0
    for w in items:
        state = w.get_state()
        for key, value in list(state.items()):
            if isinstance(value, (bytes, bytearray, memoryview)):
                total += len(value)
                state[key] = None
        total += len(json.dumps(state, default=lambda o: len(o) * "x"
                                if isinstance(o, (bytes, bytearray, memoryview)) else str(o)))
    return total
