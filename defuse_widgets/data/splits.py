"""The frozen dataclass that carries a dataset's train, validation and test splits."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class DataSplits:
    """Images and labels of one dataset, split into train, validation and test.

    Attributes
    ----------
    name : str
        Dataset name, e.g. ``"mnist5k"``.
    X_train, X_val, X_test : Tensor of shape (n, C, H, W), float32 in [0, 1]
    y_train, y_val, y_test : Tensor of shape (n,), int64
    class_names : tuple of str
        One name per class; ``len(class_names)`` is the number of classes.
    """

    name: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple = field(default_factory=tuple)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple:
        """``(C, H, W)`` of every image."""
        return tuple(self.X_train.shape[1:])

    def __repr__(self) -> str:
        return (f"DataSplits(name={self.name!r}, image_shape={self.image_shape}, "
                f"n_classes={self.n_classes}, train={len(self.y_train)}, "
                f"val={len(self.y_val)}, test={len(self.y_test)})")


def stratified_split(y: np.ndarray, fractions: tuple, seed: int) -> list:
    """Split indices per class so every part keeps the class balance.

    Parameters
    ----------
    y : ndarray of shape (n,)
        Class labels.
    fractions : tuple of float
        Share of each part; they must sum to 1.
    seed : int
        Seed of the permutation, so the split is deterministic.

    Returns
    -------
    list of ndarray
        One sorted index array per part.
    """
    rng = np.random.RandomState(seed)
    parts = [[] for _ in fractions]
    bounds = np.cumsum(fractions)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        cuts = np.round(bounds * len(idx)).astype(int)
        start = 0
        for p, stop in enumerate(cuts):
            parts[p].append(idx[start:stop])
            start = stop
    return [np.sort(np.concatenate(p)) for p in parts]


def to_splits(name: str, X: np.ndarray, y: np.ndarray, class_names, *,
              fractions=(0.7, 0.1, 0.2), seed: int = 0) -> DataSplits:
    """Build :class:`DataSplits` from images of shape (n, C, H, W) in [0, 1]."""
    tr, va, te = stratified_split(y, fractions, seed)
    X = torch.as_tensor(X, dtype=torch.float32)
    y = torch.as_tensor(y, dtype=torch.long)
    return DataSplits(name, X[tr], y[tr], X[va], y[va], X[te], y[te], tuple(class_names))
