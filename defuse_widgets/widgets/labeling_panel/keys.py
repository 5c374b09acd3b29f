"""A focusable box that turns key presses into Python calls (digits, n, Backspace, arrows).

ipywidgets 8 has no widget that reports key presses, and a ``Text`` box never
sees the arrow keys. This small anywidget (inline ES module, no JS build) does:
while it has the focus, each key in :attr:`KeyCapture.capture` is sent to the
kernel and kept away from the page. The box carries Lumino's
``data-lm-suppress-shortcuts`` attribute, so JupyterLab 4 and Notebook 7 do not
treat ``0 0``, ``d d`` or the arrows typed into it as command-mode shortcuts.
"""
from __future__ import annotations

from typing import Any, Callable

import anywidget
import traitlets

__all__ = ["KeyCapture"]

_ESM = """
function render({ model, el }) {
  const box = document.createElement("div");
  box.className = "defuse-keys";
  box.tabIndex = 0;
  box.setAttribute("role", "application");
  box.setAttribute("data-lm-suppress-shortcuts", "true");
  const show = () => { box.textContent = model.get("prompt"); };
  show();
  model.on("change:prompt", show);
  box.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (!model.get("capture").includes(event.key)) return;
    event.preventDefault();
    event.stopPropagation();
    model.send({ key: event.key });
  });
  el.appendChild(box);
}
export default { render };
"""

_CSS = """
.defuse-keys { padding: 4px 10px; border: 1px dashed #888; border-radius: 4px;
  min-width: 220px; cursor: pointer; color: #555; user-select: none; }
.defuse-keys:focus { outline: 2px solid #1976d2; border-style: solid; color: #000;
  background: #e3f2fd; }
"""


class KeyCapture(anywidget.AnyWidget):
    """Report presses of ``capture`` keys while the box has the keyboard focus.

    Parameters
    ----------
    capture : list of str
        ``KeyboardEvent.key`` names to capture, e.g. ``["0", "n", "Backspace",
        "ArrowLeft"]``. Other keys pass through untouched.
    prompt : str
        Text shown in the box.

    Examples
    --------
    >>> box = KeyCapture(capture=["n"])
    >>> box.on_key(print)
    >>> box.press("n")
    n
    """

    _esm = _ESM
    _css = _CSS
    capture = traitlets.List(traitlets.Unicode()).tag(sync=True)
    prompt = traitlets.Unicode("click here, then press keys").tag(sync=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._callbacks: list[Callable[[str], Any]] = []
        self.on_msg(self._on_message)

    def on_key(self, callback: Callable[[str], Any], remove: bool = False) -> None:
        """Call ``callback(key)`` for each captured key (``remove=True`` to stop)."""
        (self._callbacks.remove if remove else self._callbacks.append)(callback)

    def press(self, key: str) -> None:
        """Act as if ``key`` was pressed in the box (keys not in :attr:`capture` are ignored)."""
        if key in self.capture:
            for callback in list(self._callbacks):
                callback(key)

    def _on_message(self, widget, content, buffers) -> None:
        key = content.get("key") if isinstance(content, dict) else None
        if isinstance(key, str):
            self.press(key)
