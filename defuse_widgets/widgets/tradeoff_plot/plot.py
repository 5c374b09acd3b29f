"""The live λ tradeoff plot: test vs misclassification-region accuracy (paper Fig. 5).

:class:`TradeoffPlot` runs a :class:`~defuse_widgets.stages.correction.Corrector` sweep
in a background thread and draws one point per λ as each λ finishes, with the
classifier before fine-tuning and the baseline (fine-tuning on individually
labelled unrestricted adversarial examples, paper §4.4) for reference. The
plot is just a :class:`~defuse_widgets.callbacks.Callback` of the sweep; the
kernel stays free while it runs, and Stop takes effect within one batch.

After the sweep the plot marks the selection rule's λ (star) and says under
the figure why the rule chose it: its verdict, whether that λ fixes the
regions without a significant validation loss. A click on a λ point keeps
that λ instead (:meth:`TradeoffPlot.choose`); in the dashboard the choice is
saved to the session with who made it.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Sequence

import ipywidgets as widgets
import traitlets
from torch import nn

from defuse_widgets.callbacks import Callback
from defuse_widgets.stages.correction import PAPER_LAMS, Corrector
from defuse_widgets.stages.correction.arms import default_arms, run_arms
from defuse_widgets.stages.correction.sweep import planned_lam_epochs
from defuse_widgets.widgets._background import BackgroundWork
from defuse_widgets.widgets._errors import ErrorBox
from defuse_widgets.widgets.tradeoff_plot.progress import RESULT_TRAITS, EpochOffset, LiveProgress
from defuse_widgets.widgets.tradeoff_plot.view import (
    CLICKABLE,
    HIDDEN_WHEN_EMPTY,
    TRACES,
    choice_html,
    hover_text,
    label_axes,
    set_name,
    tradeoff_figure,
)
from defuse_widgets.workflow.correction_step import corrected_arm

__all__ = ["TradeoffPlot"]


def _by_lam(records: list) -> list:
    return sorted(records, key=lambda r: r.get("lam", 0.0))


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
        Runs the arms instead of :func:`~defuse_widgets.stages.correction.arms.run_arms`:
        ``runner(callbacks=, on_start=, stop_event=) -> dict of Corrector``. The
        dashboard passes its session's ``correct``, which also saves the results
        (and adds the ``"review"`` arm after label review).
    chooser : callable, optional
        Saves a λ chosen by hand: ``chooser(lam, arm=) -> dict`` with at least
        ``arm``, ``lam`` and ``by`` (who chose). The dashboard passes its
        session's :meth:`~defuse_widgets.workflow.Session.choose_lam` with the
        annotator's name; without one a choice is only shown.
    **corrector_params
        Passed on to :class:`Corrector`: ``lr``, ``batch_size``, ``selection``,
        ``device`` (CUDA when available by default), ``seed``, ``checkpoint_dir``.

    Attributes
    ----------
    results, baseline_results, review_results : traitlets, list of dict
        The finished λs' records of the Defuse, baseline and label-review arms
        (``Corrector.results_``), with the changes against the model before
        fine-tuning and their intervals (shown when hovering a point).
    arm : traitlet, str
        The arm whose λ is the corrected model: ``"review"`` when label review
        ran, else ``"defuse"``.
    best, verdict, corrected : traitlets
        That arm's record selected by the rule (the star), the rule's verdict
        sentence (shown under the plot) and whether it fixes the regions.
    chosen : traitlet, dict
        The λ chosen by hand (the red ring; {} when none): see :meth:`choose`.
    corrector_ : Corrector
        The Defuse sweep of the latest run (``cancelled_`` after a Stop).
    baseline_corrector_ : Corrector or None
    correctors_ : dict of str -> Corrector
        Every arm of the latest run.
    error_ : Exception or None
        What ended the latest run, if it failed; also shown in the widget.

    Examples
    --------
    >>> plot = TradeoffPlot(clf, X, y, X_f, y_f, eval_sets=evals,  # doctest: +SKIP
    ...                     lams=[0.1, 1, 10])
    >>> plot.start(); plot  # doctest: +SKIP
    >>> plot.join(); plot.choose(10.0)   # as a click on λ=10  # doctest: +SKIP
    """

    status = traitlets.Unicode("Press Start to run the λ sweep.")
    results = traitlets.List()
    baseline_results = traitlets.List()
    review_results = traitlets.List()
    before = traitlets.Dict()
    best = traitlets.Dict()
    arm = traitlets.Unicode("defuse")
    verdict = traitlets.Unicode("")
    corrected = traitlets.Bool(None, allow_none=True)
    chosen = traitlets.Dict()
    epochs_done = traitlets.Int(0)

    def __init__(self, classifier: nn.Module, X, y, X_f, y_f, *, eval_sets: dict,
                 lams: Sequence[float] = PAPER_LAMS, epochs: int = 3, X_adv=None, y_adv=None,
                 baseline_results: list | None = None, x: str = "test",
                 y_key: str = "region_test", callbacks: Sequence[Callback] = (),
                 runner=None, chooser: Callable[..., dict] | None = None, **corrector_params):
        self._init_background()
        super().__init__()
        self._choose_callbacks: list = []
        self._build()
        self.load(classifier, X, y, X_f, y_f, eval_sets=eval_sets, lams=lams, epochs=epochs,
                  X_adv=X_adv, y_adv=y_adv, baseline_results=baseline_results, x=x,
                  y_key=y_key, callbacks=callbacks, runner=runner, chooser=chooser,
                  **corrector_params)

    def load(self, classifier: nn.Module, X, y, X_f, y_f, *, eval_sets: dict,
             lams: Sequence[float] = PAPER_LAMS, epochs: int = 3, X_adv=None, y_adv=None,
             baseline_results: list | None = None, x: str = "test",
             y_key: str = "region_test", callbacks: Sequence[Callback] = (),
             runner=None, chooser: Callable[..., dict] | None = None,
             **corrector_params) -> None:
        """Take a new sweep's inputs (as the constructor's) and forget the results shown.

        The figure and controls stay, so a notebook updates them in place
        instead of drawing a new plot (the dashboard's *Build failure data*).
        """
        if self.running:
            raise RuntimeError("a new sweep cannot be loaded while a sweep runs; press Stop "
                               "first.")
        self.classifier, self.X, self.y, self.X_f, self.y_f = classifier, X, y, X_f, y_f
        self.eval_sets, self.lams, self.epochs = eval_sets, list(lams), epochs
        self.X_adv, self.y_adv, self.x, self.y_key = X_adv, y_adv, x, y_key
        self.callbacks, self.corrector_params = list(callbacks), corrector_params
        self.runner, self.chooser = runner, chooser
        self._precomputed = [dict(r) for r in baseline_results or []]
        self.corrector_ = self.baseline_corrector_ = None
        self.correctors_: dict = {}
        self._current: Corrector | None = None
        self.epoch_offset, self._drawn, self.error_ = 0, None, None
        self.error.clear()
        label_axes(self._fig, x, y_key)
        with self.hold_trait_notifications():
            for name in ("status", "results", "review_results", "before", "best", "arm",
                         "verdict", "corrected", "chosen", "epochs_done"):
                setattr(self, name, self.trait_defaults(name))
            self.baseline_results = [dict(r) for r in self._precomputed]
        self._render()

    # -- view -----------------------------------------------------------------------
    def _build(self) -> None:
        self._fig = tradeoff_figure()
        self._start_button = widgets.Button(description="Start", icon="play",
                                            button_style="success")
        self.error = ErrorBox()
        for name in CLICKABLE:
            self._fig.data[TRACES.index(name)].on_click(
                self.error.guard("choose λ", partial(self._clicked, name), clear=False))
        self._start_button.on_click(self.error.guard("start", lambda _: self.start()))
        self._stop_button = widgets.Button(description="Stop", icon="stop",
                                           button_style="danger")
        self._stop_button.on_click(self.error.guard("stop", lambda _: self.stop()))
        self._bar = widgets.IntProgress(min=0, description="Epochs")
        self._label, self._choice = widgets.HTML(), widgets.HTML()
        self._choice.add_class("defuse-lam-choice")
        self._log = widgets.Output(layout=widgets.Layout(max_height="160px", overflow="auto"))
        self.children = [widgets.HBox([self._start_button, self._stop_button, self._bar,
                                       self._label]), self.error, self._fig, self._choice,
                         self._log]

    def _total_epochs(self) -> int:
        sweeps = max(1 + (self.X_adv is not None), len(self.correctors_))
        schedule = self.corrector_params.get("schedule", "full")
        return max(1, planned_lam_epochs(len(self.lams), int(self.epochs), schedule) * sweeps)

    @traitlets.observe("running", "status", "results", "baseline_results", "review_results",
                       "before", "best", "arm", "verdict", "corrected", "chosen", "epochs_done")
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
            self._choice.value = choice_html(
                best=self.best, arm=self.arm, verdict=self.verdict, corrected=self.corrected,
                chosen=self.chosen, saves=self.chooser is not None,
                can_choose=not self.running and bool(self.results or self.review_results))
            drawn = (self.results, self.baseline_results, self.before, self.best,
                     self.review_results, self.chosen)
            if drawn == self._drawn:
                return
            self._drawn = drawn
            points = dict(defuse=_by_lam(self.results), baseline=_by_lam(self.baseline_results),
                          before=[self.before] if self.before else [],
                          rule=[self.best] if self.best else [],
                          review=_by_lam(self.review_results),
                          chosen=[self.chosen["record"]] if self.chosen else [])
            with self._fig.batch_update():
                for trace, name in zip(self._fig.data, TRACES):
                    rs = points[name]
                    trace.x = [r.get(self.x, None) for r in rs]
                    trace.y = [r.get(self.y_key, None) for r in rs]
                    trace.customdata = [r.get("lam", None) for r in rs]
                    trace.text = ["" if name == "before" else hover_text(r) for r in rs]
                    if name in HIDDEN_WHEN_EMPTY:
                        trace.visible = bool(rs)
                empty = not any(points.values())   # accuracy axes, not plotly's -1..6
                for axis in (self._fig.layout.xaxis, self._fig.layout.yaxis):
                    axis.update(range=[0, 1] if empty else None, autorange=not empty)

    # -- choosing λ -----------------------------------------------------------------
    def choose(self, lam: float, *, arm: str | None = None) -> dict:
        """Keep λ = ``lam`` of ``arm`` as the corrected model, as a click on its point does.

        Parameters
        ----------
        lam : float
            A finished λ of the arm.
        arm : {"defuse", "review"}, optional
            Default: ``arm``, the arm whose λ is the corrected model.

        Returns
        -------
        dict
            The choice, also in ``chosen``: ``arm``, ``lam``, ``by`` and the λ's
            ``record`` (what ``chooser`` returned, when the plot has one).
        """
        if self.running:
            raise RuntimeError("the sweep must end before a λ is chosen; it is still running "
                               "(wait for it or press Stop).")
        arm = self.arm if arm is None else arm
        arms = {a: getattr(self, trait) for a, trait in RESULT_TRAITS.items()}
        if arm not in arms:
            raise ValueError(f"arm must be one of {sorted(arms)}; got {arm!r}.")
        record = next((r for r in arms[arm] if r.get("lam") == lam), None)
        if record is None:
            raise ValueError(f"lam must be a finished λ of arm {arm!r}, one of "
                             f"{[r.get('lam') for r in _by_lam(arms[arm])]}; got {lam!r}.")
        choice = (dict(self.chooser(float(lam), arm=arm)) if self.chooser is not None
                  else dict(arm=arm, lam=float(lam), by=""))
        self.chosen = {**choice, "record": dict(choice.get("record") or record)}
        self.status = self._selected().strip()
        for callback in self._choose_callbacks:
            callback(self.chosen)
        return self.chosen

    def on_choose(self, callback: Callable[[dict], None]) -> None:
        """Call ``callback(choice)`` after each λ chosen by hand (see :meth:`choose`)."""
        self._choose_callbacks.append(callback)

    def _clicked(self, name, trace, points, state) -> None:
        if not points.point_inds:
            return   # plotly calls every trace's handler; only the clicked one has points
        lam = float(trace.customdata[points.point_inds[0]])
        arm = {"defuse": "defuse", "review": "review", "rule": self.arm}.get(
            name, self.chosen.get("arm"))
        self.choose(lam, arm=arm)
        self.error.clear()

    def show_saved(self, correction: dict, choice: dict | None = None) -> None:
        """Show a saved sweep and λ choice, as after a kernel restart.

        Parameters
        ----------
        correction : dict
            ``Session.load_correction()``: per arm its ``results``, ``before``,
            ``best``, ``corrected`` and ``verdict``.
        choice : dict, optional
            ``Session.load_lam_choice()``.
        """
        if self.running:
            raise RuntimeError("a saved sweep cannot be shown while a sweep runs.")
        arm = corrected_arm(correction) or "defuse"
        final = correction.get(arm) or {}
        results = {name: [dict(r) for r in a.get("results", [])]
                   for name, a in correction.items()}
        with self.hold_trait_notifications():
            self.results = results.get("defuse", [])
            self.review_results = results.get("review", [])
            self.baseline_results = results.get("baseline",
                                                [dict(r) for r in self._precomputed])
            self.before = dict((correction.get("defuse") or {}).get("before") or {})
            self.arm, self.best = arm, dict(final.get("best") or {})
            self.verdict, self.corrected = final.get("verdict") or "", final.get("corrected")
            self.chosen = dict(choice or {})
            self.status = (f"Saved sweep: {len(self.results)} λ. {self._selected()}Press Start "
                           "to run it again.")

    # -- control --------------------------------------------------------------------
    def start(self) -> None:
        """Start the sweep in a background thread and return at once (no-op while running)."""
        with self._lock:
            if self.running:
                return
            self.corrector_ = self.baseline_corrector_ = None
            self.correctors_, self.epoch_offset = {}, 0
            with self.hold_trait_notifications():
                # the points already drawn stay until their λ reports again (a stopped
                # sweep resumes from its finished λs): the plot never empties on Start
                self.best, self.arm, self.verdict, self.corrected = {}, "defuse", "", None
                self.chosen = {}
                if self.X_adv is None:
                    self.baseline_results = [dict(r) for r in self._precomputed]
                self.status, self.epochs_done = "Starting…", 0
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
                    self.correctors_[name] = corrector
                if name in ("defuse", "baseline"):
                    setattr(self, "corrector_" if name == "defuse" else "baseline_corrector_",
                            corrector)

            def callbacks(name):
                return [LiveProgress(self, name), EpochOffset(self), *self.callbacks]

            if self.runner is not None:
                sweeps = self.runner(callbacks=callbacks, on_start=on_start,
                                     stop_event=self._stop_event)
            else:
                arms = default_arms(self.X_f, self.y_f, self.X_adv, self.y_adv)
                sweeps = run_arms(self.classifier, self.X, self.y, arms,
                                  eval_sets=self.eval_sets, lams=self.lams, epochs=self.epochs,
                                  callbacks=callbacks, on_start=on_start,
                                  stop_event=self._stop_event, **self.corrector_params)
            arm = corrected_arm(sweeps) or "defuse"
            final = sweeps.get(arm)
            if final is not None:
                with self.hold_trait_notifications():
                    self.arm, self.best = arm, dict(final.best_ or {})
                    self.verdict, self.corrected = final.verdict_ or "", final.corrected_
            return self._summary(), None
        finally:
            with self._lock:
                self._current = None

    def _selected(self) -> str:
        if not self.best:
            return ""
        of = " (label-review arm)" if self.arm == "review" else ""
        if self.chosen:
            by = f" by {self.chosen['by']}" if self.chosen.get("by") else ""
            return (f"Kept λ={self.chosen['lam']:g} of {self.chosen['arm']}, chosen by "
                    f"hand{by} (red ring); the rule selected λ={self.best['lam']:g}{of} (star). ")
        return (f"Selected λ={self.best['lam']:g}{of}: {set_name(self.x)} "
                f"{self.best.get(self.x, math.nan):.3f}, {set_name(self.y_key)} "
                f"{self.best.get(self.y_key, math.nan):.3f} (star). ")

    def _summary(self) -> str:
        stopped = self._stop_event.is_set()
        head = f"Stopped after {len(self.results)} λ." if stopped else "Done."
        return f"{head} {self._selected()}".strip()

    def close(self) -> None:
        """Stop a running sweep and close the widget."""
        self.stop()
        super().close()
