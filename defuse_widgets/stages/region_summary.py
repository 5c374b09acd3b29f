"""One summary row per misclassification region: what the distillation, the votes and the
real images say about it.

The row gathers results the other stages compute: the region's weight π,
member count and top confusions (:meth:`Regions.summary`), the annotators'
votes and the ρ decision (:func:`~defuse_widgets.stages.labeling.decide`, paper
§4.1), and the grounding verdict with the classifier's accuracy on the region's
real images (:class:`~defuse_widgets.stages.grounding.RegionGrounding`). Rows
are JSON-safe dicts (no NaN), ready for a table. This module imports no UI code.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

from defuse_widgets._validation import check_number, describe
from defuse_widgets.stages.grounding import RegionGrounding
from defuse_widgets.stages.labeling import RegionDecision, decide
from defuse_widgets.stages.regions import Regions
from defuse_widgets.storage.annotations import AnnotationStore

__all__ = ["DECISIONS", "region_rows"]

#: The values of a row's ``decision``: the ρ rule accepted the region as a
#: misclassification region, rejected it, or nobody has voted on it.
DECISIONS = ("accepted", "rejected", "not labelled")


def region_rows(regions: Regions, *, store: AnnotationStore | None = None,
                grounding: RegionGrounding | None = None,
                class_names: Sequence[str] | None = None, rho: float = 0.5) -> list[dict]:
    """Summarise every region in one row: mixture, votes, decision and real-image grounding.

    Parameters
    ----------
    regions : Regions
        The distilled regions, numbered as everywhere else (0 is the heaviest).
    store : AnnotationStore, optional
        The votes; without it every region is ``"not labelled"``.
    grounding : RegionGrounding, optional
        The regions' real images; without it ``verdict``, ``accuracy`` and
        ``real_images`` are None.
    class_names : sequence of str, optional
        One name per class (``regions.n_classes``); default ``"0"``, ``"1"``, ...
    rho : float in [0, 1), default=0.5
        The share of class votes that must disagree with the classifier for the
        region to be accepted (:func:`~defuse_widgets.stages.labeling.decide`).

    Returns
    -------
    list of dict, length n_regions
        In region order, each with the keys

        - ``region`` (int): the region's index k.
        - ``weight`` (float): mixing proportion π_k.
        - ``members`` (int): adversarial examples assigned to the region.
        - ``confusions`` (list of [true, predicted, count]): the top three
          source-class → predicted-class pairs among the members.
        - ``top_confusions`` (str): the same as text with class names and shares
          of the members, e.g. ``"4 → 9 (75 %), 4 → 1 (25 %)"``; ``""`` without members.
        - ``votes`` (int): votes cast, "none of the above" included.
        - ``annotators`` (int): people who voted on the region.
        - ``disagreement`` (float or None): share of the class votes that differ
          from the classifier; None without class votes.
        - ``decision`` (str): one of :data:`DECISIONS`.
        - ``label`` (str or None): the majority label's name when accepted.
        - ``verdict`` (str or None): :meth:`RegionGrounding.verdict`.
        - ``accuracy`` (float or None): the classifier's accuracy on the
          region's real images, all splits pooled; None without any.
        - ``real_images`` (int or None): how many real images fall in the region.

    Raises
    ------
    TypeError, ValueError
        When an argument is of the wrong kind or does not fit ``regions``; the
        message names it.

    Examples
    --------
    >>> rows = region_rows(regions, store=store, grounding=grounding)  # doctest: +SKIP
    >>> rows[0]["decision"], rows[0]["top_confusions"]  # doctest: +SKIP
    ('accepted', '4 → 9 (75 %), 4 → 1 (25 %)')
    """
    names = _check_inputs(regions, store, grounding, class_names)
    rho = check_number("rho", rho, low=0.0, high=1.0, high_inclusive=False)
    decisions, annotators = _votes(store, rho, len(regions))
    return [dict(_mixture_columns(summary, names),
                 **_vote_columns(decisions.get(k), len(annotators[k]), names),
                 **_grounding_columns(grounding, k))
            for k, summary in enumerate(regions.summary())]


def _check_inputs(regions, store, grounding, class_names) -> list:
    """Check the arguments of :func:`region_rows`; return one name per class."""
    if not isinstance(regions, Regions):
        raise TypeError(f"regions must be a Regions; got {describe(regions)}.")
    if store is not None and not isinstance(store, AnnotationStore):
        raise TypeError(f"store must be an AnnotationStore or None; got {describe(store)}.")
    if store is not None and store.n_classes != regions.n_classes:
        raise ValueError(f"store must hold votes on the regions' {regions.n_classes} classes; "
                         f"got a store of {store.n_classes}.")
    if grounding is not None and not isinstance(grounding, RegionGrounding):
        raise TypeError(f"grounding must be a RegionGrounding or None; got {describe(grounding)}.")
    if grounding is not None and grounding.n_regions != len(regions):
        raise ValueError(f"grounding must be of the {len(regions)} regions; got one of "
                         f"{grounding.n_regions}.")
    if class_names is None:
        return [str(c) for c in range(regions.n_classes)]
    if isinstance(class_names, str) or len(class_names) != regions.n_classes:
        raise ValueError(f"class_names must name all {regions.n_classes} classes; "
                         f"got {describe(class_names)}.")
    return [str(c) for c in class_names]


def _votes(store, rho: float, n_regions: int) -> tuple[dict, dict]:
    """The ρ decision of each voted region and the names of who voted on it."""
    if store is None:
        return {}, defaultdict(set)
    decisions = {d.region: d for d in decide(store, rho=rho) if d.region < n_regions}
    annotators: dict = defaultdict(set)
    for vote in store.votes():
        annotators[vote.region].add(vote.annotator)
    return decisions, annotators


def _mixture_columns(summary: dict, names: list) -> dict:
    """Weight, members and top confusions, from one entry of :meth:`Regions.summary`."""
    members = summary["members"]
    confusions = [[s, p, n] for s, p, n in summary["top_confusions"]]
    text = ", ".join(f"{names[s]} → {names[p]} ({100 * n / members:.0f} %)"
                     for s, p, n in confusions)
    return dict(region=summary["region"], weight=summary["weight"], members=members,
                confusions=confusions, top_confusions=text)


def _vote_columns(d: RegionDecision | None, n_annotators: int, names: list) -> dict:
    """Votes, annotators, disagreement, decision and label of one region."""
    if d is None or d.n_votes == 0:   # a region nobody voted on is not decided
        return dict(votes=0, annotators=0, disagreement=None, decision="not labelled",
                    label=None)
    accepted = d.is_misclassification_region
    return dict(votes=d.n_votes, annotators=n_annotators,
                disagreement=None if math.isnan(d.disagreement) else d.disagreement,
                decision="accepted" if accepted else "rejected",
                label=names[d.label] if accepted else None)


def _grounding_columns(grounding: RegionGrounding | None, k: int) -> dict:
    """Verdict, real-image accuracy and real-image count of region ``k``."""
    if grounding is None:
        return dict(verdict=None, accuracy=None, real_images=None)
    return dict(verdict=grounding.verdict(k), accuracy=grounding.accuracy(k),
                real_images=grounding.count(k))
