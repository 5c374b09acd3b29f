"""Errors of widget callbacks, shown in the widget instead of lost in the kernel log.

An exception raised by a button click, a key press, a plotly click or a slider
move ends up in the kernel's log, which JupyterLab hides and Voila does not
show at all. Every widget owns an :class:`ErrorBox`; its UI entry points run
through :meth:`ErrorBox.guard`, which shows the error (message plus a
collapsible traceback) and leaves the widget usable. Calls from Python still
raise as usual.
"""
from __future__ import annotations

import functools
import html
import traceback
from typing import Any, Callable

import ipywidgets as W

__all__ = ["ErrorBox"]


class ErrorBox(W.HTML):
    """A red box showing the last callback error; empty while nothing failed.

    Attributes
    ----------
    error_ : Exception or None
        The last error shown (kept after :meth:`clear`, for tests and users).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.error_: BaseException | None = None
        self.add_class("defuse-error")

    def show(self, exc: BaseException, action: str) -> None:
        """Show ``exc`` as the failure of ``action`` (e.g. ``"vote"``)."""
        self.error_ = exc
        trace = html.escape("".join(traceback.format_exception(exc)))
        self.value = (
            "<div style='border:1px solid #dc0000;background:#fff0f0;padding:4px 8px;"
            "border-radius:4px'><b style='color:#dc0000'>"
            f"{html.escape(action)} failed: {html.escape(type(exc).__name__)}</b>: "
            f"{html.escape(str(exc))}<details><summary>traceback</summary>"
            f"<pre style='font-size:80%;white-space:pre-wrap'>{trace}</pre></details>"
            "<i>The widget is still usable; fix the cause and try again.</i></div>")

    def clear(self) -> None:
        """Hide the box (the next successful action calls this)."""
        self.value = ""

    def guard(self, action: str, fn: Callable[..., Any], *,
              clear: bool = True) -> Callable[..., Any]:
        """Wrap a UI callback: on error show it and return None; on success clear the box.

        ``clear=False`` leaves clearing to ``fn``: plotly calls every trace's
        handler for one click, and the no-op calls must not hide the real error.
        """
        @functools.wraps(fn)
        def run(*args, **kwargs):
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:   # noqa: BLE001 - shown to the user, never swallowed
                self.show(exc, action)
                return None
            if clear and self.value:
                self.clear()
            return result
        return run
