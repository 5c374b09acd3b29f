"""Label audit: training images whose label contradicts an accepted misclassification region.

Defuse's correction minimises L(D) + λ·L(D_f). When a model bug comes from
wrong labels *in D* (a sub-style labelled as another class), L(D) keeps
teaching the bug, and fine-tuning on the region's decodes mostly teaches the
model to tell decodes from photos (measured in the planted-bug benchmark:
region accuracy 0.25 → 0.99 while the bug's real images stayed at 0.10-0.18).

An accepted region comes with the annotators' label L. A training image whose
latent code lies inside that region's Gaussian but whose label is not L is a
*suspect*: either its label is wrong, or the region reaches past the bug. The
audit lists suspects for a person to check; :func:`drop_suspects` removes them
from D for a correction run. This goes beyond the paper, which sets label
errors aside (§5).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch
from scipy.stats import chi2

from ._validation import _describe, check_codes, check_labels, check_number
from .labeling import RegionDecision
from .regions import Regions

__all__ = ["SuspectLabels", "audit_labels", "drop_suspects"]


@dataclass(frozen=True)
class SuspectLabels:
    """Training images whose label disagrees with the accepted region they lie in.

    Attributes
    ----------
    index : ndarray of shape (n_suspects,)
        Indices into the audited images.
    region : ndarray of shape (n_suspects,)
        The accepted region each suspect lies in (the nearest, by Mahalanobis
        distance, when several contain it).
    given_label, region_label : ndarray of shape (n_suspects,)
        The image's label and the annotators' label of its region.
    distance : ndarray of shape (n_suspects,)
        Squared Mahalanobis distance to the region's mean.
    threshold : float
        Squared distance below which an image counts as inside a region.
    """

    index: np.ndarray = field(repr=False)
    region: np.ndarray = field(repr=False)
    given_label: np.ndarray = field(repr=False)
    region_label: np.ndarray = field(repr=False)
    distance: np.ndarray = field(repr=False)
    threshold: float = 0.0

    def __len__(self) -> int:
        return len(self.index)

    def by_region(self) -> dict:
        """Number of suspects per region, ``{region: count}``."""
        regions, counts = np.unique(self.region, return_counts=True)
        return {int(r): int(c) for r, c in zip(regions, counts)}


def _mahalanobis_sq(z: torch.Tensor, mean: np.ndarray, cov: np.ndarray) -> torch.Tensor:
    L = torch.linalg.cholesky(torch.as_tensor(cov, dtype=torch.float64))
    diff = (z - torch.as_tensor(mean, dtype=torch.float64)).T
    return torch.linalg.solve_triangular(L, diff, upper=False).pow(2).sum(0)


def audit_labels(regions: Regions, decisions: Iterable[RegionDecision], codes, labels, *,
                 quantile: float = 0.5) -> SuspectLabels:
    """Find labelled images inside accepted misclassification regions whose label differs.

    Parameters
    ----------
    regions : Regions
    decisions : iterable of RegionDecision
        One per region; only accepted regions with a label are used.
    codes : ndarray of shape (n_images, n_latent)
        Latent means of the audited images (e.g. the training set).
    labels : array-like of int, shape (n_images,)
        Their labels as given in the data.
    quantile : float in (0, 1), default=0.5
        An image is inside a region when its squared Mahalanobis distance is
        below this quantile of the chi-square distribution with ``n_latent``
        degrees of freedom: the central share of the region's Gaussian.

    Returns
    -------
    SuspectLabels
    """
    if not isinstance(regions, Regions):
        raise TypeError(f"regions must be a Regions; got {_describe(regions)}.")
    decisions = list(decisions)
    if any(not isinstance(d, RegionDecision) for d in decisions):
        raise TypeError("decisions must be RegionDecision objects, one per region.")
    z = check_codes("codes", codes, n_latent=regions.n_latent)
    y = check_labels("labels", labels, n_samples=len(z)).numpy()
    quantile = check_number("quantile", quantile, low=0, high=1, low_inclusive=False,
                            high_inclusive=False)
    threshold = float(chi2.ppf(quantile, regions.n_latent))
    accepted = [d for d in decisions if d.is_misclassification_region and d.label is not None
                and 0 <= d.region < len(regions)]
    Z = torch.as_tensor(np.asarray(z), dtype=torch.float64)
    dist = np.full((len(accepted), len(Z)), np.inf)
    for i, d in enumerate(accepted):
        dist[i] = _mahalanobis_sq(Z, regions.means[d.region],
                                  regions.covariances[d.region]).numpy()
    if not accepted:
        empty = np.zeros(0, np.int64)
        return SuspectLabels(empty, empty, empty, empty, np.zeros(0), threshold)
    nearest = dist.argmin(0)
    d_min = dist[nearest, np.arange(len(Z))]
    region_of = np.array([d.region for d in accepted])[nearest]
    label_of = np.array([d.label for d in accepted])[nearest]
    suspect = (d_min <= threshold) & (y != label_of)
    idx = np.flatnonzero(suspect)
    return SuspectLabels(idx.astype(np.int64), region_of[idx].astype(np.int64),
                         y[idx].astype(np.int64), label_of[idx].astype(np.int64),
                         d_min[idx], threshold)


def drop_suspects(X: torch.Tensor, y: torch.Tensor, suspects: SuspectLabels
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """D without the suspects: images (n - n_suspects, C, H, W) and labels (n - n_suspects,)."""
    if not isinstance(suspects, SuspectLabels):
        raise TypeError(f"suspects must be a SuspectLabels; got {_describe(suspects)}.")
    if len(X) != len(y) or (len(suspects) and suspects.index.max() >= len(y)):
        raise ValueError(f"X and y must hold the audited images (suspect indices up to "
                         f"{int(suspects.index.max()) if len(suspects) else -1}); got "
                         f"{_describe(X)} and {_describe(y)}.")
    keep = np.ones(len(y), bool)
    keep[suspects.index] = False
    keep_t = torch.from_numpy(keep)
    return X[keep_t], y[keep_t]
