"""The labeling panel: annotators vote on each region's review set (paper §4.1, Fig. 15).

One image at a time with the classifier's prediction in red, a button per class
and "None of the above". Every vote is committed to the SQLite
:class:`~defuse_widgets.storage.annotations.AnnotationStore` at once, so a new panel on
the same file resumes where the annotator stopped. The panel only drives the
core (:mod:`~defuse_widgets.stages.failure_data`, :mod:`~defuse_widgets.stages.labeling`).
"""
from __future__ import annotations

import contextlib
import html
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import ipywidgets as widgets
import traitlets
from torch import nn

from defuse_widgets.storage.annotations import MISSING, NONE_OF_THE_ABOVE, AnnotationStore, Vote
from defuse_widgets.stages.failure_data import export_failure_data, review_set
from defuse_widgets.stages.grounding import RegionGrounding
from defuse_widgets.stages.labeling import decide
from defuse_widgets.stages.regions import Regions
from defuse_widgets.widgets._background import plain_button, red
from defuse_widgets.widgets._labeling_view import (KEYS_HELP, agreement_html,
                                                sample_html)
from defuse_widgets.widgets._errors import ErrorBox
from defuse_widgets.widgets._grounding_view import check_grounding
from defuse_widgets.widgets._keys import KeyCapture
from defuse_widgets.widgets._labeling_nav import ReviewNavigation
from defuse_widgets._validation import check_module
from defuse_widgets.models.inference import predict_proba
from defuse_widgets.models.probes import check_decoder_fit
from defuse_widgets.models.saliency import smoothgrad
from defuse_widgets.widgets._render import class_labels, to_png
from defuse_widgets.widgets._review_image import ReviewImage

__all__ = ["KEYS_HELP", "LabelingPanel"]


class LabelingPanel(ReviewNavigation, widgets.VBox):
    """Collect annotator votes on the review sets of distilled regions.

    Parameters
    ----------
    store : AnnotationStore or str or os.PathLike
        The vote store, or the path of its SQLite file (opened, or created
        with ``regions.n_classes`` classes, and closed by :meth:`close`).
    regions : Regions
        Candidate misclassification regions from distillation.
    decoder : BetaVAE or any module with ``decode(z)``
    classifier : nn.Module
        Its prediction on each review sample is shown in red and recorded with
        ``store.set_review_set`` the first time the region is shown.
    class_names : sequence of str, optional
        One per class; default ``"0" .. str(n_classes - 1)``.
    annotator : str, default=""
        Who votes; votes are refused while empty.
    review_size : int, default=10
        Review samples per region (paper: 10).
    tau : float, default=0.5
        Sample diversity τ of N(μ, τΣ).
    seed : int, default=0
        Base seed; region k's review set is always the same for a given seed.
    rho : float, default=0.5
        Disagreement share above which a region is a misclassification region.
    n_finetune : int, default=256
        Samples per accepted region in the exported D_f.
    export_path : str or os.PathLike, optional
        Where :meth:`export` writes; default ``failure_data.npz`` next to the store.
    on_export : callable(decisions) -> (X_f, y_f), optional
        Builds and saves D_f instead (the dashboard passes its session's
        ``export_failure_data``, so the panel writes no file itself).
    device : str or torch.device, optional
        Where to decode and predict; by default the decoder's device.
    grounding : RegionGrounding, optional
        Real images per region (``Session.ground_regions``), shown with the region's info.

    Raises
    ------
    ValueError
        When ``decoder`` takes codes of another latent size than ``regions``.

    Attributes
    ----------
    position : tuple of (int, int)
        The shown ``(region, sample)``; set it to move.

    Examples
    --------
    >>> panel = LabelingPanel("votes.sqlite", regions, vae, clf, annotator="ada")  # doctest: +SKIP
    >>> panel.handle_key("8")  # vote 8 for the shown sample  # doctest: +SKIP
    """

    annotator = traitlets.Unicode("")
    position = traitlets.Tuple(traitlets.Int(), traitlets.Int(), default_value=(0, 0))
    rho = traitlets.Float(0.5)
    status = traitlets.Unicode("")
    grounding = traitlets.Instance(RegionGrounding, allow_none=True)

    def __init__(self, store: AnnotationStore | str | os.PathLike, regions: Regions,
                 decoder: nn.Module, classifier: nn.Module, *,
                 class_names: Sequence[str] | None = None, annotator: str = "",
                 review_size: int = 10, tau: float = 0.5, seed: int = 0, rho: float = 0.5,
                 n_finetune: int = 256, export_path: str | os.PathLike | None = None,
                 on_export: Callable | None = None,
                 device: Any = None, grounding: RegionGrounding | None = None):
        super().__init__()
        if not isinstance(regions, Regions) or len(regions) == 0:
            raise TypeError(f"regions must be a non-empty Regions object; got {regions!r:.60}.")
        check_decoder_fit("decoder", check_module("decoder", decoder), regions.n_latent,
                          source="the regions' latent size")
        self._owns_store = not isinstance(store, AnnotationStore)
        self.store = (AnnotationStore(store, n_classes=regions.n_classes) if self._owns_store
                      else store)
        if self.store.n_classes != regions.n_classes:
            raise ValueError(f"store must have the regions' {regions.n_classes} classes; "
                             f"got {self.store.n_classes}.")
        self.class_names = class_labels(class_names, regions.n_classes)
        self.regions, self.decoder, self.classifier = regions, decoder, classifier
        self.review_size, self.tau, self.seed = int(review_size), float(tau), int(seed)
        self.n_finetune, self.device = int(n_finetune), device
        self._export_hook = on_export
        self.export_path = (Path(export_path) if export_path is not None
                            else self.store.path.with_name("failure_data.npz"))
        self._cache: dict[int, dict] = {}
        self._vote_callbacks: list[Callable[[Vote], Any]] = []
        self._hold = 1  # no render until the view exists
        self._build()
        self.rho, self.grounding = rho, check_grounding(grounding, regions)
        self.annotator = annotator
        self._resume()
        self._hold = 0
        self._render()

    # -- view -----------------------------------------------------------------------
    def _build(self) -> None:
        self.error = ErrorBox()

        def _button(description, callback, **kw):   # every click shows its own errors
            return plain_button(description, self.error.guard(description, callback), **kw)

        self._name = widgets.Text(description="Annotator", placeholder="your name",
                                  continuous_update=False)
        traitlets.link((self, "annotator"), (self._name, "value"))
        self._progress = widgets.IntProgress(min=0, max=len(self.regions), description="Done")
        self._progress_label = widgets.Label()
        self._image = ReviewImage(saliency_map=lambda x: smoothgrad(self.classifier, x))
        self._info, self._agreement = widgets.HTML(), widgets.HTML()
        self._thumbs = [widgets.Image(format="png", width=48, height=48)
                        for _ in range(self.review_size)]
        self._thumb_buttons = [_button("·", lambda i=i: self.goto(self.position[0], i),
                                       width="54px",
                                       tooltip=f"go to sample {i + 1}")
                               for i in range(self.review_size)]
        self._class_buttons = [_button(name, lambda c=c: self.vote(c),
                                       tooltip=f"key {c}" if c < 10 else "")
                               for c, name in enumerate(self.class_names)]
        self._none = _button("None of the above", lambda: self.vote(NONE_OF_THE_ABOVE),
                             tooltip="key n")
        self._prev = _button("◀ Previous", lambda: self.move(-1), tooltip="key ←")
        self._next = _button("Next ▶", lambda: self.move(1), tooltip="key →")
        self._unlabelled = _button("Next unlabelled", self.next_unlabelled, icon="forward",
                                   tooltip="key u: your next sample without a vote")
        self._undo = _button("Undo", self.undo, icon="undo", tooltip="key Backspace")
        self._skip = _button("Skip region", self.skip, tooltip="leave this region for now")
        digits = [str(c) for c in range(min(10, len(self.class_names)))]
        self._keys = KeyCapture(capture=[*digits, "n", "N", "Backspace", "ArrowLeft",
                                      "ArrowRight", ",", ".", "u"],
                                prompt="⌨ click here, then press keys")
        self._keys.on_key(self.error.guard("key", self.handle_key))
        self._export = _button("Export D_f", self._on_export, icon="download",
                               tooltip="save the accepted regions' failure data as .npz")
        self._status = widgets.HTML()
        traitlets.dlink((self, "status"), (self._status, "value"))
        strip = [widgets.VBox([img, b]) for img, b in zip(self._thumbs, self._thumb_buttons)]
        wrap = widgets.Layout(flex_flow="row wrap")
        self.children = [
            widgets.HTML("<b>Defuse labeling</b>: is the classifier's prediction (red) "
                         "right? Vote for the class you see."),
            widgets.HBox([self._name, self._progress, self._progress_label]),
            widgets.HBox([self._image, widgets.VBox([self._info, self._agreement])]),
            widgets.HBox(strip, layout=wrap),
            widgets.HBox(self._class_buttons + [self._none], layout=wrap),
            widgets.HBox([self._prev, self._next, self._unlabelled, self._undo, self._skip]),
            widgets.HBox([self._keys, widgets.HTML(KEYS_HELP)]),
            widgets.HBox([self._export, self._status]),
            self.error,
        ]

    @traitlets.observe("annotator", "position", "rho", "grounding")
    def _render(self, change=None) -> None:
        """Rebuild the view from ``annotator``, ``position``, ``rho``, ``grounding``, the store."""
        if self._hold:
            return
        k, i = self.position
        review = self._review(k)
        names, matrix = self.store.vote_matrix(k)
        who = self.annotator.strip()
        mine = matrix[names.index(who)] if who in names else [MISSING] * self.review_size
        done = self.store.progress(who)["regions_done"] if who else 0
        self._progress.value = done
        self._progress_label.value = f"{done}/{len(self.regions)} regions done"
        predicted = self.class_names[review["predicted"][i]]
        self._image.show(review["images"][i], predicted)
        self._info.value = sample_html(k, len(self.regions), i, self.review_size, predicted,
                                       self._name_of(mine[i]), self.grounding,
                                       confidence=review["confidence"][i])
        for j, (img, b) in enumerate(zip(self._thumbs, self._thumb_buttons)):
            img.value = review["thumb"][j]
            img.layout.border = "3px solid #1f77b4" if j == i else "3px solid transparent"
            b.description = self._name_of(mine[j]) if mine[j] != MISSING else "·"
            b.button_style = "info" if j == i else ("success" if mine[j] != MISSING else "")
        for c, b in enumerate(self._class_buttons + [self._none]):
            label = NONE_OF_THE_ABOVE if c == len(self._class_buttons) else c
            b.button_style = "success" if mine[i] == label else ""
            b.disabled = not who
        self._undo.disabled = not who
        self._agreement.value = agreement_html(names, matrix, review["predicted"], k, self.rho,
                                                    self.class_names)
        accepted = sum(d.is_misclassification_region for d in self.decisions())
        self._export.description = f"Export D_f ({accepted} region{'s' * (accepted != 1)})"

    def _name_of(self, label: int) -> str:
        if label == MISSING:
            return "–"
        return "none" if label == NONE_OF_THE_ABOVE else self.class_names[label]

    @contextlib.contextmanager
    def _held(self):
        """Render once, at the end, however many state changes happen inside."""
        self._hold += 1
        try:
            yield
        finally:
            self._hold -= 1
            self._render()

    # -- state ----------------------------------------------------------------------
    def _review(self, k: int) -> dict:
        """Region k's review set as PNGs, recorded in the store on first show."""
        if k not in self._cache:
            images, predicted = review_set(self.regions, k, self.decoder, self.classifier,
                                           size=self.review_size, tau=self.tau, seed=self.seed,
                                           device=self.device)
            try:
                self.store.set_review_set(k, predicted)
            except (ValueError, PermissionError) as exc:   # another set, or a read-only store
                self.status = red(exc)
            proba = predict_proba(self.classifier, images, device=self.device or "cpu")
            self._cache[k] = {"predicted": predicted, "images": images,
                              "confidence": proba.max(1).values.numpy(),
                              "thumb": [to_png(x, size=48, label=self.class_names[p])
                                        for x, p in zip(images, predicted)]}
        return self._cache[k]

    def decisions(self) -> list:
        """The ρ rule's decisions on the votes so far (regions of this panel only); saves nothing.

        Returns
        -------
        list of RegionDecision
        """
        return [d for d in decide(self.store, rho=self.rho) if d.region < len(self.regions)]

    @traitlets.validate("grounding")
    def _valid_grounding(self, proposal):
        return check_grounding(proposal["value"], self.regions)

    @traitlets.validate("position")
    def _valid_position(self, proposal) -> tuple:
        k, i = proposal["value"]
        if not (0 <= k < len(self.regions) and 0 <= i < self.review_size):
            raise traitlets.TraitError(f"position must be (region, sample) in [0, "
                                       f"{len(self.regions) - 1}] x [0, {self.review_size - 1}];"
                                       f" got {(k, i)}.")
        return (int(k), int(i))

    @traitlets.observe("annotator")
    def _on_annotator(self, change) -> None:
        if not self._hold:
            with self._held():
                self._resume()

    def _resume(self) -> None:
        """Go to the annotator's first sample without a vote (as stored)."""
        who = self.annotator.strip()
        if not who:
            self.status = "Enter your name as annotator to start voting."
            return
        nxt = self.store.progress(who)["next"]
        if nxt is None or nxt[0] >= len(self.regions):
            shown = set(self.store.regions())
            fresh = [k for k in range(len(self.regions)) if k not in shown]
            nxt = (fresh[0], 0) if fresh else None
        if nxt is not None:
            self.position = nxt
        self.status = html.escape(f"{who}: every region is labelled, thank you!" if nxt is None
                                  else f"Welcome {who}: resuming at region {nxt[0]}, "
                                  f"sample {nxt[1] + 1}.")

    # -- actions (what the buttons and keys call) -----------------------------------
    def vote(self, label: int) -> Vote | None:
        """Store the annotator's vote for the shown sample and move to the next one.

        Parameters
        ----------
        label : int
            Class index, or ``NONE_OF_THE_ABOVE`` (-1).

        Returns
        -------
        Vote or None
            The committed vote; None when no annotator name is set or the store
            is read-only (the status line says so).
        """
        who = self.annotator.strip()
        if not who:
            self.status = "Enter your name as annotator before voting."
            return None
        k, i = self.position
        self._review(k)
        try:
            v = self.store.cast_vote(who, k, i, label)
        except PermissionError as exc:   # a read-only store: say so where the user looks
            self.status = red(exc)
            return None
        with self._held():
            self.status = html.escape(f"Saved: region {k}, sample {i + 1} → "
                                      f"{self._name_of(v.label)}.")
            self.move(1)
        for callback in self._vote_callbacks:
            callback(v)
        return v

    def undo(self) -> Vote | None:
        """Delete the annotator's most recent vote and show its sample again."""
        who = self.annotator.strip()
        v = self.store.undo(who) if who else None
        with self._held():
            if v is None:
                self.status = "Nothing to undo."
            else:
                self.position = (v.region, v.sample)
                self.status = html.escape(f"Undone: region {v.region}, sample "
                                          f"{v.sample + 1} ({self._name_of(v.label)}).")
        return v

    def on_vote(self, callback: Callable[[Vote], Any], remove: bool = False) -> None:
        """Call ``callback(vote)`` after every vote is stored (``remove=True`` to stop)."""
        (self._vote_callbacks.remove if remove else self._vote_callbacks.append)(callback)

    # -- export ---------------------------------------------------------------------
    def export(self, path: str | os.PathLike | None = None):
        """Save D_f of the regions accepted so far as ``.npz`` and return it.

        Parameters
        ----------
        path : str or os.PathLike, optional
            Default ``export_path``.

        Returns
        -------
        X_f : Tensor of shape (n_accepted * n_finetune, C, H, W)
        y_f : Tensor of shape (n_accepted * n_finetune,)
        """
        decisions = self.decisions()
        if self._export_hook is not None and path is None:
            X_f, y_f = self._export_hook(decisions)
            path = "the session (failure_data.npz)"
        else:
            path = self.export_path if path is None else Path(path)
            X_f, y_f = export_failure_data(path, self.regions, decisions, self.decoder,
                                           n_finetune=self.n_finetune, tau=self.tau,
                                           seed=self.seed, device=self.device)
        n = sum(d.is_misclassification_region for d in decisions)
        self.status = (f"Exported D_f: {len(y_f)} samples from {n} regions to "
                       f"{html.escape(str(path))}.")
        return X_f, y_f

    def _on_export(self) -> None:
        try:
            self.export()
        except (ValueError, OSError) as exc:
            self.status = red(f"Export failed: {exc}")

    def close(self) -> None:
        """Close the widget, and the store if the panel opened it."""
        if self._owns_store:
            self.store.close()
        super().close()
