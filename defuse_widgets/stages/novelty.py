"""Novelty check (paper §4.3): are region samples new errors or known ones?

For each region sample, find its nearest neighbour (ℓ2 in pixel space) among
the training images the classifier already misclassifies.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from defuse_widgets._validation import check_images, check_int, check_labels, check_module
from defuse_widgets.models.inference import predict, to_unit


@dataclass(frozen=True)
class NoveltyResult:
    """Nearest misclassified training image of each query sample.

    Attributes
    ----------
    neighbour_index : ndarray of shape (n,), int64
        Index into the training set, or -1 when no training image is misclassified.
    distance : ndarray of shape (n,), float32
        ℓ2 distance to that neighbour (inf when none).
    n_misclassified_train : int
    median_train_nn_distance : float
        Median ℓ2 distance from each misclassified training image to its
        nearest other training image, a yardstick for "close".
    """

    neighbour_index: np.ndarray
    distance: np.ndarray
    n_misclassified_train: int
    median_train_nn_distance: float

    def summary(self) -> dict:
        d = self.distance[np.isfinite(self.distance)]
        return dict(n_queries=int(len(self.distance)),
                    n_misclassified_train=self.n_misclassified_train,
                    median_distance=float(np.median(d)) if len(d) else None,
                    median_train_nn_distance=self.median_train_nn_distance)


def nearest_misclassified(samples, classifier, X_train, y_train, *, device="cpu",
                          chunk_size: int = 4096) -> NoveltyResult:
    """Find each sample's nearest neighbour among misclassified training images.

    Parameters
    ----------
    samples : Tensor of shape (n, C, H, W)
        Decoded region samples.
    classifier : nn.Module
    X_train : Tensor of shape (m, C, H, W)
        float32, or uint8 pixels (compared as float in [0, 1], chunk by chunk).
    y_train : Tensor of shape (m,)
    device : optional
    chunk_size : int, default=4096
        Training images compared per step with the misclassified ones, for
        the yardstick; bounds the memory at ``n_misclassified × chunk_size``
        distances.

    Returns
    -------
    NoveltyResult
    """
    check_module("classifier", classifier)
    X_train = check_images("X_train", X_train)
    samples = to_unit(check_images("samples", samples, shape=X_train.shape[1:], unit=False))
    y_train = check_labels("y_train", y_train, n_samples=len(X_train))
    chunk_size = check_int("chunk_size", chunk_size, low=1)
    wrong = np.flatnonzero((predict(classifier, X_train, device=device) != y_train).numpy())
    n = len(samples)
    if len(wrong) == 0:
        return NoveltyResult(np.full(n, -1, np.int64), np.full(n, np.inf, np.float32), 0,
                             float("nan"))
    flat_w = to_unit(X_train[wrong]).flatten(1)
    dist = torch.cdist(samples.flatten(1), flat_w)
    best = dist.argmin(1)
    yard = float(_nearest_other(flat_w, wrong, X_train, chunk_size).median())
    return NoveltyResult(wrong[best.numpy()].astype(np.int64),
                         dist.min(1).values.numpy().astype(np.float32), int(len(wrong)), yard)


def _nearest_other(flat_w: torch.Tensor, wrong: np.ndarray, X_train: torch.Tensor,
                   chunk_size: int) -> torch.Tensor:
    """Distance of each misclassified image (rows of ``flat_w``, shape (k, C*H*W),
    training indices ``wrong``) to its nearest other training image: shape (k,).
    """
    nearest = torch.full((len(wrong),), float("inf"))
    rows = torch.arange(len(wrong))
    wrong_t = torch.from_numpy(wrong)
    for start in range(0, len(X_train), chunk_size):
        part = to_unit(X_train[start:start + chunk_size]).flatten(1)
        d = torch.cdist(flat_w, part)
        own = (wrong_t >= start) & (wrong_t < start + len(part))
        d[rows[own], wrong_t[own] - start] = float("inf")   # not itself
        nearest = torch.minimum(nearest, d.min(1).values)
    return nearest
