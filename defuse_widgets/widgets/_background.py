"""Background work for widgets: one job at a time, with progress, Stop and visible errors.

The worker thread only sets traits (``running``, ``progress``, ``status``); the
widget's observed render method draws them, so the kernel stays responsive.
"""
from __future__ import annotations

import html
import threading
import time
import traceback
from typing import Any, Callable

import traitlets

__all__ = ["BackgroundWork", "plain_button", "red"]


def red(text: Any) -> str:
    """``text`` escaped as HTML, in red."""
    return f"<span style='color:#dc0000'>{html.escape(str(text))}</span>"


def plain_button(description: str, callback: Callable[[], Any], *, width: str = "auto",
                 **kw):
    """An ipywidgets Button whose click calls ``callback()``."""
    import ipywidgets as widgets

    button = widgets.Button(description=description, layout=widgets.Layout(width=width), **kw)
    button.on_click(lambda _: callback())
    return button


class BackgroundWork(traitlets.HasTraits):
    """Mixin that runs a widget's long jobs in a daemon thread.

    A job is a callable returning ``(message, result)``; ``message`` becomes
    ``status`` and a non-None ``result`` goes to the ``on_stage_done`` callbacks.
    An exception becomes ``error_``, a red ``status`` and a traceback in the
    ``_log`` Output the widget provides.

    Attributes
    ----------
    running : traitlet, str
        Name of the running job, "" when idle.
    progress : traitlet, float in [0, 1]
    status : traitlet, str (HTML)
    error_ : Exception or None
        What ended the last job, if it failed.
    """

    running = traitlets.Unicode("")
    progress = traitlets.Float(0.0)
    status = traitlets.Unicode("")

    def _init_background(self) -> None:
        self.error_: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._stop_event, self._lock = threading.Event(), threading.RLock()
        self._done_callbacks: list = []
        self._last_report = 0.0

    def _start(self, name: str, job: Callable[[], tuple], wait: bool = False):
        """Run ``job`` in a new thread; with ``wait``, block and re-raise its error."""
        with self._lock:
            if self.running:
                raise RuntimeError(f"{self.running} is still running; wait for it or press Stop.")
            self._stop_event.clear()
            self.error_, self._last_report = None, 0.0
            self.progress, self.running = 0.0, name
            self._thread = threading.Thread(target=self._work, args=(name, job),
                                            name=f"defuse-{name}", daemon=True)
            self._thread.start()
        return self.wait() if wait else self

    def _work(self, name: str, job: Callable[[], tuple]) -> None:
        t0 = time.monotonic()
        try:
            message, result = job()
            self.status = f"{html.escape(message)} ({time.monotonic() - t0:.0f} s)."
            if result is not None:
                self._notify(name, result)
        except Exception as exc:  # shown in the widget, re-raised by wait()
            self.error_ = exc
            self._log.append_stderr(traceback.format_exc())
            self.status = red(f"{name.capitalize()} failed: {type(exc).__name__}: {exc}")
        finally:
            self.progress = 0.0 if self.error_ else 1.0
            self.running = ""

    def _report(self, done: int, total: int, text: str) -> bool:
        """Progress from the worker, at most about 4 updates a second; True asks to stop."""
        now = time.monotonic()
        if done >= total or now - self._last_report > 0.25:
            self._last_report = now
            self.progress = done / max(total, 1)
            self.status = html.escape(text)
        return self._stop_event.is_set()

    def _guarded(self, action: Callable) -> None:
        """Run a button's action; show its error rather than lose it in the kernel log."""
        try:
            action()
        except Exception as exc:
            self.status = red(f"{type(exc).__name__}: {exc}")

    def _confirmed(self, key: str, warning: Callable[[], str | None], action: Callable) -> None:
        """Run ``action`` (guarded) unless ``warning()`` has something to say.

        Then the first click shows the warning and only a second click on the
        same button runs it: a button that archives people's votes asks first.
        """
        def act():
            text = warning()
            if text and getattr(self, "_confirming", None) != key:
                self._confirming, self.status = key, red(text)
                return
            self._confirming = None
            action()
        self._guarded(act)

    def stop(self) -> None:
        """Ask the running job to stop (thread-safe)."""
        self._stop_event.set()
        if self.running:
            self.status = f"Stopping {self.running}…"

    def wait(self, timeout: float | None = None):
        """Block until the running job ends; re-raise its error if it failed."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self.error_ is not None:
            raise self.error_
        return self

    def on_stage_done(self, callback: Callable[[str, Any], None]) -> None:
        """Call ``callback(name, result)`` after each job that produced a result."""
        self._done_callbacks.append(callback)

    def _notify(self, name: str, result: Any) -> None:
        for callback in self._done_callbacks:
            callback(name, result)
