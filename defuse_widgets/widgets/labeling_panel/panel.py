"""The labeling panel: annotators vote on each region's review set (paper §4.1, Fig. 15).

One image at a time with the classifier's prediction in red, a button per class
and "None of the above", or a grid of the region's review samples where one
class button votes for every selected sample. A region selector and queue
filters (only unlabelled regions, only regions where annotators disagree) say
which region comes next. Every vote is committed to the SQLite
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

from defuse_widgets._validation import check_choice, check_module
from defuse_widgets.models.inference import predict_proba
from defuse_widgets.models.probes import check_decoder_fit
from defuse_widgets.models.saliency import smoothgrad
from defuse_widgets.stages.failure_data import export_failure_data, review_set
from defuse_widgets.stages.grounding import RegionGrounding
from defuse_widgets.stages.labeling import decide
from defuse_widgets.stages.regions import Regions
from defuse_widgets.storage.annotations import MISSING, NONE_OF_THE_ABOVE, AnnotationStore, Vote
from defuse_widgets.widgets._background import plain_button, red
from defuse_widgets.widgets._errors import ErrorBox
from defuse_widgets.widgets._grounding_view import check_grounding
from defuse_widgets.widgets._render import class_labels, to_png
from defuse_widgets.widgets.labeling_panel.keys import KeyCapture
from defuse_widgets.widgets.labeling_panel.navigation import ReviewNavigation, check_index, in_queue
from defuse_widgets.widgets.labeling_panel.review_image import ReviewImage
from defuse_widgets.widgets.labeling_panel.review_tiles import ReviewTiles
from defuse_widgets.widgets.labeling_panel.view import (
    KEYS_HELP,
    QUEUE_FILTERS,
    RegionSelector,
    agreement_html,
    done_html,
    done_message,
    queue_html,
    region_option,
    sample_html,
)

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
    queue_filter : {"all", "unlabelled", "disagree"}, default="all"
        Which regions the region selector, :meth:`next_region` and
        :meth:`next_unlabelled` visit.

    Raises
    ------
    ValueError
        When ``decoder`` takes codes of another latent size than ``regions``, or
        ``queue_filter`` is not one of the filters.

    Attributes
    ----------
    position : tuple of (int, int)
        The shown ``(region, sample)``; set it (or pick a region in the selector) to move.
    queue_filter : str
        ``"all"``; ``"unlabelled"``: regions where the annotator has not voted
        every sample; ``"disagree"``: regions whose annotators' votes disagree on
        a sample (agreement below 1, as :func:`~defuse_widgets.stages.labeling.decide_region`
        measures it).
    grid_mode : bool
        Show the region's review samples as a grid of selectable tiles.
    grid_selection : set of int
        Selected samples of the shown region (cleared when the region changes);
        in grid mode a class button or digit key votes for each of them.

    Examples
    --------
    >>> panel = LabelingPanel("votes.sqlite", regions, vae, clf, annotator="ada")  # doctest: +SKIP
    >>> panel.handle_key("8")  # vote 8 for the shown sample  # doctest: +SKIP
    >>> panel.grid_mode, panel.grid_selection = True, {0, 2, 5}  # doctest: +SKIP
    >>> panel.handle_key("3")  # three votes: 3 for samples 1, 3 and 6  # doctest: +SKIP
    >>> panel.handle_key("]")  # the next region of the queue  # doctest: +SKIP
    """

    annotator = traitlets.Unicode("")
    position = traitlets.Tuple(traitlets.Int(), traitlets.Int(), default_value=(0, 0))
    rho = traitlets.Float(0.5)
    status = traitlets.Unicode("")
    grounding = traitlets.Instance(RegionGrounding, allow_none=True)
    queue_filter = traitlets.Unicode("all")
    grid_mode = traitlets.Bool(False)
    grid_selection = traitlets.Set(traitlets.Int())

    def __init__(self, store: AnnotationStore | str | os.PathLike, regions: Regions,
                 decoder: nn.Module, classifier: nn.Module, *,
                 class_names: Sequence[str] | None = None, annotator: str = "",
                 review_size: int = 10, tau: float = 0.5, seed: int = 0, rho: float = 0.5,
                 n_finetune: int = 256, export_path: str | os.PathLike | None = None,
                 on_export: Callable | None = None,
                 device: Any = None, grounding: RegionGrounding | None = None,
                 queue_filter: str = "all"):
        super().__init__()
        if not isinstance(regions, Regions) or len(regions) == 0:
            raise TypeError(f"regions must be a non-empty Regions object; got {regions!r:.60}.")
        check_decoder_fit("decoder", check_module("decoder", decoder), regions.n_latent,
                          source="the regions' latent size")
        check_choice("queue_filter", queue_filter, QUEUE_FILTERS)
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
        self._shown: tuple | None = None   # the (region, sample) on the review image
        self._build()
        self.rho, self.grounding = rho, check_grounding(grounding, regions)
        self.queue_filter = queue_filter
        self.annotator = annotator
        self._resume()
        self._hold = 0
        self._render()

    # -- view -----------------------------------------------------------------------
    def _button(self, description, callback, **kw):
        """A button whose clicks show their own errors in the panel."""
        return plain_button(description, self.error.guard(description, callback), **kw)

    def _build(self) -> None:
        self.error = ErrorBox()
        self._name = widgets.Text(description="Annotator", placeholder="your name",
                                  continuous_update=False)
        traitlets.link((self, "annotator"), (self._name, "value"))
        self._progress = widgets.IntProgress(min=0, max=len(self.regions), description="Done")
        self._progress_label = widgets.Label()
        self._image = ReviewImage(saliency_map=lambda x: smoothgrad(self.classifier, x))
        self._info, self._done, self._agreement = widgets.HTML(), widgets.HTML(), widgets.HTML()
        self._class_buttons = [self._button(name, lambda c=c: self.submit(c),
                                            tooltip=f"key {c}" if c < 10 else "")
                               for c, name in enumerate(self.class_names)]
        self._none = self._button("None of the above", lambda: self.submit(NONE_OF_THE_ABOVE),
                                  tooltip="key n")
        self._status = widgets.HTML(_dom_classes=["defuse-labeling-status"])
        traitlets.dlink((self, "status"), (self._status, "value"))
        self._export = self._button("Export D_f", self._on_export, icon="download",
                                    tooltip="save the accepted regions' failure data as .npz")
        self._tiles = ReviewTiles(self.review_size, on_go=self.error.guard(
            "go to sample", lambda j: self.goto(self.position[0], j)))
        traitlets.link((self, "grid_mode"), (self._tiles, "grid"))
        traitlets.link((self, "grid_selection"), (self._tiles, "selection"))
        wrap = widgets.Layout(flex_flow="row wrap")
        self.children = [
            widgets.HTML("<b>Defuse labeling</b>: is the classifier's prediction (red) "
                         "right? Vote for the class you see."),
            widgets.HBox([self._name, self._progress, self._progress_label]),
            self._build_queue(),
            widgets.HBox([self._image,
                          widgets.VBox([self._info, self._done, self._agreement])]),
            self._tiles,
            widgets.HBox(self._class_buttons + [self._none], layout=wrap),
            self._build_moves(),
            self._build_keys(),
            widgets.HBox([self._export, self._status]),
            self.error,
        ]

    def _build_queue(self) -> widgets.HBox:
        """The region selector (linked to ``position``), the queue filter and grid mode."""
        self._selector = RegionSelector(len(self.regions))
        traitlets.link((self, "position"), (self._selector, "region"),
                       transform=(lambda p: p[0], self._jump))
        traitlets.link((self, "queue_filter"), (self._selector, "queue_filter"))
        self._grid = widgets.ToggleButton(description="Grid", icon="th",
                                          tooltip="key g: vote for several samples at once")
        traitlets.link((self, "grid_mode"), (self._grid, "value"))
        return widgets.HBox([self._selector, self._grid], layout=widgets.Layout(
            flex_flow="row wrap"))

    def _build_moves(self) -> widgets.HBox:
        self._prev = self._button("◀ Previous", lambda: self.move(-1), tooltip="key ←")
        self._next = self._button("Next ▶", lambda: self.move(1), tooltip="key →")
        self._unlabelled = self._button("Next unlabelled", self.next_unlabelled,
                                        icon="forward",
                                        tooltip="key u: your next sample without a vote")
        self._undo = self._button("Undo", self.undo, icon="undo", tooltip="key Backspace")
        self._prev_region = self._button("Previous region", self.previous_region,
                                         icon="step-backward",   # font icons: no missing glyph
                                         tooltip="key [: the previous region of the queue")
        self._next_region = self._button("Next region", self.next_region, icon="step-forward",
                                         tooltip="key ] or Enter: the next region of the "
                                                 "queue")
        return widgets.HBox([self._prev, self._next, self._unlabelled, self._undo,
                             self._prev_region, self._next_region],
                            layout=widgets.Layout(flex_flow="row wrap"))

    def _build_keys(self) -> widgets.HBox:
        digits = [str(c) for c in range(min(10, len(self.class_names)))]
        self._keys = KeyCapture(capture=[*digits, "n", "N", "Backspace", "ArrowLeft",
                                         "ArrowRight", ",", ".", "u", "]", "[", "Enter",
                                         "g", "G", "a", "A"],
                                prompt="⌨ click here, then press keys")
        self._keys.on_key(self.error.guard("key", self.handle_key))
        return widgets.HBox([self._keys, widgets.HTML(KEYS_HELP)])

    @traitlets.observe("annotator", "position", "rho", "grounding", "queue_filter",
                       "grid_mode", "grid_selection")
    def _render(self, change=None) -> None:
        """Rebuild the view from the traits (``annotator``, ``position``, ``rho``,
        ``grounding``, ``queue_filter``, ``grid_mode``, ``grid_selection``) and the store.
        """
        if self._hold:
            return
        k, i = self.position
        review = self._review(k)
        names, matrix = self.store.vote_matrix(k)
        who = self.annotator.strip()
        mine = matrix[names.index(who)].tolist() if who in names else [MISSING] * len(
            review["predicted"])
        states = self._states()
        done = sum(s.complete for s in states) if who else 0
        self._progress.value = done
        self._progress_label.value = f"{done}/{len(self.regions)} regions done"
        self._render_sample(k, i, review, mine)
        self._render_tiles(i, review, mine)
        self._render_queue(states)
        finished = bool(who) and MISSING not in mine
        self._done.value = done_html() if finished else ""
        self._next_region.button_style = "primary" if finished else ""
        self._agreement.value = agreement_html(names, matrix, review["predicted"], k, self.rho,
                                               self.class_names)
        accepted = sum(s.decision is not None and s.decision.is_misclassification_region
                       for s in states)
        self._export.description = f"Export D_f ({accepted} region{'s' * (accepted != 1)})"

    def _render_sample(self, k: int, i: int, review: dict, mine: list) -> None:
        """The review image (hidden in grid mode), the sample's info and the class buttons."""
        predicted = self.class_names[review["predicted"][i]]
        if self._shown != (k, i):
            self._image.show(review["images"][i], predicted)
            self._shown = (k, i)
        self._image.layout.display = "none" if self.grid_mode else None
        self._info.value = sample_html(k, len(self.regions), i, self.review_size, predicted,
                                       self._name_of(mine[i]), self.grounding,
                                       confidence=review["confidence"][i])
        for c, b in enumerate(self._class_buttons + [self._none]):
            label = NONE_OF_THE_ABOVE if c == len(self._class_buttons) else c
            b.button_style = "success" if mine[i] == label and not self.grid_mode else ""
            b.disabled = not self.annotator.strip()
        self._undo.disabled = not self.annotator.strip()

    def _render_tiles(self, i: int, review: dict, mine: list) -> None:
        """The thumbnails, with the annotator's votes as badges."""
        with self._tiles.hold_trait_notifications():
            self._tiles.thumbs = review["thumb"]
            self._tiles.votes = [None if v == MISSING else self._name_of(v) for v in mine]
            self._tiles.current = i

    def _render_queue(self, states: list) -> None:
        """The region selector's options: the queue (and the shown region), with their state."""
        queue = [s.region for s in states if in_queue(s, self.queue_filter)]
        listed = [(region_option(states[r], self.class_names, queued=r in queue), r)
                  for r in sorted(set(queue) | {self.position[0]})]
        self._selector.show(listed, queue_html(len(queue), len(states), self.queue_filter))

    def _jump(self, region: int | None) -> tuple:
        """Where picking ``region`` in the selector goes: its first sample without your vote."""
        return self.position if region is None else self._entry(region)

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
            raise ValueError(f"position must be (region, sample) in [0, "
                             f"{len(self.regions) - 1}] x [0, {self.review_size - 1}]; "
                             f"got {(k, i)}.")
        return (int(k), int(i))

    @traitlets.validate("queue_filter")
    def _valid_queue_filter(self, proposal) -> str:
        return check_choice("queue_filter", proposal["value"], QUEUE_FILTERS)

    @traitlets.validate("grid_selection")
    def _valid_grid_selection(self, proposal) -> set:
        return {check_index("grid_selection", j, self.review_size,
                            "a set of review sample indices") for j in proposal["value"]}

    @traitlets.observe("annotator")
    def _on_annotator(self, change) -> None:
        if not self._hold:
            with self._held():
                self._resume()

    @traitlets.observe("position")
    def _on_position(self, change) -> None:
        """A selection belongs to one region: moving to another clears it."""
        if change["old"][0] != change["new"][0] and self.grid_selection:
            self.grid_selection = set()

    @traitlets.observe("queue_filter")
    def _on_queue_filter(self, change) -> None:
        if not self._hold:
            with self._held():
                self._enter_queue()

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
    def submit(self, label: int) -> list:
        """What a class button or digit key does: :meth:`vote_selected` in grid mode,
        else :meth:`vote`.

        Returns
        -------
        list of Vote
            The votes committed (empty when none was).
        """
        if self.grid_mode:
            return self.vote_selected(label)
        v = self.vote(label)
        return [] if v is None else [v]

    def vote(self, label: int) -> Vote | None:
        """Store the annotator's vote for the shown sample and move to the next one.

        The next one is the region's next sample; once every sample of the
        region has the annotator's vote, the panel stays on the region (and
        says what the votes decided) until :meth:`next_region`.

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
        who = self._voter()
        if who is None:
            return None
        k, i = self.position
        self._review(k)
        filled = self._my_row(k)[i] == MISSING
        try:
            v = self.store.cast_vote(who, k, i, label)
        except PermissionError as exc:   # a read-only store: say so where the user looks
            self.status = red(exc)
            return None
        with self._held():
            self.status = html.escape(f"Saved: region {k}, sample {i + 1} → "
                                      f"{self._name_of(v.label)}.")
            self._advance(k, i, filled)
        self._notify([v])
        return v

    def vote_selected(self, label: int) -> list:
        """Vote ``label`` for every sample in ``grid_selection``, then clear the selection.

        Each vote is stored on its own, as :meth:`vote` stores one (one
        transaction for all of them), so :meth:`undo` removes one at a time.

        Parameters
        ----------
        label : int
            Class index, or ``NONE_OF_THE_ABOVE`` (-1).

        Returns
        -------
        list of Vote
            In sample order; empty when nothing is selected, no annotator name
            is set or the store is read-only (the status line says so).
        """
        who = self._voter()
        if who is None:
            return []
        if not self.grid_selection:
            self.status = "Select samples in the grid first, then press a class."
            return []
        k, samples = self.position[0], sorted(self.grid_selection)
        self._review(k)
        try:
            votes = self.store.cast_votes([(who, k, j, label) for j in samples])
        except PermissionError as exc:
            self.status = red(exc)
            return []
        with self._held():
            self.grid_selection = set()
            self.status = html.escape(
                f"Saved {len(votes)} vote{'s' * (len(votes) != 1)}: region {k}, sample"
                f"{'s' * (len(votes) != 1)} {', '.join(str(j + 1) for j in samples)} → "
                f"{self._name_of(votes[0].label)}.")
            if MISSING not in self._my_row(k):
                self.status += self._done_message(k)
        self._notify(votes)
        return votes

    def _voter(self) -> str | None:
        """The annotator's name, or None (and a status asking for it)."""
        who = self.annotator.strip()
        if not who:
            self.status = "Enter your name as annotator before voting."
        return who or None

    def _advance(self, k: int, i: int, filled: bool) -> None:
        """After a vote on sample i of region k: stay on a region the vote finished (or whose
        last sample was revised), else go to the next sample, or back to one without a vote.
        """
        row = self._my_row(k)
        if MISSING not in row and (filled or i == len(row) - 1):
            self.status += self._done_message(k)
        elif i + 1 < len(row):
            self.position = (k, i + 1)
        else:
            self.position = (k, row.index(MISSING))

    def _done_message(self, k: int) -> str:
        """What the status adds once every sample of region k has the annotator's vote."""
        return done_message(self._states()[k], self.class_names)

    def _notify(self, votes: list) -> None:
        for v in votes:
            for callback in self._vote_callbacks:
                callback(v)

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
