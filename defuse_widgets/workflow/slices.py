"""Saved slices: named selections of training images and adversarial examples, kept in
the session (``slices.json``).

A slice is what a user picked on the latent map (a box or lasso selection)
and wants to come back to: it reopens after a restart and can be exported as
indices. Training images are kept as indices into the session's training
split; adversarial examples as rows of ``adversarial.npz``, with the training
image each came from. Rerunning identification makes the adversarial rows
stale, so ``slices.json`` is one of identification's files and moves to
``archive/`` with them. This module imports no UI code.
"""
from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import numpy as np

from defuse_widgets._validation import describe

__all__ = ["SessionSlices", "check_slice_name"]

SLICES_FILE = "slices.json"
_MAX_NAME = 80


def check_slice_name(name) -> str:
    """``name`` stripped; a ValueError when it is empty, too long or not a string."""
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > _MAX_NAME:
        raise ValueError(f"name must be a non-empty string of at most {_MAX_NAME} characters "
                         f"naming the slice; got {describe(name)}.")
    return name.strip()


def _indices(param: str, values, n: int) -> list:
    a = np.asarray(values if values is not None else [], dtype=np.float64).ravel()
    if len(a) and (not np.all(a == np.round(a)) or a.min() < 0 or a.max() >= n):
        raise ValueError(f"{param} must be indices in [0, {n}); got {describe(values)}.")
    return sorted({int(v) for v in a})


class SessionSlices:
    """Slice methods of :class:`~defuse_widgets.workflow.Session` (needs ``folder``, ``data``,
    ``load_adversarial``).
    """

    def load_slices(self) -> list[dict]:
        """The saved slices, oldest first: each ``name``, ``train`` (indices into the training
        split), ``adversarial`` (rows of the adversarial examples), ``source`` (their
        training images), ``by`` and ``at`` (Unix time). [] before any.
        """
        saved = self.folder.load(SLICES_FILE)
        return [] if saved is None else [dict(s) for s in saved["slices"]]

    def save_slice(self, name: str, *, train=(), adversarial=(), by: str = "",
                   replace: bool = False) -> dict:
        """Keep a selection under ``name`` in the session.

        Parameters
        ----------
        name : str
            At most 80 characters; a saved name is refused unless ``replace``.
        train : array-like of int, shape (m,)
            Indices into the session's training split.
        adversarial : array-like of int, shape (k,)
            Rows of the session's adversarial examples.
        by : str, default=""
            Who saved it.
        replace : bool, default=False
            Replace a slice of the same name.

        Returns
        -------
        dict
            The slice as saved (see :meth:`load_slices`).
        """
        name = check_slice_name(name)
        adv = self._require_adversarial()
        train = _indices("train", train, len(self.data.y_train))
        rows = _indices("adversarial", adversarial, len(adv))
        if not train and not rows:
            raise ValueError("a slice must hold at least one training image or adversarial "
                             "example; got none (select points on the map first).")
        slices = self.load_slices()
        if any(s["name"] == name for s in slices) and not replace:
            raise ValueError(f"name must be new: the session already has a slice "
                             f"{name!r} (pass replace=True to replace it).")
        entry = dict(name=name, train=train, adversarial=rows,
                     source=[int(v) for v in np.asarray(adv.source_index)[rows]],
                     by=str(by), at=time.time())
        slices = [s for s in slices if s["name"] != name] + [entry]
        self.folder.save(SLICES_FILE, {"slices": slices}, kind="slices")
        return entry

    def delete_slice(self, name: str) -> None:
        """Remove the slice ``name`` from the session (a ValueError naming the saved ones if
        there is none).
        """
        slices = self.load_slices()
        self._slice(name, slices)
        self.folder.save(SLICES_FILE, {"slices": [s for s in slices if s["name"] != name]},
                         kind="slices")

    def export_slice(self, name: str, path: str | os.PathLike) -> Path:
        """Write slice ``name`` as a CSV of indices to ``path``, a new file.

        Columns: ``kind`` ("train" or "adversarial"), ``index`` (into the training
        split, or the adversarial example's row), ``source_index`` (the training
        image an adversarial example came from), ``true_label``, ``predicted_label``
        (the classifier's on the adversarial decode; empty for training images).
        An existing ``path`` is never written over (FileExistsError).
        """
        s = self._slice(name, self.load_slices())
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"path {str(path)!r} exists; the export writes only a new "
                                  "file (choose another name or move that file).")
        adv, y = self._require_adversarial(), np.asarray(self.data.y_train)
        rows = [("train", i, "", int(y[i]), "") for i in s["train"]]
        rows += [("adversarial", r, int(adv.source_index[r]), int(adv.true_label[r]),
                  int(adv.predicted_label[r])) for r in s["adversarial"]]
        with open(path, "x", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["kind", "index", "source_index", "true_label", "predicted_label"])
            writer.writerows(rows)
        return path

    @staticmethod
    def _slice(name, slices) -> dict:
        found = next((s for s in slices if s["name"] == name), None)
        if found is None:
            raise ValueError(f"name must be a saved slice, one of "
                             f"{[s['name'] for s in slices]}; got {name!r}.")
        return found
