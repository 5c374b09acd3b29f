"""The label-review panel: annotators check training labels near accepted regions.

A page of training images from a :class:`~defuse_widgets.stages.label_review.LabelReviewSet`,
each with its label in the training data and the label annotators gave the
region it is near. Per image: keep the given label, take the region's label,
pick another class, or "none". Every answer is committed to the SQLite
:class:`~defuse_widgets.storage.label_review_store.LabelReviewStore` at once, so a new
panel on the same file shows the answers already given. This step is not in
the paper (see :mod:`~defuse_widgets.stages.label_review`). A session keys
validation images after the training images; pass its ``review_keys`` as
``keys`` to review them with the same store.
"""
from __future__ import annotations

import os
from typing import Sequence

import ipywidgets as widgets
import numpy as np
import torch
import traitlets

from defuse_widgets.stages.label_review import LabelReviewSet, apply_label_review
from defuse_widgets.storage.annotations import NONE_OF_THE_ABOVE
from defuse_widgets.storage.label_review_store import LabelReviewStore
from defuse_widgets.widgets._errors import ErrorBox
from defuse_widgets.widgets._render import class_labels, to_png

__all__ = ["LabelReviewPanel"]


class LabelReviewPanel(widgets.VBox):
    """Review the labels of the images in a label-review set.

    Parameters
    ----------
    store : LabelReviewStore or str or os.PathLike
        The answer store, or the path of its SQLite file (opened or created;
        closed by :meth:`close`).
    review : LabelReviewSet
    X : Tensor of shape (n, C, H, W)
        The images the review set indexes (a training or a validation split).
    n_classes : int
    class_names : sequence of str, optional
    annotator : str, default=""
        Who answers; answers are refused while empty.
    page_size : int, default=12
    keys : array-like of int, shape (len(review),), optional
        Each row's key in the store; default ``review.index``. A session's
        validation images are keyed after its training images
        (:meth:`~defuse_widgets.workflow.Session.review_keys`).

    Attributes
    ----------
    page : int
        The shown page; set it to move.
    store_keys : ndarray of shape (len(review),), int64
        The rows' keys in the store.
    """

    annotator = traitlets.Unicode("")
    page = traitlets.Int(0)

    def __init__(self, store: LabelReviewStore | str | os.PathLike, review: LabelReviewSet,
                 X: torch.Tensor, n_classes: int, *, class_names: Sequence[str] | None = None,
                 annotator: str = "", page_size: int = 12, keys=None):
        super().__init__()
        if not isinstance(review, LabelReviewSet):
            raise TypeError(f"review must be a LabelReviewSet; got {review!r:.60}.")
        if not isinstance(X, torch.Tensor) or X.ndim != 4 or (
                len(review) and int(review.index.max()) >= len(X)):
            raise ValueError(f"X must be a Tensor of shape (n_train, C, H, W) holding every "
                             f"review index; got {getattr(X, 'shape', type(X).__name__)}.")
        if not isinstance(page_size, int) or page_size < 1:
            raise ValueError(f"page_size must be a positive int; got {page_size!r}.")
        keys = review.index if keys is None else np.asarray(keys)
        if keys.shape != review.index.shape or not np.issubdtype(keys.dtype, np.integer) or (
                len(keys) and int(keys.min()) < 0):
            raise ValueError(f"keys must be non-negative ints of shape ({len(review)},), one "
                             f"per review row; got shape {keys.shape}, dtype {keys.dtype}.")
        self.store_keys = keys.astype(np.int64)
        self._owns_store = not isinstance(store, LabelReviewStore)
        self.store = LabelReviewStore(store, n_classes=n_classes) if self._owns_store else store
        self.review, self.X, self.page_size = review, X, page_size
        self.class_names = class_labels(class_names, n_classes)
        self.error = ErrorBox()
        self._name = widgets.Text(description="Annotator", placeholder="your name")
        traitlets.link((self, "annotator"), (self._name, "value"))
        self._prev = widgets.Button(description="◀ previous")
        self._next = widgets.Button(description="next ▶")
        self._prev.on_click(self.error.guard("previous", lambda _: self._move(-1)))
        self._next.on_click(self.error.guard("next", lambda _: self._move(1)))
        self._status = widgets.HTML()
        self._grid = widgets.GridBox(layout=widgets.Layout(
            grid_template_columns="repeat(4, 230px)", grid_gap="6px"))
        self.children = [widgets.HBox([self._name, self._prev, self._next, self._status]),
                         self._grid, self.error]
        self.annotator = annotator
        self.observe(lambda _: self._render(), names=["page", "annotator"])
        self._render()

    @property
    def n_pages(self) -> int:
        return max(1, -(-len(self.review) // self.page_size))

    def _move(self, step: int) -> None:
        self.page = int(np.clip(self.page + step, 0, self.n_pages - 1))

    def answer(self, row: int, label: int) -> None:
        """Record the annotator's ``label`` (a class or -1 for none) for review row ``row``."""
        if not self.annotator.strip():
            raise ValueError("annotator must be set before answering; got an empty name.")
        if not isinstance(row, (int, np.integer)) or not 0 <= row < len(self.review):
            raise ValueError(f"row must be in [0, {len(self.review) - 1}]; got {row!r}.")
        self.store.answer(self.annotator, int(self.store_keys[row]), int(label))
        self._render()

    def labels(self) -> np.ndarray:
        """Every row's answer so far (the given label where nobody answered), shape (n,)."""
        return self.store.review_labels(self.review, keys=self.store_keys)

    def apply(self, y, *, mode: str = "relabel"):
        """:func:`~defuse_widgets.stages.label_review.apply_label_review` with the answers so
        far.
        """
        return apply_label_review(y, self.review, self.labels(), mode=mode)

    def _tile(self, row: int, mine: dict) -> widgets.VBox:
        i = int(self.review.index[row])
        given, region = int(self.review.given_label[row]), int(self.review.region_label[row])
        image = widgets.Image(value=to_png(self.X[i], size=96), format="png",
                              layout=widgets.Layout(width="96px"))
        note = widgets.HTML(f"#{i}: given <b>{self.class_names[given]}</b>; region "
                            f"{int(self.review.region[row])} says "
                            f"<b>{self.class_names[region]}</b>")
        current = mine.get(int(self.store_keys[row]))
        buttons = []
        for text, label in ((f"keep {self.class_names[given]}", given),
                            (f"→ {self.class_names[region]}", region),
                            ("none", NONE_OF_THE_ABOVE)):
            b = widgets.Button(description=text, layout=widgets.Layout(width="72px"),
                               button_style="info" if current == label else "")
            b.on_click(self.error.guard(text, lambda _, lab=label: self.answer(row, lab)))
            buttons.append(b)
        other = widgets.Dropdown(options=[("other…", None)] + [
            (n, k) for k, n in enumerate(self.class_names)], value=(
            current if current not in (None, given, region, NONE_OF_THE_ABOVE) else None),
            layout=widgets.Layout(width="100px"))
        other.observe(self.error.guard("other", lambda ch: ch["new"] is not None
                                       and self.answer(row, ch["new"])), names="value")
        return widgets.VBox([image, note, widgets.HBox(buttons), other])

    def _render(self) -> None:
        """Show the current page and the progress."""
        mine = self.store.answers(self.annotator) if self.annotator.strip() else {}
        start = self.page * self.page_size
        rows = range(start, min(start + self.page_size, len(self.review)))
        self._grid.children = [self._tile(r, mine) for r in rows]
        done = sum(k in mine for k in self.store_keys.tolist())
        self._status.value = (f"page {self.page + 1}/{self.n_pages} · answered {done}/"
                              f"{len(self.review)}" if len(self.review) else "nothing to review")
        self._prev.disabled, self._next.disabled = self.page == 0, self.page >= self.n_pages - 1

    def close(self) -> None:
        if self._owns_store:
            self.store.close()
        super().close()
