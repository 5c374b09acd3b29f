"""Callbacks that feed a running λ sweep into a :class:`~defuse_widgets.widgets.TradeoffPlot`.

They run in the sweep's worker thread and only set the plot's traits (throttled
to a few updates a second); the plot's observed render method draws them.
"""
from __future__ import annotations

import time

from defuse_widgets.callbacks import Callback
from defuse_widgets.stages.correction.sweep import planned_lam_epochs

__all__ = ["EpochOffset", "LiveProgress", "RESULT_TRAITS"]

#: The plot trait each arm's finished λs go to (any other arm: ``baseline_results``).
RESULT_TRAITS = {"defuse": "results", "review": "review_results"}


class LiveProgress(Callback):
    """Feeds one arm's progress into a TradeoffPlot's traits (worker thread)."""

    def __init__(self, plot, sweep: str, *, min_interval: float = 0.25):
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
            self.plot.epochs_done = self.plot.epoch_offset + self._done
            self.plot.status = (f"{self.sweep}: λ={record['lam']:g} epoch "
                                f"{record['epoch']}/{corrector.epochs}")

    def on_lam_end(self, corrector, *, result, **kw):
        self._last = time.monotonic()
        key = RESULT_TRAITS.get(self.sweep, "baseline_results")
        self.plot.epochs_done = self.plot.epoch_offset + self._done
        kept = [r for r in getattr(self.plot, key) if r.get("lam") != result.get("lam")]
        setattr(self.plot, key, [*kept, dict(result)])   # replaces a λ shown before Start


class EpochOffset(Callback):
    """Moves the epoch counter past a finished arm, so the bar covers every arm."""

    def __init__(self, plot):
        self.plot = plot

    def on_train_end(self, corrector, **kw):
        self.plot.epoch_offset += planned_lam_epochs(len(corrector.lams), int(corrector.epochs),
                                                     corrector.schedule)
