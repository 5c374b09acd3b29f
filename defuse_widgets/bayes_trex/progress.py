"""A printed progress line for the package's progress/stop protocol, for notebooks and scripts.

:class:`ProgressLine` is a :data:`~defuse_widgets.callbacks.ProgressCallback`:
pass it as ``callback=`` to :meth:`LevelSetSampler.fit
<defuse_widgets.bayes_trex.level_sets.LevelSetSampler.fit>`, to
``train_vae``/``train_classifier`` or to any other long stage. It never asks
to stop. This module imports no UI code.
"""
from __future__ import annotations

import sys
import time

__all__ = ["ProgressLine"]


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
