"""The latent explorer's points as images: cached decodes, descriptions, selection tiles."""
from __future__ import annotations

import numpy as np

from defuse_widgets._validation import check_choice, check_int
from defuse_widgets.stages.region_preview import decode_and_predict
from defuse_widgets.widgets._render import to_png
from defuse_widgets.widgets._tiles import spread_index, tile_pngs, tiles_html

__all__ = ["KINDS", "PointImages"]

KINDS = ("train", "adversarial")


class PointImages:
    """Decodes of the map's training codes and adversarial examples.

    Parameters
    ----------
    train_codes : ndarray of shape (n_train, n_latent)
    train_labels : ndarray of shape (n_train,)
    adversarial : AdversarialExamples
    vae, classifier : nn.Module
    names : list of str
        Class names.
    train_predicted : ndarray of shape (n_train,) or None
        The classifier on each training image; by default on each code's decode.
    cache_size : int, default=2048
        Most decodes kept (a hover comes back to the same points often).
    """

    def __init__(self, train_codes, train_labels, adversarial, vae, classifier, names,
                 train_predicted=None, cache_size: int = 2048):
        self.train_codes, self.train_labels, self.adversarial = (train_codes, train_labels,
                                                                 adversarial)
        self.vae, self.classifier, self.names = vae, classifier, names
        self._train_predicted, self._cache, self._cache_size = train_predicted, {}, cache_size

    def codes(self, kind: str) -> np.ndarray:
        """Codes of ``kind`` ("train" or "adversarial"), shape (n, n_latent)."""
        return self.train_codes if kind == "train" else self.adversarial.codes

    def check(self, kind: str, index: int) -> tuple:
        """``(kind, index)`` validated against the points of the map."""
        kind = check_choice("kind", kind, KINDS)
        return kind, check_int("index", index, low=0, high=len(self.codes(kind)) - 1)

    def check_indices(self, kind: str, index) -> np.ndarray:
        """Sorted unique rows of ``kind``'s codes, validated, shape (m,)."""
        index = np.unique(np.asarray(index, dtype=np.int64).ravel())
        n = len(self.codes(kind))
        if index.size and (index[0] < 0 or index[-1] >= n):
            raise ValueError(f"{kind} must hold indices in [0, {n - 1}]; got values in "
                             f"[{index[0]}, {index[-1]}].")
        return index

    def png(self, kind: str, i: int) -> tuple:
        """(PNG of the decode with the prediction in red, prediction) of one point, cached."""
        if (kind, i) not in self._cache:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            images, (p,) = decode_and_predict(self.vae, self.classifier,
                                              self.codes(kind)[i:i + 1])
            self._cache[kind, i] = (to_png(images[0], label=self.names[p]), p)
        return self._cache[kind, i]

    def describe(self, kind: str, i: int) -> str:
        """What point ``i`` of ``kind`` is, in words, with its true class."""
        if kind == "train":
            return f"training image {i}, class {self.names[self.train_labels[i]]}"
        a = self.adversarial
        return (f"adversarial example {i} of training image {a.source_index[i]}, class "
                f"{self.names[a.true_label[i]]}")

    def caption(self, kind: str, i: int) -> str:
        """:meth:`describe` and the prediction on the decode (in red), as HTML."""
        p = self.png(kind, i)[1]
        return f"{self.describe(kind, i)}; predicted <b style='color:#c00'>{self.names[p]}</b>"

    def train_predicted(self) -> np.ndarray:
        """The classifier's prediction for each training point, shape (n_train,)."""
        if self._train_predicted is None:
            _, predicted = decode_and_predict(self.vae, self.classifier, self.train_codes)
            self._train_predicted = np.asarray(predicted, dtype=np.int64)
        return self._train_predicted

    def examples(self, selection: dict, max_n: int | None = None) -> dict:
        """``codes`` (n, n_latent), ``kinds`` and ``true_labels`` (n,) of a selection
        ``{"train": index, "adversarial": index}``, adversarial examples first; at most
        ``max_n``, evenly spread over the selection (both kinds show in a large one).
        """
        picked = [(kind, np.asarray(selection.get(kind, ()), dtype=np.int64))
                  for kind in ("adversarial", "train")]
        labels = {"adversarial": self.adversarial.true_label, "train": self.train_labels}
        out = dict(codes=np.concatenate([self.codes(k)[i] for k, i in picked]).astype(
                       np.float32),
                   kinds=[k for k, i in picked for _ in i],
                   true_labels=np.concatenate([np.asarray(labels[k])[i].astype(np.int64)
                                               for k, i in picked]))
        n = len(out["kinds"])
        if max_n is None or n <= max_n:
            return out
        keep = spread_index(n, max_n)
        return {k: (np.asarray(v)[keep] if not isinstance(v, list) else [v[i] for i in keep])
                for k, v in out.items()}

    def tiles(self, examples: dict, *, size: int = 48) -> tuple:
        """(PNG per tile, HTML of the captioned tiles) of :meth:`examples`' output."""
        images, predicted = decode_and_predict(self.vae, self.classifier, examples["codes"])
        pngs = tile_pngs(images, size=size)
        return pngs, tiles_html(pngs, examples["kinds"], examples["true_labels"].tolist(),
                                predicted, self.names, size=size)
