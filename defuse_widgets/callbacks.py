"""Callbacks that observe a correction sweep (after skorch's design), and the
progress/stop protocol of the other long stages.

A widget's live plot is just a callback: it receives each epoch's record and
each λ's result as they are produced. :class:`ProgressLine` prints the
protocol's ``callback(stage, done, total)`` calls, for notebooks and scripts.
"""
from __future__ import annotations

import sys
import time
from typing import Callable


class Callback:
    """Base class with no-op hooks; override the ones you need.

    Every hook receives the :class:`~defuse_widgets.stages.correction.Corrector` first.
    """

    def on_train_begin(self, corrector, **kw) -> None:
        """Called once before the first λ."""

    def on_lam_begin(self, corrector, *, lam: float, **kw) -> None:
        """Called before fine-tuning with ``lam``."""

    def on_batch_end(self, corrector, *, lam: float, epoch: int, batch: int,
                     n_batches: int, **kw) -> None:
        """Called after every optimisation step."""

    def on_epoch_end(self, corrector, *, record: dict, **kw) -> None:
        """Called after each epoch with its record (λ, epoch, loss, accuracies)."""

    def on_lam_end(self, corrector, *, result: dict, **kw) -> None:
        """Called after each λ with the record of its selected epoch."""

    def on_train_end(self, corrector, **kw) -> None:
        """Called once at the end, also after a cancelled sweep."""


class History(list):
    """A list of per-epoch record dicts, in the order they were produced."""

    def column(self, key: str) -> list:
        """Values of ``key`` across all records (None where missing)."""
        return [r.get(key) for r in self]


class PrintProgress(Callback):
    """Print a line when a sweep starts, then one per λ: its selected epoch's accuracies and
    the time it took.
    """

    def __init__(self, *, keys=("validation", "test", "region_test"), file=None):
        self.keys = keys
        self.file = file
        self._t0 = {}

    def on_train_begin(self, corrector, **kw):
        print(f"  [{corrector.name}] {len(corrector.lams)} λ × {corrector.epochs} epochs…",
              file=self.file, flush=True)

    def on_lam_begin(self, corrector, *, lam, **kw):
        self._t0[lam] = time.perf_counter()

    def on_lam_end(self, corrector, *, result, **kw):
        parts = [f"{k}={result[k]:.3f}" for k in self.keys if k in result]
        dt = time.perf_counter() - self._t0.get(result["lam"], time.perf_counter())
        print(f"  [{corrector.name}] lam={result['lam']:<8g} epoch={result['epoch']} "
              f"{' '.join(parts)} ({dt:.1f}s)", file=self.file, flush=True)


class Stopped(Exception):
    """Raised inside a stage when its :data:`ProgressCallback` asked it to stop."""


#: The one progress/stop protocol of every long stage (identification,
#: distillation, the latent map's t-SNE, model training and the λ sweep):
#: ``callback(stage, done, total)`` after each step; returning True stops the
#: work, which then saves nothing (or, for the sweep, keeps the finished λs).
ProgressCallback = Callable[[str, int, int], "bool | None"]


class StageProgress(Callback):
    """Drive a :class:`ProgressCallback` from a correction sweep, batch by batch.

    ``stage`` is ``"correction:<sweep name>"``; ``done`` and ``total`` count
    optimisation steps over the whole sweep. A True return stops the sweep
    within one batch.

    Parameters
    ----------
    callback : ProgressCallback
    """

    def __init__(self, callback: ProgressCallback):
        self.callback = callback

    def on_batch_end(self, corrector, **kw):
        done, total = corrector.steps_done_, corrector.steps_total_
        if self.callback(f"correction:{corrector.name}", done, total):
            corrector.stop()


class ProgressLine:
    """Print ``stage: done/total (elapsed)`` at most every ``every_s`` seconds.

    The first and the last step of each stage are always printed, so a short
    stage prints two lines and a long one a line every few seconds.

    Parameters
    ----------
    every_s : float, default=5.0
        Least time between two printed lines of the same stage.
    file : file-like, optional
        Where to print; ``sys.stdout`` at call time by default.

    Examples
    --------
    >>> line = ProgressLine(every_s=60)
    >>> for it in range(1, 4):
    ...     line("mcmc", it, 3)           # doctest: +ELLIPSIS
    mcmc: 1/3 (0 s)
    mcmc: 3/3 (0 s)
    """

    def __init__(self, *, every_s: float = 5.0, file=None):
        self.every_s = every_s
        self.file = file
        self._stage, self._done = None, 0
        self._t0 = self._last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if stage != self._stage or done < self._done:      # a new stage, or a new run of it
            self._stage, self._t0, self._last = stage, now, -float("inf")
        self._done = done
        if now - self._last >= self.every_s or done >= total:
            self._last = now
            print(f"{stage}: {done}/{total} ({now - self._t0:.0f} s)",
                  file=self.file or sys.stdout, flush=True)
        return None
