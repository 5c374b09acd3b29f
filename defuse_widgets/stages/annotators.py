"""A SIMULATED annotator crowd that stands in for people in headless runs and tests.

The paper (§4.1) has 5 Amazon SageMaker Ground Truth workers label each review
image, with a "None of the above" option. :class:`SimulatedAnnotator` imitates
that crowd with an oracle classifier trained independently of the classifier
under test. Its votes are not human judgements: results obtained with it say
how Defuse behaves given an oracle, not what people would decide.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from defuse_widgets._validation import (
    check_images,
    check_int,
    check_module,
    check_number,
    describe,
    resolve_device,
)
from defuse_widgets.models.inference import predict_logits
from defuse_widgets.storage.annotations import NONE_OF_THE_ABOVE, AnnotationStore

__all__ = ["SimulatedAnnotator"]


class SimulatedAnnotator:
    """Simulated crowd: ``n_workers`` votes per image backed by an oracle classifier.

    The oracle is trained independently of the classifier under test (another
    seed and architecture, e.g. :class:`~defuse_widgets.models.OracleCNN`). It
    stands in for human annotators in headless runs and tests; it is not a
    person and its labels are only as good as the oracle.

    Every worker votes the oracle's most likely class, or ``NONE_OF_THE_ABOVE``
    when the oracle's top softmax probability is below ``none_threshold``.
    Then, independently per worker and image, with probability ``error_rate``
    the vote is replaced by a class drawn uniformly from the classes other
    than the oracle's most likely one.

    Parameters
    ----------
    oracle : nn.Module
        Maps images (n, C, H, W) to logits (n, n_classes); ``n_classes`` is
        read from its output width.
    n_workers : int, default=5
        Votes per image (the paper uses 5).
    error_rate : float in [0, 1], default=0.0
    none_threshold : float in [0, 1], default=0.5
        0 disables "none of the above" votes.
    seed : int, default=0
        Seeds the workers' errors; the same images and seed give the same votes.
    device : str or torch.device, optional
        Where the oracle runs; by default wherever its parameters already are.
    name : str, default="simulated"
        Workers are stored as annotators ``f"{name}-{w}"``.

    Examples
    --------
    >>> crowd = SimulatedAnnotator(oracle, n_workers=5, error_rate=0.1)  # doctest: +SKIP
    >>> crowd.vote(images).shape                                          # doctest: +SKIP
    (5, 10)
    """

    def __init__(self, oracle: nn.Module, *, n_workers: int = 5, error_rate: float = 0.0,
                 none_threshold: float = 0.5, seed: int = 0, device=None,
                 name: str = "simulated"):
        self.oracle = check_module("oracle", oracle)
        self.n_workers = check_int("n_workers", n_workers, low=1)
        self.error_rate = check_number("error_rate", error_rate, low=0.0, high=1.0)
        self.none_threshold = check_number("none_threshold", none_threshold, low=0.0, high=1.0)
        self.seed = check_int("seed", seed, low=0)
        self.device = device
        if not isinstance(name, str) or not name:
            raise (ValueError if isinstance(name, str) else TypeError)(
                f"name must be a non-empty string; got {describe(name)}.")
        self.name = name

    @property
    def worker_names(self) -> list[str]:
        """Annotator names of the workers, ``[f"{name}-0", f"{name}-1", ...]``."""
        return [f"{self.name}-{w}" for w in range(self.n_workers)]

    def _device(self) -> torch.device:
        if self.device is not None:
            dev = resolve_device(self.device)
            self.oracle.to(dev)
            return dev
        param = next(self.oracle.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def vote(self, images: Any, *, key: int = 0) -> np.ndarray:
        """Return every worker's vote on every image.

        Parameters
        ----------
        images : Tensor or ndarray of shape (n, C, H, W)
        key : int, default=0
            Mixed into the seed so that separate batches (e.g. regions) get
            independent worker errors; the same images, seed and key always
            give the same votes.

        Returns
        -------
        ndarray of shape (n_workers, n), int64
            Class indices, or ``NONE_OF_THE_ABOVE`` (-1).
        """
        return self._vote(images, key)[0]

    def _vote(self, images: Any, key: int) -> tuple[np.ndarray, int]:
        X = check_images("images", images, unit=False)   # decodes
        key = check_int("key", key, low=0)
        logits = predict_logits(self.oracle, X, device=self._device(), name="oracle")
        if logits.ndim != 2 or logits.shape[1] < 2:
            raise ValueError("oracle must map images to logits of shape (n, n_classes) with "
                             f"n_classes >= 2; got {describe(logits)}.")
        n, n_classes = logits.shape
        probs = torch.softmax(logits.double(), dim=1)
        confidence, top = probs.max(dim=1)
        top = top.numpy().astype(np.int64)
        base = np.where(confidence.numpy() < self.none_threshold, NONE_OF_THE_ABOVE, top)
        votes = np.repeat(base[None, :], self.n_workers, axis=0)
        rng = np.random.default_rng([self.seed, key])
        wrong = rng.random((self.n_workers, n)) < self.error_rate
        other = (top[None, :] + rng.integers(1, n_classes, size=(self.n_workers, n))) % n_classes
        votes[wrong] = other[wrong]
        return votes, n_classes

    def label(self, images: Any, *, key: int = 0) -> np.ndarray:
        """Return the crowd's label of each image (for labelling images one by one).

        Returns
        -------
        ndarray of shape (n,), int64
            Majority over the workers' votes other than "none" (ties go to the
            smallest class index), or ``NONE_OF_THE_ABOVE`` when all said none.
        """
        votes = self.vote(images, key=key)
        out = np.full(votes.shape[1], NONE_OF_THE_ABOVE, dtype=np.int64)
        for j in range(votes.shape[1]):
            cast = votes[:, j][votes[:, j] >= 0]
            if cast.size:
                out[j] = np.bincount(cast).argmax()
        return out

    def annotate(self, store: AnnotationStore, region: int, images: Any) -> None:
        """Cast every worker's vote on a region's review images into ``store``.

        Parameters
        ----------
        store : AnnotationStore
            Must already hold the region's review set (``store.set_review_set``).
        region : int
        images : Tensor or ndarray of shape (n_samples, C, H, W)
            The review images, in review-set order.
        """
        if not isinstance(store, AnnotationStore):
            raise TypeError(f"store must be an AnnotationStore; got {describe(store)}.")
        region = check_int("region", region, low=0)
        n_samples = len(store.review_predictions(region))
        X = check_images("images", images, unit=False)   # decodes
        if len(X) != n_samples:
            raise ValueError(f"images must hold the {n_samples} review samples of region "
                             f"{region}; got {describe(images)}.")
        votes, n_classes = self._vote(X, region)
        if n_classes != store.n_classes:
            raise ValueError(f"oracle must output {store.n_classes} logits to match the store's "
                             f"n_classes; got {n_classes}.")
        store.cast_votes((name, region, s, int(votes[w, s]))
                         for w, name in enumerate(self.worker_names)
                         for s in range(n_samples))
