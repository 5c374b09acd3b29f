"""Label review: training images whose label disagrees with an accepted region.

This step is **not in the paper**. Defuse's correction fine-tunes on
L(D) + λ·L(D_f). When a misclassification region exists because training
images of a sub-style carry a wrong label, L(D) keeps teaching that label:
on the planted-bug benchmark the fine-tuned model learned the region's
decodes (region accuracy 0.25 → 0.99) while real held-out images of the
style stayed at 0.10–0.18.

Label errors also hide regions from the paper's labeling rule. Decodes of a
mislabelled image often drift back to its true class; the classifier then
predicts that class, so the decode counts as an unrestricted adversarial
example (its prediction differs from the training label). Annotators agree
with the classifier there, so the region is rightly not a misclassification
region, yet most of its members come from images whose training label the
annotators contradict. :func:`label_error_regions` flags such regions.

Label review closes that gap with the annotators' help. For each accepted
misclassification region and each label-error region (annotated label y),
the ``n_per_region`` training
images nearest the region mean μ in latent space whose label is *not* y are
shown to the annotators as they are (real images, not decodes). Where the
annotators give another label than the training set, :func:`apply_label_review`
relabels the image (or drops it); correction then runs on the reviewed D.

Nearness is the Euclidean distance between an image's latent mean and μ.
On the benchmark it recovered more mislabelled images per reviewed image than
the Mahalanobis distance under the region's covariance or the distance to
the nearest region member (50, 32 and 41 of 150 at 50 images per region).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from defuse_widgets._validation import (
    check_choice,
    check_codes,
    check_int,
    check_labels,
    check_number,
    describe,
)
from defuse_widgets.stages.regions import Regions
from defuse_widgets.storage.annotations import NONE_OF_THE_ABOVE

__all__ = ["LabelReviewSet", "apply_label_review", "label_error_regions", "label_review_set"]


@dataclass(frozen=True)
class LabelReviewSet:
    """Training images to show the annotators, one row per image.

    Attributes
    ----------
    index : ndarray of shape (n,), int64
        Distinct indices into the training data.
    region : ndarray of shape (n,), int64
        The accepted region the image was picked for (the nearest one when
        several picked it).
    region_label : ndarray of shape (n,), int64
        That region's annotated label.
    given_label : ndarray of shape (n,), int64
        The image's label in the training data (never ``region_label``).
    distance : ndarray of shape (n,)
        Euclidean distance from the image's latent code to the region mean.
    """

    index: np.ndarray = field(repr=False)
    region: np.ndarray = field(repr=False)
    region_label: np.ndarray = field(repr=False)
    given_label: np.ndarray = field(repr=False)
    distance: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return len(self.index)


def _check_regions(regions, decisions) -> list:
    """Check the regions and their decisions (one per region); return the decisions."""
    if not isinstance(regions, Regions):
        raise TypeError(f"regions must be a Regions; got {describe(regions)}.")
    decisions = list(decisions)
    if len(decisions) != len(regions):
        raise ValueError(f"decisions must have one entry per region ({len(regions)}); "
                         f"got {len(decisions)}.")
    return decisions


def label_error_regions(regions: Regions, decisions, *, rho: float = 0.5) -> np.ndarray:
    """Flag regions whose annotated label contradicts their sources' training labels.

    Parameters
    ----------
    regions : Regions
    decisions : sequence of RegionDecision
        One per region, as from :func:`~defuse_widgets.stages.labeling.decide`.
    rho : float in [0, 1), default=0.5
        A region is a *label-error region* when it is not a misclassification
        region, has an annotated label y, and more than ``rho`` of its members'
        source images carry a training label other than y.

    Returns
    -------
    ndarray of shape (n_regions,), bool
    """
    decisions = _check_regions(regions, decisions)
    rho = check_number("rho", rho, low=0, high=1, high_inclusive=False)
    out = np.zeros(len(regions), dtype=bool)
    for k, d in enumerate(decisions):
        members = regions.members(k)
        if d.is_misclassification_region or d.label is None or not len(members):
            continue
        out[k] = float(np.mean(regions.source_label[members] != d.label)) > rho
    return out


def label_review_set(regions: Regions, decisions, codes, y, *, n_per_region: int = 50,
                     label_errors=None) -> LabelReviewSet:
    """Pick the training images nearest each accepted region whose label differs.

    Parameters
    ----------
    regions : Regions
    decisions : sequence of RegionDecision
        One per region, as from :func:`~defuse_widgets.stages.labeling.decide`;
        regions with ``is_misclassification_region`` are reviewed.
    codes : ndarray or Tensor of shape (n_train, n_latent)
        Latent means of the training images (e.g. ``encode_mean(vae, X)``).
    y : ndarray or Tensor of shape (n_train,)
        Training labels.
    n_per_region : int, default=50
        Images picked per reviewed region (fewer when fewer carry another label).
    label_errors : array-like of shape (n_regions,), bool, optional
        Also review these regions (e.g. :func:`label_error_regions`).

    Returns
    -------
    LabelReviewSet
        Ordered by region, then distance; empty when no region is accepted.
    """
    decisions = _check_regions(regions, decisions)
    Z = check_codes("codes", codes, min_rows=0)   # type, 2-D, finite
    if Z.shape[1] != regions.n_latent:
        raise ValueError(f"codes must have shape (n_train, {regions.n_latent}); "
                         f"got {describe(codes)}.")
    labels = check_labels("y", y).numpy()
    if labels.shape != (len(Z),):
        raise ValueError(f"y must have shape ({len(Z)},), one label per code; "
                         f"got {describe(y)}.")
    n_per_region = check_int("n_per_region", n_per_region, low=1)
    extra = np.zeros(len(regions), bool) if label_errors is None else np.asarray(label_errors)
    if extra.shape != (len(regions),) or extra.dtype != bool:
        raise ValueError(f"label_errors must be a bool array of shape ({len(regions)},); "
                         f"got {describe(label_errors)}.")
    picked = {}   # training index -> (distance, region, region label)
    for k, d in enumerate(decisions):
        if not (d.is_misclassification_region or (extra[k] and d.label is not None)):
            continue
        cand = np.flatnonzero(labels != d.label)
        dist = np.linalg.norm(Z[cand] - regions.means[k], axis=1)
        for j in np.argsort(dist, kind="stable")[:n_per_region]:
            i = int(cand[j])
            if i not in picked or dist[j] < picked[i][0]:
                picked[i] = (float(dist[j]), k, int(d.label))
    rows = sorted(picked.items(), key=lambda kv: (kv[1][1], kv[1][0], kv[0]))
    index = np.array([i for i, _ in rows], dtype=np.int64)
    return LabelReviewSet(index, np.array([r[1] for _, r in rows], dtype=np.int64),
                          np.array([r[2] for _, r in rows], dtype=np.int64), labels[index],
                          np.array([r[0] for _, r in rows], dtype=np.float64))


def apply_label_review(y, review: LabelReviewSet, labels, *,
                       mode: str = "relabel") -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Apply the annotators' labels of a review set to the training labels.

    Parameters
    ----------
    y : ndarray or Tensor of shape (n_train,)
        Training labels.
    review : LabelReviewSet
    labels : array-like of shape (len(review),)
        The annotators' label of each review image, in review order;
        ``NONE_OF_THE_ABOVE`` (-1) when it shows no class.
    mode : {"relabel", "drop"}, default="relabel"
        ``"relabel"``: a reviewed image takes the annotators' label when it
        differs from its given one, and is dropped when they said "none".
        ``"drop"``: every image whose label was contested is dropped.

    Returns
    -------
    y_reviewed : Tensor of shape (n_train,), int64
        Labels after review (dropped images keep their old label).
    keep : ndarray of shape (n_train,), bool
        False for dropped images; train on ``X[keep]``, ``y_reviewed[keep]``.
    changed : ndarray of shape (n_changed,), int64
        Training indices whose label the annotators contested.
    """
    if not isinstance(review, LabelReviewSet):
        raise TypeError(f"review must be a LabelReviewSet; got {describe(review)}.")
    mode = check_choice("mode", mode, ("relabel", "drop"))
    out = check_labels("y", y).clone()
    if len(review) and int(review.index.max()) >= len(out):
        raise ValueError(f"y must have shape (n_train,) covering every review index; "
                         f"got {describe(y)}.")
    lab = np.asarray(labels)
    if lab.shape != (len(review),) or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({len(review)},), one per review "
                         f"image; got {describe(labels)}.")
    contested = lab != out.numpy()[review.index]
    changed = review.index[contested]
    keep = np.ones(len(out), dtype=bool)
    if mode == "drop":
        keep[changed] = False
    else:
        none = contested & (lab == NONE_OF_THE_ABOVE)
        keep[review.index[none]] = False
        fix = contested & (lab != NONE_OF_THE_ABOVE)
        out[torch.from_numpy(review.index[fix])] = torch.from_numpy(lab[fix].astype(np.int64))
    return out, keep, changed
