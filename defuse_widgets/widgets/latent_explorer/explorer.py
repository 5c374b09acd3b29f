"""Explore the latent space on a t-SNE map (paper Fig. 2).

Training codes are circles coloured by class; unrestricted adversarial
examples are black diamonds placed into the same map ("Colour by" recolours
both by the classifier's prediction or by region). Hovering a point shows a
thumbnail of its decode, clicking it a larger one with the classifier's
prediction in red; a box or lasso selection shows captioned tiles of the
selected decodes (adversarial or training, true label, prediction), which
"Show selection in gallery" hands on; choosing a region highlights its members.
The map itself is computed by the core (:mod:`defuse_widgets.stages.latent_map`).
"""
from __future__ import annotations

import threading
from typing import Callable, Sequence

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import traitlets

from defuse_widgets._validation import (
    check_codes,
    check_images,
    check_int,
    check_labels,
    check_module,
)
from defuse_widgets.models.inference import encode_mean, predict
from defuse_widgets.stages.identification import AdversarialExamples
from defuse_widgets.stages.latent_map import LatentMap
from defuse_widgets.stages.regions import Regions
from defuse_widgets.widgets._errors import ErrorBox
from defuse_widgets.widgets._render import class_labels
from defuse_widgets.widgets.latent_explorer.figure import (
    COLOR_BY,
    MAP_WIDTH,
    MapEvents,
    highlight,
    map_figure,
    map_groups,
    map_traces,
    replace_traces,
)
from defuse_widgets.widgets.latent_explorer.map_fitting import MapFit
from defuse_widgets.widgets.latent_explorer.points import KINDS, PointImages
from defuse_widgets.widgets.latent_explorer.slices import SliceControls

__all__ = ["LatentExplorer"]

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
    train_predicted : array-like of shape (n_train,), optional
        The classifier's prediction on each training image (``from_models``
        passes it), for "Colour by: predicted class"; by default the prediction
        on each training code's decode, computed when first needed.

    Attributes
    ----------
    region : traitlet, int or None
        Region whose members are highlighted.
    point : traitlet, (kind, index) or None
        Clicked point; ``kind`` is "train" or "adversarial".
    hovered : traitlet, (kind, index) or None
        Point under the mouse; its decode is the hover thumbnail.
    color_by : traitlet, {"true", "predicted", "region"}
        Marker colours: true class (adversarial examples black, paper Fig. 2),
        the classifier's prediction, or region (grey: training points and
        adversarial examples of no region). The "Colour by" dropdown.
    selection : traitlet, dict
        ``{"train": ndarray, "adversarial": ndarray}`` of selected indices.
    status : traitlet, {"fitting", "ready", "stopped", "failed"}
    figure : plotly.graph_objects.FigureWidget or None
        The map, once fitted.
    image : ipywidgets.Image
        Decode of the clicked point.
    thumbnail : ipywidgets.Image
        Decode of the hovered point (CSS ``defuse-hover-thumbnail``, caption
        ``defuse-hover-caption``), hidden until the first hover.
    grid : ipywidgets.HTML
        Captioned tiles of the selection (CSS ``defuse-selection-tiles``, tiles
        ``figure.defuse-tile.defuse-tile-adversarial`` or ``.defuse-tile-train``).
    slice_controls : SliceControls
        The saved-slice name box, *Save slice*, menu and *Export indices*, shown
        once :meth:`on_save_slice` has a callback.

    Examples
    --------
    >>> explorer = LatentExplorer.from_models(clf, vae, X_train, y_train, adversarial,
    ...                                      regions=regions)
    >>> explorer.region = 0                       # highlight region 0's members
    >>> explorer.select_point("adversarial", 3)   # what a click does
    >>> explorer.hover_point("train", 7)          # what a hover does
    >>> explorer.color_by = "predicted"
    >>> explorer.on_send_selection(lambda sel: gallery.show_selection(**sel))
    """

    region = traitlets.Int(None, allow_none=True)
    point = traitlets.Tuple(traitlets.Unicode(), traitlets.Int(), default_value=None,
                            allow_none=True)
    selection = traitlets.Dict()
    hovered = traitlets.Tuple(traitlets.Unicode(), traitlets.Int(), default_value=None,
                              allow_none=True)
    color_by = traitlets.Enum([v for _, v in COLOR_BY], default_value="true")
    slices = traitlets.Dict(help="Saved slices: name -> {'train': rows, 'adversarial': rows}.")
    status = traitlets.Enum(["fitting", "ready", "stopped", "failed"], default_value="fitting")

    def __init__(self, train_codes, train_labels, adversarial: AdversarialExamples, *, vae,
                 classifier, regions: Regions | None = None,
                 class_names: Sequence[str] | None = None, latent_map: LatentMap | None = None,
                 cached_map: LatentMap | None = None, on_map_fitted=None,
                 perplexity: float = 30.0, joint: bool = False, seed: int = 0, n_jobs: int = 1,
                 n_iter: int = 500, background: bool = True, max_grid: int = 64,
                 train_predicted=None, **kwargs):
        self._train_codes = check_codes("train_codes", train_codes, min_rows=4)
        n_latent = self._train_codes.shape[1]
        self._train_labels = check_labels("train_labels", train_labels,
                                          n_samples=len(self._train_codes)).numpy()
        if not isinstance(adversarial, AdversarialExamples):
            raise TypeError("adversarial must be AdversarialExamples; "
                            f"got {type(adversarial).__name__}.")
        self._adv = adversarial
        adv_codes = check_codes("adversarial.codes", adversarial.codes, n_latent=n_latent,
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
        self._points = PointImages(
            self._train_codes, self._train_labels, adversarial, self._vae, self._classifier,
            self._names, None if train_predicted is None else check_labels(
                "train_predicted", train_predicted, n_samples=len(self._train_codes)).numpy())
        self.latent_map: LatentMap | None = None
        self.figure: go.FigureWidget | None = None
        self.error_: BaseException | None = None
        self._lock = threading.RLock()
        self._click_callbacks, self._selection_callbacks, self._send_callbacks = [], [], []
        self._slice_callbacks, self._export_callbacks = [], []
        self._drawn = dict(point=None, selection=self.selection, hovered=None,
                           color_by=self.color_by)
        self._grid_pngs: list = []
        self._highlight_index = self._drawn_members = np.zeros(0, dtype=np.int64)
        self._ready = False
        super().__init__(**kwargs)

        self.error = ErrorBox()
        self._fit = MapFit(self._train_codes, adv_codes, latent_map=latent_map, cached=cached_map,
                           on_fitted=on_map_fitted, guard=self.error.guard,
                           params=dict(perplexity=perplexity, joint=joint, n_iter=n_iter,
                                       seed=seed, n_jobs=n_jobs))
        self.children = self._build_view(regions)
        self._ready = True
        self._fit.start(self._map_done, background=background)
        if not background and self.error_ is not None:
            raise self.error_

    def _build_view(self, regions) -> list:
        """Create the controls, the map's box and the side column; the explorer's children."""
        self._dropdown = W.Dropdown(options=_region_options(regions), description="Highlight",
                                    disabled=regions is None)
        self._color_dropdown = W.Dropdown(options=_color_options(regions),
                                          description="Colour by")
        traitlets.link((self, "color_by"), (self._color_dropdown, "value"))
        traitlets.link((self, "region"), (self._dropdown, "value"),
                       transform=(lambda r: _NO_REGION if r is None else r,
                                  lambda v: None if v == _NO_REGION else v))
        self._plot_box = W.Box(layout=W.Layout(width=f"{MAP_WIDTH}px", min_height="120px",
                                               flex=f"0 0 {MAP_WIDTH}px"))   # never clipped
        self._point_label = W.HTML("Click a point to see its decode.")
        self.image = W.Image(format="png", _dom_classes=["defuse-click-decode"],
                             layout=W.Layout(width="96px", height="96px", display="none"))
        self.thumbnail = W.Image(format="png", _dom_classes=["defuse-hover-thumbnail"],
                                 layout=W.Layout(width="96px", height="96px", display="none"))
        self._hover_label = W.HTML("Hover a point to see its decode.",
                                   _dom_classes=["defuse-hover-caption"])
        self._grid_label = W.HTML("Box- or lasso-select points to see their decodes.")
        self._send_button = W.Button(description="Show selection in gallery", icon="th",
                                     disabled=True, _dom_classes=["defuse-send-selection"],
                                     layout=W.Layout(width="auto", display="none"))
        self._send_button.on_click(self.error.guard("show selection in gallery",
                                                    lambda _: self.send_selection()))
        self.grid = W.HTML(layout=W.Layout(display="none"), _dom_classes=["defuse-selection-tiles"])
        self.slice_controls = SliceControls(self.save_slice, self.show_slice, self.export_slice,
                                            self.error.guard)
        return [
            self._fit.row,
            W.HBox([self._dropdown, self._color_dropdown]), self.error,
            W.HBox([self._plot_box, W.VBox([
                W.HBox([self.thumbnail, self._hover_label]), self._point_label, self.image,
                self._grid_label, self._send_button, self.slice_controls.row, self.grid],
                layout=W.Layout(flex="1 1 200px", min_width="200px", max_width="480px"))],
                layout=W.Layout(flex_flow="row wrap"))]   # the side column wraps below

    @classmethod
    def from_models(cls, classifier, vae, X_train, y_train, adversarial: AdversarialExamples,
                    regions: Regions | None = None, **kwargs) -> "LatentExplorer":
        """Encode ``X_train`` (n, C, H, W) with the VAE's encoder means, then build the explorer.

        ``kwargs`` are passed to :class:`LatentExplorer`.
        """
        X = check_images("X_train", X_train)
        codes = encode_mean(check_module("vae", vae), X).numpy()
        kwargs.setdefault("train_predicted", predict(check_module("classifier", classifier), X))
        return cls(codes, y_train, adversarial, vae=vae, classifier=classifier,
                   regions=regions, **kwargs)

    # ---------------------------------------------------------- map fitting
    def _map_done(self) -> None:
        self.error_, self._adv_xy, self.latent_map = (self._fit.error_, self._fit.adv_xy_,
                                                      self._fit.map_)
        m = self.latent_map
        self.status = "failed" if m is None else "stopped" if m.interrupted_ else "ready"

    def stop(self) -> None:
        """Stop the t-SNE optimisation; the map keeps the embedding reached so far."""
        self._fit.stop()

    def wait(self, timeout: float | None = None) -> "LatentExplorer":
        """Block until the map is fitted; re-raise the error if fitting failed."""
        self._fit.join(timeout)
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
        kind, index = self._points.check(kind, index)
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
        self.selection = picked = {kind: self._points.check_indices(kind, index)
                                   for kind, index in zip(KINDS, (train, adversarial))}
        for callback in self._selection_callbacks:
            callback(picked["train"], picked["adversarial"])

    def hover_point(self, kind: str, index: int) -> None:
        """Show the thumbnail of one point, as hovering it does (see :meth:`select_point`)."""
        self.hovered = self._points.check(kind, index)

    def selected_examples(self, max_n: int | None = None) -> dict:
        """The selection as the tiles show it (adversarial examples first): ``codes``
        (n, n_latent), ``kinds`` ("adversarial"/"train") and ``true_labels`` (n,), the
        arguments of :meth:`RegionGallery.show_selection`.
        """
        return self._points.examples(self.selection, max_n)

    def send_selection(self) -> None:
        """Hand the selection to every ``on_send_selection`` callback, as the
        "Show selection in gallery" button does.
        """
        if not self.selection or not sum(len(v) for v in self.selection.values()):
            raise ValueError("nothing is selected: box- or lasso-select points first.")
        for callback in self._send_callbacks:
            callback(self.selected_examples())

    def on_send_selection(self, callback: Callable[[dict], None]) -> None:
        """Call ``callback(selected_examples())`` when "Show selection in gallery" is
        pressed; the button shows once a callback is registered.
        """
        self._send_callbacks.append(callback)
        self._send_button.layout.display = None

    def save_slice(self, name: str) -> None:
        """Hand the selection to every ``on_save_slice`` callback under ``name``, as the
        "Save slice" button does (the dashboard keeps it in the session).
        """
        train, adv = (self.selection.get(k, ()) for k in KINDS)
        if not len(train) + len(adv):
            raise ValueError("nothing is selected: box- or lasso-select points first.")
        for callback in self._slice_callbacks:
            callback(name, np.asarray(train), np.asarray(adv))

    def show_slice(self, name: str) -> None:
        """Select the points of saved slice ``name`` again, as choosing it in the menu does."""
        if name not in self.slices:
            raise ValueError(f"name must be a saved slice, one of {sorted(self.slices)}; "
                             f"got {name!r}.")
        self.select_points(**self.slices[name])

    def on_save_slice(self, callback: Callable[[str, np.ndarray, np.ndarray], None]) -> None:
        """Call ``callback(name, train_rows, adversarial_rows)`` when a slice is saved; the
        slice controls show once a callback is registered.
        """
        self._slice_callbacks.append(callback)
        self.slice_controls.show()

    def on_export_slice(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(name)`` when "Export indices" is pressed on a saved slice."""
        self._export_callbacks.append(callback)

    def export_slice(self, name: str) -> None:
        """Ask every ``on_export_slice`` callback to export slice ``name``."""
        self.show_slice(name)
        for callback in self._export_callbacks:
            callback(name)

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

    def set_regions(self, regions: Regions | None) -> None:
        """Show new ``regions`` of the same adversarial examples in place.

        The widget stays the one on display (a notebook cell that shows it
        keeps showing it); the highlight is cleared and the colours redrawn.
        """
        if regions is not None and len(regions.assignment) != len(self._adv):
            raise ValueError("regions must be distilled from the explorer's adversarial "
                             f"examples: regions.assignment has {len(regions.assignment)} "
                             f"entries, adversarial has {len(self._adv)} examples.")
        with self._lock:
            self.region = None
            self._regions = regions
            color_by = self.color_by if regions is not None or self.color_by != "region" \
                else "true"
            self._dropdown.options = _region_options(regions)
            self._dropdown.disabled = regions is None
            self._color_dropdown.options = _color_options(regions)
            self.color_by = color_by
            self._drawn["color_by"] = None   # redraw: the regions' colours changed
        self._render()

    @traitlets.validate("region")
    def _valid_region(self, proposal):
        value = proposal["value"]
        if value is not None:
            if self._regions is None:
                raise ValueError("region must be None when no regions were given; "
                                 f"got {value}.")
            self._regions.check_region(value)
        return value

    # -------------------------------------------------------------- render
    @traitlets.observe("slices")
    def _render_slices(self, change=None) -> None:
        """The saved-slice menu follows ``slices``."""
        if hasattr(self, "slice_controls"):   # traitlets may call this before __init__ ends
            self.slice_controls.render(self.slices)

    @traitlets.observe("status", "region", "point", "selection", "hovered", "color_by")
    def _render(self, change=None) -> None:
        """Rebuild the view from (status, region, point, selection, hovered, color_by);
        each part is redrawn only when its state differs from what is drawn.
        """
        if not self._ready:
            return
        with self._lock:
            if self.figure is None and self.status in ("ready", "stopped"):
                self._build_figure()
            members = (np.zeros(0, dtype=np.int64) if self.region is None
                       else self._regions.members(self.region))
            self._highlight_index = members
            if self.figure is not None and not np.array_equal(members, self._drawn_members):
                highlight(self.figure, self._adv_xy[members], f"region {self.region}")
                self._drawn_members = members
            parts = dict(color_by=self._render_colors, point=self._render_point,
                         hovered=self._render_hover, selection=self._render_selection)
            for name, draw in parts.items():
                value = getattr(self, name)
                if self._drawn[name] is not value and (name != "color_by" or
                                                       self.figure is not None):
                    draw()
                    self._drawn[name] = value

    def _render_colors(self) -> None:
        """Regroup the traces for ``color_by``: the legend is its colour key and filter."""
        replace_traces(self.figure, self._traces(), self.color_by)
        self._connect(self.figure)

    def _traces(self) -> list:
        """The map's traces for ``color_by`` (``_index_of`` follows them), highlight last."""
        groups = map_groups(self.color_by, self._names, train_labels=self._train_labels,
                            adversarial=self._adv,
                            train_predicted=self._points.train_predicted()
                            if self.color_by == "predicted" else None,
                            assignment=None if self._regions is None
                            else self._regions.assignment)
        self._index_of = [(g.kind, g.idx) for g in groups]
        return map_traces(groups, self.latent_map.embedding_, self._adv_xy, self._adv,
                          self._adv_xy[self._drawn_members])

    def _connect(self, fig) -> None:
        MapEvents(self._index_of, lambda: self._highlight_index, click=self.select_point,
                  hover=self.hover_point, select=self.select_points, done=self.error.clear,
                  guard=lambda what, f: self.error.guard(what, f, clear=False)).connect(fig)

    def _render_point(self) -> None:
        self.image.layout.display = "none" if self.point is None else None
        if self.point is None:   # an empty Image shows a broken-image icon: hide it
            self.image.value = b""
            return
        kind, i = self.point
        self.image.value, p = self._points.png(kind, i)
        self._point_label.value = self._points.caption(kind, i)

    def _render_hover(self) -> None:
        if self.hovered is None:
            return   # the last thumbnail stays: no flicker between points
        kind, i = self.hovered
        self.thumbnail.value, _ = self._points.png(kind, i)
        self.thumbnail.layout.display = None
        self._hover_label.value = f"<small>{self._points.caption(kind, i)}</small>"

    def _render_selection(self) -> None:
        n = {kind: len(self.selection.get(kind, ())) for kind in KINDS}
        shown = self.selected_examples(self._max_grid)
        self.grid.layout.display = None if sum(n.values()) else "none"
        self._send_button.disabled = not sum(n.values())
        self.slice_controls.allow_save(bool(sum(n.values())))
        if not sum(n.values()):
            self.grid.value, self._grid_pngs = "", []
            self._grid_label.value = "Box- or lasso-select points to see their decodes."
            return
        self._grid_pngs, self.grid.value = self._points.tiles(shown, size=48)
        self._grid_label.value = (f"{sum(n.values())} selected ({n['adversarial']} adversarial,"
                                  f" {n['train']} training); showing {len(self._grid_pngs)}")

    @property
    def selection_images(self) -> list:
        """PNG bytes of each selection tile on display, in order."""
        return list(self._grid_pngs)

    def _build_figure(self) -> None:
        """Create the FigureWidget: a Scattergl per legend entry, then the region highlight."""
        fig = map_figure(self._traces(), self.color_by)
        self._connect(fig)
        self.figure = fig
        self._drawn["color_by"] = self.color_by
        self._plot_box.children = [fig]


def _region_options(regions: Regions | None) -> list:
    counts = [] if regions is None else regions.member_counts
    return [("no region", _NO_REGION)] + [(f"region {k} · {c} members", k)
                                         for k, c in enumerate(counts)]


def _color_options(regions: Regions | None) -> list:
    return [o for o in COLOR_BY if regions is not None or o[1] != "region"]
