"""SQLite store of label-review answers (see :mod:`~defuse_widgets.stages.label_review`).

:class:`LabelReviewStore` is an :class:`~defuse_widgets.storage.annotations.AnnotationStore`
with one more table, so region votes and label-review answers can share one
file, with the same guarantees: WAL journal, ``synchronous=FULL``, and every
answer committed when it is given, so a crash loses nothing.
"""
from __future__ import annotations

import time

import numpy as np

from defuse_widgets._validation import check_int, describe
from defuse_widgets.stages.label_review import LabelReviewSet
from defuse_widgets.storage.annotations import AnnotationStore, check_annotator

__all__ = ["LabelReviewStore"]

_TABLE = ("CREATE TABLE IF NOT EXISTS label_review (annotator TEXT NOT NULL, "
          "train_index INTEGER NOT NULL, label INTEGER NOT NULL, at REAL NOT NULL, "
          "PRIMARY KEY (annotator, train_index))")


class LabelReviewStore(AnnotationStore):
    """Annotator answers on training images of a :class:`LabelReviewSet`.

    Parameters
    ----------
    path : str or os.PathLike
        SQLite file (created with ``n_classes`` when missing).
    n_classes : int, optional
        Required to create a new file.
    """

    def _init_schema(self, cur, n_classes):
        stored = super()._init_schema(cur, n_classes)
        cur.execute(_TABLE)
        return stored

    def answer(self, annotator: str, train_index: int, label: int) -> None:
        """Record (or replace) ``annotator``'s label of training image ``train_index``.

        ``label`` is a class index or ``NONE_OF_THE_ABOVE`` (-1).
        """
        annotator = check_annotator(annotator)
        train_index = check_int("train_index", train_index, low=0)
        label = self._check_label(label)
        self._write(lambda cur: cur.execute(
            "INSERT OR REPLACE INTO label_review VALUES (?, ?, ?, ?)",
            (annotator, train_index, label, time.time())))

    def answer_many(self, annotator: str, train_index, labels) -> None:
        """Record ``annotator``'s labels of several images in one transaction.

        Parameters
        ----------
        annotator : str
        train_index : array-like of shape (n,), int
        labels : array-like of shape (n,), int
        """
        annotator = check_annotator(annotator)
        idx, lab = np.asarray(train_index), np.asarray(labels)
        if idx.shape != lab.shape or idx.ndim != 1:
            raise ValueError(f"train_index and labels must be 1-D of one length; got "
                             f"{describe(train_index)} and {describe(labels)}.")
        rows = [(annotator, check_int("train_index", int(i), low=0), self._check_label(int(v)),
                 time.time()) for i, v in zip(idx.tolist(), lab.tolist())]
        self._write(lambda cur: cur.executemany(
            "INSERT OR REPLACE INTO label_review VALUES (?, ?, ?, ?)", rows))

    def clear(self, annotator: str, train_index: int) -> None:
        """Remove ``annotator``'s answer on ``train_index`` (no error when there is none)."""
        annotator = check_annotator(annotator)
        train_index = check_int("train_index", train_index, low=0)
        self._write(lambda cur: cur.execute(
            "DELETE FROM label_review WHERE annotator = ? AND train_index = ?",
            (annotator, train_index)))

    def answers(self, annotator: str | None = None) -> dict:
        """``{train_index: label}`` of one annotator, or ``{train_index: [labels]}`` of all."""
        if annotator is not None:
            annotator = check_annotator(annotator)
            rows = self._read(lambda cur: cur.execute(
                "SELECT train_index, label FROM label_review WHERE annotator = ?",
                (annotator,)).fetchall())
            return {int(i): int(lab) for i, lab in rows}
        rows = self._read(lambda cur: cur.execute(
            "SELECT train_index, label FROM label_review ORDER BY annotator").fetchall())
        out: dict = {}
        for i, lab in rows:
            out.setdefault(int(i), []).append(int(lab))
        return out

    def review_labels(self, review: LabelReviewSet, *, keys=None) -> np.ndarray:
        """Label of each review row for
        :func:`~defuse_widgets.stages.label_review.apply_label_review`.

        ``keys`` (shape (len(review),)) are the rows' keys in the store when
        they are not ``review.index`` (a session keys validation images after
        the training images).

        Returns
        -------
        ndarray of shape (len(review),), int64
            The majority of the annotators' answers (ties go to the smallest
            label; "none" is -1), or the row's given label when nobody has
            answered yet, so unanswered images keep their label.
        """
        if not isinstance(review, LabelReviewSet):
            raise TypeError(f"review must be a LabelReviewSet; got {describe(review)}.")
        given = self.answers()
        out = review.given_label.astype(np.int64).copy()
        keys = review.index if keys is None else np.asarray(keys)
        if keys.shape != review.index.shape:
            raise ValueError(f"keys must have shape ({len(review)},), one per review row; "
                             f"got {describe(keys)}.")
        for row, i in enumerate(keys.tolist()):
            if i in given:
                labels, counts = np.unique(given[i], return_counts=True)
                out[row] = int(labels[np.argmax(counts)])
        return out

