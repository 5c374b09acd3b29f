"""Novelty check (paper §4.3): are region samples new errors or known ones?

For each region sample, find its nearest neighbour (ℓ2 in pixel space) among
the training images the classifier already misclassifies.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from defuse_widgets._validation import check_images, check_labels, check_module
from defuse_widgets.models.inference import predict


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


def nearest_misclassified(samples, classifier, X_train, y_train, *, device="cpu") -> NoveltyResult:
    """Find each sample's nearest neighbour among misclassified training images.

    Parameters
    ----------
    samples : Tensor of shape (n, C, H, W)
        Decoded region samples.
    classifier : nn.Module
    X_train : Tensor of shape (m, C, H, W)
    y_train : Tensor of shape (m,)
    device : optional

    Returns
    -------
    NoveltyResult
    """
    check_module("classifier", classifier)
    X_train = check_images("X_train", X_train)
    samples = check_images("samples", samples, shape=X_train.shape[1:])
    y_train = check_labels("y_train", y_train, n_samples=len(X_train))
    wrong = np.flatnonzero((predict(classifier, X_train, device=device) != y_train).numpy())
    n = len(samples)
    if len(wrong) == 0:
        return NoveltyResult(np.full(n, -1, np.int64), np.full(n, np.inf, np.float32), 0, float("nan"))
    flat_w = X_train[wrong].flatten(1)
    dist = torch.cdist(samples.flatten(1), flat_w)
    best = dist.argmin(1)
    # Yardstick: distance of each misclassified training image to its nearest other image.
    d_train = torch.cdist(flat_w, X_train.flatten(1))
    d_train[torch.arange(len(wrong)), torch.from_numpy(wrong)] = float("inf")
    yard = float(d_train.min(1).values.median())
    return NoveltyResult(wrong[best.numpy()].astype(np.int64),
                         dist.min(1).values.numpy().astype(np.float32), int(len(wrong)), yard)
