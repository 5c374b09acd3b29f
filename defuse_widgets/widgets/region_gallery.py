"""Browse misclassification regions through decoded samples (paper Fig. 3).

Each region j is shown as decodes of codes z ~ N(μ_j, τ Σ_j), the classifier's
prediction in red in each image's corner, next to the region's weight π_j, its
member count, its source-class → predicted-class confusions and, given a
:class:`~defuse_widgets.stages.grounding.RegionGrounding`, the real validation
and test images that fall in it and the classifier's accuracy on them. The
"all" view draws every region from one decode and one classifier pass as
captioned cards in one HTML widget; the "selection" view shows codes handed over by
:meth:`RegionGallery.show_selection` (the latent map's selection) as
captioned tiles. "Resampling…" (CSS class ``defuse-busy``) shows while a
view is redrawn.
"""
from __future__ import annotations

import base64
import html
import math
from typing import Sequence

import ipywidgets as W
import numpy as np
import traitlets

from defuse_widgets._validation import check_choice, check_codes, check_module, check_number
from defuse_widgets.models.precision import PRECISIONS
from defuse_widgets.stages.grounding import RegionGrounding
from defuse_widgets.stages.region_preview import decode_and_predict, preview_regions, sample_seed
from defuse_widgets.stages.regions import Regions
from defuse_widgets.widgets._errors import ErrorBox
from defuse_widgets.widgets._grounding_view import VERDICTS as _VERDICT_WORDS
from defuse_widgets.widgets._grounding_view import check_grounding, grounding_html
from defuse_widgets.widgets._render import class_labels, grid_png, saliency_overlay
from defuse_widgets.widgets._tiles import spread_index, tile_pngs, tiles_html

__all__ = ["RegionGallery", "sample_seed"]

#: An image next to a tall column is not stretched to its height (flexbox's default).
_KEEP_ASPECT = dict(align_self="flex-start", object_fit="contain", max_width="100%")


class RegionGallery(W.VBox):
    """Decoded samples from one misclassification region, or from all of them.

    Parameters
    ----------
    regions : Regions
        The distilled misclassification regions.
    vae : BetaVAE or any module with ``decode(z)``
        Decodes codes of shape (n, n_latent) into images (n, C, H, W).
    classifier : nn.Module
        Maps images (n, C, H, W) to logits (n, n_classes); its predictions are
        drawn in red.
    class_names : sequence of str, optional
        Name of each class; defaults to the class indices.
    tau : float, default=0.5
        Sample diversity τ (paper: 0.5 for MNIST, 0.01 for SVHN/GTSRB).
    n_samples : int, default=16
        Samples per region.
    mode : {"single", "all", "selection"}, default="single"
        One region at a time, every region as a row, or the examples given to
        :meth:`show_selection` (for example a latent-map selection).
    tau_range : (float, float), default=(1e-3, 2.0)
        Range of the logarithmic τ slider; ``tau`` must lie inside it.
    ncols : int, default=8
        Images per grid row.
    size : int, default=64
        Side of each image in pixels.
    grounding : RegionGrounding, optional
        Real images per region (``Session.ground_regions``), shown with each
        region's statistics; None shows none.
    max_selection : int, default=64
        Most tiles shown by :meth:`show_selection`.
    precision : {"auto", "bf16", "fp32"}, default="auto"
        Classify the decodes under bf16 autocast where the hardware runs it
        natively ("auto"), as identification does: about twice as fast on a CPU
        with AMX. Decodes stay fp32.

    Attributes
    ----------
    region, tau, resample_count, mode, n_samples, grounding, selection, saliency : traitlets
        The state the view is rebuilt from; ``selection`` is the dict given to
        :meth:`show_selection` (``codes``, ``kinds``, ``true_labels``); ``saliency``
        overlays each sample's SmoothGrad map for the predicted class (the
        "SmoothGrad saliency" box; ``SALIENCY_COPIES`` noisy copies per image, seeded).
    busy : traitlet, bool
        True while the view is being redrawn (decode, classify, draw).
    image : ipywidgets.Image
        The single-mode grid.
    all_view : ipywidgets.HTML
        The "all" mode's cards (CSS ``defuse-card``, images ``defuse-card-image``).
    stats : ipywidgets.HTML
        The single-mode region statistics.
    busy_indicator : ipywidgets.HTML
        "Resampling…", CSS class ``defuse-busy``; shown (and the τ slider and
        Resample disabled) only while the view is redrawn. Its message goes to
        the page before the work starts, so a browser sees it during the work.
    selection_view : ipywidgets.HTML
        The selection mode's captioned tiles (CSS class ``defuse-selection``).

    Examples
    --------
    >>> gallery = RegionGallery(regions, vae, classifier, class_names=list("0123456789"))
    >>> gallery.tau = 0.01          # tighter samples
    >>> gallery.next_region()
    >>> gallery.resample()
    >>> gallery.mode = "all"
    >>> gallery.show_selection(codes, kinds=["adversarial"] * len(codes), true_labels=y)
    """

    region = traitlets.Int(0)
    tau = traitlets.Float(0.5)
    resample_count = traitlets.Int(0)
    mode = traitlets.Enum(["single", "all", "selection"], default_value="single")
    saliency = traitlets.Bool(False, help="Overlay each sample's SmoothGrad saliency map.")
    n_samples = traitlets.Int(16)
    grounding = traitlets.Instance(RegionGrounding, allow_none=True)
    selection = traitlets.Dict()
    busy = traitlets.Bool(False)

    def __init__(self, regions: Regions, vae, classifier, class_names: Sequence[str] | None = None,
                 *, tau: float = 0.5, n_samples: int = 16, mode: str = "single",
                 tau_range: tuple = (1e-3, 2.0), ncols: int = 8, size: int = 64,
                 grounding: RegionGrounding | None = None, max_selection: int = 64,
                 precision: str = "auto", **kwargs):
        if not isinstance(regions, Regions):
            raise TypeError(f"regions must be a Regions; got {type(regions).__name__}.")
        if len(regions) == 0:
            raise ValueError("regions must hold at least one region; got 0.")
        lo = check_number("tau_range[0]", tau_range[0], low=0, low_inclusive=False)
        hi = check_number("tau_range[1]", tau_range[1], low=lo, low_inclusive=False)
        self._regions = regions
        self._vae = check_module("vae", vae)
        self._classifier = check_module("classifier", classifier)
        self._class_names = class_labels(class_names, regions.n_classes)
        self._tau_range = (lo, hi)
        self._ncols, self._size, self._max_selection = ncols, size, max_selection
        self._precision = check_choice("precision", precision, PRECISIONS)

        counts = regions.member_counts
        self._dropdown = W.Dropdown(
            options=[(f"region {k} · π={regions.weights[k]:.3f} · {counts[k]} members", k)
                     for k in range(len(regions))], description="Region",
            layout=W.Layout(width="320px"))
        self._prev = W.Button(description="◀ prev", layout=W.Layout(width="80px"))
        self._next = W.Button(description="next ▶", layout=W.Layout(width="80px"))
        self._slider = W.FloatLogSlider(base=10, min=math.log10(lo), max=math.log10(hi),
                                        step=0.01, value=tau, description="τ",
                                        readout_format=".3g", continuous_update=False)
        self._resample_button = W.Button(description="Resample", icon="refresh")
        self._mode_toggle = W.ToggleButtons(options=[("one", "single"), ("all", "all"),
                                                     ("selection", "selection")],
                                            style={"button_width": "88px"},
                                            layout=W.Layout(width="auto"))
        self._n_input = W.BoundedIntText(min=1, max=4096, description="samples",
                                         layout=W.Layout(width="150px"))
        self._saliency_box = W.Checkbox(description="SmoothGrad saliency", indent=False,
                                        layout=W.Layout(width="auto"))
        self.stats = W.HTML()
        self.image = W.Image(format="png", layout=W.Layout(**_KEEP_ASPECT))
        self.busy_indicator = W.HTML("<b style='color:#b35c00'>Resampling…</b>",
                                     layout=W.Layout(display="none"))
        self.busy_indicator.add_class("defuse-busy")
        self.selection_view = W.HTML()
        self.selection_view.add_class("defuse-selection")
        # the "all" view: every region's card in one HTML widget, so that a redraw is one
        # message and one DOM update (19 Image widgets were 38 messages, ~0.2 s in a page)
        self.all_view = W.HTML(_dom_classes=["defuse-all-regions"])
        self._all_pngs: list = []
        self._selection_pngs: list = []
        self._view = W.VBox()
        self._ready = False   # no rendering until every control is in place
        super().__init__(**kwargs)

        self.tau, self.n_samples, self.mode = tau, n_samples, mode
        self.grounding = check_grounding(grounding, regions)
        for name, control in [("region", self._dropdown), ("tau", self._slider),
                              ("mode", self._mode_toggle), ("n_samples", self._n_input),
                              ("saliency", self._saliency_box)]:
            traitlets.link((self, name), (control, "value"))
        self.error = ErrorBox()
        self._prev.on_click(self.error.guard("previous region", lambda _: self.previous_region()))
        self._next.on_click(self.error.guard("next region", lambda _: self.next_region()))
        self._resample_button.on_click(self.error.guard("resample", lambda _: self.resample()))

        self.children = [W.HBox([self._dropdown, self._prev, self._next, self._mode_toggle]),
                         W.HBox([self._slider, self._resample_button, self._n_input,
                                 self._saliency_box, self.busy_indicator]),
                         self.error, self._view]
        self._ready = True
        self._render()

    # ------------------------------------------------------------ triggers
    def next_region(self) -> None:
        """Show the next region, wrapping from the last to the first."""
        self.region = (self.region + 1) % len(self._regions)

    def previous_region(self) -> None:
        """Show the previous region, wrapping from the first to the last."""
        self.region = (self.region - 1) % len(self._regions)

    def resample(self) -> None:
        """Draw new samples (increments ``resample_count``)."""
        self.resample_count += 1

    def show_selection(self, codes, *, kinds: Sequence[str] | None = None,
                       true_labels=None) -> None:
        """Show the decodes of ``codes`` as captioned tiles (``mode="selection"``).

        Parameters
        ----------
        codes : ndarray of shape (n, n_latent)
            For example the latent explorer's selection
            (:meth:`LatentExplorer.selected_examples`).
        kinds : sequence of {"adversarial", "train"} of length n, optional
            What each code is; all "adversarial" by default.
        true_labels : array-like of int, shape (n,), optional
            Class of each code's source image; the tiles say it. Unknown (-1) by default.
        """
        codes = check_codes("codes", codes, n_latent=self._regions.n_latent, min_rows=0)
        n = len(codes)
        kinds = ["adversarial"] * n if kinds is None else [str(k) for k in kinds]
        labels = np.full(n, -1) if true_labels is None else np.asarray(true_labels).ravel()
        if len(kinds) != n or len(labels) != n:
            raise ValueError(f"kinds and true_labels must have one entry per code ({n}); "
                             f"got {len(kinds)} and {len(labels)}.")
        if set(kinds) - {"adversarial", "train"}:
            raise ValueError("kinds must be 'adversarial' or 'train'; got "
                             f"{sorted(set(kinds) - {'adversarial', 'train'})}.")
        self._ready = False   # one redraw for both traits
        self.selection = dict(codes=codes, kinds=kinds, true_labels=labels.astype(np.int64))
        self.mode = "selection"
        self._ready = True
        self._render()

    # ---------------------------------------------------------- validation
    @traitlets.validate("region")
    def _valid_region(self, proposal):
        return self._regions.check_region(proposal["value"])

    @traitlets.validate("tau")
    def _valid_tau(self, proposal):
        lo, hi = self._tau_range
        return check_number("tau", proposal["value"], low=lo, high=hi)

    @traitlets.validate("grounding")
    def _valid_grounding(self, proposal):
        return check_grounding(proposal["value"], self._regions)

    @traitlets.validate("n_samples")
    def _valid_n_samples(self, proposal):
        if proposal["value"] < 1:
            raise ValueError(f"n_samples must be >= 1; got {proposal['value']}.")
        return proposal["value"]

    # -------------------------------------------------------------- render
    @traitlets.observe("saliency", "region", "tau", "resample_count", "mode", "n_samples",
                       "grounding",
                       "selection")
    def _render(self, change=None) -> None:
        """Rebuild the view from (region, tau, resample_count, mode, n_samples, grounding,
        selection), with the busy indicator shown while it works.
        """
        if not self._ready:
            return
        # each of these goes to the page at once (the kernel's IOPub thread sends
        # comm messages as they are made), so the browser shows the busy state
        # while the work below runs, and hides it after
        for control in (self._dropdown, self._prev, self._next):   # one region: "one" mode
            control.disabled = self.mode != "single"
        self.busy = self._slider.disabled = self._resample_button.disabled = True
        self.busy_indicator.layout.display = None
        try:
            self._draw()
        except Exception as exc:   # a slider move's failure shows here, not in a log
            self.error.show(exc, f"drawing region {self.region} at τ={self.tau:g}")
        else:
            self.error.clear()
        finally:
            self.busy_indicator.layout.display = "none"
            self.busy = self._slider.disabled = self._resample_button.disabled = False

    def _draw(self) -> None:
        if self.mode == "single":
            self.stats.value = self._stats_html(self.region)
            self.image.value = self._grids([self.region])[0]
            self._show(self.stats, self.image)
        elif self.mode == "all":
            self._all_pngs = self._grids(range(len(self._regions)))
            self.all_view.value = (
                "<div style='display:flex;flex-flow:row wrap'>" + "".join(
                    f"<div class='defuse-card' style='margin:0 12px 10px 0'>"
                    f"{self._card_html(k)}<img class='defuse-card-image' alt='region {k}' "
                    f"style='display:block;max-width:100%' src='data:image/png;base64,"
                    f"{base64.b64encode(png).decode('ascii')}'></div>"
                    for k, png in enumerate(self._all_pngs)) + "</div>")
            self._show(self.all_view)
        else:
            self._draw_selection()

    def _show(self, *parts) -> None:
        """Show ``parts``; the other modes' widgets stay in the page, hidden, so that a mode
        switch redraws images and does not make the page build 19 cards again.
        """
        kids = list(self._view.children)
        kids += [p for p in parts if p not in kids]
        for p in kids:
            p.layout.display = None if p in parts else "none"
        if tuple(kids) != self._view.children:
            self._view.children = kids

    @property
    def shown(self) -> tuple:
        """The widgets on display in the view, in order."""
        return tuple(p for p in self._view.children if p.layout.display != "none")

    def _grids(self, ks) -> list:
        """PNG grids of regions ``ks``: one decode and one classifier pass for all of them."""
        previews = preview_regions(self._regions, self._vae, self._classifier, ks,
                                   n=self.n_samples, tau=self.tau,
                                   resample_count=self.resample_count, saliency=self.saliency,
                                   precision=self._precision)
        return [grid_png(p.images if p.saliency is None else saliency_overlay(p.images,
                                                                              p.saliency),
                         [self._class_names[c] for c in p.predicted], ncols=self._ncols,
                         size=self._size) for p in previews]

    def _draw_selection(self) -> None:
        codes = self.selection.get("codes", np.zeros((0, self._regions.n_latent)))
        n, shown = len(codes), min(len(codes), self._max_selection)
        if not n:
            self._selection_pngs = []
            self.selection_view.value = (
                "<i>No selection yet: box- or lasso-select points in the latent map, then "
                "press <b>Show selection in gallery</b>.</i>")
        else:
            keep = spread_index(n, shown)
            kinds = [self.selection["kinds"][i] for i in keep]
            labels = np.asarray(self.selection["true_labels"])[keep]
            images, predicted = decode_and_predict(self._vae, self._classifier, codes[keep],
                                                   precision=self._precision)
            names = self._class_names + ["?"]   # true label -1: unknown
            self._selection_pngs = tile_pngs(images, size=self._size)
            n_adv = sum(k == "adversarial" for k in self.selection["kinds"])
            self.selection_view.value = (
                f"<b>Selection</b>: {n} examples ({n_adv} adversarial, {n - n_adv} training)"
                f"; showing {shown}" + tiles_html(self._selection_pngs, kinds, labels.tolist(),
                                                   predicted, names, size=self._size))
        self._show(self.selection_view)

    def _card_html(self, k: int) -> str:
        """The "all" view's caption of region ``k``: one line, its top confusion, its verdict."""
        r, name = self._regions, self._class_names
        top = r.top_confusions(k, 1)
        conf = "".join(f"<br>{html.escape(name[s])} → <span style='color:#c00'>"
                       f"{html.escape(name[p])}</span> ({c})" for s, p, c in top)
        verdict = ""
        if self.grounding is not None and self.grounding.verdict(k) in _VERDICT_WORDS:
            color, word = _VERDICT_WORDS[self.grounding.verdict(k)]
            verdict = f"<br><b style='color:{color}'>{word}</b>"
        return (f"<div style='font-size:90%;line-height:1.3'><b>Region {k}</b> · π = "
                f"{r.weights[k]:.3f} · {int(r.member_counts[k])} members{conf}{verdict}</div>")

    def _stats_html(self, k: int) -> str:
        r, name = self._regions, self._class_names
        rows = "".join(f"<tr><td>{html.escape(name[s])}</td><td>→</td>"
                       f"<td style='color:#c00'>{html.escape(name[p])}</td><td>{c}</td></tr>"
                       for s, p, c in r.top_confusions(k, 5))
        return (f"<b>Region {k}</b><br>weight π = {r.weights[k]:.4f}<br>"
                f"members = {int(r.member_counts[k])}<br>"
                "<table style='font-size:90%'><tr><th>source</th><th></th>"
                f"<th>predicted</th><th>n</th></tr>{rows}</table>"
                + grounding_html(self.grounding, k))

    # ----------------------------------------------------------- accessors
    @property
    def images(self) -> list:
        """PNG bytes of every grid on display (one per region shown), or of every
        tile in the selection mode (one per example shown).
        """
        if self.mode == "single":
            return [self.image.value]
        if self.mode == "selection":
            return list(self._selection_pngs)
        return list(self._all_pngs)
