"""Where each region stands in an annotator's labeling queue (paper §4.2's labeling step).

Plain functions of the annotation store: the labeling panel shows them, and a
script can ask the same questions (which regions has this annotator finished,
where do annotators disagree). This module imports no UI code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from defuse_widgets._validation import check_choice
from defuse_widgets.stages.labeling import RegionDecision, decide_region
from defuse_widgets.storage.annotations import MISSING, AnnotationStore

__all__ = ["QUEUE_FILTERS", "RegionState", "in_queue", "region_states"]

#: The queue filters: every region, those the annotator has not finished, those
#: where annotators disagree.
QUEUE_FILTERS = ("all", "unlabelled", "disagree")


@dataclass(frozen=True)
class RegionState:
    """Where one region stands in the labeling queue.

    Attributes
    ----------
    region : int
    n_samples : int
        Review samples of the region.
    n_mine : int
        Samples with a vote of the annotator the states were computed for.
    decision : RegionDecision or None
        The ρ rule on every annotator's votes; None before the region's review
        set is recorded in the store.
    """

    region: int
    n_samples: int
    n_mine: int
    decision: RegionDecision | None

    @property
    def complete(self) -> bool:
        """Whether the annotator has voted every sample."""
        return self.n_mine >= self.n_samples

    @property
    def disagree(self) -> bool:
        """Whether the annotators' votes differ on a sample (agreement below 1)."""
        return self.decision is not None and not math.isnan(self.decision.agreement) \
            and self.decision.agreement < 1.0


def region_states(store: AnnotationStore, n_regions: int, review_size: int, annotator: str,
                  rho: float = 0.5) -> list[RegionState]:
    """The queue state of regions ``0 .. n_regions - 1`` for ``annotator``.

    Parameters
    ----------
    store : AnnotationStore
    n_regions : int
    review_size : int
        Samples of a region whose review set is not in the store yet.
    annotator : str
        Whose votes ``n_mine`` counts ("" counts none).
    rho : float, default=0.5
        The ρ of the decisions.

    Returns
    -------
    list of RegionState
        One per region, in order.
    """
    shown, states = set(store.regions()), []
    for k in range(n_regions):
        if k not in shown:
            states.append(RegionState(k, review_size, 0, None))
            continue
        names, matrix = store.vote_matrix(k)
        mine = int((matrix[names.index(annotator)] != MISSING).sum()) if annotator in names \
            else 0
        decision = decide_region(matrix, store.review_predictions(k), region=k, rho=rho,
                                 n_classes=store.n_classes)
        states.append(RegionState(k, matrix.shape[1], mine, decision))
    return states


def in_queue(state: RegionState, queue_filter: str) -> bool:
    """Whether the filter keeps the region.

    ``"all"`` keeps every region, ``"unlabelled"`` those where the annotator
    has not voted every sample, ``"disagree"`` those where annotators disagree.
    """
    check_choice("queue_filter", queue_filter, QUEUE_FILTERS)
    return {"all": True, "unlabelled": not state.complete,
            "disagree": state.disagree}[queue_filter]
