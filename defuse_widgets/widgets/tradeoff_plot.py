"""The live λ tradeoff plot: test vs misclassification-region accuracy (paper Fig. 5).

:class:`TradeoffPlot` runs a :class:`~defuse_widgets.stages.correction.Corrector` sweep
in a background thread and draws one point per λ as each λ finishes, with the
classifier before fine-tuning and the baseline (fine-tuning on individually
labelled unrestricted adversarial examples, paper §4.4) for reference. The
plot is just a :class:`~defuse_widgets.callbacks.Callback` of the sweep; the
kernel stays free while it runs, and Stop takes effect within one batch.
"""
from __future__ import annotations

import math
import time
from typing import Sequence

import ipywidgets as widgets
import plotly.graph_objects as go
import traitlets
from torch import nn

from defuse_widgets.callbacks import Callback
from defuse_widgets.stages.correction import PAPER_LAMS, Corrector
from defuse_widgets.stages.correction_sweep import planned_lam_epochs
from defuse_widgets.stages.correction_arms import run_arms
from defuse_widgets.widgets._background import BackgroundWork
from defuse_widgets.widgets._errors import ErrorBox

__all__ = ["TradeoffPlot"]


def _by_lam(records: list) -> list:
    return sorted(records, key=lambda r: r.get("lam", 0.0))


class _LiveProgress(Callback):
    """Feeds one sweep's progress into a :class:`TradeoffPlot`'s traits (worker thread)."""

    def __init__(self, plot: "TradeoffPlot", sweep: str, *, min_interval: float = 0.25):
        self.plot, self.sweep, self.min_interval = plot, sweep, min_interval
        self._last, self._done = 0.0, 0

    def _throttled(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.min_interval:
            return False
        self._last = now
        return True

    def on_train_begin(self, corrector, **kw):
        if self.sweep == "defuse":
            self.plot.before = dict(corrector.before_)

    def on_lam_begin(self, corrector, *, lam, **kw):
        self.plot.status = f"{self.sweep}: λ={lam:g} epoch 1/{corrector.epochs}"

    def on_batch_end(self, corrector, *, lam, epoch, batch, n_batches, **kw):
        if self._throttled():
            self.plot.status = (f"{self.sweep}: λ={lam:g} epoch {epoch}/{corrector.epochs}, "
                                f"batch {batch}/{n_batches}")

    def on_epoch_end(self, corrector, *, record, **kw):
        self._done += 1
        if self._throttled():
            self.plot.epochs_done = self.plot._epoch_offset + self._done
            self.plot.status = (f"{self.sweep}: λ={record['lam']:g} epoch "
                                f"{record['epoch']}/{corrector.epochs}")

    def on_lam_end(self, corrector, *, result, **kw):
        self._last = time.monotonic()
        key = "results" if self.sweep == "defuse" else "baseline_results"
        self.plot.epochs_done = self.plot._epoch_offset + self._done
        setattr(self.plot, key, [*getattr(self.plot, key), dict(result)])


class _EpochOffset(Callback):
    """Moves the epoch counter past a finished arm, so the bar covers every arm."""

    def __init__(self, plot: "TradeoffPlot"):
        self.plot = plot

    def on_train_end(self, corrector, **kw):
        self.plot._epoch_offset += planned_lam_epochs(len(corrector.lams), int(corrector.epochs),
                                                      corrector.schedule)


class TradeoffPlot(BackgroundWork, widgets.VBox):
    """Sweep λ in a background thread and plot the tradeoff of paper Figure 5 live.

    Parameters
    ----------
    classifier : nn.Module
        The classifier to correct (not modified; every λ fine-tunes a copy).
    X : Tensor of shape (n, C, H, W)
        Training data D.
    y : Tensor of shape (n,)
    X_f : Tensor of shape (n_f, C, H, W)
        Failure data D_f.
    y_f : Tensor of shape (n_f,)
    eval_sets : dict of str -> (X, y)
        Evaluated after every epoch; must hold the ``x`` and ``y`` sets and what
        the selection rule needs (``validation``, ``region_validation``).
    lams : sequence of float, default=PAPER_LAMS
    epochs : int, default=3
    X_adv : Tensor of shape (n_adv, C, H, W), optional
        Labelled unrestricted adversarial examples: swept as the baseline, with
        the same λ values, after Defuse.
    y_adv : Tensor of shape (n_adv,), optional
    baseline_results : list of dict, optional
        Precomputed baseline records (``Corrector.results_``), drawn as they are.
    x, y_key : str, default="test", "region_test"
        Eval sets on the horizontal and vertical axes.
    callbacks : sequence of Callback, optional
        Passed on to each Corrector, after the plot's own.
    runner : callable, optional
        Runs the arms instead of :func:`~defuse_widgets.stages.correction_arms.run_arms`:
        ``runner(callbacks=, on_start=, stop_event=) -> dict of Corrector``. The
        dashboard passes its session's ``correct``, which also saves the results.
    **corrector_params
        Passed on to :class:`Corrector`: ``lr``, ``batch_size``, ``selection``,
        ``device`` (CUDA when available by default), ``seed``, ``checkpoint_dir``.

    Attributes
    ----------
    corrector_ : Corrector
        The Defuse sweep of the latest run (``cancelled_`` after a Stop).
    baseline_corrector_ : Corrector or None
    error_ : Exception or None
        What ended the latest run, if it failed; also shown in the widget.

    Examples
    --------
    >>> plot = TradeoffPlot(clf, X, y, X_f, y_f, eval_sets=evals, lams=[0.1, 1, 10])  # doctest: +SKIP
    >>> plot.start(); plot  # doctest: +SKIP
    """

    status = traitlets.Unicode("Press Start to run the λ sweep.")
    results = traitlets.List()
    baseline_results = traitlets.List()
    before = traitlets.Dict()
    best = traitlets.Dict()
    epochs_done = traitlets.Int(0)

    def __init__(self, classifier: nn.Module, X, y, X_f, y_f, *, eval_sets: dict,
                 lams: Sequence[float] = PAPER_LAMS, epochs: int = 3, X_adv=None, y_adv=None,
                 baseline_results: list | None = None, x: str = "test",
                 y_key: str = "region_test", callbacks: Sequence[Callback] = (),
                 runner=None, **corrector_params):
        self._init_background()
        super().__init__()
        self.classifier, self.X, self.y, self.X_f, self.y_f = classifier, X, y, X_f, y_f
        self.eval_sets, self.lams, self.epochs = eval_sets, list(lams), epochs
        self.X_adv, self.y_adv, self.x, self.y_key = X_adv, y_adv, x, y_key
        self.callbacks, self.corrector_params = list(callbacks), corrector_params
        self.runner = runner
        self._precomputed = [dict(r) for r in baseline_results or []]
        self.corrector_ = self.baseline_corrector_ = None
        self._current: Corrector | None = None
        self._epoch_offset, self._drawn = 0, None
        self._build()
        self.baseline_results = [dict(r) for r in self._precomputed]
        self._render()

    # -- view -----------------------------------------------------------------------
    def _build(self) -> None:
        hover = (f"λ=%{{customdata:g}}<br>{self.x}=%{{x:.3f}}<br>{self.y_key}=%{{y:.3f}}"
                 "<extra>%{fullData.name}</extra>")
        self._fig = go.FigureWidget(layout=dict(
            title="Test vs misclassification-region accuracy over λ (paper Fig. 5)",
            xaxis_title=f"{self.x} accuracy", yaxis_title=f"{self.y_key} accuracy",
            height=420, width=640, margin=dict(l=60, r=20, t=50, b=50)))
        self._fig.add_scatter(name="Defuse", mode="lines+markers", hovertemplate=hover,
                              marker=dict(size=9, color="#1f77b4"))
        self._fig.add_scatter(name="Baseline (adversarial examples)", mode="lines+markers",
                              hovertemplate=hover, marker=dict(size=8, color="#ff7f0e"),
                              line=dict(dash="dot"))
        self._fig.add_scatter(name="Before fine-tuning", mode="markers",
                              hovertemplate=hover.replace("λ=%{customdata:g}<br>", ""),
                              marker=dict(size=12, symbol="x", color="#555"))
        self._fig.add_scatter(name="Selected λ", mode="markers", hovertemplate=hover,
                              marker=dict(size=20, symbol="star", color="gold",
                                          line=dict(width=1, color="black")))
        self._start_button = widgets.Button(description="Start", icon="play",
                                            button_style="success")
        self.error = ErrorBox()
        self._start_button.on_click(self.error.guard("start", lambda _: self.start()))
        self._stop_button = widgets.Button(description="Stop", icon="stop",
                                           button_style="danger")
        self._stop_button.on_click(self.error.guard("stop", lambda _: self.stop()))
        self._bar = widgets.IntProgress(min=0, description="Epochs")
        self._label = widgets.HTML()
        self._log = widgets.Output(layout=widgets.Layout(max_height="160px", overflow="auto"))
        self.children = [widgets.HBox([self._start_button, self._stop_button, self._bar,
                                       self._label]), self.error, self._fig, self._log]

    def _total_epochs(self) -> int:
        sweeps = 1 + (self.X_adv is not None)
        schedule = self.corrector_params.get("schedule", "full")
        return max(1, planned_lam_epochs(len(self.lams), int(self.epochs), schedule) * sweeps)

    @traitlets.observe("running", "status", "results", "baseline_results", "before", "best",
                       "epochs_done")
    def _render(self, change=None) -> None:
        """Rebuild the view from the traits; the figure only when its data changed."""
        if not hasattr(self, "_fig"):
            return
        with self._lock:
            self._start_button.disabled = bool(self.running)
            self._stop_button.disabled = not self.running
            self._bar.max = self._total_epochs()
            self._bar.value = min(self.epochs_done, self._bar.max)
            self._label.value = self.status
            drawn = (self.results, self.baseline_results, self.before, self.best)
            if drawn == self._drawn:
                return
            self._drawn = drawn
            points = [_by_lam(self.results), _by_lam(self.baseline_results),
                      [self.before] if self.before else [], [self.best] if self.best else []]
            with self._fig.batch_update():
                for trace, rs in zip(self._fig.data, points):
                    trace.x = [r.get(self.x, None) for r in rs]
                    trace.y = [r.get(self.y_key, None) for r in rs]
                    trace.customdata = [r.get("lam", None) for r in rs]

    # -- control --------------------------------------------------------------------
    def start(self) -> None:
        """Start the sweep in a background thread and return at once (no-op while running)."""
        with self._lock:
            if self.running:
                return
            self.corrector_ = self.baseline_corrector_ = None
            self._epoch_offset = 0
            with self.hold_trait_notifications():
                self.results, self.before, self.best, self.epochs_done = [], {}, {}, 0
                self.baseline_results = ([] if self.X_adv is not None
                                         else [dict(r) for r in self._precomputed])
                self.status = "Starting…"
            self._start("correction", self._sweep)

    def stop(self) -> None:
        """Ask the sweep to stop; it ends within one batch (thread-safe)."""
        super().stop()
        with self._lock:
            current = self._current
        if current is not None:
            current.stop()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the sweep's thread; return True when it has finished."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def _sweep(self) -> tuple:
        """The job (see BackgroundWork): the arms' sweeps; returns the summary as status."""
        try:
            missing = [k for k in (self.x, self.y_key) if k not in self.eval_sets]
            if missing:
                raise ValueError(f"eval_sets must contain the plotted sets {self.x!r} and "
                                 f"{self.y_key!r}; missing {missing}.")

            def on_start(name, corrector):
                with self._lock:
                    self._current = corrector
                setattr(self, "corrector_" if name == "defuse" else "baseline_corrector_",
                        corrector)

            def callbacks(name):
                return [_LiveProgress(self, name), _EpochOffset(self), *self.callbacks]

            if self.runner is not None:
                sweeps = self.runner(callbacks=callbacks, on_start=on_start,
                                     stop_event=self._stop_event)
            else:
                arms = {"defuse": (self.X_f, self.y_f)}
                if self.X_adv is not None:
                    arms["baseline"] = (self.X_adv, self.y_adv)
                sweeps = run_arms(self.classifier, self.X, self.y, arms,
                                  eval_sets=self.eval_sets, lams=self.lams, epochs=self.epochs,
                                  callbacks=callbacks, on_start=on_start,
                                  stop_event=self._stop_event, **self.corrector_params)
            defuse = sweeps.get("defuse")
            if defuse is not None and defuse.best_ is not None:
                self.best = dict(defuse.best_)
            return self._summary(), None
        finally:
            with self._lock:
                self._current = None

    def _summary(self) -> str:
        stopped = self._stop_event.is_set()
        head = f"Stopped after {len(self.results)} λ." if stopped else "Done."
        if not self.best:
            return head
        return (f"{head} Selected λ={self.best['lam']:g}: {self.x} "
                f"{self.best.get(self.x, math.nan):.3f}, {self.y_key} "
                f"{self.best.get(self.y_key, math.nan):.3f} (star).")

    def close(self) -> None:
        """Stop a running sweep and close the widget."""
        self.stop()
        super().close()
