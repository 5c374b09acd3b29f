"""Explore the latent space on a t-SNE map (paper Fig. 2).

Training codes are circles coloured by class; unrestricted adversarial
examples are black diamonds placed into the same map. Clicking a point shows
its decode with the classifier's prediction in red; a box or lasso selection
shows a grid of the selected decodes; choosing a region highlights its members.
The map itself is computed by the core (:mod:`defuse_widgets.stages.latent_map`).
"""
from __future__ import annotations

import threading
import time
from functools import partial
from typing import Callable, Sequence

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch
import traitlets

from defuse_widgets._validation import (check_choice, check_codes, check_images, check_int,
                                        check_labels, check_module)
from defuse_widgets.stages.latent_map import LatentMap, fit_or_load
from defuse_widgets.stages.identification import AdversarialExamples
from defuse_widgets.models.inference import decode, encode_mean, predict
from defuse_widgets.stages.regions import Regions
from defuse_widgets.widgets._errors import ErrorBox
from defuse_widgets.widgets._latent_figure import map_figure
from defuse_widgets.widgets._render import class_labels, grid_png, to_png

__all__ = ["LatentExplorer"]

_KINDS = ("train", "adversarial")
_NO_REGION = -1   # the Dropdown's value for "no region" (a None option is ambiguous)


class LatentExplorer(W.VBox):
    """t-SNE map of training and adversarial codes with decodes on click and selection.

    Parameters
    ----------
    train_codes : ndarray of shape (n_train, n_latent)
        Encoder means of the training images (see :meth:`from_models`).
    train_labels : array-like of shape (n_train,)
        Their ground-truth classes; training points are coloured by them.
    adversarial : AdversarialExamples
        Its ``codes`` (n_adv, n_latent) are drawn as black diamonds.
    vae : BetaVAE or any module with ``decode(z)``
    classifier : nn.Module
        Its prediction on each decode is drawn in red.
    regions : Regions, optional
        Distilled from ``adversarial``; enables the region highlight.
    class_names : sequence of str, optional
    latent_map : LatentMap, optional
        An already fitted map of ``train_codes``; no t-SNE is run.
    cached_map : LatentMap, optional
        A map fitted earlier (for example ``session.load_latent_map()``),
        reused when it fits (:func:`~defuse_widgets.stages.latent_map.fit_or_load`).
    on_map_fitted : callable(LatentMap), optional
        Called with a freshly fitted map (for example ``session.save_latent_map``);
        the explorer itself writes no file.
    perplexity, joint, seed, n_jobs, n_iter
        :class:`~defuse_widgets.stages.latent_map.LatentMap` parameters.
    background : bool, default=True
        Fit the map in a background thread so the kernel stays responsive
        (``wait()`` blocks until it is ready); False fits before returning.
    max_grid : int, default=64
        Most decodes shown for a selection.

    Attributes
    ----------
    region : traitlet, int or None
        Region whose members are highlighted.
    point : traitlet, (kind, index) or None
        Clicked point; ``kind`` is "train" or "adversarial".
    selection : traitlet, dict
        ``{"train": ndarray, "adversarial": ndarray}`` of selected indices.
    status : traitlet, {"fitting", "ready", "stopped", "failed"}
    figure : plotly.graph_objects.FigureWidget or None
        The map, once fitted.
    image, grid : ipywidgets.Image
        Decode of the clicked point; grid of the selected decodes.

    Examples
    --------
    >>> explorer = LatentExplorer.from_models(clf, vae, X_train, y_train, adversarial,
    ...                                      regions=regions)
    >>> explorer.region = 0                       # highlight region 0's members
    >>> explorer.select_point("adversarial", 3)   # what a click does
    """

    region = traitlets.Int(None, allow_none=True)
    point = traitlets.Tuple(traitlets.Unicode(), traitlets.Int(), default_value=None,
                            allow_none=True)
    selection = traitlets.Dict()
    status = traitlets.Enum(["fitting", "ready", "stopped", "failed"], default_value="fitting")

    def __init__(self, train_codes, train_labels, adversarial: AdversarialExamples, *, vae,
                 classifier, regions: Regions | None = None,
                 class_names: Sequence[str] | None = None, latent_map: LatentMap | None = None,
                 cached_map: LatentMap | None = None, on_map_fitted=None, perplexity: float = 30.0, joint: bool = False,
                 seed: int = 0, n_jobs: int = 1, n_iter: int = 500,
                 background: bool = True, max_grid: int = 64, **kwargs):
        self._train_codes = check_codes("train_codes", train_codes, min_rows=4)
        n_latent = self._train_codes.shape[1]
        self._train_labels = check_labels("train_labels", train_labels,
                                          n_samples=len(self._train_codes)).numpy()
        if not isinstance(adversarial, AdversarialExamples):
            raise TypeError("adversarial must be AdversarialExamples; "
                            f"got {type(adversarial).__name__}.")
        self._adv = adversarial
        self._adv_codes = check_codes("adversarial.codes", adversarial.codes, n_latent=n_latent,
                                      min_rows=0)
        if regions is not None and len(regions.assignment) != len(adversarial):
            raise ValueError("regions must be distilled from adversarial: regions.assignment "
                             f"has {len(regions.assignment)} entries, adversarial has "
                             f"{len(adversarial)} examples.")
        self._regions = regions
        self._vae = check_module("vae", vae)
        self._classifier = check_module("classifier", classifier)
        n_classes = int(max(self._train_labels.max(initial=0), adversarial.true_label.max(
            initial=0), adversarial.predicted_label.max(initial=0))) + 1
        self._names = class_labels(class_names, n_classes)
        self._max_grid = check_int("max_grid", max_grid, low=1)
        self._map_args = dict(latent_map=latent_map, cached=cached_map, on_fitted=on_map_fitted,
                              params=dict(perplexity=perplexity, joint=joint, n_iter=n_iter,
                                          seed=seed, n_jobs=n_jobs))
        self.latent_map: LatentMap | None = None
        self.figure: go.FigureWidget | None = None
        self.error_: BaseException | None = None
        self._stop_event, self._lock = threading.Event(), threading.RLock()
        self._last_progress = 0.0
        self._click_callbacks: list = []
        self._selection_callbacks: list = []
        self._pending: dict = {kind: [] for kind in _KINDS}
        self._highlight_index = self._drawn_members = np.zeros(0, dtype=np.int64)
        self._ready = False
        super().__init__(**kwargs)

        self._progress = W.IntProgress(min=0, max=1, description="t-SNE")
        self._progress_label = W.Label("starting…")
        self._stop_button = W.Button(description="Stop", icon="stop", button_style="warning")
        self.error = ErrorBox()
        self._stop_button.on_click(self.error.guard("stop", lambda _: self.stop()))
        options = [("no region", _NO_REGION)]
        if regions is not None:
            counts = regions.member_counts
            options += [(f"region {k} · {counts[k]} members", k) for k in range(len(regions))]
        self._dropdown = W.Dropdown(options=options, description="Highlight",
                                    disabled=regions is None)
        traitlets.link((self, "region"), (self._dropdown, "value"),
                       transform=(lambda r: _NO_REGION if r is None else r,
                                  lambda v: None if v == _NO_REGION else v))
        self._plot_box = W.Box(layout=W.Layout(width="640px", min_height="120px"))
        self._point_label = W.HTML("Click a point to see its decode.")
        self.image = W.Image(format="png", layout=W.Layout(width="96px", height="96px",
                                                           display="none"))
        self._grid_label = W.HTML("Box- or lasso-select points to see their decodes.")
        self.grid = W.Image(format="png", layout=W.Layout(display="none"))
        self.children = [
            W.HBox([self._progress, self._progress_label, self._stop_button]),
            self._dropdown, self.error,
            W.HBox([self._plot_box, W.VBox([self._point_label, self.image, self._grid_label,
                                            self.grid], layout=W.Layout(width="420px"))])]
        self._ready = True
        self._thread = None
        if background:
            self._thread = threading.Thread(target=self._compute_map, daemon=True)
            self._thread.start()
        else:
            self._compute_map()
            if self.error_ is not None:
                raise self.error_

    @classmethod
    def from_models(cls, classifier, vae, X_train, y_train, adversarial: AdversarialExamples,
                    regions: Regions | None = None, **kwargs) -> "LatentExplorer":
        """Encode ``X_train`` (n, C, H, W) with the VAE's encoder means, then build the explorer.

        ``kwargs`` are passed to :class:`LatentExplorer`.
        """
        X = check_images("X_train", X_train)
        codes = encode_mean(check_module("vae", vae), X).numpy()
        return cls(codes, y_train, adversarial, vae=vae, classifier=classifier,
                   regions=regions, **kwargs)

    # ---------------------------------------------------------- map fitting
    def _compute_map(self) -> None:
        try:
            given = self._map_args["latent_map"]
            if given is None:
                cached = self._map_args["cached"]
                m = fit_or_load(self._train_codes, self._adv_codes if len(self._adv) else None,
                                cached=cached, callback=self._on_progress,
                                **self._map_args["params"])
                if m is not cached and not m.interrupted_ and self._map_args["on_fitted"]:
                    self._map_args["on_fitted"](m)
            else:
                m = given
                if m.n_train_ != len(self._train_codes):
                    raise ValueError(f"latent_map must be fitted on the {len(self._train_codes)}"
                                     f" train_codes; it holds {m.n_train_} training codes.")
            self._adv_xy = (m.place(self._adv_codes) if len(self._adv)
                            else np.zeros((0, 2)))
            self.latent_map = m
            self._progress_label.value = (f"map of {m.n_train_} training and {len(self._adv)}"
                                          " adversarial codes" +
                                          (" (stopped early)" if m.interrupted_ else ""))
            self.status = "stopped" if m.interrupted_ else "ready"
        except Exception as exc:   # shown in the widget; re-raised by wait()
            self.error_ = exc
            self._progress_label.value = f"t-SNE failed: {exc}"
            self.status = "failed"
        finally:
            self._stop_button.layout.display = "none"

    def _on_progress(self, stage: str, iteration: int, n_iter: int) -> bool:
        now = time.monotonic()
        if stage != "optimize" or iteration >= n_iter or now - self._last_progress > 0.25:
            self._last_progress = now   # at most about 4 updates a second
            text = {"affinities": "computing affinities…", "optimize": "optimising map…",
                    "transform": f"placing {n_iter} adversarial codes…"}[stage]
            if stage != "transform":
                self._progress.max, self._progress.value = n_iter, iteration
            self._progress_label.value = text
        return self._stop_event.is_set()

    def stop(self) -> None:
        """Stop the t-SNE optimisation; the map keeps the embedding reached so far."""
        self._stop_event.set()

    def wait(self, timeout: float | None = None) -> "LatentExplorer":
        """Block until the map is fitted; re-raise the error if fitting failed."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self.error_ is not None:
            raise self.error_
        return self

    # -------------------------------------------------------------- events
    def select_point(self, kind: str, index: int) -> None:
        """Show the decode of one point, as a click on it does.

        Parameters
        ----------
        kind : {"train", "adversarial"}
        index : int
            Row of ``train_codes`` or of ``adversarial.codes``.
        """
        kind = check_choice("kind", kind, _KINDS)
        index = check_int("index", index, low=0, high=len(self._codes(kind)) - 1)
        self.point = (kind, index)
        for callback in self._click_callbacks:
            callback(kind, index)

    def select_points(self, train=(), adversarial=()) -> None:
        """Show a grid of the decodes of the selected points, as a box or lasso selection does.

        Parameters
        ----------
        train : array-like of int, shape (m,)
            Rows of ``train_codes``.
        adversarial : array-like of int, shape (k,)
            Rows of ``adversarial.codes``.
        """
        picked = {}
        for kind, index in zip(_KINDS, (train, adversarial)):
            index = np.unique(np.asarray(index, dtype=np.int64).ravel())
            if index.size and (index[0] < 0 or index[-1] >= len(self._codes(kind))):
                raise ValueError(f"{kind} must hold indices in [0, {len(self._codes(kind)) - 1}]"
                                 f"; got values in [{index[0]}, {index[-1]}].")
            picked[kind] = index
        self.selection = picked
        for callback in self._selection_callbacks:
            callback(picked["train"], picked["adversarial"])

    def on_click(self, callback: Callable[[str, int], None]) -> None:
        """Call ``callback(kind, index)`` whenever a point is selected."""
        self._click_callbacks.append(callback)

    def on_selection(self, callback: Callable[[np.ndarray, np.ndarray], None]) -> None:
        """Call ``callback(train_index, adversarial_index)`` after each box or lasso selection."""
        self._selection_callbacks.append(callback)

    @property
    def highlighted(self) -> np.ndarray:
        """Indices into ``adversarial`` of the highlighted points, shape (m,)."""
        return self._highlight_index

    @traitlets.validate("region")
    def _valid_region(self, proposal):
        value = proposal["value"]
        if value is not None:
            if self._regions is None:
                raise ValueError("region must be None when no regions were given; "
                                 f"got {value}.")
            self._regions._check_region(value)
        return value

    # -------------------------------------------------------------- render
    @traitlets.observe("status", "region", "point", "selection")
    def _render(self, change=None) -> None:
        """Rebuild the view from (status, region, point, selection)."""
        if not self._ready:
            return
        with self._lock:
            if self.figure is None and self.status in ("ready", "stopped"):
                self._build_figure()
            members = (np.zeros(0, dtype=np.int64) if self.region is None
                       else self._regions.members(self.region))
            self._highlight_index = members
            if self.figure is not None and not np.array_equal(members, self._drawn_members):
                with self.figure.batch_update():
                    self.figure.data[-1].x = self._adv_xy[members, 0].astype(np.float32)
                    self.figure.data[-1].y = self._adv_xy[members, 1].astype(np.float32)
                    self.figure.data[-1].name = f"region {self.region}"
                self._drawn_members = members
            self._render_point()
            self._render_selection()

    def _render_point(self) -> None:
        self.image.layout.display = "none" if self.point is None else None
        if self.point is None:   # an empty Image shows a broken-image icon: hide it
            self.image.value = b""
            return
        kind, i = self.point
        images = decode(self._vae, torch.as_tensor(self._codes(kind)[i:i + 1]))
        p = int(predict(self._classifier, images)[0])
        self.image.value = to_png(images[0], label=self._names[p])
        if kind == "train":
            what = f"training image {i}, class {self._names[self._train_labels[i]]}"
        else:
            what = (f"adversarial example {i} of training image {self._adv.source_index[i]}"
                    f", class {self._names[self._adv.true_label[i]]}")
        self._point_label.value = f"{what}; predicted <b style='color:#c00'>{self._names[p]}</b>"

    def _render_selection(self) -> None:
        picked = [(kind, self.selection.get(kind, ())) for kind in ("adversarial", "train")]
        n = {kind: len(index) for kind, index in picked}
        self.grid.layout.display = None if sum(n.values()) else "none"
        if not sum(n.values()):
            self.grid.value = b""
            self._grid_label.value = "Box- or lasso-select points to see their decodes."
            return
        codes = np.concatenate([self._codes(kind)[index] for kind, index in picked])
        images = decode(self._vae, torch.as_tensor(codes[:self._max_grid]))
        predicted = predict(self._classifier, images).tolist()
        self.grid.value = grid_png(images, [self._names[p] for p in predicted], ncols=8, size=48)
        self._grid_label.value = (f"{sum(n.values())} selected ({n['adversarial']} adversarial,"
                                  f" {n['train']} training); showing {len(images)}")

    def _codes(self, kind: str) -> np.ndarray:
        return self._train_codes if kind == "train" else self._adv.codes

    def _build_figure(self) -> None:
        """Create the FigureWidget: one Scattergl per class, adversarial diamonds, highlight."""
        # float32 coordinates and int32 indices travel as binary buffers (70k points: ~0.8 MB)
        fig, index_of = map_figure(self.latent_map.embedding_, self._train_labels,
                                   self._names, self._adv_xy, self._adv)
        last = len(index_of) - 1
        for t, (kind, idx) in enumerate(index_of):
            fig.data[t].on_click(self.error.guard("click", partial(self._clicked, kind, idx), clear=False))
            fig.data[t].on_selection(self.error.guard("selection", partial(
                self._selected, kind, idx, t == last), clear=False))
            fig.data[t].on_deselect(partial(self._selected, kind, idx[:0], t == last))
        fig.data[-1].on_click(self.error.guard("click", partial(self._clicked, "adversarial",
                                                                None), clear=False))
        self.figure = fig
        self._plot_box.children = [fig]

    def _clicked(self, kind, idx, trace, points, state) -> None:
        if points.point_inds:
            idx = self._highlight_index if idx is None else idx
            self.select_point(kind, int(idx[points.point_inds[0]]))
            self.error.clear()

    def _selected(self, kind, idx, last, trace, points, selector=None) -> None:
        # plotly dispatches one selection event to every trace in order, so the
        # pieces are gathered and committed at the last trace with a handler.
        self._pending[kind].append(idx[np.asarray(points.point_inds, dtype=np.int64)])
        if last:
            pending, self._pending = self._pending, {kind: [] for kind in _KINDS}
            self.select_points(**{k: np.concatenate(v) if v else () for k, v in pending.items()})
            self.error.clear()
