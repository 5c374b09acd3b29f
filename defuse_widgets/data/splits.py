"""The frozen dataclass that carries a dataset's train, validation and test splits."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from defuse_widgets._validation import check_unit_range, describe


@dataclass(frozen=True)
class DataSplits:
    """Images and labels of one dataset, split into train, validation and test.

    Attributes
    ----------
    name : str
        Dataset name, e.g. ``"mnist5k"``.
    X_train, X_val, X_test : Tensor of shape (n, C, H, W), float32 in [0, 1] or uint8
        uint8 pixels (0-255, a quarter of the memory; from
        :func:`~defuse_widgets.data.load_images` and :meth:`from_dataset`) are
        made float in [0, 1] batch by batch where a model takes them
        (:func:`~defuse_widgets.models.inference.to_unit`). All three have
        one dtype.
        Float pixels outside [0, 1] (beyond a rounding tolerance of 1e-3)
        and other dtypes are refused.
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

    def __post_init__(self):
        """Refuse images a model cannot take: not uint8, or floats outside [0, 1]."""
        for split in ("train", "val", "test"):
            X = getattr(self, f"X_{split}")
            if not isinstance(X, torch.Tensor):
                continue
            if X.dtype != torch.uint8 and not X.dtype.is_floating_point:
                raise TypeError(f"X_{split} must hold uint8 pixels (0-255) or floats in "
                                f"[0, 1]; got {describe(X)}.")
            check_unit_range(f"X_{split}", X)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple:
        """``(C, H, W)`` of every image."""
        return tuple(self.X_train.shape[1:])

    @classmethod
    def from_dataset(cls, ds, *, splits=None, seed: int = 0, class_names=None,
                     name: str = "dataset", val=None, test=None) -> "DataSplits":
        """Build DataSplits from a ``torch.utils.data.Dataset`` of ``(image, label)`` pairs.

        Parameters
        ----------
        ds : torch.utils.data.Dataset
            Images are PIL images, tensors or ndarrays of shape (H, W),
            (C, H, W) or (H, W, C) with C in {1, 3}; labels are ints.
        splits : tuple of 3 floats, optional
            Train, validation and test fractions (default ``(0.7, 0.1, 0.2)``),
            split seeded and stratified; refused with ``val`` and ``test``.
        seed : int, default=0
        class_names : sequence of str, optional
            Default ``ds.classes`` when present, else ``"0"``, ``"1"``, ...
        name : str, default="dataset"
        val, test : Dataset, optional
            Given together: ``ds`` is the training set and nothing is split.

        Returns
        -------
        DataSplits
            uint8 images where the items allow it (PIL images, uint8, floats
            that are exactly k/255), float32 otherwise.

        Raises
        ------
        ValueError
            :class:`~defuse_widgets.data.images.ImageDataError` naming the
            index at fault (see :mod:`defuse_widgets.data.images` for the rules).

        Examples
        --------
        >>> from torchvision.datasets import CIFAR10   # doctest: +SKIP
        >>> data = DataSplits.from_dataset(CIFAR10("data"), name="cifar10")   # doctest: +SKIP
        """
        from defuse_widgets.data.images import dataset_splits  # images imports this module

        return dataset_splits(ds, splits=splits, seed=seed, class_names=class_names,
                              name=name, val=val, test=test)

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
