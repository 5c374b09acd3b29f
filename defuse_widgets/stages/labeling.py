"""Labeling: deciding which distilled regions are misclassification regions (paper §4.1).

Annotators label every image of a region's review set (10 samples per region
in the paper, 5 workers per image). "None of the above" votes are discarded.
If more than a share ρ of the remaining votes disagree with the classifier's
predictions, the region is a misclassification region (``Correct(X_d)`` in
Algorithm 3) and the majority vote is its label (``Label(X_d)``). Annotator
agreement is measured as in the paper's Fig. 7.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from defuse_widgets._validation import check_choice, check_int, check_number, describe
from defuse_widgets.storage.annotations import MISSING, NONE_OF_THE_ABOVE, AnnotationStore

__all__ = ["MISSING", "NONE_OF_THE_ABOVE", "RegionDecision", "agreement_summary", "decide",
           "decide_region"]


@dataclass(frozen=True)
class RegionDecision:
    """The annotators' verdict on one region.

    Attributes
    ----------
    region : int
    is_misclassification_region : bool
        ``disagreement > rho``; False when there is no vote other than "none".
    label : int or None
        Majority over all of the region's votes other than "none" (ties go to
        the smallest class index); None when there are no such votes.
    disagreement : float
        Share of the votes other than "none" that differ from the classifier's
        prediction on their sample; nan when there are none.
    agreement : float
        Mean of ``sample_agreement`` over samples with at least one vote; nan if none.
    n_votes : int
        Votes cast, "none" included.
    n_none : int
        "None of the above" votes.
    sample_agreement : tuple of float, length n_samples
        Per sample, the share of its voters who voted its majority label
        ("none" counts as a label option); nan for samples without votes.
    """

    region: int
    is_misclassification_region: bool
    label: int | None
    disagreement: float
    agreement: float
    n_votes: int
    n_none: int
    sample_agreement: tuple = field(default=(), repr=False)


def _check_votes(votes: Any, predicted: Any,
                 n_classes: int | None) -> tuple[np.ndarray, np.ndarray]:
    votes, predicted = np.asarray(votes), np.asarray(predicted)
    if votes.ndim != 2 or not (np.issubdtype(votes.dtype, np.integer) or votes.size == 0):
        raise ValueError("votes must be an integer array of shape (n_annotators, n_samples); "
                         f"got {describe(votes)}.")
    if votes.size and votes.min() < MISSING:
        raise ValueError(f"votes must hold class indices, {NONE_OF_THE_ABOVE} for 'none of "
                         f"the above' or {MISSING} for missing; got {int(votes.min())}.")
    if predicted.ndim != 1 or not np.issubdtype(predicted.dtype, np.integer):
        raise ValueError("predicted must be an integer array of shape (n_samples,); "
                         f"got {describe(predicted)}.")
    if len(predicted) != votes.shape[1]:
        raise ValueError(f"predicted must have one entry per column of votes "
                         f"({votes.shape[1]}); got length {len(predicted)}.")
    if predicted.size and predicted.min() < 0:
        raise ValueError(f"predicted must hold class indices >= 0; got {int(predicted.min())}.")
    if n_classes is not None:
        _check_in_range(votes, predicted, n_classes)
    return votes.astype(np.int64, copy=False), predicted.astype(np.int64, copy=False)


def _check_in_range(votes: np.ndarray, predicted: np.ndarray, n_classes: int) -> None:
    """Refuse class indices above ``n_classes - 1`` in votes or predictions."""
    top = n_classes - 1
    if votes.size and votes.max() > top:
        raise ValueError(f"votes must hold class indices in [0, {top}] ({n_classes} classes), "
                         f"{NONE_OF_THE_ABOVE} for 'none of the above' or {MISSING} for "
                         f"missing; got {int(votes.max())}.")
    if predicted.size and predicted.max() > top:
        raise ValueError(f"predicted must hold class indices in [0, {top}] ({n_classes} "
                         f"classes); got {int(predicted.max())}.")


def _sample_agreement(votes: np.ndarray) -> np.ndarray:
    """Share of each column's voters who voted its majority label; nan for empty columns."""
    out = np.full(votes.shape[1], np.nan)
    for j in range(votes.shape[1]):
        cast = votes[:, j][votes[:, j] != MISSING]
        if cast.size:
            out[j] = np.unique(cast, return_counts=True)[1].max() / cast.size
    return out


def decide_region(votes: Any, predicted: Any, *, region: int = 0, rho: float = 0.5,
                  n_classes: int | None = None) -> RegionDecision:
    """Apply the ρ rule of paper §4.1 to one region's votes.

    Parameters
    ----------
    votes : array-like of int, shape (n_annotators, n_samples)
        Class index per cell, ``NONE_OF_THE_ABOVE`` (-1) for "none of the
        above" and ``MISSING`` (-2) where the annotator did not vote, as from
        :meth:`AnnotationStore.vote_matrix`.
    predicted : array-like of int, shape (n_samples,)
        The classifier's prediction on each review sample.
    region : int, default=0
        Region index copied into the result.
    rho : float in [0, 1), default=0.5
        The region is a misclassification region when the share of votes
        (other than "none") that disagree with the classifier is above ``rho``.
    n_classes : int, optional
        Number of classes; when given, votes and predictions above
        ``n_classes - 1`` are refused (:func:`decide` passes the store's).

    Returns
    -------
    RegionDecision

    Raises
    ------
    ValueError
        When a vote or prediction is not a class index in range, naming the
        value and the range.

    Examples
    --------
    >>> decide_region([[1, 1, 2], [1, -1, 2]], [1, 0, 0]).is_misclassification_region
    True
    """
    if n_classes is not None:
        n_classes = check_int("n_classes", n_classes, low=1)
    votes, predicted = _check_votes(votes, predicted, n_classes)
    rho = check_number("rho", rho, low=0.0, high=1.0, high_inclusive=False)
    labelled = votes >= 0
    n_labelled = int(labelled.sum())
    if n_labelled:
        label = int(np.bincount(votes[labelled]).argmax())
        disagreement = float((votes != predicted[None, :])[labelled].mean())
    else:
        label, disagreement = None, float("nan")
    per_sample = _sample_agreement(votes)
    voted = ~np.isnan(per_sample)
    return RegionDecision(
        region=int(region),
        is_misclassification_region=bool(n_labelled and disagreement > rho),
        label=label,
        disagreement=disagreement,
        agreement=float(per_sample[voted].mean()) if voted.any() else float("nan"),
        n_votes=int((votes != MISSING).sum()),
        n_none=int((votes == NONE_OF_THE_ABOVE).sum()),
        sample_agreement=tuple(float(a) for a in per_sample))


def decide(store: AnnotationStore, *, rho: float = 0.5,
           n_regions: int | None = None) -> list[RegionDecision]:
    """Decide every region of a store that has a review set.

    Parameters
    ----------
    store : AnnotationStore
    rho : float in [0, 1), default=0.5
    n_regions : int, optional
        Decide regions 0 .. n_regions - 1 instead: one decision each, in order,
        a region nobody was shown (no review set yet) decided on no votes.

    Returns
    -------
    list of RegionDecision
        One per region in ``store.regions()`` (or per region when ``n_regions``), in order.
    """
    if not isinstance(store, AnnotationStore):
        raise TypeError(f"store must be an AnnotationStore; got {describe(store)}.")
    rho = check_number("rho", rho, low=0.0, high=1.0, high_inclusive=False)
    shown = store.regions()
    if n_regions is None:
        regions = shown
    else:
        regions = range(check_int("n_regions", n_regions, low=0))
    decisions = []
    for region in regions:
        if region in shown:
            _, matrix = store.vote_matrix(region)
            predicted = store.review_predictions(region)
        else:   # never shown: no votes
            matrix, predicted = np.zeros((0, 1), dtype=np.int64), np.zeros(1, dtype=np.int64)
        decisions.append(decide_region(matrix, predicted, region=region, rho=rho,
                                       n_classes=store.n_classes))
    return decisions


def _mean_sem(values: list[float]) -> dict:
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    mean = float(x.mean()) if n else float("nan")
    sem = float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return {"mean": mean, "sem": sem, "n": n}


def agreement_summary(decisions: Iterable[RegionDecision], *, unit: str = "sample") -> dict:
    """Mean and standard error of annotator agreement, as in the paper's Fig. 7.

    Parameters
    ----------
    decisions : iterable of RegionDecision
    unit : {"sample", "region"}, default="sample"
        ``"sample"`` averages the agreement of every voted image, as the paper
        does; ``"region"`` averages each region's mean agreement.

    Returns
    -------
    dict
        Keys ``"misclassification_region"``, ``"other"`` and ``"all"``, each a
        dict ``{"mean": float, "sem": float, "n": int}``; ``n`` counts images
        or regions, ``mean`` is nan when ``n == 0`` and ``sem`` when ``n < 2``.
    """
    check_choice("unit", unit, ["sample", "region"])
    groups: dict[str, list[float]] = {"misclassification_region": [], "other": []}
    for d in decisions:
        if not isinstance(d, RegionDecision):
            raise TypeError(f"decisions must hold RegionDecision objects; got {describe(d)}.")
        if unit == "sample" and d.sample_agreement:
            values = [a for a in d.sample_agreement if not np.isnan(a)]
        else:
            values = [] if np.isnan(d.agreement) else [d.agreement]
        groups["misclassification_region" if d.is_misclassification_region else "other"] \
            .extend(values)
    return {"misclassification_region": _mean_sem(groups["misclassification_region"]),
            "other": _mean_sem(groups["other"]),
            "all": _mean_sem(groups["misclassification_region"] + groups["other"])}
