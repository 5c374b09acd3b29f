"""The latent explorer's t-SNE fit: the core's ``fit_or_load`` with a progress bar and Stop."""
from __future__ import annotations

import threading
import time

import ipywidgets as W
import numpy as np

from defuse_widgets.stages.latent_map import fit_or_load

__all__ = ["MapFit"]


class MapFit:
    """Fit (or load, or take) the map of ``train_codes`` and place ``adv_codes`` in it.

    Parameters
    ----------
    train_codes : ndarray of shape (n_train, n_latent)
    adv_codes : ndarray of shape (n_adv, n_latent)
    latent_map : LatentMap or None
        Taken as is when given.
    cached : LatentMap or None
        Reused when it fits (``fit_or_load``).
    on_fitted : callable(LatentMap) or None
        Called with a freshly fitted, complete map.
    params : dict
        ``LatentMap`` parameters.
    guard : callable(what, handler) -> handler
        Shows a Stop error in the widget.

    Attributes
    ----------
    row : ipywidgets.HBox
        Bar, label and Stop; bar and Stop are hidden once the fit has ended.
    map_, adv_xy_, error_
        The map, the (n_adv, 2) placed adversarial codes, or the error.
    """

    def __init__(self, train_codes, adv_codes, *, latent_map, cached, on_fitted, params, guard):
        self._train, self._adv = train_codes, adv_codes
        self._given, self._cached, self._on_fitted, self._params = (latent_map, cached,
                                                                    on_fitted, params)
        self._stop_event, self._last, self._thread = threading.Event(), 0.0, None
        self.map_ = self.adv_xy_ = self.error_ = None
        self._bar = W.IntProgress(min=0, max=1, description="t-SNE")
        self.label = W.Label("starting…")
        stop = W.Button(description="Stop", icon="stop", button_style="warning")
        stop.on_click(guard("stop", lambda _: self.stop()))
        self.row = W.HBox([self._bar, self.label, stop])

    def start(self, on_done, *, background: bool) -> None:
        """Fit, then call ``on_done()``; in a daemon thread when ``background``."""
        def work():
            self._fit()
            on_done()
        if background:
            self._thread = threading.Thread(target=work, daemon=True)
            self._thread.start()
        else:
            work()

    def _fit(self) -> None:
        try:
            m = self._given
            if m is None:
                m = fit_or_load(self._train, self._adv if len(self._adv) else None,
                                cached=self._cached, callback=self._on_progress, **self._params)
                if m is not self._cached and not m.interrupted_ and self._on_fitted:
                    self._on_fitted(m)
            elif m.n_train_ != len(self._train):
                raise ValueError(f"latent_map must be fitted on the {len(self._train)}"
                                 f" train_codes; it holds {m.n_train_} training codes.")
            self.adv_xy_ = m.place(self._adv) if len(self._adv) else np.zeros((0, 2))
            self.map_ = m
            self.label.value = (f"map of {m.n_train_} training and {len(self._adv)} adversarial"
                                " codes" + (" (stopped early)" if m.interrupted_ else ""))
        except Exception as exc:   # shown in the widget; re-raised by wait()
            self.error_ = exc
            self.label.value = f"t-SNE failed: {exc}"
        finally:   # the label says how it ended; an idle bar would read as unfinished
            for child in self.row.children:
                if child is not self.label:
                    child.layout.display = "none"

    def _on_progress(self, stage: str, iteration: int, n_iter: int) -> bool:
        now = time.monotonic()
        if stage != "optimize" or iteration >= n_iter or now - self._last > 0.25:
            self._last = now   # at most about 4 updates a second
            text = {"affinities": "computing affinities…", "optimize": "optimising map…",
                    "transform": f"placing {n_iter} adversarial codes…"}[stage]
            if stage != "transform":
                self._bar.max, self._bar.value = n_iter, iteration
            self.label.value = text
        return self._stop_event.is_set()

    def stop(self) -> None:
        """Stop the optimisation; the map keeps the embedding reached so far."""
        self._stop_event.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for a background fit."""
        if self._thread is not None:
            self._thread.join(timeout)
